/**
 * The layer cache on the build server: compressed blobs by diffID under the compressor settings
 * that made them, what earlier saves named each layer, and the hit counts of the last creates.
 *   DIR/blobs/<settings>/<diffhex>.zst   the blob;  .json beside it: its digest and size
 *   DIR/layers/<diffhex>.json            the layer's tar size and setuid files (any settings)
 *   DIR/names/<sha256(path, size)>       the diffID an archive entry turned out to be
 *   DIR/runs/*.json                      one per create: hits and misses
 * Every file appears by rename of a finished temp file, so two creates at once read either
 * nothing or a whole entry; two writers of the same layer write the same bytes.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, utimes } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { defaultCacheDir, evictionPlan, nameKey, settingsTag, type CacheEntryStat, type CacheRun, type CompressorSettings } from '../core/layer-cache.js';
import { hexOf } from '../core/digest.js';
import type { TarEntry } from '../core/tar-scan.js';

const KEPT_RUNS = 20;

export function defaultLayerCacheDir(): string {
  return defaultCacheDir(process.env, homedir());
}

export interface CachedBlob {
  digest: string;
  size: number;
}

export interface CachedLayer {
  diffId: string;
  size: number;
  setuid: TarEntry[];
}

export interface CacheListing {
  dir: string;
  entries: number;
  bytes: number;
  /** Per compressor settings. */
  settings: { tag: string; entries: number; bytes: number }[];
  runs: (CacheRun & { layers?: number })[];
}

let counter = 0;

export class LayerCache {
  private readonly tag: string | null;

  constructor(
    readonly dir: string,
    settings: CompressorSettings | null = null,
  ) {
    this.tag = settings ? settingsTag(settings) : null;
  }

  async init(): Promise<void> {
    for (const d of ['tmp', 'layers', 'names', 'runs', ...(this.tag ? [join('blobs', this.tag)] : [])]) await mkdir(join(this.dir, d), { recursive: true });
  }

  /** A temp file in the cache (same filesystem as the entries, so rename is atomic). */
  tmpFile(): string {
    return join(this.dir, 'tmp', `${process.pid}-${Date.now()}-${counter++}-${randomBytes(4).toString('hex')}`);
  }

  private blobPath(diffId: string): string {
    if (!this.tag) throw new Error('layer cache opened without compressor settings');
    return join(this.dir, 'blobs', this.tag, `${hexOf(diffId)}.zst`);
  }

