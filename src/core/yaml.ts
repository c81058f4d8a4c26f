/** YAML parsing with errors that name the file and line, for hand-edited definitions and compose files. */
import { parse, YAMLParseError } from 'yaml';
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
