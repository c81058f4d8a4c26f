/**
 * The build server's layer cache, its pure part: what an entry is keyed by, which entries an
 * LRU bound evicts, and how create guesses a layer's diffID before it has hashed it.
 */
import { createHash } from 'node:crypto';

/** The compressor settings that change a blob's bytes: an entry made under others is another entry. */
export interface CompressorSettings {
  level: number;
  /** zstd's output with any number of workers ≥ 1 is the same; with 0 (single-threaded) it differs. */
  multiThreaded: boolean;
  jobSize: number | null;
  overlapLog: number | null;
}

export function settingsTag(s: CompressorSettings): string {
  return s.multiThreaded ? `zstd-l${s.level}-mt-j${s.jobSize ?? 0}-o${s.overlapLog ?? 0}` : `zstd-l${s.level}-st`;
}

/** The archive's name of a layer and its size, as a file name: what an earlier save called a diffID. */
export function nameKey(path: string, size: number): string {
  return createHash('sha256').update(`${path}\0${size}`).digest('hex');
}

export interface CacheEntryStat {
  key: string;
  size: number;
  lastUsed: number;
}

/** Least recently used first, until what stays fits in `max` bytes. */
export function evictionPlan(entries: CacheEntryStat[], max: number): CacheEntryStat[] {
  let total = entries.reduce((n, e) => n + e.size, 0);
  const out: CacheEntryStat[] = [];
  for (const e of [...entries].sort((a, b) => a.lastUsed - b.lastUsed || a.key.localeCompare(b.key))) {
    if (total <= max) break;
    out.push(e);
    total -= e.size;
  }
  return out;
}

export interface GuessInput {
  path: string;
  size: number;
  /** diffID an earlier save named `path` at this size by, if any. */
  remembered: string | null;
  /** The layers of the images being saved not yet seen in this archive. */
  candidates: Set<string>;
  /** Uncompressed tar sizes known for diffIDs (earlier saves, base bundles' manifests). */
  sizes: Map<string, number>;
}

/**
 * The diffIDs a layer the archive names by path only can be: the one an earlier save named it by,
 * when that is one of this save's layers; else the remaining candidates of exactly its size (none
 * when no candidate's size is known). Only a guess: the caller confirms it by hashing the layer as
 * it passes. A new layer (size unknown) of the same size can still be the one: the hash settles
 * it, and a wrong guess costs a second save of its images, never a wrong bundle.
 */
export function guessDiffIds(g: GuessInput): string[] {
  if (g.remembered && g.candidates.has(g.remembered)) return [g.remembered];
  return [...g.candidates].filter((d) => g.sizes.get(d) === g.size);
}

export interface CacheRun {
  at: string;
  hits: number;
  misses: number;
}

/** Hits over lookups of the given creates; null before any lookup. */
export function hitRate(runs: CacheRun[]): number | null {
  const hits = runs.reduce((n, r) => n + r.hits, 0);
  const all = hits + runs.reduce((n, r) => n + r.misses, 0);
  return all === 0 ? null : hits / all;
}

/** `$XDG_CACHE_HOME/ferry`, else `~/.cache/ferry` (the XDG base directory default). */
export function defaultCacheDir(env: { XDG_CACHE_HOME?: string | undefined }, home: string): string {
  const xdg = env.XDG_CACHE_HOME;
  // The spec ignores a relative XDG_CACHE_HOME.
  return xdg && xdg.startsWith('/') ? `${xdg.replace(/\/+$/, '')}/ferry` : `${home.replace(/\/+$/, '')}/.cache/ferry`;
}

/** What `--cache-max` defaults to: a few releases of a large stack. */
export const DEFAULT_CACHE_MAX = '10G';
