/**
 * The layer cache: its pure plans (keys, LRU eviction, guesses), and the store itself on a real
 * directory: entries appear whole under two writers at once, a cached blob placed into a bundle is
 * cut into exactly the parts a fresh compression makes, and a damaged one is refused.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { BlobStoreWriter } from '../../src/adapters/blob-store.js';
import { LayerCache } from '../../src/adapters/layer-cache.js';
import { compressorSettings } from '../../src/adapters/zstd.js';
import { defaultCacheDir, evictionPlan, guessDiffIds, hitRate, nameKey, settingsTag } from '../../src/core/layer-cache.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const d = (c: string) => `sha256:${c.repeat(64)}`;
const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((x) => rm(x, { recursive: true, force: true })));
});
async function tmp(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}

describe('layer cache plans', () => {
  it('keys entries by what changes the bytes: level and threading, not the worker count', () => {
    expect(settingsTag(compressorSettings({ level: 3, workers: 2 }))).toBe(settingsTag(compressorSettings({ level: 3, workers: 16 })));
    expect(settingsTag(compressorSettings({ level: 3, workers: 0 }))).not.toBe(settingsTag(compressorSettings({ level: 3, workers: 2 })));
    expect(settingsTag(compressorSettings({ level: 4, workers: 2 }))).not.toBe(settingsTag(compressorSettings({ level: 3, workers: 2 })));
    expect(nameKey('a/layer.tar', 1)).not.toBe(nameKey('a/layer.tar', 2));
  });

  it('defaults to $XDG_CACHE_HOME/ferry, else ~/.cache/ferry (a relative XDG_CACHE_HOME is ignored)', () => {
    expect(defaultCacheDir({ XDG_CACHE_HOME: '/x/cache/' }, '/home/u')).toBe('/x/cache/ferry');
    expect(defaultCacheDir({}, '/home/u')).toBe('/home/u/.cache/ferry');
    expect(defaultCacheDir({ XDG_CACHE_HOME: 'rel' }, '/home/u')).toBe('/home/u/.cache/ferry');
  });

  it('evicts least recently used first, only as much as needed', () => {
    const entries = [
      { key: 'new', size: 50, lastUsed: 3 },
      { key: 'old', size: 30, lastUsed: 1 },
      { key: 'mid', size: 40, lastUsed: 2 },
    ];
    expect(evictionPlan(entries, 1000)).toEqual([]);
    expect(evictionPlan(entries, 90).map((e) => e.key)).toEqual(['old']);
    expect(evictionPlan(entries, 50).map((e) => e.key)).toEqual(['old', 'mid']);
    expect(evictionPlan(entries, 0).map((e) => e.key)).toEqual(['old', 'mid', 'new']);
  });

  it('guesses a diffID from memory, else the remaining candidates of that size', () => {
    const candidates = new Set([d('a'), d('b'), d('c'), d('e')]);
    const sizes = new Map([[d('a'), 1024], [d('b'), 2048], [d('c'), 2048]]);
    const guess = (size: number, remembered: string | null) => guessDiffIds({ path: 'x/layer.tar', size, remembered, candidates, sizes });
    expect(guess(1024, null)).toEqual([d('a')]);
    expect(guess(2048, null)).toEqual([d('b'), d('c')]);
    expect(guess(2048, d('c'))).toEqual([d('c')]);
    // A memory naming a layer this save does not hold is no use.
    expect(guess(1024, d('f'))).toEqual([d('a')]);
    expect(guess(99, null)).toEqual([]);
  });

  it('computes the hit rate over the runs given', () => {
    expect(hitRate([])).toBeNull();
    expect(hitRate([{ at: '', hits: 3, misses: 1 }, { at: '', hits: 0, misses: 0 }])).toBe(0.75);
  });
});

describe('layer cache store', () => {
  const settings = compressorSettings({ level: 3, workers: 2 });

  async function compressedInto(cache: LayerCache, store: BlobStoreWriter, input: Buffer) {
    const tmpFile = cache.tmpFile();
    const layer = await store.writeLayer(Readable.from([input]), undefined, () => true, tmpFile);
    await cache.add(layer.diffId, tmpFile, { digest: layer.blob!.digest, size: layer.blob!.size });
    return layer;
  }

  it('places a cached blob as the same parts and manifest entry as a fresh compression', async () => {
    const cache = new LayerCache(await tmp('ferry-cache-'), settings);
    await cache.init();
    const input = randomBytes(3 << 20);
    const fresh = new BlobStoreWriter(await tmp('ferry-b1-'), { level: 3, workers: 2, maxPartSize: 1 << 20 });
    await fresh.init();
    const layer = await compressedInto(cache, fresh, input);
    expect(layer.blob!.parts!.length).toBeGreaterThan(1);

    const again = new BlobStoreWriter(await tmp('ferry-b2-'), { level: 3, workers: 2, maxPartSize: 1 << 20 });
    await again.init();
    const meta = await cache.lookup(layer.diffId);
    expect(meta).toEqual({ digest: layer.blob!.digest, size: layer.blob!.size });
    const staged = await again.stageBlob(await cache.read(layer.diffId), meta!.digest);
    expect(staged).not.toBeNull();
    expect(await again.commitStaged(staged!)).toEqual(layer.blob);
    expect(again.files()).toEqual(fresh.files());
    for (const f of fresh.files()) expect(sha(await readFile(join(again.root, f.path)))).toBe(f.sha256);
  });

  it('refuses a damaged blob and leaves nothing of it in the bundle', async () => {
    const dir = await tmp('ferry-cache-');
    const cache = new LayerCache(dir, settings);
    await cache.init();
    const store = new BlobStoreWriter(await tmp('ferry-b1-'), { level: 3, workers: 2, maxPartSize: 1 << 30 });
    await store.init();
    const layer = await compressedInto(cache, store, randomBytes(200_000));
    const [tag] = await readdir(join(dir, 'blobs'));
    const file = join(dir, 'blobs', tag!, `${layer.diffId.slice(7)}.zst`);
    const bytes = await readFile(file);
    bytes[100] ^= 0xff;
    await writeFile(file, bytes);
    const other = new BlobStoreWriter(await tmp('ferry-b2-'), { level: 3, workers: 2, maxPartSize: 1 << 30 });
    await other.init();
    expect(await other.stageBlob(await cache.read(layer.diffId), layer.blob!.digest)).toBeNull();
    expect(await readdir(join(other.root, '.tmp'))).toEqual([]);
    await cache.drop(layer.diffId);
    expect(await cache.lookup(layer.diffId)).toBeNull();
  });

  it('two writers of the same entry at once leave one whole entry, and no temp files', async () => {
    const dir = await tmp('ferry-cache-');
    const input = randomBytes(1 << 20);
    const writers = await Promise.all(
      [1, 2, 3].map(async () => {
        const cache = new LayerCache(dir, settings);
        await cache.init();
        const store = new BlobStoreWriter(await tmp('ferry-b-'), { level: 3, workers: 2, maxPartSize: 1 << 30 });
        await store.init();
        return { cache, store };
      }),
    );
    const layers = await Promise.all(writers.map(({ cache, store }) => compressedInto(cache, store, input)));
    expect(new Set(layers.map((l) => l.blob!.digest)).size).toBe(1);
    const cache = writers[0]!.cache;
    const meta = await cache.lookup(layers[0]!.diffId);
    const blob = await readFile(join(dir, 'blobs', settingsTag(settings), `${layers[0]!.diffId.slice(7)}.zst`));
    expect(`sha256:${sha(blob)}`).toBe(meta!.digest);
    expect(await readdir(join(dir, 'tmp'))).toEqual([]);
  });

  it('evicts by last use and remembers names and runs', async () => {
    const dir = await tmp('ferry-cache-');
    const cache = new LayerCache(dir, settings);
    await cache.init();
    const store = new BlobStoreWriter(await tmp('ferry-b-'), { level: 3, workers: 2, maxPartSize: 1 << 30 });
    await store.init();
    const a = await compressedInto(cache, store, randomBytes(100_000));
    const b = await compressedInto(cache, store, randomBytes(100_000));
    const tag = settingsTag(settings);
    await utimes(join(dir, 'blobs', tag, `${a.diffId.slice(7)}.zst`), new Date(1000), new Date(1000));
    // Reading b makes it the most recently used; a (older) goes first.
    (await cache.read(b.diffId)).destroy();
    const gone = await cache.evict(b.blob!.size + 10);
    expect(gone.entries).toBe(1);
    expect(await cache.lookup(a.diffId)).toBeNull();
    expect(await cache.lookup(b.diffId)).not.toBeNull();

    await cache.remember('abc/layer.tar', 512, a.diffId);
    expect(await cache.remembered('abc/layer.tar', 512)).toBe(a.diffId);
    expect(await cache.remembered('abc/layer.tar', 1024)).toBeNull();
    await cache.recordRun({ at: new Date().toISOString(), hits: 2, misses: 1, layers: 3 });
    const listing = await cache.list();
    expect(listing.entries).toBe(1);
    expect(listing.runs.map((r) => [r.hits, r.misses])).toEqual([[2, 1]]);
    expect((await cache.clear()).entries).toBe(1);
    expect((await cache.list()).entries).toBe(0);
  });
});
