/**
 * `bundle create`'s save pass: the engine's save stream read once, each layer entry skipped
 * unread, only hashed or compressed into the bundle, whichever is the least work that is sure;
 * then guesses the image configs contradict repaired from a second save of just those images.
 */
import type { Readable } from 'node:stream';
import type { BlobStoreWriter, WrittenLayer } from '../adapters/blob-store.js';
import type { CachedBlob, LayerCache } from '../adapters/layer-cache.js';
import type { Engine, ImageDetails } from '../adapters/engine.js';
import { tapTarHeaders, uncompressedLayer } from '../adapters/layer-stream.js';
import { readSaveArchive, SaveArchiveError, type LayerInfo, type SavedImage } from '../adapters/save-archive.js';
import { readStoreImages, StoredLayerStream, StoreReadError, type LocalStore } from '../adapters/store-archive.js';
import { guessDiffIds } from '../core/layer-cache.js';
import { formatBytes, shortDigest } from '../core/format.js';
import { isSetuidFile, type TarEntry } from '../core/tar-scan.js';
import { saveOrder, type LoadPlan } from '../core/create-plan.js';
import { IntegrityError } from '../errors.js';
import type { CreateCache } from './create-cache.js';
import type { EarlySave } from './create-early.js';
import type { CreateResult } from './create.js';
import type { ProgressReporter, ProgressTask, Reporter } from './reporter.js';

/** A layer as the first pass left it: `unverified` when taken unread from a remembered name; `pending` when only a second save can give its blob. */
export type PassLayer = WrittenLayer & { unverified?: boolean; pending?: boolean };

export interface SaveContext {
  engine: Engine;
  store: BlobStoreWriter;
  cache: CreateCache;
  reporter: Reporter;
  progress: ProgressReporter;
  verbose: boolean;
  /** The pinned images, by the reference that named them. */
  details: Map<string, ImageDetails>;
  plan: LoadPlan;
  /** A layer's tar size where known before reading it (the layer cache, a previous bundle): what a guess goes by. */
  sizes: Map<string, number>;
  work: CreateResult['layerWork'];
  /** The save asked for while Compose read the project (services/create-early.ts), if any. */
  early?: Promise<EarlySave | null> | undefined;
  /** The engine's layer store when create reads the images from it instead of a save (create.ts). */
  layerStore?: Promise<LocalStore | null> | undefined;
}

export interface SavedLayers {
  saved: SavedImage[];
  /** Archive path → the layer it holds, every one settled (none pending). */
  layers: Map<string, PassLayer>;
  /** Setuid and setgid files of shipped layers, by diffID: a lesson from the field is to defang them. */
  setuid: Map<string, TarEntry[]>;
  /** --verbose names each layer by diffID and the images that hold it (not by the archive's paths). */
  imagesOf: (diffId: string) => string;
}

/** One archive entry as the pass handles it. */
interface PassEntry {
  info: LayerInfo;
  /** Bytes of this entry read so far, for the overall bar. */
  onBytes: (n: number) => void;
  /** Reads the entry through unused. */
  drain: () => Promise<void>;
  /** The entry as the layer's tar stream, its setuid/setgid files collected into `special` on the way. */
  tar: () => Promise<Readable>;
  special: TarEntry[];
  /** The diffID the entry's own stream fails unless its bytes are (a layer read from the store). */
  verifiedAs?: string;
}

/** A layer the pass settled, and how, for the --verbose line. */
interface Settled {
  layer: PassLayer;
  how: string;
}

export async function saveLayers(ctx: SaveContext): Promise<SavedLayers> {
  return new LayerPass(ctx).run();
}

class LayerPass {
  /** Layers of this save not yet seen in the archive: what a size can still be guessed among. */
  private readonly remaining: Set<string>;
  /** Archive path → the layer only a second save can give (a guess the hash contradicted). */
  private readonly pending = new Map<string, { diffId: string; size: number | null }>();
  private readonly setuid = new Map<string, TarEntry[]>();
  private streamed = 0;
  private overall!: ProgressTask;
  private imageBars = new Map<string, { task: ProgressTask; done: number; diffIds: Set<string> }>();

