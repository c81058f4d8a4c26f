/**
 * Builds the docker-archive stream `docker load` reads, straight from (staged) zstd blobs: each
 * layer is decompressed on the fly and its diffID recomputed as it passes; a mismatch aborts the
 * stream, so the engine never completes a load of bytes the manifest did not sign.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as zlib from 'node:zlib';
import { join } from 'node:path';
import { PassThrough, Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar-stream';
import { zstdContent, zstdDecompressor } from './zstd.js';
import { DiffIdCheck, type LayerFanout } from './layer-fanout.js';
import { hexOf } from '../core/digest.js';
import { rebuildLayer, type DeltaExpectation } from '../core/layer-delta.js';
import { blobPaths, type LayerBlob } from '../core/manifest.js';

export interface LoadImage {
  id: string;
  config: Buffer;
  tags: string[];
  /** blob null: a layer the bundle leaves out, which the host already holds, or rebuilds from a delta. */
  layers: { diffId: string; size: number; blob: LayerBlob | null; delta?: LoadDelta }[];
}

/** A layer rebuilt while it streams into the load: the delta's file and the reference's bytes. */
export interface LoadDelta {
  file: LayerBlob;
  expect: DeltaExpectation;
  /** The reference layer's uncompressed bytes, front to back (a save of a host image holding it). */
  reference: () => AsyncIterable<Buffer>;
}

/** A blob's content, decompressed, as one stream. */
export async function bundleBlobBytes(root: string, blob: LayerBlob): Promise<Readable> {
  return zstdContent(openBlob(root, blob));
}

/** Concatenates a blob's files (one, or its parts in order) as one stream. */
export function openBlob(root: string, blob: LayerBlob): Readable {
  const paths = blobPaths(blob);
  return Readable.from(
    (async function* () {
      for (const p of paths) yield* createReadStream(join(root, p), { highWaterMark: 1 << 20 });
    })(),
  );
}

/**
 * Layers the bundle leaves out, supplied from the host's own engine: `save()` exports an image
 * that holds them; its layers are copied into the load stream as they arrive and identified by
 * their digest on the way (classic archives do not name layers by digest).
 */
export interface SpliceSource {
  save(): Promise<Readable>;
  wanted: Set<string>;
}

/** A layer as the archive carries it: what the containerd image store names the loaded image by. */
export interface ArchiveLayer {
  digest: string;
  size: number;
  gzip: boolean;
}

/**
 * A classic docker-archive of the images, layers shared between them written once. A layer the
 * bundle left out (blob null) is named in manifest.json but absent from the archive — which the
 * classic store accepts when it holds the layer — unless a splice source supplies its bytes.
 */
export function loadArchive(
  root: string,
  images: LoadImage[],
  onBytes?: (n: number, diffId: string) => void,
  splice: SpliceSource[] = [],
  /** Filled while streaming: each diffID's entry as written (left-out layers have none). */
  written: Map<string, ArchiveLayer> = new Map(),
  /** Told the first error that ends the archive (the engine only sees it cut short). */
  onFailure?: (e: unknown) => void,
  /** Loads running at once (a swarm's nodes) that read each layer of the bundle once between them. */
  shared?: { fanout: LayerFanout; load: string },
): Readable {
  const pack = tar.pack();
  const out = new PassThrough({ highWaterMark: 1 << 20 });
  const fill = async () => {
    // Declared first, so that no layer waits for this load while it splices.
    const fromBundle = shared ? bundleLayersInOrder(images, shared.fanout.rank) : [];
    shared?.fanout.declare(shared.load, fromBundle.map((l) => l.diffId));
    const spliced = new Map<string, { path: string } & ArchiveLayer>();
    for (const [i, source] of splice.entries()) await spliceLayers(pack, await source.save(), `splice-${i}`, source.wanted, spliced);
    // Shared layers first, in the one order every load takes them (an archive's entries may come
    // in any order before its manifest.json).
    for (const l of fromBundle) {
      written.set(l.diffId, { digest: l.diffId, size: l.size, gzip: false });
      await entry(pack, `${hexOf(l.diffId)}/layer.tar`, [shared!.fanout.layer(shared!.load, l, (n) => onBytes?.(n, l.diffId))], l.size);
    }
    const manifest: { Config: string; RepoTags: string[]; Layers: string[] }[] = [];
    for (const im of images) {
      const configName = `${hexOf(im.id)}.json`;
      await entry(pack, configName, [Readable.from([im.config])], im.config.length);
      const layers: string[] = [];
      for (const l of im.layers) {
        if (l.delta) {
          const name = `${hexOf(l.diffId)}/layer.tar`;
          layers.push(name);
          if (written.has(l.diffId)) continue;
          written.set(l.diffId, { digest: l.diffId, size: l.size, gzip: false });
          const delta = await bundleBlobBytes(root, l.delta.file);
          // The rebuild checks the layer's size and diffID itself, before its last chunk: counted here, not hashed again.
          const rebuilt = Readable.from(rebuildLayer(delta as AsyncIterable<Buffer>, l.delta.reference(), l.delta.expect));
          await entry(pack, name, [rebuilt, new Transform({ transform: (c: Buffer, _e, cb) => (onBytes?.(c.length, l.diffId), cb(null, c)) })], l.size);
          continue;
        }
        if (!l.blob) {
          const from = spliced.get(l.diffId);
          if (splice.length > 0 && !from) throw new Error(`layer ${l.diffId} was not found in the host's own images`);
          layers.push(from?.path ?? `${hexOf(l.diffId)}/layer.tar`);
          if (from) written.set(l.diffId, { digest: from.digest, size: from.size, gzip: from.gzip });
          continue;
        }
        const name = `${hexOf(l.diffId)}/layer.tar`;
        layers.push(name);
        if (written.has(l.diffId)) continue;
        written.set(l.diffId, { digest: l.diffId, size: l.size, gzip: false });
        await entry(pack, name, [openBlob(root, l.blob), await zstdDecompressor(), new DiffIdCheck(l.diffId, l.size, onBytes)], l.size);
      }
      manifest.push({ Config: configName, RepoTags: im.tags, Layers: layers });
    }
    const m = Buffer.from(JSON.stringify(manifest));
    await entry(pack, 'manifest.json', [Readable.from([m])], m.length);
    pack.finalize();
  };
  fill()
    .catch((e) => {
      onFailure?.(e);
      pack.destroy(e);
      out.destroy(e);
    })
    .finally(() => shared?.fanout.leave(shared.load));
  // Without this, an error inside the archive (a bad layer, a pulled stick) would crash the process
  // instead of failing the load.
  pack.on('error', (e) => out.destroy(e));
  pack.pipe(out);
  return out;
}

