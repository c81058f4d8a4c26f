/**
 * The bytes of a layer an engine holds, taken from a `docker save` of an image that contains it,
 * streamed (never written to disk): what a layer delta is rebuilt from on a host, and planned
 * against on a build server. Archives name layers differently per engine: Podman `<diffID>.tar`,
 * OCI-style saves `blobs/sha256/<digest>` (the diffID when kept uncompressed, the compressed digest
 * when the containerd store keeps the pulled gzip), classic saves `<v1 id>/layer.tar`, which says
 * nothing. What the name does not tell, the size or a hash does.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import * as tar from 'tar-stream';
import { hexOf } from '../core/digest.js';
import { TarIndexer, type TarIndex } from '../core/tar-index.js';
import type { Engine } from './engine.js';
import { readStoredLayer, storedLayerPaths, type StoredLayerPaths } from './layer-store.js';
import { uncompressedLayer } from './layer-stream.js';

export interface WantedLayer {
  diffId: string;
  /** Bytes of its uncompressed tar. */
  size: number;
  /** The archive path a previous save of the same image gave it (from `identifyLayer`). */
  path?: string;
}

export class ReferenceNotFound extends Error {}

const LAYER_NAME = /^(?:[0-9a-f]{64}\/layer\.tar|[0-9a-f]{64}\.tar|blobs\/sha256\/[0-9a-f]{64})$/;

/**
 * The layer's uncompressed bytes from a save of `holder`: the entry named by its diffID, else the
 * one at `path`, else (classic archives) the first layer entry of exactly its size. Whether that
 * was the right entry is for the reader to check by hash (rebuildLayer does); `identifyLayer` finds
 * the path where a size cannot tell. The save is abandoned as soon as the layer has been read.
 */
export async function* layerFromEngine(engine: Engine, holder: string, want: WantedLayer, early?: Promise<Readable>): AsyncGenerator<Buffer> {
  const archive = await (early ?? engine.save([holder]));
  const extract = tar.extract();
  archive.on('error', (e) => extract.destroy(e));
  archive.pipe(extract);
  const hex = hexOf(want.diffId);
  try {
    for await (const entry of extract) {
      const name = entry.header.name.replace(/^\.\//, '');
      const size = entry.header.size ?? 0;
      const named = name === `${hex}.tar` || name === `blobs/sha256/${hex}`;
      const atPath = want.path !== undefined && name === want.path;
      const bySize = want.path === undefined && /^[0-9a-f]{64}\/layer\.tar$/.test(name) && size === want.size;
      if (entry.header.type !== 'file' || !(named || atPath || bySize)) {
        entry.resume();
        continue;
      }
      const { stream } = await uncompressedLayer(Readable.from(entry));
      yield* stream as AsyncIterable<Buffer>;
      return;
    }
    throw new ReferenceNotFound(`a save of image ${holder} holds no entry for layer ${want.diffId}`);
  } finally {
    extract.destroy();
    archive.destroy();
  }
}

/**
 * Where a local classic engine keeps layer `diffId` of `holder` as files, or null (a remote or
 * containerd-store engine, another driver, a store this user cannot read): then a save is the way.
 */
export async function storedReference(engine: Engine, holder: string, diffId: string): Promise<StoredLayerPaths | null> {
  if (!engine.local) return null;
  try {
    const [info, image] = await Promise.all([engine.info(), engine.inspectImage(holder)]);
    if (info.containerdStore || !image) return null;
    return await storedLayerPaths(info.dataRoot, info.storageDriver, image.diffIds, diffId);
  } catch {
    return null;
  }
}

/**
 * A reference layer's bytes, from the engine's store when it is on this machine (no save at all),
 * else from a save of `holder` asked for at `prefetch` so that the engine prepares it while other
 * work goes on.
 */
export function referenceSource(engine: Engine, holder: string, want: WantedLayer): { stored: Promise<boolean>; prefetch(): void; drop(): void; open(): AsyncGenerator<Buffer> } {
  const stored = storedReference(engine, holder, want.diffId);
  let early: ReturnType<typeof prefetchSave> | undefined;
  let dropped = false;
  return {
    stored: stored.then((paths) => paths !== null),
    prefetch: () =>
      void stored.then((paths) => {
        if (!paths && !dropped) early ??= prefetchSave(engine, holder);
      }),
    drop: () => {
      dropped = true;
      early?.drop();
    },
    open: async function* () {
      const paths = await stored;
      if (paths) return yield* readStoredLayer(paths);
      const archive = early?.archive;
      early = undefined;
      yield* layerFromEngine(engine, holder, want, archive);
    },
  };
}

/**
 * A save of `holder` asked for now and read later: the engine prepares it (a classic store writes
 * the whole image out before its first byte) while other work goes on. `drop` ends one never read.
 */
export function prefetchSave(engine: Engine, holder: string): { archive: Promise<Readable>; drop(): void } {
  const archive = engine.save([holder]);
  archive.catch(() => undefined);
  return { archive, drop: () => void archive.then((a) => a.destroy(), () => undefined) };
}

/**
 * The archive path of layer `diffId` in a save of `holder` (and its tar index when asked), found
 * by hashing the save's layer entries: what a classic save's names do not tell.
 */
export async function identifyLayer(engine: Engine, holder: string, diffId: string, withIndex = false): Promise<{ path: string; index: TarIndex | null }> {
  const found = (await identifyLayers(engine, [holder], new Set([diffId]), withIndex)).get(diffId);
  if (!found) throw new ReferenceNotFound(`a save of image ${holder} does not contain layer ${diffId}`);
  return found;
}

/**
 * One save of all `holders`, every layer entry hashed (uncompressed), and indexed on the way when
 * asked: where each `wanted` diffID is, read only until all are found.
 */
export async function identifyLayers(engine: Engine, holders: string[], wanted: Set<string>, withIndex = true): Promise<Map<string, { path: string; index: TarIndex | null }>> {
  const found = new Map<string, { path: string; index: TarIndex | null }>();
  const archive = await engine.save(holders);
  const extract = tar.extract();
  archive.on('error', (e) => extract.destroy(e));
  archive.pipe(extract);
  try {
    for await (const entry of extract) {
      const name = entry.header.name.replace(/^\.\//, '');
      if (entry.header.type !== 'file' || !LAYER_NAME.test(name) || (entry.header.size ?? 0) < 1024) {
        entry.resume();
        continue;
      }
      const { stream } = await uncompressedLayer(Readable.from(entry));
      const hash = createHash('sha256');
      let indexer = withIndex ? new TarIndexer() : null;
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        hash.update(chunk);
        try {
          indexer?.push(chunk);
        } catch {
          // A JSON blob or a layer that is not a tar: not one wanted with an index.
          indexer = null;
        }
      }
      const diffId = `sha256:${hash.digest('hex')}`;
      if (!wanted.has(diffId) || found.has(diffId) || (withIndex && !indexer)) continue;
      found.set(diffId, { path: name, index: indexer ? indexer.finish() : null });
      if (found.size === wanted.size) break;
    }
  } finally {
    extract.destroy();
    archive.destroy();
  }
  return found;
}
