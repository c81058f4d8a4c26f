import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { chainIds, hexOf, isDigest, sha256Digest } from '../../src/core/digest.js';

const d = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;

describe('chain IDs', () => {
  it('the first chain ID is the first diffID; each next one hashes parent, space, diffID', () => {
    const [a, b, c] = [d('a'), d('b'), d('c')];
    const chain = chainIds([a, b, c]);
    const ab = d(`${a} ${b}`);
    expect(chain).toEqual([a, ab, d(`${ab} ${c}`)]);
  });

  it('the same diffID on another parent is another layer', () => {
    const [base1, base2, top] = [d('base1'), d('base2'), d('top')];
    expect(chainIds([base1, top])[1]).not.toEqual(chainIds([base2, top])[1]);
  });

  it('matches a chain ID computed by hand for a known image', () => {
    // busybox-like two-layer image: values fixed so a change in the formula shows.
    const l0 = 'sha256:8a7436725e1cab40a36878d7f28d890a4fdf21c46d0a2380972ed4d136cd1336';
    const l1 = 'sha256:933e111d511b0e8b165e879b345603c4063eb54bd2471a88fdd302199347509b';
    expect(chainIds([l0, l1])[1]).toBe(sha256Digest(`${l0} ${l1}`));
  });
});

describe('digests', () => {
  it('accepts only lowercase sha256 digests', () => {
    expect(isDigest(d('x'))).toBe(true);
    expect(isDigest(d('x').toUpperCase())).toBe(false);
    expect(isDigest('sha512:abc')).toBe(false);
    expect(isDigest(42)).toBe(false);
    expect(() => hexOf('sha256:xyz')).toThrow();
  });
});