  private async writeAtomic(path: string, data: string): Promise<void> {
    const tmp = this.tmpFile();
    const fh = await open(tmp, 'wx');
    try {
      await fh.writeFile(data);
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  }

  async remembered(path: string, size: number): Promise<string | null> {
    const text = await readFile(join(this.dir, 'names', nameKey(path, size)), 'utf8').catch(() => null);
    return text && /^sha256:[0-9a-f]{64}$/.test(text.trim()) ? text.trim() : null;
  }

  async remember(path: string, size: number, diffId: string): Promise<void> {
    if ((await this.remembered(path, size)) === diffId) return;
    await this.writeAtomic(join(this.dir, 'names', nameKey(path, size)), diffId);
  }

  /** Every layer seen before, with its tar size. */
  async layers(): Promise<Map<string, CachedLayer>> {
    const out = new Map<string, CachedLayer>();
    const names = await readdir(join(this.dir, 'layers')).catch(() => [] as string[]);
    for (const n of names) {
      if (!/^[0-9a-f]{64}\.json$/.test(n)) continue;
      const doc = await readJson<CachedLayer>(join(this.dir, 'layers', n));
      if (doc && doc.diffId === `sha256:${n.slice(0, 64)}` && Number.isSafeInteger(doc.size)) out.set(doc.diffId, { diffId: doc.diffId, size: doc.size, setuid: Array.isArray(doc.setuid) ? doc.setuid : [] });
    }
    return out;
  }

  async recordLayer(layer: CachedLayer): Promise<void> {
    await this.writeAtomic(join(this.dir, 'layers', `${hexOf(layer.diffId)}.json`), JSON.stringify(layer));
  }

  /** The entry's recorded digest and size, or null when there is none (or half of one). */
  async lookup(diffId: string): Promise<CachedBlob | null> {
    const path = this.blobPath(diffId);
    const meta = await readJson<CachedBlob>(`${path}.json`);
    if (!meta || typeof meta.digest !== 'string' || !Number.isSafeInteger(meta.size)) return null;
    const st = await stat(path).catch(() => null);
    return st ? meta : null;
  }

  /** The blob's bytes; using it makes it the most recently used. */
  async read(diffId: string): Promise<Readable> {
    const path = this.blobPath(diffId);
    const now = new Date();
    await utimes(path, now, now).catch(() => undefined);
    return createReadStream(path, { highWaterMark: 1 << 20 });
  }

  async drop(diffId: string): Promise<void> {
    const path = this.blobPath(diffId);
    await rm(`${path}.json`, { force: true });
    await rm(path, { force: true });
  }

  /** `tmp` (written whole by the caller) becomes the entry of `diffId`. */
  async add(diffId: string, tmp: string, blob: CachedBlob): Promise<void> {
    const path = this.blobPath(diffId);
    const st = await stat(tmp);
    if (st.size !== blob.size) {
      await rm(tmp, { force: true });
      throw new Error(`layer cache: ${tmp} holds ${st.size} bytes, the blob ${blob.size}`);
    }
    await rename(tmp, path);
    await this.writeAtomic(`${path}.json`, JSON.stringify({ digest: blob.digest, size: blob.size }));
  }

  async discardTmp(tmp: string): Promise<void> {
    await rm(tmp, { force: true });
  }

  private async entries(): Promise<(CacheEntryStat & { tag: string; path: string })[]> {
    const out: (CacheEntryStat & { tag: string; path: string })[] = [];
    const tags = await readdir(join(this.dir, 'blobs')).catch(() => [] as string[]);
    for (const tag of tags) {
      const names = await readdir(join(this.dir, 'blobs', tag)).catch(() => [] as string[]);
      for (const n of names) {
        if (!n.endsWith('.zst')) continue;
        const path = join(this.dir, 'blobs', tag, n);
        const st = await stat(path).catch(() => null);
        if (st) out.push({ key: `${tag}/${n}`, size: st.size, lastUsed: st.mtimeMs, tag, path });
      }
    }
    return out;
  }

  /** Least recently used entries removed until the rest fit in `max` bytes; returns what went. */
  async evict(max: number): Promise<{ entries: number; bytes: number }> {
    const plan = evictionPlan(await this.entries(), max);
    const all = await this.entries();
    for (const e of plan) {
      const path = all.find((x) => x.key === e.key)?.path;
      if (!path) continue;
      await rm(`${path}.json`, { force: true });
      await rm(path, { force: true });
    }
    // Temp files of creates that died (a live one's are younger than a day).
    const tmps = await readdir(join(this.dir, 'tmp')).catch(() => [] as string[]);
    for (const t of tmps) {
      const st = await stat(join(this.dir, 'tmp', t)).catch(() => null);
      if (st && Date.now() - st.mtimeMs > 86_400_000) await rm(join(this.dir, 'tmp', t), { force: true });
    }
    return { entries: plan.length, bytes: plan.reduce((n, e) => n + e.size, 0) };
  }

  /** Everything removed. */
  async clear(): Promise<{ entries: number; bytes: number }> {
    const all = await this.entries();
    for (const d of ['blobs', 'layers', 'names', 'runs']) await rm(join(this.dir, d), { recursive: true, force: true });
    return { entries: all.length, bytes: all.reduce((n, e) => n + e.size, 0) };
  }

  async recordRun(run: CacheRun & { layers: number }): Promise<void> {
    await mkdir(join(this.dir, 'runs'), { recursive: true });
    await this.writeAtomic(join(this.dir, 'runs', `${run.at.replace(/[:.]/g, '-')}-${process.pid}.json`), JSON.stringify(run));
    const names = (await readdir(join(this.dir, 'runs')).catch(() => [] as string[])).filter((n) => n.endsWith('.json')).sort();
    for (const n of names.slice(0, Math.max(0, names.length - KEPT_RUNS))) await rm(join(this.dir, 'runs', n), { force: true });
  }

  async list(): Promise<CacheListing> {
    const all = await this.entries();
    const tags = new Map<string, { tag: string; entries: number; bytes: number }>();
    for (const e of all) {
      const t = tags.get(e.tag) ?? { tag: e.tag, entries: 0, bytes: 0 };
      t.entries++;
      t.bytes += e.size;
      tags.set(e.tag, t);
    }
    const names = (await readdir(join(this.dir, 'runs')).catch(() => [] as string[])).filter((n) => n.endsWith('.json')).sort();
    const runs: (CacheRun & { layers?: number })[] = [];
    for (const n of names) {
      const r = await readJson<CacheRun & { layers?: number }>(join(this.dir, 'runs', n));
      if (r && typeof r.hits === 'number' && typeof r.misses === 'number') runs.push(r);
    }
    return { dir: this.dir, entries: all.length, bytes: all.reduce((n, e) => n + e.size, 0), settings: [...tags.values()], runs };
  }
}

async function readJson<T>(path: string): Promise<T | null> {
  const text = await readFile(path, 'utf8').catch(() => null);
  if (text === null) return null;
  try {
    return JSON.parse(text) as T;
  } catch {
    return null;
  }
}
