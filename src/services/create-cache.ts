/**
 * The build server's layer cache as one create uses it. The cache must never fail a create: one
 * that cannot be written is warned about once and left alone from then on (`cache` turns null),
 * which every step sees, as they all go through this one object.
 */
import type { BlobStoreWriter, StagedBlob } from '../adapters/blob-store.js';
import { LayerCache, type CachedBlob, type CachedLayer } from '../adapters/layer-cache.js';
import { compressorSettings } from '../adapters/zstd.js';
import { hitRate } from '../core/layer-cache.js';
import { formatBytes, shortDigest } from '../core/format.js';
import type { Reporter } from './reporter.js';

export interface CacheOptions {
  level: number;
  workers: number;
  cache?: { dir: string; max: number | null } | null;
}

export class CreateCache {
  readonly counts = { hits: 0, misses: 0, added: 0, corrupt: 0 };

  private constructor(
    /** null: no cache (--no-cache, unusable from the start, or failed during this create). */
    public cache: LayerCache | null,
    /** What the cache knew of each layer before this create (sizes, setuid files). */
    readonly known: Map<string, CachedLayer>,
    private readonly store: BlobStoreWriter,
    private readonly reporter: Reporter,
  ) {}

  static async open(options: CacheOptions, store: BlobStoreWriter, reporter: Reporter): Promise<CreateCache> {
    const cache = await openCache(options, reporter);
    const known: Map<string, CachedLayer> = cache ? await cache.layers() : new Map();
    return new CreateCache(cache, known, store, reporter);
  }

  /** An arrow, as it is handed to `.catch` as is. */
  readonly failed = (e: unknown): void => {
    if (!this.cache) return;
    this.reporter.warn({ code: 'CACHE_UNUSABLE', subject: this.cache.dir, message: `the layer cache at ${this.cache.dir} failed (${(e as Error).message}); this create goes on without it` });
    this.cache = null;
  };

  /** Remembers what an archive entry unpacked to, and the layer's facts when they are new. */
  async learn(path: string, entrySize: number, layer: CachedLayer): Promise<void> {
    if (!this.cache) return;
    const c = this.cache;
    const same = this.known.get(layer.diffId)?.size === layer.size && this.known.get(layer.diffId)?.setuid.length === layer.setuid.length;
    await c.remember(path, entrySize, layer.diffId).then(() => (same ? undefined : c.recordLayer(layer))).catch(this.failed);
  }

  /** A cached blob is checked by its digest as it is copied in; a damaged one is dropped, never shipped. */
  async fromCache(diffId: string, meta: CachedBlob): Promise<StagedBlob | null> {
    if (!this.cache) return null;
    const c = this.cache;
    const staged = await c.read(diffId).then((src) => this.store.stageBlob(src, meta.digest)).catch(() => null);
    if (!staged) {
      this.counts.corrupt++;
      this.reporter.warn({ code: 'CACHE_ENTRY_CORRUPT', subject: diffId, message: `the layer cache's blob of ${shortDigest(diffId)} does not match its digest ${shortDigest(meta.digest)}: dropped, the layer is compressed again` });
      await c.drop(diffId).catch(this.failed);
    }
    return staged;
  }

  async lookup(diffId: string): Promise<CachedBlob | null> {
    return this.cache ? await this.cache.lookup(diffId).catch(() => null) : null;
  }

  /** After the bundle is sealed: the run recorded, the cache kept under its bound, what it did logged. */
  async finish(options: CacheOptions, now: Date, layers: number): Promise<{ entries: number; bytes: number }> {
    let evicted = { entries: 0, bytes: 0 };
    if (this.cache) {
      // Held apart: a failed record turns `cache` null, yet eviction is still tried on it.
      const c = this.cache;
      await c.recordRun({ at: now.toISOString(), hits: this.counts.hits, misses: this.counts.misses, layers }).catch(this.failed);
      if (options.cache?.max != null) evicted = await c.evict(options.cache.max).catch((e: unknown) => (this.failed(e), evicted));
      if (evicted.entries > 0) this.reporter.log(`the layer cache evicted ${evicted.entries} least recently used entr${evicted.entries === 1 ? 'y' : 'ies'} (${formatBytes(evicted.bytes)}) to stay under ${formatBytes(options.cache!.max!)}`);
    }
    const { hits, misses, corrupt } = this.counts;
    if (options.cache && (hits + misses > 0)) {
      this.reporter.log(`cache: ${hits} layer${hits === 1 ? '' : 's'} from the layer cache, ${misses} compressed${corrupt ? `, ${corrupt} damaged entr${corrupt === 1 ? 'y' : 'ies'} dropped` : ''}`);
    }
    return evicted;
  }

  /** The result's account of the cache, or null when the create was asked to use none. */
  summary(options: CacheOptions, evicted: { entries: number; bytes: number }) {
    return options.cache
      ? { dir: options.cache.dir, ...this.counts, hitRate: hitRate([{ at: '', hits: this.counts.hits, misses: this.counts.misses }]), evicted }
      : null;
  }
}

/** The layer cache this create uses, or null (--no-cache, or a cache that cannot be made: warned). */
async function openCache(options: CacheOptions, reporter: Reporter): Promise<LayerCache | null> {
  if (!options.cache) return null;
  const cache = new LayerCache(options.cache.dir, compressorSettings({ level: options.level, workers: options.workers }));
  try {
    await cache.init();
    return cache;
  } catch (e) {
    reporter.warn({ code: 'CACHE_UNUSABLE', subject: options.cache.dir, message: `the layer cache at ${options.cache.dir} cannot be used (${(e as Error).message}); this create compresses every layer` });
    return null;
  }
}
