/**
 * How an HTTP request body reaches an SSH channel (src/adapters/ssh-host.ts): node's http client
 * writes each body chunk as a size line, the data and a CRLF. The small writes are joined so that
 * none travels as a tiny SSH packet of its own; a big one is passed on as it is, uncopied.
 */
import { describe, expect, it } from 'vitest';
import { gatherSmall } from '../../src/adapters/ssh-host.js';

describe('gatherSmall', () => {
  it('joins the size line and CRLFs around a chunk, and passes the chunk itself on uncopied', () => {
    const data = Buffer.alloc(128 * 1024, 1);
    const next = Buffer.alloc(64 * 1024, 2);
    const writes = [Buffer.from('20000\r\n'), data, Buffer.from('\r\n'), Buffer.from('10000\r\n'), next, Buffer.from('\r\n0\r\n\r\n')];
    const pieces = gatherSmall(writes);
    expect(pieces.map((p) => p.length)).toEqual([7, data.length, 9, next.length, 7]);
    expect(pieces[1]).toBe(data);
    expect(pieces[3]).toBe(next);
    expect(Buffer.concat(pieces).equals(Buffer.concat(writes))).toBe(true);
  });

  it('keeps a body of small writes in one piece, and the order of everything', () => {
    const writes = ['a', 'bb', 'ccc'].map((s) => Buffer.from(s));
    expect(gatherSmall(writes).map(String)).toEqual(['abbccc']);
    const big = Buffer.alloc(8 * 1024, 3);
    expect(gatherSmall([big]).map((p) => p.length)).toEqual([8 * 1024]);
    expect(gatherSmall([])).toEqual([]);
  });
});