  constructor(private readonly ctx: SaveContext) {
    this.remaining = new Set(ctx.plan.allDiffIds);
  }

  readonly imagesOf = (diffId: string): string =>
    [...this.ctx.details.entries()].filter(([, d]) => d.diffIds.includes(diffId)).map(([ref]) => ref).join(', ') || 'no image';

  private detailsOf(engineId: string): ImageDetails {
    return [...this.ctx.details.values()].find((d) => d.id === engineId)!;
  }

  async run(): Promise<SavedLayers> {
    const { engine, progress, plan, store } = this.ctx;
    // The overall total is an estimate (shared layers counted per image) until the stream ends.
    const estimate = plan.ids.reduce((n, id) => n + ([...this.ctx.details.values()].find((d) => d.id === id)?.size ?? 0), 0);
    this.overall = progress.overall('saving images', estimate);
    this.imageBars = new Map(plan.ids.map((id) => {
      const d = this.detailsOf(id);
      return [id, { task: progress.task(plan.refsById.get(id)![0]!, d.size), done: 0, diffIds: new Set(d.diffIds) }];
    }));
    const order = saveOrder(plan.ids);
    const { images: saved, layers } = (await this.fromStore(order)) ?? (await this.fromSave(order));
    this.confirmRemembered(saved, layers);
    // A blob taken for a layer that turned out to be another is in no layer any more: not shipped.
    await store.keepOnly(new Set([...layers.values()].flatMap((l) => (l.blob && !l.pending ? [l.blob.digest] : []))));
    if (this.pending.size > 0) await this.repair(layers);
    this.overall.setTotal(this.streamed);
    this.overall.done(`${formatBytes(this.streamed)} saved`);
    for (const bar of this.imageBars.values()) bar.task.done();
    return { saved, layers, setuid: this.setuid, imagesOf: this.imagesOf };
  }

  /**
   * The images read from the engine's layer store on this machine (adapters/store-archive.ts): no
   * export, and layers held or cached are passed by unread. null when it cannot be used.
   */
  private async fromStore(order: string[]): Promise<{ images: SavedImage[]; layers: Map<string, PassLayer> } | null> {
    const layerStore = await this.ctx.layerStore;
    if (!layerStore) return null;
    const read = await readStoreImages(layerStore, order, (d) => this.ctx.sizes.get(d), (entry, info) => this.entry(entry, info)).catch((e: unknown) => {
      // Only the store's own failures are named so; a full output medium stays what it is.
      if (!(e instanceof StoreReadError)) throw e;
      throw new IntegrityError('ENGINE_ARCHIVE_INVALID', `the images could not be read from the engine's layer store at ${layerStore.dataRoot}: ${e.message}`, {
        hint: 'Run the create again with --from-save (the engine exports the images instead), and check the engine\'s storage (docker system df, dockerd logs).',
        cause: e,
      });
    });
    if (read) this.ctx.work.read = 'layer store';
    else this.ctx.reporter.log(`the images are not all in the engine's layer store at ${layerStore.dataRoot} as expected: saving them instead`);
    return read;
  }

  /** The images from `docker save`, the one asked for early if it is of these images. */
  private async fromSave(order: string[]): Promise<{ images: SavedImage[]; layers: Map<string, PassLayer> }> {
    const { engine } = this.ctx;
    const early = await this.ctx.early;
    const taken = early ? await early.take(order) : null;
    this.ctx.work.earlySave = !early ? 'none' : taken ? 'used' : 'discarded';
    if (early && !taken) this.ctx.reporter.log('the save asked for early was not of the images Compose resolved: saving again');
    const archive = taken ?? (await engine.save(order));
    return readSaveArchive<PassLayer>(archive, (entry, info) => this.entry(entry, info)).catch((e) => {
      if (e instanceof SaveArchiveError) throw new IntegrityError('ENGINE_ARCHIVE_INVALID', `the engine's save archive could not be read: ${e.message}`, { cause: e });
      throw e;
    });
  }