/** The layers the archive takes whole from the bundle, each once, in `rank` order. */
function bundleLayersInOrder(images: LoadImage[], rank: (diffId: string) => number): { diffId: string; size: number; blob: LayerBlob }[] {
  const seen = new Map<string, { diffId: string; size: number; blob: LayerBlob }>();
  for (const im of images) for (const l of im.layers) if (l.blob && !l.delta && !seen.has(l.diffId)) seen.set(l.diffId, { diffId: l.diffId, size: l.size, blob: l.blob });
  return [...seen.values()].sort((a, b) => rank(a.diffId) - rank(b.diffId));
}

/**
 * Copies every layer entry of a host image's save archive into our archive under `prefix`,
 * hashing it on the way; records where each wanted diffID landed. A gzip-compressed layer (as a
 * containerd store may export) is also hashed decompressed, since its diffID is of the tar inside.
 */
async function spliceLayers(pack: tar.Pack, archive: Readable, prefix: string, wanted: Set<string>, found: Map<string, { path: string } & ArchiveLayer>): Promise<void> {
  const extract = tar.extract();
  archive.pipe(extract);
  archive.on('error', (e) => extract.destroy(e));
  let n = 0;
  for await (const e of extract) {
    const name = e.header.name.replace(/^\.\//, '');
    // Docker classic: <v1id>/layer.tar (identity unknown until hashed); Podman: <diffID>.tar;
    // OCI-style: blobs/sha256/<digest>. A digest-named layer nobody wants is not copied.
    const named = /^([0-9a-f]{64})\.tar$/.exec(name) ?? /^blobs\/sha256\/([0-9a-f]{64})$/.exec(name);
    const isLayer = e.header.type === 'file' && (/^[0-9a-f]{64}\/layer\.tar$/.test(name) || named !== null);
    const compressedBlob = named && name.startsWith('blobs/');
    if (!isLayer || (e.header.size ?? 0) < 512 || (named && !compressedBlob && !wanted.has(`sha256:${named[1]}`))) {
      e.resume();
      continue;
    }
    const path = `${prefix}/${n++}/layer.tar`;
    const raw = createHash('sha256');
    let inner: { hash: ReturnType<typeof createHash>; gunzip: zlib.Gunzip; done: Promise<void> } | undefined;
    let first = true;
    const tap = new Transform({
      transform(chunk: Buffer, _e, cb) {
        if (first) {
          first = false;
          if (chunk[0] === 0x1f && chunk[1] === 0x8b) {
            const hash = createHash('sha256');
            const gunzip = zlib.createGunzip();
            gunzip.on('data', (d: Buffer) => hash.update(d));
            inner = { hash, gunzip, done: new Promise((r) => { gunzip.on('end', () => r()); gunzip.on('error', () => r()); }) };
          }
        }
        raw.update(chunk);
        inner?.gunzip.write(chunk);
        cb(null, chunk);
      },
    });
    await entry(pack, path, [Readable.from(e), tap], e.header.size ?? 0);
    const rawDigest = `sha256:${raw.digest('hex')}`;
    const digests = [rawDigest];
    if (inner) {
      inner.gunzip.end();
      await inner.done;
      digests.push(`sha256:${inner.hash.digest('hex')}`);
    }
    const as: { path: string } & ArchiveLayer = { path, digest: rawDigest, size: e.header.size ?? 0, gzip: inner !== undefined };
    for (const d of digests) if (wanted.has(d) && !found.has(d)) found.set(d, as);
  }
}

/** One tar entry whose bytes come through `chain`; any stage's error fails the entry. */
async function entry(pack: tar.Pack, name: string, chain: NodeJS.ReadableStream[], size: number): Promise<void> {
  const sink = pack.entry({ name, size, mode: 0o644, mtime: new Date(0) });
  await (pipeline as (...s: unknown[]) => Promise<void>)(...chain, sink);
}
