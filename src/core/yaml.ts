/** YAML parsing with errors that name the file and line, for hand-edited definitions and compose files. */
import { parse, stringify, YAMLParseError } from 'yaml';
import { BuildInputError } from '../errors.js';

export function parseYaml(text: string, file: string): unknown {
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
export function toYaml(value: unknown): string {
  return stringify(value, { aliasDuplicateObjects: false, version: '1.1' });
}
