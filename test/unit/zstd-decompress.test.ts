/**
 * Decompression stays bounded by what its reader takes, whatever the ratio: a chunk of a layer
 * full of zeros must not come out all at once (issue 13: one such burst per swarm node took
 * ferry past 250 MB). Runs against whichever implementation this runtime picks.
 */
import { createHash } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { zstdCompressorFactory, zstdDecompressor } from '../../src/adapters/zstd.js';

async function compress(data: Buffer): Promise<Buffer> {
  const parts: Buffer[] = [];
  await pipeline(Readable.from([data]), (await zstdCompressorFactory({ level: 3, workers: 0 }))(), new Writable({ write: (c: Buffer, _e, cb) => (parts.push(c), cb()) }));
  return Buffer.concat(parts);
}

describe('zstdDecompressor', () => {
  it('holds back output its slow reader has not taken, and gives every byte back in order', async () => {
    const plain = Buffer.concat([Buffer.alloc(64 * 1024 * 1024), createHash('sha256').update('tail').digest()]);
    const packed = await compress(plain);
    // The whole frame in one write: the worst case for a decompressor that runs each chunk to its end.
    expect(packed.length).toBeLessThan(1024 * 1024);
    const d = await zstdDecompressor();
    let peakBuffered = 0;
    const hash = createHash('sha256');
    let got = 0;
    await pipeline(
      Readable.from([packed]),
      d,
      new Writable({
        highWaterMark: 64 * 1024,
        write(c: Buffer, _e, cb) {
          peakBuffered = Math.max(peakBuffered, d.readableLength);
          hash.update(c);
          got += c.length;
          setImmediate(cb);
        },
      }),
    );
    expect(got).toBe(plain.length);
    expect(hash.digest('hex')).toBe(createHash('sha256').update(plain).digest('hex'));
    expect(peakBuffered).toBeLessThanOrEqual(1024 * 1024);
  });

  it('gives each of several streams in turn its own bytes (contexts are reused between streams)', async () => {
    for (const fill of [1, 2, 3]) {
      const plain = Buffer.alloc(3 * 1024 * 1024 + fill, fill);
      const d = await zstdDecompressor();
      const parts: Buffer[] = [];
      await pipeline(Readable.from([await compress(plain)]), d, new Writable({ write: (c: Buffer, _e, cb) => (parts.push(c), cb()) }));
      expect(Buffer.concat(parts).equals(plain)).toBe(true);
    }
  });

  it('fails a stream that ends inside a frame', async () => {
    const packed = await compress(Buffer.alloc(4 * 1024 * 1024, 7));
    const d = await zstdDecompressor();
    await expect(pipeline(Readable.from([packed.subarray(0, packed.length - 8)]), d, new Writable({ write: (_c, _e, cb) => cb() }))).rejects.toThrow();
  });
});
