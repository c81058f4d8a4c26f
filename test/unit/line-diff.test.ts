import { describe, expect, it } from 'vitest';
import { diffOps, formatHunks, lineDiff, splitLines, type Hunk } from '../../src/core/line-diff.js';

/** Applies hunks to the old lines: what `patch` would make of them. */
function apply(old: string[], hunks: Hunk[]): string[] {
  const out: string[] = [];
  let at = 0;
  for (const h of hunks) {
    const start = h.oldLines ? h.oldStart - 1 : h.oldStart;
    out.push(...old.slice(at, start));
    at = start;
    for (const l of h.lines) {
      if (l[0] === '+') out.push(l.slice(1));
      else {
        expect(old[at]).toBe(l.slice(1));
        at++;
        if (l[0] === ' ') out.push(l.slice(1));
      }
    }
  }
  return [...out, ...old.slice(at)];
}

/** Length of the longest common subsequence, by the textbook table: the minimal edit count is n + m - 2·lcs. */
function lcs(a: string[], b: string[]): number {
  const t = Array.from({ length: a.length + 1 }, () => new Array<number>(b.length + 1).fill(0));
  for (let i = 1; i <= a.length; i++) for (let j = 1; j <= b.length; j++) t[i]![j] = a[i - 1] === b[j - 1] ? t[i - 1]![j - 1]! + 1 : Math.max(t[i - 1]![j]!, t[i]![j - 1]!);
  return t[a.length]![b.length]!;
}

function rng(seed: number) {
  return () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
}

describe('line diff', () => {
  it('finds a shortest edit script, and its hunks turn the old text into the new one', () => {
    const r = rng(7);
    for (let n = 0; n < 300; n++) {
      const pick = () => Array.from({ length: Math.floor(r() * 30) }, () => 'abcde'[Math.floor(r() * 5)]!);
      const a = pick();
      const b = pick();
      const { ops, approximate } = diffOps(a, b);
      expect(approximate).toBe(false);
      const edits = ops.filter((o) => o !== ' ').length;
      expect(edits).toBe(a.length + b.length - 2 * lcs(a, b));
      const d = lineDiff(a.map((x) => `${x}\n`).join(''), b.map((x) => `${x}\n`).join(''), { context: Math.floor(r() * 4) });
      expect(apply(a, d.hunks)).toEqual(b);
      expect(d.added - d.removed).toBe(b.length - a.length);
    }
  });

  it('prints hunks as diff -u does', () => {
    const old = 'services:\n  web:\n    image: shop/web:1.4.2\n    restart: always\n';
    const next = 'services:\n  web:\n    image: shop/web:1.4.3\n    restart: always\n    mem_limit: 64m\n';
    const d = lineDiff(old, next);
    expect(formatHunks(d.hunks)).toEqual(['@@ -1,4 +1,5 @@', ' services:', '   web:', '-    image: shop/web:1.4.2', '+    image: shop/web:1.4.3', '     restart: always', '+    mem_limit: 64m']);
    expect(formatHunks(lineDiff('', 'a\nb\n').hunks)).toEqual(['@@ -0,0 +1,2 @@', '+a', '+b']);
    expect(formatHunks(lineDiff('a\n', '').hunks)).toEqual(['@@ -1 +0,0 @@', '-a']);
  });

  it('keeps distant changes in separate hunks with their context', () => {
    const a = Array.from({ length: 40 }, (_, i) => `line ${i}`);
    const b = a.map((l, i) => (i === 5 || i === 30 ? `${l} changed` : l));
    const d = lineDiff(a.join('\n'), b.join('\n'));
    expect(d.hunks.map((h) => [h.oldStart, h.oldLines])).toEqual([[3, 7], [28, 7]]);
  });

  it('splits lines without an empty last one for a final newline', () => {
    expect(splitLines('a\nb\n')).toEqual(['a', 'b']);
    expect(splitLines('a\nb')).toEqual(['a', 'b']);
    expect(splitLines('')).toEqual([]);
  });

  it('stops searching at maxEdits and still gives a correct diff, in bounded time', () => {
    const a = Array.from({ length: 20_000 }, (_, i) => `a${i}`);
    const b = Array.from({ length: 20_000 }, (_, i) => `b${i}`);
    const t = Date.now();
    const d = lineDiff(a.join('\n'), b.join('\n'), { maxEdits: 500 });
    expect(Date.now() - t).toBeLessThan(5000);
    expect(d.approximate).toBe(true);
    expect(apply(a, d.hunks)).toEqual(b);
  });
});
