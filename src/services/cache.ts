/** `ferry cache ls` and `ferry cache prune`: the build server's layer cache, looked at and trimmed. */
import { LayerCache } from '../adapters/layer-cache.js';
import { hitRate } from '../core/layer-cache.js';
import { exists } from '../adapters/fs.js';

export interface CacheLsResult {
  dir: string;
  exists: boolean;
  entries: number;
  bytes: number;
  settings: { tag: string; entries: number; bytes: number }[];
  /** The last creates that used this cache, oldest first. */
  runs: { at: string; hits: number; misses: number }[];
  /** Hits over lookups of those creates; null before any. */
  hitRate: number | null;
}

export async function listCache(dir: string): Promise<CacheLsResult> {
  if (!(await exists(dir))) return { dir, exists: false, entries: 0, bytes: 0, settings: [], runs: [], hitRate: null };
  const l = await new LayerCache(dir).list();
  const runs = l.runs.map((r) => ({ at: r.at, hits: r.hits, misses: r.misses }));
  return { dir, exists: true, entries: l.entries, bytes: l.bytes, settings: l.settings, runs, hitRate: hitRate(runs) };
}

export interface CachePruneResult {
  dir: string;
  removedEntries: number;
  removedBytes: number;
  entries: number;
  bytes: number;
}

/** `max`: evict least recently used entries down to that many bytes; `all`: empty the cache. */
export async function pruneCache(dir: string, how: { max: number } | { all: true }): Promise<CachePruneResult> {
  if (!(await exists(dir))) return { dir, removedEntries: 0, removedBytes: 0, entries: 0, bytes: 0 };
  const cache = new LayerCache(dir);
  const removed = 'all' in how ? await cache.clear() : await cache.evict(how.max);
  const left = await cache.list();
  return { dir, removedEntries: removed.entries, removedBytes: removed.bytes, entries: left.entries, bytes: left.bytes };
}
