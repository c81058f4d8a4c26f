/**
 * A line diff for people reviewing a change (compose files, host overrides): Myers' O(ND)
 * algorithm over lines, shown as unified-diff hunks. Bounded for hostile input: past `maxEdits`
 * differences it stops searching for the shortest script and reports the rest of the text as
 * removed and added — still a correct diff, just not the smallest one.
 */

export type LineOp = ' ' | '-' | '+';

export interface Hunk {
  /** 1-based first line in the old text (0 when the hunk holds no old line, as diff -u prints it). */
  oldStart: number;
  oldLines: number;
  newStart: number;
  newLines: number;
  /** Each line prefixed with ' ', '-' or '+'. */
  lines: string[];
}

export interface LineDiff {
  hunks: Hunk[];
  added: number;
  removed: number;
  /** The search gave up at maxEdits: the diff is correct but may not be the smallest. */
  approximate: boolean;
}

export interface LineDiffOptions {
  /** Unchanged lines shown around each change. */
  context?: number;
  /**
   * The most differences searched for a shortest script. Myers keeps a trace of O(D²) integers,
   * so this bounds memory: 2000 is 16 MB at worst.
   */
  maxEdits?: number;
}

/** Lines of a text; a final newline ends the last line rather than starting an empty one. */
export function splitLines(text: string): string[] {
  if (text === '') return [];
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/** The edit script from a to b, one op per line of the result. */
export function diffOps(a: readonly string[], b: readonly string[], maxEdits = 2000): { ops: LineOp[]; approximate: boolean } {
  // Common ends cost nothing to find and shrink what Myers searches.
  let pre = 0;
  while (pre < a.length && pre < b.length && a[pre] === b[pre]) pre++;
  let suf = 0;
  while (suf < a.length - pre && suf < b.length - pre && a[a.length - 1 - suf] === b[b.length - 1 - suf]) suf++;
  const midA = a.slice(pre, a.length - suf);
  const midB = b.slice(pre, b.length - suf);
  const mid = myers(midA, midB, maxEdits);
  const ops: LineOp[] = [...Array<LineOp>(pre).fill(' '), ...(mid ?? [...Array<LineOp>(midA.length).fill('-'), ...Array<LineOp>(midB.length).fill('+')]), ...Array<LineOp>(suf).fill(' ')];
  return { ops, approximate: mid === null };
}

/** Myers' greedy forward search with a trace for the way back; null past maxEdits. */
function myers(a: readonly string[], b: readonly string[], maxEdits: number): LineOp[] | null {
  const n = a.length;
  const m = b.length;
  if (n === 0) return Array<LineOp>(m).fill('+');
  if (m === 0) return Array<LineOp>(n).fill('-');
  const max = Math.min(n + m, maxEdits);
  const offset = max + 1;
  const v = new Int32Array(2 * max + 3);
  const trace: Int32Array[] = [];
  for (let d = 0; d <= max; d++) {
    // Only diagonals -d..d can be reached with d edits: keep just those.
    trace.push(v.slice(offset - d - 1, offset + d + 2));
    for (let k = -d; k <= d; k += 2) {
      let x = k === -d || (k !== d && v[offset + k - 1]! < v[offset + k + 1]!) ? v[offset + k + 1]! : v[offset + k - 1]! + 1;
      let y = x - k;
      while (x < n && y < m && a[x] === b[y]) {
        x++;
        y++;
      }
      v[offset + k] = x;
      if (x >= n && y >= m) return backtrack(trace, n, m);
    }
  }
  return null;
}

function backtrack(trace: Int32Array[], n: number, m: number): LineOp[] {
  const ops: LineOp[] = [];
  let x = n;
  let y = m;
  for (let d = trace.length - 1; d >= 0; d--) {
    const saved = trace[d]!;
    // saved holds diagonals -d-1..d+1 as they were before step d.
    const at = (k: number) => saved[k + d + 1]!;
    const k = x - y;
    const down = k === -d || (k !== d && at(k - 1) < at(k + 1));
    const prevK = down ? k + 1 : k - 1;
    const prevX = d === 0 ? 0 : at(prevK);
    const prevY = prevX - prevK;
    while (x > prevX && y > prevY) {
      ops.push(' ');
      x--;
      y--;
    }
    if (d > 0) ops.push(down ? '+' : '-');
    x = prevX;
    y = prevY;
  }
  return ops.reverse();
}

/** Unified-diff hunks of two texts, `context` unchanged lines around each change. */
export function lineDiff(oldText: string, newText: string, options: LineDiffOptions = {}): LineDiff {
  const context = options.context ?? 3;
  const a = splitLines(oldText);
  const b = splitLines(newText);
  const { ops, approximate } = diffOps(a, b, options.maxEdits);
  const hunks: Hunk[] = [];
  // Old and new line index before each op.
  const pos: { i: number; j: number }[] = [];
  let i = 0;
  let j = 0;
  let added = 0;
  let removed = 0;
  for (const op of ops) {
    pos.push({ i, j });
    if (op !== '+') i++;
    if (op !== '-') j++;
    if (op === '+') added++;
    if (op === '-') removed++;
  }
  let at = 0;
  while (at < ops.length) {
    while (at < ops.length && ops[at] === ' ') at++;
    if (at >= ops.length) break;
    const start = Math.max(0, at - context);
    // Extend while the next change is close enough that the contexts would touch.
    let end = at;
    for (;;) {
      while (end < ops.length && ops[end] !== ' ') end++;
      let next = end;
      while (next < ops.length && ops[next] === ' ') next++;
      if (next < ops.length && next - end <= 2 * context) {
        end = next;
        continue;
      }
      break;
    }
    const stop = Math.min(ops.length, end + context);
    const lines: string[] = [];
    let oldLines = 0;
    let newLines = 0;
    for (let k = start; k < stop; k++) {
      const op = ops[k]!;
      const p = pos[k]!;
      lines.push(`${op}${op === '+' ? b[p.j] : a[p.i]}`);
      if (op !== '+') oldLines++;
      if (op !== '-') newLines++;
    }
    const first = pos[start]!;
    hunks.push({ oldStart: oldLines ? first.i + 1 : first.i, oldLines, newStart: newLines ? first.j + 1 : first.j, newLines, lines });
    at = stop;
  }
  return { hunks, added, removed, approximate };
}

/** The hunks as `diff -u` prints them, after its two header lines. */
export function formatHunks(hunks: readonly Hunk[]): string[] {
  const range = (start: number, count: number) => (count === 1 ? `${start}` : `${start},${count}`);
  return hunks.flatMap((h) => [`@@ -${range(h.oldStart, h.oldLines)} +${range(h.newStart, h.newLines)} @@`, ...h.lines]);
}
