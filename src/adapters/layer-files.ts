/**
 * The files of a layer a bundle ships whole, read as a stream from its zstd blob: decompressed,
 * checked against the diffID the manifest gives (no more bytes than its size, the same sha256 at
 * the end), and listed with a digest of each file's content on the way. Memory stays flat in the
 * layer's size: one tar header and the list kept.
 */
import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { join } from 'node:path';
import { DeltaError, readDeltaHeader, type DeltaHeader } from '../core/layer-delta.js';
import { blobPaths, type FileEntry, type LayerBlob } from '../core/manifest.js';
import { TarFileLister, type LayerListing } from '../core/tar-files.js';
import { hashFile } from './fs.js';
import { openBlob } from './load-archive.js';
import { zstdDecompressor } from './zstd.js';

/** The layer's bytes are not the ones the manifest names (length or sha256). */
export class LayerMismatch extends Error {}

export async function listLayerFiles(root: string, blob: LayerBlob, diffId: string, size: number, maxFiles: number, onBytes?: (n: number) => void): Promise<LayerListing> {
  const lister = new TarFileLister(maxFiles);
  const hash = createHash('sha256');
  let bytes = 0;
  const sink = new Writable({
    highWaterMark: 1 << 20,
    write(chunk: Buffer, _e, cb) {
      bytes += chunk.length;
      // A zstd bomb stops at the size the manifest gives, not at the end of the disk or memory.
      if (bytes > size) return cb(new LayerMismatch(`layer ${diffId} is longer than the ${size} bytes the manifest says`));
      hash.update(chunk);
      lister.feed(chunk);
      onBytes?.(chunk.length);
      cb();
    },
  });
  await pipeline(openBlob(root, blob), await zstdDecompressor(), sink);
  const got = `sha256:${hash.digest('hex')}`;
  if (got !== diffId || bytes !== size) throw new LayerMismatch(`layer ${diffId} decompressed to ${got} (${bytes} bytes), not what the manifest says`);
  return lister.finish();
}

/**
 * The header of a layer delta the bundle ships: what it changed against its reference. The delta's
 * files are first hashed whole against the manifest's entries (the header alone cannot be checked
 * any other way), then only the header is decompressed and read.
 */
export async function readLayerDeltaHeader(root: string, delta: LayerBlob, files: readonly FileEntry[]): Promise<DeltaHeader> {
  const paths = blobPaths(delta);
  for (const p of paths) {
    const entry = files.find((f) => f.path === p);
    if (!entry) throw new LayerMismatch(`${p} is not listed in the manifest's files`);
    const got = await hashFile(join(root, p), entry.size);
    if (got.longer || got.bytes !== entry.size || got.sha256 !== entry.sha256) throw new LayerMismatch(`${p} has sha256 ${got.sha256} (${got.bytes}${got.longer ? '+' : ''} bytes), the manifest says ${entry.sha256} (${entry.size} bytes)`);
  }
  const source = openBlob(root, delta);
  const decompressed = source.pipe(await zstdDecompressor());
  source.on('error', (e) => decompressed.destroy(e));
  try {
    return await readDeltaHeader(decompressed);
  } catch (e) {
    if (e instanceof DeltaError) throw new LayerMismatch(`${paths[0]}: ${e.message}`);
    throw e;
  } finally {
    source.destroy();
    decompressed.destroy();
  }
}
