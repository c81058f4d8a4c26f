import { describe, expect, it } from 'vitest';
import { isSafeRelativePath, safeRelativePathProblem } from '../../src/core/paths.js';

describe('bundle paths from untrusted manifests', () => {
  it.each(['blobs/sha256/abc', 'compose/hosts/edge-1.yaml', 'oci-layout', 'a/b.part-0001'])('accepts %s', (p) => {
    expect(isSafeRelativePath(p)).toBe(true);
  });

  it.each([
    ['../etc/passwd', /\.\./],
    ['blobs/../../x', /\.\./],
    ['/etc/passwd', /absolute/],
    ['blobs\\sha256\\x', /backslash/],
    ['a//b', /segment/],
    ['./a', /"\."/],
    ['', /empty/],
    ['a/\u0000b', /characters/],
    ['.hidden', /characters/],
    ['a/b\nc', /characters/],
  ])('refuses %j', (p, why) => {
    expect(safeRelativePathProblem(p)).toMatch(why);
  });

  it('refuses non-strings and very long paths', () => {
    expect(isSafeRelativePath(7)).toBe(false);
    expect(isSafeRelativePath('a/'.repeat(600) + 'b')).toBe(false);
  });
});