  /** One layer entry of the archive: the least work that settles it, tried in order. */
  private async entry(entry: Readable, info: LayerInfo): Promise<PassLayer> {
    const { plan, cache, sizes } = this.ctx;
    const before = this.streamed;
    const onBytes = (n: number) => {
      this.streamed = before + n;
      this.overall.update(this.streamed);
    };
    const drain = async () => {
      // A layer from the store is not read at all when its bytes are not needed.
      if (entry instanceof StoredLayerStream) entry.skip();
      else entry.resume();
      await new Promise((r) => entry.on('end', r));
      onBytes(info.size);
    };
    const special: TarEntry[] = [];
    // A layer from the store is its uncompressed tar, as the store keeps it, checked by its own stream.
    const stored = entry instanceof StoredLayerStream ? entry : null;
    const tar = async () => tapTarHeaders(stored ?? (await uncompressedLayer(entry)).stream, (e) => isSetuidFile(e) && special.push(e));
    const e: PassEntry = { info, onBytes, drain, tar, special, ...(stored ? { verifiedAs: stored.diffId } : {}) };
    const named = /^blobs\/sha256\/([0-9a-f]{64})$/.exec(info.path) ?? /^([0-9a-f]{64})\.tar$/.exec(info.path);
    const exact = named && plan.allDiffIds.has(`sha256:${named[1]}`) ? `sha256:${named[1]}` : null;
    if (exact && !plan.needed.has(exact)) return this.skipHeld(e, exact);
    // Named by its diffID (an OCI-style save, Podman's, the layer store) and in the cache: its blob
    // is taken, the layer not read.
    if (exact && this.remaining.has(exact) && cache.known.has(exact)) {
      const layer = await this.takeRemembered(e, exact, true);
      if (layer) return layer;
    }
    const remembered = cache.cache ? await cache.cache.remembered(info.path, info.size).catch(() => null) : null;
    if (!exact && named && remembered && this.remaining.has(remembered) && cache.known.has(remembered)) {
      const layer = await this.takeRemembered(e, remembered);
      if (layer) return layer;
    }
    const guesses = exact ? [exact] : guessDiffIds({ path: info.path, size: info.size, remembered, candidates: this.remaining, sizes });
    const metas = new Map<string, CachedBlob>();
    for (const g of guesses) {
      const meta = plan.needed.has(g) ? await cache.lookup(g) : null;
      if (meta) metas.set(g, meta);
    }
    const skippable = guesses.length > 0 && guesses.every((g) => !plan.needed.has(g) || metas.has(g));
    // Known before a byte of it is read: only hashed on its way through, the hash confirming the guess.
    const { layer, how } = skippable ? await this.hashGuessed(e, guesses, metas) : await this.compress(e);
    return this.settle(e, layer, how);
  }

  /** OCI-style and Podman archives name uncompressed layers by their diffID: a held one is not even compressed. */
  private async skipHeld(e: PassEntry, exact: string): Promise<PassLayer> {
    await e.drain();
    this.remaining.delete(exact);
    this.ctx.work.skippedUnread++;
    if (this.ctx.verbose) this.ctx.progress.note(`layer ${shortDigest(exact)} of ${this.imagesOf(exact)}: held by every base, left out (skipped unread)`);
    return { diffId: exact, size: e.info.size, blob: null };
  }

