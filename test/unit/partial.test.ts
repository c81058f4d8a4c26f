import { describe, expect, it } from 'vitest';
import { parsePartialName, partialHost, partialName } from '../../src/core/partial.js';

describe('partial bundle directory names', () => {
  it('carry the bundle, the host and the pid, and read back', () => {
    const name = partialName('shop-1.4.2.ferry', 'build-1.example', 4242, 1_700_000_000_000);
    expect(name).toMatch(/^shop-1\.4\.2\.ferry\.partial-build-1\.example-4242-[0-9a-z]+$/);
    expect(parsePartialName(name)).toEqual({ bundle: 'shop-1.4.2.ferry', host: 'build-1.example', pid: 4242 });
  });

  it('keep a host name with odd characters comparable', () => {
    const name = partialName('b.ferry', 'odd host/name', 7, 1);
    expect(parsePartialName(name)?.host).toBe(partialHost('odd host/name'));
  });

  it('leave names of other kinds, and partials of older ferries (no host), alone', () => {
    expect(parsePartialName('shop.ferry')).toBeNull();
    expect(parsePartialName('shop.ferry.partial-4242-lmn0p')).toBeNull();
    expect(parsePartialName('notes.txt')).toBeNull();
  });
});
