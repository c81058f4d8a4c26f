/**
 * The images a `docker save` would give, read from a classic overlay2 store on this machine
 * instead: each image's config from the image database (its sha256 is the image ID), each layer's
 * tar from its tar-split and diff directory (layer-store.ts; byte for byte the tar a save sends,
 * hashed against its diffID as it is read). Docker ≤ 24 writes a whole save out into a temporary
 * directory before its first byte, so a save costs the export of every layer, also of those a
 * create then only hashes (held by the target, or in the layer cache) and throws away. Here a layer
 * is read only if its consumer reads it; one it does not need is passed by unread (`skip`).
 *
 * The same handler protocol as readSaveArchive, layers named `blobs/sha256/<diffID hex>` as an
 * OCI-style save names uncompressed layers. Everything is located before the first layer is handed
 * on: null when any part is not in the store as expected (another driver, no permission, an image
 * removed meanwhile), so that the caller can save instead with nothing done yet.
 */
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { access, readFile } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { Readable } from 'node:stream';
import { readStoredLayerChecked, storedLayerPaths, storedLayerTarSize, type StoredLayerPaths } from './layer-store.js';
import type { Engine } from './engine.js';
import type { LayerInfo, SavedImage } from './save-archive.js';

/** A classic store on this machine: where it is, and its storage driver. */
export interface LocalStore {
  dataRoot: string;
  driver: string;
}

/**
 * The engine's store, when it is a classic overlay2 store on this machine that this process may
 * read (the engine's own user, usually root); else null: containerd image store, Podman, another
 * driver, a remote engine.
 */
export async function localClassicStore(engine: Engine): Promise<LocalStore | null> {
  if (!engine.local) return null;
  try {
    const info = await engine.info();
    if (info.containerdStore || info.storageDriver !== 'overlay2' || !isAbsolute(info.dataRoot)) return null;
    await access(join(info.dataRoot, 'image', info.storageDriver, 'imagedb', 'content', 'sha256'), constants.R_OK | constants.X_OK);
    return { dataRoot: info.dataRoot, driver: info.storageDriver };
  } catch {
    return null;
  }
}

/** Reading the store's files failed, or they did not give the layer: not the consumer's own failure. */
export class StoreReadError extends Error {}

/** A stored layer's tar, read only when its consumer reads; `skip()` ends it unread. */
export class StoredLayerStream extends Readable {
  private source: AsyncGenerator<Buffer> | undefined;

  constructor(
    private readonly paths: StoredLayerPaths,
    /** What the stream's bytes are: it fails (StoreReadError) at its end when they are not. */
    readonly diffId: string,
  ) {
    super({ highWaterMark: 1 << 20 });
  }

  /** Ends the stream without reading the layer: its consumer did not need the bytes. */
  skip(): void {
    if (this.source) throw new Error('a layer already being read cannot be skipped');
    this.push(null);
    this.resume();
  }

  override _read(): void {
    this.source ??= readStoredLayerChecked(this.paths, this.diffId);
    this.source.next().then(
      (r) => void this.push(r.done ? null : r.value),
      (e: unknown) => this.destroy(new StoreReadError((e as Error).message, { cause: e })),
    );
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    void this.source?.return(undefined);
    callback(error);
  }
}

interface PlannedLayer {
  diffId: string;
  path: string;
  paths: StoredLayerPaths;
}

/** Image configs and layer locations, all found, or null. */
async function locate(dataRoot: string, driver: string, ids: string[]): Promise<{ images: SavedImage[]; layers: PlannedLayer[] } | null> {
  const images: SavedImage[] = [];
  const layers = new Map<string, PlannedLayer>();
  for (const id of ids) {
    const hex = /^sha256:([0-9a-f]{64})$/.exec(id)?.[1];
    if (!hex) return null;
    const config = await readFile(join(dataRoot, 'image', driver, 'imagedb', 'content', 'sha256', hex)).catch(() => null);
    if (!config || `sha256:${createHash('sha256').update(config).digest('hex')}` !== id) return null;
    let diffIds: string[];
    try {
      const parsed = JSON.parse(config.toString('utf8')) as { rootfs?: { diff_ids?: unknown } };
      diffIds = Array.isArray(parsed.rootfs?.diff_ids) ? parsed.rootfs.diff_ids.map(String) : [];
    } catch {
      return null;
    }
    const layerPaths: string[] = [];
    for (const diffId of diffIds) {
      const path = `blobs/sha256/${diffId.slice('sha256:'.length)}`;
      if (!layers.has(diffId)) {
        const paths = await storedLayerPaths(dataRoot, driver, diffIds, diffId);
        if (!paths) return null;
        layers.set(diffId, { diffId, path, paths });
      }
      layerPaths.push(path);
    }
    // A save by image ID names no tags; what ferry tags comes from the pinned references.
    images.push({ id, aliases: [], config, repoTags: [], layerPaths });
  }
  return { images, layers: [...layers.values()] };
}

/**
 * Hands every layer of the images, once each, bottom first, to `onLayer`, as readSaveArchive
 * does; `sizeOf` gives a layer's tar size where known (else it is counted from the tar-split).
 */
export async function readStoreImages<L>(
  store: LocalStore,
  ids: string[],
  sizeOf: (diffId: string) => number | undefined,
  onLayer: (entry: StoredLayerStream, info: LayerInfo) => Promise<L>,
): Promise<{ images: SavedImage[]; layers: Map<string, L> } | null> {
  const located = await locate(store.dataRoot, store.driver, ids);
  if (!located) return null;
  const sizes = await Promise.all(located.layers.map(async (l) => sizeOf(l.diffId) ?? (await storedLayerTarSize(l.paths)))).catch(() => null);
  if (!sizes) return null;
  const layers = new Map<string, L>();
  for (const [i, l] of located.layers.entries()) layers.set(l.path, await onLayer(new StoredLayerStream(l.paths, l.diffId), { path: l.path, size: sizes[i]! }));
  return { images: located.images, layers };
}