  /**
   * The containerd image store names a layer by its compressed digest: what that blob unpacked to
   * last time is what it unpacks to now, unless the memory lies, which the image config's diffIDs
   * catch afterwards (and a second save repairs). null: the layer must be read after all.
   */
  private async takeRemembered(e: PassEntry, remembered: string, named = false): Promise<PassLayer | null> {
    const { plan, cache, store } = this.ctx;
    const layer = cache.known.get(remembered)!;
    const meta = plan.needed.has(remembered) ? await cache.lookup(remembered) : null;
    const staged = meta ? await cache.fromCache(remembered, meta) : null;
    if (plan.needed.has(remembered) && !staged) return null;
    await e.drain();
    this.remaining.delete(remembered);
    this.ctx.work.skippedUnread++;
    const blob = staged ? await store.commitStaged(staged) : null;
    if (staged) cache.counts.hits++;
    if (blob && layer.setuid.length > 0) this.setuid.set(remembered, layer.setuid);
    for (const bar of this.imageBars.values()) if (bar.diffIds.has(remembered)) bar.task.update((bar.done += layer.size));
    if (this.ctx.verbose) this.ctx.progress.note(`layer ${shortDigest(remembered)} of ${this.imagesOf(remembered)}: ${formatBytes(layer.size)}${blob ? ` → ${formatBytes(blob.size)} shipped from the cache` : ', held by every base, left out'} (skipped unread)`);
    // A remembered name is confirmed by the image configs afterwards; a diffID name is the layer's own.
    return { diffId: remembered, size: layer.size, blob, ...(named ? {} : { unverified: true }) };
  }

  /**
   * Every guess is held or cached: the layer is only hashed. A single cached guess has its blob
   * copied in (and checked) while the layer is hashed, so the copy costs no wall time; should the
   * copy fail its check, a second save gives the layer.
   */
  private async hashGuessed(e: PassEntry, guesses: string[], metas: Map<string, CachedBlob>): Promise<Settled> {
    const { plan, cache, store } = this.ctx;
    const only = guesses.length === 1 ? guesses[0]! : null;
    const [{ diffId, size }, staged] = await Promise.all([
      store.hashLayer(await e.tar(), e.onBytes),
      only && metas.has(only) ? cache.fromCache(only, metas.get(only)!) : Promise.resolve(null),
    ]);
    if (staged && diffId !== only) await store.discardStaged(staged);
    if (guesses.includes(diffId) && !plan.needed.has(diffId)) {
      this.ctx.work.hashedOnly++;
      return { layer: { diffId, size, blob: null }, how: ' (hashed only)' };
    }
    if (guesses.includes(diffId) && staged && diffId === only) {
      const layer = { diffId, size, blob: await store.commitStaged(staged) };
      cache.counts.hits++;
      return { layer, how: ' from the cache (hashed only)' };
    }
    return this.hashedOther(e, guesses, metas, { diffId, size }, only);
  }

  /** The hash named a layer the guesses did not, or the single guess's cached blob failed its check. */
  private async hashedOther(e: PassEntry, guesses: string[], metas: Map<string, CachedBlob>, hashed: { diffId: string; size: number }, only: string | null): Promise<Settled> {
    const { plan, cache, store } = this.ctx;
    const { diffId, size } = hashed;
    const guessed = guesses.includes(diffId);
    if (!guessed) this.ctx.work.wrongGuesses++;
    // The single guess's blob already failed its check (and is dropped): not tried twice.
    const tried = guessed && diffId === only;
    const meta = plan.needed.has(diffId) && !tried ? (metas.get(diffId) ?? (await cache.lookup(diffId))) : null;
    const again = meta ? await cache.fromCache(diffId, meta) : null;
    if (!guessed) {
      this.ctx.reporter.warn({
        code: 'LAYER_GUESS_WRONG',
        subject: e.info.path,
        message: `${e.info.path} was taken for layer ${guesses.map(shortDigest).join(' or ')} but hashes to ${shortDigest(diffId)}: ${!plan.needed.has(diffId) ? 'it is held by every base, left out' : again ? 'its blob comes from the cache' : 'it is compressed from a second save'}`,
      });
    }
    if (!plan.needed.has(diffId)) return { layer: { diffId, size, blob: null }, how: '' };
    if (again) {
      const layer = { diffId, size, blob: await store.commitStaged(again) };
      cache.counts.hits++;
      return { layer, how: ' from the cache (hashed only)' };
    }
    this.pending.set(e.info.path, { diffId, size });
    return { layer: { diffId, size, blob: null, pending: true }, how: '' };
  }

