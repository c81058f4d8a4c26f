/**
 * SHA256SUMS: every file of a bundle in the format coreutils' `sha256sum -c` reads, signed beside
 * the manifest, so that an operator can check a whole stick with OpenSSH and coreutils before
 * running anything from it. Pure: formatting, parsing and the comparison with the manifest.
 */
import type { Problem } from '../errors.js';
import { safeRelativePathProblem } from './paths.js';

export const SUMS_FILE = 'SHA256SUMS';
export const SUMS_SIGNATURE_FILE = 'SHA256SUMS.sig';

export interface SumEntry {
  path: string;
  /** Lower-case hex, as sha256sum prints it. */
  sha256: string;
}

const LINE = /^([0-9a-f]{64}) {2}(.+)$/;

/** Code-unit order, which for bundle paths (ASCII only) is `LC_ALL=C sort`: one bundle, one file. */
const byPath = (a: SumEntry, b: SumEntry) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);

/**
 * `<hex>  <path>` lines (text mode, two spaces), sorted, each ending in a newline. Bundle paths
 * never need sha256sum's backslash escapes: they pass the same check as every manifest path,
 * which allows no backslash, newline or space.
 */
export function formatSha256Sums(entries: readonly SumEntry[]): Buffer {
  const lines = [...entries].sort(byPath).map((e) => {
    const problem = safeRelativePathProblem(e.path);
    if (problem) throw new RangeError(`SHA256SUMS cannot list ${JSON.stringify(e.path)}: it ${problem}`);
    if (!/^[0-9a-f]{64}$/.test(e.sha256)) throw new RangeError(`SHA256SUMS: ${e.path} has no sha256 hex digest`);
    return `${e.sha256}  ${e.path}\n`;
  });
  return Buffer.from(lines.join(''), 'utf8');
}

/** Lines ferry can read, and what is wrong with the others (1-based line numbers). */
export function parseSha256Sums(bytes: Buffer): { entries: SumEntry[]; malformed: string[] } {
  const entries: SumEntry[] = [];
  const malformed: string[] = [];
  const text = bytes.toString('utf8');
  const lines = text.split('\n');
  // The last newline ends the last line; anything after it is a line without one.
  if (lines.at(-1) === '') lines.pop();
  else if (lines.length > 0) malformed.push(`line ${lines.length} does not end with a newline`);
  lines.forEach((line, i) => {
    const m = LINE.exec(line);
    const problem = m ? safeRelativePathProblem(m[2]) : undefined;
    if (!m) malformed.push(`line ${i + 1} is not "<sha256 hex>  <path>": ${JSON.stringify(line.slice(0, 120))}`);
    else if (problem) malformed.push(`line ${i + 1} names a path that ${problem}`);
    else entries.push({ path: m[2]!, sha256: m[1]! });
  });
  return { entries, malformed };
}

/**
 * SHA256SUMS against the files it must list (the manifest's, plus ferry.json and its signature):
 * every problem, each naming the file concerned. Exactly the bytes ferry writes are accepted; a
 * signed file in any other form was not written by ferry.
 */
export function compareSha256Sums(bytes: Buffer, expected: readonly SumEntry[]): Problem[] {
  const problems: Problem[] = [];
  const { entries, malformed } = parseSha256Sums(bytes);
  for (const m of malformed) problems.push({ file: SUMS_FILE, kind: 'malformed', message: `${SUMS_FILE}: ${m}` });
  const want = new Map(expected.map((e) => [e.path, e.sha256]));
  const seen = new Set<string>();
  for (const e of entries) {
    const digest = want.get(e.path);
    if (seen.has(e.path)) problems.push({ file: e.path, kind: 'extra', message: `${SUMS_FILE} lists ${e.path} more than once` });
    else if (digest === undefined) problems.push({ file: e.path, kind: 'extra', message: `${SUMS_FILE} lists ${e.path}, which is not a file of the bundle (ferry.json does not list it)` });
    else if (digest !== e.sha256) problems.push({ file: e.path, kind: 'digest', message: `${SUMS_FILE} gives ${e.path} sha256 ${e.sha256}, ferry.json's listing says ${digest}` });
    seen.add(e.path);
  }
  for (const e of expected) {
    if (!seen.has(e.path)) problems.push({ file: e.path, kind: 'missing', message: `${SUMS_FILE} does not list ${e.path}` });
  }
  if (problems.length === 0 && !bytes.equals(formatSha256Sums(expected))) {
    problems.push({ file: SUMS_FILE, kind: 'malformed', message: `${SUMS_FILE} lists the right digests but not as ferry writes them (sorted, one "<hex>  <path>" line each)` });
  }
  return problems;
}
