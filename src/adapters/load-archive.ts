/**
 * Builds the docker-archive stream `docker load` reads, straight from (staged) zstd blobs: each
 * layer is decompressed on the fly and its diffID recomputed as it passes; a mismatch aborts the
 * stream, so the engine never completes a load of bytes the manifest did not sign.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { PassThrough, Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar-stream';
import { DecompressStream } from 'zstd-napi';
import { hexOf } from '../core/digest.js';
import type { LayerBlob } from '../core/manifest.js';

export interface LoadImage {
  id: string;
  config: Buffer;
  tags: string[];
  layers: { diffId: string; size: number; blob: LayerBlob }[];
}

/** Concatenates a blob's files (one, or its parts in order) as one stream. */
export function openBlob(root: string, blob: LayerBlob): Readable {
  const paths = blob.parts ? blob.parts.map((p) => p.path) : [blob.path!];
  return Readable.from(
    (async function* () {
      for (const p of paths) yield* createReadStream(join(root, p), { highWaterMark: 1 << 20 });
    })(),
  );
}

class DiffIdCheck extends Transform {
  private readonly hash = createHash('sha256');
  private bytes = 0;

  constructor(
    private readonly diffId: string,
    private readonly size: number,
    private readonly onBytes?: (n: number) => void,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    this.onBytes?.(chunk.length);
    if (this.bytes > this.size) return cb(new Error(`layer ${this.diffId} is longer than the ${this.size} bytes the manifest says`));
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    const got = `sha256:${this.hash.digest('hex')}`;
    if (got !== this.diffId || this.bytes !== this.size) return cb(new Error(`layer ${this.diffId} decompressed to ${got} (${this.bytes} bytes): refusing to load it`));
    cb();
  }
}

/** A classic docker-archive of the images, layers shared between them written once. */
export function loadArchive(root: string, images: LoadImage[], onBytes?: (n: number) => void): Readable {
  const pack = tar.pack();
  const out = new PassThrough({ highWaterMark: 1 << 20 });
  const fill = async () => {
    const written = new Set<string>();
    const manifest: { Config: string; RepoTags: string[]; Layers: string[] }[] = [];
    for (const im of images) {
      const configName = `${hexOf(im.id)}.json`;
      await entry(pack, configName, [Readable.from([im.config])], im.config.length);
      const layers: string[] = [];
      for (const l of im.layers) {
        const name = `${hexOf(l.diffId)}/layer.tar`;
        layers.push(name);
        if (written.has(name)) continue;
        written.add(name);
        await entry(pack, name, [openBlob(root, l.blob), new DecompressStream(), new DiffIdCheck(l.diffId, l.size, onBytes)], l.size);
      }
      manifest.push({ Config: configName, RepoTags: im.tags, Layers: layers });
    }
    const m = Buffer.from(JSON.stringify(manifest));
    await entry(pack, 'manifest.json', [Readable.from([m])], m.length);
    pack.finalize();
  };
  fill().catch((e) => {
    pack.destroy(e);
    out.destroy(e);
  });
  pack.pipe(out);
  return out;
}

/** One tar entry whose bytes come through `chain`; any stage's error fails the entry. */
async function entry(pack: tar.Pack, name: string, chain: NodeJS.ReadableStream[], size: number): Promise<void> {
  const sink = pack.entry({ name, size, mode: 0o644, mtime: new Date(0) });
  await (pipeline as (...s: unknown[]) => Promise<void>)(...chain, sink);
}
