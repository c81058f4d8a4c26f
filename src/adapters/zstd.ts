/**
 * zstd for ferry, from two sources. Decompression (every host path: verify, install, inventory,
 * status, rollback) uses node:zlib where the runtime has it (Node ≥ 22.15; the single executable
 * is built from such a Node), so a host never loads a native addon and ferry runs on hosts whose
 * glibc is older than the one the addon was built against. Compression (create, on the build
 * server) keeps zstd-napi: node:zlib's zstd has no working multi-threaded mode (nbWorkers > 0
 * fails with ERR_STREAM_PUSH_AFTER_EOF on Node 26), and create's speed depends on it.
 *
 * zstd-napi is only ever reached through `import()` of a static path, which stays lazy both in
 * Node's ESM loader and in the bundled executable, so merely starting ferry never maps the addon.
 */
import type { Readable, Transform } from 'node:stream';
import * as zlib from 'node:zlib';
import type { CompressorSettings } from '../core/layer-cache.js';

export interface ZstdCompressOptions {
  level: number;
  workers: number;
}

type ZstdNapi = typeof import('zstd-napi');

let napi: Promise<ZstdNapi> | undefined;
/** Which implementations this process used; the executable's tests assert host paths stay native-free. */
export const zstdUsage = { native: false };

function loadNapi(): Promise<ZstdNapi> {
  zstdUsage.native = true;
  napi ??= import('zstd-napi');
  return napi;
}

// @types/node follows the machine's Node 20, which has no zstd in zlib; the executable's Node does.
const zlibZstd = (zlib as { createZstdDecompress?: () => Transform }).createZstdDecompress;

/** A zstd → bytes transform; frames with a checksum are checked by either implementation. */
export async function zstdDecompressor(): Promise<Transform> {
  if (zlibZstd) return zlibZstd.call(zlib);
  const { DecompressStream } = await loadNapi();
  return boundedDecompressStream(DecompressStream);
}

/** A zstd stream's content, as a stream (a bundle's blob, a layer cache entry). */
export async function zstdContent(src: Readable): Promise<Readable> {
  const decoder = await zstdDecompressor();
  src.on('error', (e) => decoder.destroy(e));
  return src.pipe(decoder);
}

/** ZSTD_DStreamOutSize(): one block, what zstd-napi's own stream uses per call. */
const NAPI_OUT_SIZE = 128 * 1024;

/**
 * zstd-napi's DecompressStream decompresses each input chunk to its end before it looks at its
 * reader: a 1 MiB chunk of a layer full of zeros came out as 50 MiB at once, and one such burst
 * per node loading at the same time took ferry past 250 MB. This one stops after a block once
 * the reader is full and goes on when it reads (as node:zlib's own streams do), so a stream
 * holds about its highWaterMark whatever the ratio.
 */
function boundedDecompressStream(Base: ZstdNapi['DecompressStream']): Transform {
  type Native = { decompressStream(dst: Uint8Array, src: Uint8Array): [number, number, number] };
  class Bounded extends Base {
    private continueWith: (() => void) | null = null;

    override _read(size: number): void {
      const next = this.continueWith;
      this.continueWith = null;
      next?.();
      // The chunk may have ended without another push: Transform then waits here for the next one.
      if (!this.continueWith) super._read(size);
    }

    override _transform(chunk: Buffer, _encoding: BufferEncoding, done: (e?: Error | null) => void): void {
      const self = this as unknown as { dctx: Native; inFrame: boolean };
      let src: Buffer = chunk;
      const step = (): void => {
        try {
          for (;;) {
            const dst = Buffer.allocUnsafe(NAPI_OUT_SIZE);
            const [ret, produced, consumed] = self.dctx.decompressStream(dst, src);
            src = src.subarray(consumed);
            const more = produced > 0 ? this.push(dst.subarray(0, produced)) : true;
            if (src.length === 0 && (produced < dst.length || ret === 0)) {
              self.inFrame = ret !== 0;
              done();
              return;
            }
            if (!more) {
              this.continueWith = step;
              return;
            }
          }
        } catch (e) {
          done(e as Error);
        }
      };
      step();
    }
  }
  return new Bounded();
}

// 2 MiB jobs instead of zstd's default (8 MiB at level 3): each worker's buffers shrink, which
// keeps peak memory under 200 MB; a full-window overlap keeps the ratio (measured 0.2% smaller).
// An eighth of the window (6) was tried: 3% less CPU on a quiet machine, but the bench's 660 MB
// stack came out 1.1% bigger than `zstd -3 -T0` instead of 1.1% smaller.
const MT_JOB_SIZE = 2 * 1024 * 1024;
const MT_OVERLAP_LOG = 9;

/**
 * Everything that decides the compressed bytes, for the layer cache's key: zstd's multi-threaded
 * output is the same for any number of workers ≥ 1, so the count itself is not part of it.
 */
export function compressorSettings(options: ZstdCompressOptions): CompressorSettings {
  const multiThreaded = options.workers > 0;
  return { level: options.level, multiThreaded, jobSize: multiThreaded ? MT_JOB_SIZE : null, overlapLog: multiThreaded ? MT_OVERLAP_LOG : null };
}

/** Loads the compressor's implementation once, before the first byte is read from the engine. */
export async function zstdCompressorFactory(options: ZstdCompressOptions): Promise<() => Transform> {
  const { CompressStream } = await loadNapi();
  const s = compressorSettings(options);
  return () =>
    new CompressStream({
      compressionLevel: options.level,
      nbWorkers: options.workers,
      ...(s.multiThreaded ? { jobSize: s.jobSize!, overlapLog: s.overlapLog! } : {}),
      checksumFlag: true,
    });
}
