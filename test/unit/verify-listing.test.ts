import { describe, expect, it } from 'vitest';
import { compareListing } from '../../src/core/verify.js';

const f = (path: string, size = 5) => ({ path, size, sha256: '0'.repeat(64) });

describe('bundle listing against the manifest', () => {
  it('finds missing, extra, resized and non-regular files, all at once', () => {
    const expected = [f('a/x'), f('a/y'), f('b'), f('c'), f('d')];
    const { problems, toHash } = compareListing(expected, [
      { path: 'a', kind: 'directory', size: 0 },
      { path: 'a/x', kind: 'file', size: 5 },
      { path: 'b', kind: 'file', size: 6 },
      { path: 'c', kind: 'symlink', size: 5 },
      { path: 'd', kind: 'file', size: 5 },
      { path: 'ferry.json', kind: 'file', size: 1 },
      { path: 'ferry.json.sig', kind: 'file', size: 1 },
      { path: 'evil', kind: 'file', size: 1 },
      { path: 'emptydir', kind: 'directory', size: 0 },
    ]);
    expect(problems.map((p) => `${p.kind}:${p.file}`).sort()).toEqual(['extra:emptydir', 'extra:evil', 'missing:a/y', 'not-regular:c', 'size:b']);
    expect(toHash.map((x) => x.path)).toEqual(['a/x', 'd']);
  });
});

describe('the files a bundle holds outside its listing', () => {
  it('are ferry.json, its signature and the SHA256SUMS pair; README.txt must be listed like any file', () => {
    const outside = ['ferry.json', 'ferry.json.sig', 'SHA256SUMS', 'SHA256SUMS.sig'].map((path) => ({ path, kind: 'file' as const, size: 1 }));
    expect(compareListing([f('a')], [{ path: 'a', kind: 'file', size: 5 }, ...outside]).problems).toEqual([]);
    const { problems } = compareListing([f('a')], [{ path: 'a', kind: 'file', size: 5 }, ...outside, { path: 'README.txt', kind: 'file', size: 1 }, { path: 'SHA256SUMS.bak', kind: 'file', size: 1 }]);
    expect(problems.map((p) => `${p.kind}:${p.file}`).sort()).toEqual(['extra:README.txt', 'extra:SHA256SUMS.bak']);
  });
});
