/**
 * A layer as its uncompressed tar, whatever the engine sent: the classic store exports layers
 * uncompressed, the containerd image store exports them as it keeps them (gzip for images it built
 * or pulled, zstd where a registry served zstd). diffIDs, and so everything ferry pins and compares,
 * are digests of the uncompressed tar.
 */
import { Readable, Transform } from 'node:stream';
import * as zlib from 'node:zlib';
import { TarHeaderScanner, type TarEntry } from '../core/tar-scan.js';
import { zstdDecompressor } from './zstd.js';

const GZIP = [0x1f, 0x8b];
const ZSTD = [0x28, 0xb5, 0x2f, 0xfd];

const startsWith = (buf: Buffer, magic: number[]) => buf.length >= magic.length && magic.every((b, i) => buf[i] === b);

export type LayerCompression = 'none' | 'gzip' | 'zstd';

export function compressionOf(head: Buffer): LayerCompression {
  if (startsWith(head, GZIP)) return 'gzip';
  if (startsWith(head, ZSTD)) return 'zstd';
  return 'none';
}

export async function uncompressedLayer(input: Readable): Promise<{ stream: Readable; compression: LayerCompression }> {
  const it = input[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const head: Buffer[] = [];
  let have = 0;
  // Enough bytes to tell the formats apart; a chunk boundary may fall inside the magic.
  while (have < ZSTD.length) {
    const next = await it.next();
    if (next.done) break;
    head.push(next.value);
    have += next.value.length;
  }
  const first = Buffer.concat(head);
  const whole = Readable.from(
    (async function* () {
      if (first.length) yield first;
      for (;;) {
        const next = await it.next();
        if (next.done) return;
        yield next.value;
      }
    })(),
  );
  const compression = compressionOf(first);
  if (compression === 'none') return { stream: whole, compression };
  const decoder = compression === 'gzip' ? zlib.createGunzip() : await zstdDecompressor();
  whole.on('error', (e) => decoder.destroy(e));
  return { stream: whole.pipe(decoder), compression };
}

/** The layer unchanged, with each tar header seen on the way through (nothing buffered beyond headers). */
export function tapTarHeaders(input: Readable, onEntry: (entry: TarEntry) => void): Readable {
  const scanner = new TarHeaderScanner(onEntry);
  const tap = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      scanner.feed(chunk);
      callback(null, chunk);
    },
  });
  input.on('error', (e) => tap.destroy(e));
  return input.pipe(tap);
}