  /** Nothing known of the entry: compressed while hashed (kept only when shipped), and added to the cache. */
  private async compress(e: PassEntry): Promise<Settled> {
    const { plan, cache, store, work } = this.ctx;
    const tmp = cache.cache ? cache.cache.tmpFile() : undefined;
    const written = await store.writeLayer(await e.tar(), e.onBytes, (diffId) => plan.needed.has(diffId), tmp, e.verifiedAs);
    if (written.blob) {
      work.compressed++;
      if (cache.cache) cache.counts.misses++;
    } else work.compressedHeld++;
    if (cache.cache && tmp) {
      if (written.blob) {
        await cache.cache.add(written.diffId, tmp, { digest: written.blob.digest, size: written.blob.size }).then(() => void cache.counts.added++, cache.failed);
      } else await cache.cache.discardTmp(tmp).catch(() => undefined);
    }
    return { layer: written, how: '' };
  }

  /** What every read layer ends with: remembered, counted on its images' bars, its setuid files kept for the warning. */
  private async settle(e: PassEntry, layer: PassLayer, how: string): Promise<PassLayer> {
    this.remaining.delete(layer.diffId);
    await this.ctx.cache.learn(e.info.path, e.info.size, { diffId: layer.diffId, size: layer.size, setuid: e.special });
    for (const bar of this.imageBars.values()) {
      if (bar.diffIds.has(layer.diffId)) bar.task.update((bar.done += layer.size));
    }
    if (layer.blob && e.special.length > 0) this.setuid.set(layer.diffId, e.special);
    if (this.ctx.verbose && !layer.pending) {
      this.ctx.progress.note(
        layer.blob
          ? `layer ${shortDigest(layer.diffId)} of ${this.imagesOf(layer.diffId)}: ${formatBytes(layer.size)} → ${formatBytes(layer.blob.size)} shipped${how}`
          : `layer ${shortDigest(layer.diffId)} of ${this.imagesOf(layer.diffId)}: ${formatBytes(layer.size)}, held by every base, left out${how || ' (compressed before the hash told)'}`,
      );
    }
    return layer;
  }

  /** Layers taken unread by a remembered name are confirmed by the image configs' diffIDs. */
  private confirmRemembered(saved: SavedImage[], layers: Map<string, PassLayer>): void {
    for (const engineId of this.ctx.plan.ids) {
      const image = savedImage(saved, engineId, this.detailsOf(engineId));
      const diffIds = (JSON.parse(image.config.toString('utf8')) as { rootfs?: { diff_ids?: string[] } }).rootfs?.diff_ids ?? [];
      image.layerPaths.forEach((path, i) => {
        const l = layers.get(path);
        if (!l?.unverified || diffIds[i] === undefined || l.diffId === diffIds[i]) return;
        this.ctx.work.wrongGuesses++;
        this.ctx.reporter.warn({ code: 'LAYER_GUESS_WRONG', subject: path, message: `${path} was remembered as layer ${shortDigest(l.diffId)}, but its image's config says ${shortDigest(diffIds[i]!)}: it is read from a second save` });
        this.pending.set(path, { diffId: diffIds[i]!, size: null });
        layers.set(path, { diffId: diffIds[i]!, size: 0, blob: null, pending: true });
      });
    }
  }

  /** The pending layers from a second save, remembered and counted as the first pass would have. */
  private async repair(layers: Map<string, PassLayer>): Promise<void> {
    const { engine, details, plan, store, reporter, cache, work } = this.ctx;
    work.secondSave = true;
    const again = await secondSave(engine, [...details.values()], this.pending, layers, plan.needed, store, reporter, cache.cache);
    for (const l of again) {
      await cache.learn(l.path, l.entrySize, { diffId: l.diffId, size: l.size, setuid: l.setuid });
      if (l.blob) {
        work.compressed++;
        if (cache.cache) {
          cache.counts.misses++;
          cache.counts.added++;
        }
        if (l.setuid.length > 0) this.setuid.set(l.diffId, l.setuid);
      }
    }
  }
}

