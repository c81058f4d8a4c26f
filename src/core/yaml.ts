/** YAML parsing with errors that name the file and line, for hand-edited definitions and compose files. */
import { BuildInputError } from '../errors.js';

/**
 * The library (72 modules, ~15 ms) loads on first use, not with every command: an install that
 * does not bring a stack up, verify, inspect and most others never read or write YAML.
 */
let library: Promise<typeof import('yaml')> | undefined;
const yaml = () => (library ??= import('yaml'));

export async function parseYaml(text: string, file: string): Promise<unknown> {
  const { parse, YAMLParseError } = await yaml();
  try {
    // maxAliasCount bounds "billion laughs" expansion in files that travel between teams.
    return parse(text, { maxAliasCount: 100, prettyErrors: true });
  } catch (e) {
    const where = e instanceof YAMLParseError && e.linePos ? ` line ${e.linePos[0].line}` : '';
    throw new BuildInputError('YAML_INVALID', `${file}${where}: not valid YAML: ${(e as Error).message.split('\n')[0]}`, {
      details: { file },
    });
  }
}

/**
 * YAML for files ferry writes (a resolved compose model) that every Compose reads the same way: no
 * anchors, and YAML 1.1 quoting, since Compose v1's parser reads a bare `no`, `on` or `0777` as a
 * boolean or an octal number where v2 reads a string.
 */
export async function toYaml(value: unknown): Promise<string> {
  const { stringify } = await yaml();
  return stringify(value, { aliasDuplicateObjects: false, version: '1.1' });
}