interface AgainLayer extends WrittenLayer {
  path: string;
  entrySize: number;
  setuid: TarEntry[];
}

/**
 * The fallback for guesses that proved wrong: the images holding those layers saved once more,
 * and just those entries read (compressed when shipped, hashed when held); every other entry is
 * skipped. A layer the second archive does not give as expected fails the create.
 */
async function secondSave(
  engine: Engine,
  details: { id: string; diffIds: string[] }[],
  pending: Map<string, { diffId: string; size: number | null }>,
  layers: Map<string, PassLayer>,
  needed: Set<string>,
  store: BlobStoreWriter,
  reporter: Reporter,
  cache: LayerCache | null,
): Promise<AgainLayer[]> {
  const wanted = new Set([...pending.values()].map((p) => p.diffId));
  const ids = [...new Set(details.filter((d) => d.diffIds.some((x) => wanted.has(x))).map((d) => d.id))];
  reporter.log(`saving ${ids.length} image${ids.length === 1 ? '' : 's'} again for ${wanted.size} layer${wanted.size === 1 ? '' : 's'} the first save passed by uncompressed (a wrong guess, or a cached blob that failed its check)`);
  const got: AgainLayer[] = [];
  await readSaveArchive(await engine.save(ids), async (entry, info) => {
    const first = layers.get(info.path);
    // An entry the first pass settled is not read again; one it never saw is read in case it is wanted.
    if (first && !first.pending) {
      entry.resume();
      await new Promise((r) => entry.on('end', r));
      return null;
    }
    const special: TarEntry[] = [];
    const tar = tapTarHeaders((await uncompressedLayer(entry)).stream, (e) => isSetuidFile(e) && special.push(e));
    const tmp = cache?.tmpFile();
    const written = await store.writeLayer(tar, undefined, (d) => wanted.has(d) && needed.has(d), tmp);
    if (tmp) {
      // The cache is a help, never a reason to fail: a blob it cannot take is simply not kept.
      if (written.blob) await cache!.add(written.diffId, tmp, { digest: written.blob.digest, size: written.blob.size }).catch(() => cache!.discardTmp(tmp));
      else await cache!.discardTmp(tmp).catch(() => undefined);
    }
    if (wanted.has(written.diffId)) got.push({ ...written, path: info.path, entrySize: info.size, setuid: special });
    return null;
  }).catch((e) => {
    if (e instanceof SaveArchiveError) throw new IntegrityError('ENGINE_ARCHIVE_INVALID', `the engine's second save archive could not be read: ${e.message}`, { cause: e });
    throw e;
  });
  for (const [path, p] of pending) {
    const l = got.find((g) => g.diffId === p.diffId);
    if (!l) throw new IntegrityError('ENGINE_ARCHIVE_INVALID', `the engine's second save did not give layer ${p.diffId} (${path})`);
    layers.set(path, { diffId: l.diffId, size: l.size, blob: l.blob });
  }
  return got;
}

/**
 * The saved image the engine meant by `engineId`: its config digest on a classic store, the digest
 * of its manifest (or of an index listing it, then the one for the image's platform) on the
 * containerd image store.
 */
export function savedImage(saved: SavedImage[], engineId: string, d: { os: string; architecture: string }): SavedImage {
  const byConfig = saved.find((s) => s.id === engineId);
  if (byConfig) return byConfig;
  const candidates = saved.filter((s) => s.aliases.includes(engineId));
  const platform = (s: SavedImage) => {
    const c = JSON.parse(s.config.toString('utf8')) as { os?: string; architecture?: string };
    return c.os === d.os && c.architecture === d.architecture;
  };
  const image = candidates.length === 1 ? candidates[0] : candidates.find(platform);
  if (!image) throw new IntegrityError('ENGINE_ARCHIVE_INVALID', `the engine's save archive does not contain image ${engineId}${candidates.length ? ` for ${d.os}/${d.architecture}` : ''}`);
  return image;
}
