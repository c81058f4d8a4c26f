/**
 * The build server's layer cache, through the built CLI on real engines: a second create is all
 * cache hits and byte for byte the first bundle (and the one a create without a cache makes); a
 * damaged entry is dropped, rebuilt, and never shipped; with --base no held layer is compressed;
 * two creates into one cache at once both make good bundles; a remembered layer name that lies
 * is caught by the hash (classic store) or the image config (containerd store) and repaired by a
 * second save. On the classic store both ways a create reads it: its save (--from-save, as from an
 * engine elsewhere) and its files on this machine (the default here: held and cached layers are not
 * read at all, and the bundle is the one a save gives). Every bundle compared is also verified.
 */
import { createHash } from 'node:crypto';
import { cp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { nameKey } from '../../src/core/layer-cache.js';
import { ferry, ROOT, run, tmpDir, uniqueName } from '../support/engines.js';

const BUILD = () => process.env.FERRY_BUILD_DOCKER_HOST!;
const D26C = () => process.env.FERRY_D26C_DOCKER_HOST!;
/** Differ between two creates of the same release by design: the timestamp, and what lists or signs it. */
const VOLATILE = new Set(['ferry.json', 'ferry.json.sig', 'SHA256SUMS', 'SHA256SUMS.sig']);

const SUFFIX = '-lc14';
let work: string;
let key: string;
let trust: string;

interface CreateJson {
  layerWork: { compressed: number; compressedHeld: number; hashedOnly: number; skippedUnread: number; wrongGuesses: number; secondSave: boolean; read: string };
  cache: { hits: number; misses: number; added: number; corrupt: number } | null;
  totals: { leftOutLayers: number };
  images: { shipped: number }[];
}

async function definition(name: string, tag: string): Promise<string> {
  const dir = join(work, `def-${name}`);
  await cp(join(ROOT, 'bundles/demo'), dir, { recursive: true, filter: (src) => !src.includes('/images') });
  const f = join(dir, 'ferry.yaml');
  await writeFile(f, (await readFile(f, 'utf8')).replace(/^version: .*$/m, `version: ${tag}`));
  const c = join(dir, 'compose.yaml');
  await writeFile(c, (await readFile(c, 'utf8')).replace(/:1\.0\.0/g, `:${tag}`));
  return dir;
}

let outs = 0;
const create = (def: string, opts: Parameters<typeof createBundle>[1]) => createBundle(def, opts);
async function createBundle(def: string, opts: { cache?: string; bases?: string[]; dockerHost?: string; maxPart?: string; fromSave?: boolean }): Promise<{ out: string; result: CreateJson; warnings: { code: string; message: string }[]; stderr: string }> {
  const out = join(work, `b${outs++}.ferry`);
  const r = await ferry(
    [
      ...['bundle', 'create', def, '--out', out, '--sign-key', key, '--sequence', '7', '--json', ...(opts.cache ? ['--cache', opts.cache] : ['--no-cache'])],
      ...(opts.bases ?? []).flatMap((b) => ['--base', b]),
      ...(opts.maxPart ? ['--max-part-size', opts.maxPart] : []),
      ...(opts.fromSave ? ['--from-save'] : []),
    ],
    { env: { DOCKER_HOST: opts.dockerHost ?? BUILD() }, timeoutMs: 300_000 },
  );
  expect(r.code, r.stderr).toBe(0);
  const doc = JSON.parse(r.stdout);
  await verified(out);
  return { out, result: doc.result, warnings: doc.warnings ?? [], stderr: r.stderr };
}

/** Flips a byte in the middle of the cache's first blob (by name). */
async function damageFirstEntry(cache: string): Promise<void> {
  const [tag] = await readdir(join(cache, 'blobs'));
  const blobs = (await readdir(join(cache, 'blobs', tag!))).filter((n) => n.endsWith('.zst')).sort();
  const victim = join(cache, 'blobs', tag!, blobs[0]!);
  const bytes = await readFile(victim);
  bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
  await writeFile(victim, bytes);
}

async function verified(bundle: string): Promise<void> {
  const v = await ferry(['bundle', 'verify', bundle, '--trust', trust]);
  expect(v.code, v.stderr).toBe(0);
}

/** sha256 of every file but the volatile four; the manifest compared without its timestamp. */
async function contents(bundle: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else if (!VOLATILE.has(relative(bundle, p))) out[relative(bundle, p)] = createHash('sha256').update(await readFile(p)).digest('hex');
    }
  };
  await walk(bundle);
  const manifest = JSON.parse(await readFile(join(bundle, 'ferry.json'), 'utf8'));
  delete manifest.created;
  out['ferry.json (without created)'] = createHash('sha256').update(JSON.stringify(manifest)).digest('hex');
  return out;
}

const shipped = (r: CreateJson) => r.images.reduce((n, im) => n + im.shipped, 0);

/** The archive's layer entries in the order the engine writes them, with the diffID each was remembered as. */
async function archiveLayers(dockerHost: string, refs: string[], cache: string): Promise<{ path: string; size: number; diffId: string }[]> {
  const ids = (await run('docker', ['image', 'inspect', '--format', '{{.Id}}', ...refs], { env: { DOCKER_HOST: dockerHost } })).stdout.trim().split('\n');
  const listing = await run('bash', ['-c', `docker save ${[...new Set(ids)].join(' ')} | tar -tv`], { env: { DOCKER_HOST: dockerHost }, timeoutMs: 120_000 });
  expect(listing.code, listing.stderr).toBe(0);
  const out: { path: string; size: number; diffId: string }[] = [];
  for (const line of listing.stdout.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 6 || !f[0]!.startsWith('-')) continue;
    const path = f.at(-1)!.replace(/^\.\//, '');
    const size = Number(f[2]);
    const diffId = await readFile(join(cache, 'names', nameKey(path, size)), 'utf8').catch(() => null);
    if (diffId) out.push({ path, size, diffId: diffId.trim() });
  }
  return out;
}

/**
 * Makes the cache lie: the first layer entry of the archive is remembered as the last one's layer,
 * and its own blob is gone from the cache, so only a second save can give it.
 */
async function tamper(cache: string, layers: { path: string; size: number; diffId: string }[]): Promise<{ first: string; claimed: string }> {
  const distinct = layers.filter((l, i) => layers.findIndex((x) => x.diffId === l.diffId) === i);
  const first = distinct[0]!;
  const last = distinct.at(-1)!;
  expect(first.diffId).not.toBe(last.diffId);
  await writeFile(join(cache, 'names', nameKey(first.path, first.size)), last.diffId);
  for (const tag of await readdir(join(cache, 'blobs'))) {
    await rm(join(cache, 'blobs', tag, `${first.diffId.slice(7)}.zst`), { force: true });
    await rm(join(cache, 'blobs', tag, `${first.diffId.slice(7)}.zst.json`), { force: true });
  }
  return { first: first.diffId, claimed: last.diffId };
}

beforeAll(async () => {
  work = await tmpDir();
  key = join(work, 'signer');
  const gen = await ferry(['keys', 'generate', '--out', key, '--json']);
  trust = join(work, 'allowed_signers');
  await writeFile(trust, `${JSON.parse(gen.stdout).result.allowedSignersLine}\n`);
  // Images of this file's own: other runs rebuild the shared demo tags while this one compares bundles.
  for (const v of ['1.0.0', '1.1.0']) {
    const built = await run('bash', [join(ROOT, 'scripts/build-demo-images.sh'), '--version', v, '--tag-suffix', SUFFIX], { env: { DOCKER_HOST: BUILD() }, timeoutMs: 300_000 });
    expect(built.code, built.stderr).toBe(0);
  }
}, 600_000);

// The classic store's save, as from an engine that is not on this machine (--from-save): layers
// named by v1 IDs, known only by their size and the hash.
describe('layer cache on the classic store (Docker 20.10), from its save', () => {
  const create = (d: string, opts: Parameters<typeof createBundle>[1]) => createBundle(d, { ...opts, fromSave: true });
  let cache: string;
  let def: string;
  let reference: Record<string, string>;
  let cold: CreateJson;

  beforeAll(async () => {
    cache = join(work, 'cache-classic');
    def = await definition('r1', `1.0.0${SUFFIX}`);
  }, 60_000);

  it('a second create is all cache hits, and byte for byte the first bundle and one made without a cache', async () => {
    const first = await create(def, { cache });
    cold = first.result;
    expect(cold.cache).toMatchObject({ hits: 0, corrupt: 0 });
    expect(cold.cache!.misses).toBe(cold.layerWork.compressed);
    expect(cold.cache!.added).toBe(cold.cache!.misses);
    reference = await contents(first.out);

    const second = await create(def, { cache });
    expect(second.result.cache).toMatchObject({ hits: cold.cache!.misses, misses: 0, corrupt: 0 });
    expect(second.result.layerWork.compressed).toBe(0);
    expect(await contents(second.out)).toEqual(reference);

    const none = await create(def, {});
    expect(none.result.cache).toBeNull();
    expect(await contents(none.out)).toEqual(reference);

    // Cut into parts, too, exactly as a fresh compression cuts them.
    const partsFresh = await create(def, { maxPart: '1M' });
    const partsCached = await create(def, { cache, maxPart: '1M' });
    expect(partsCached.result.cache!.hits).toBeGreaterThan(0);
    expect(Object.keys(await contents(partsCached.out)).some((p) => p.includes('.part-'))).toBe(true);
    expect(await contents(partsCached.out)).toEqual(await contents(partsFresh.out));

    const ls = JSON.parse((await ferry(['cache', 'ls', '--cache', cache, '--json'])).stdout).result;
    expect(ls.entries).toBe(cold.cache!.added);
    expect(ls.runs.at(-1)).toMatchObject({ hits: cold.cache!.misses, misses: 0 });
    expect(ls.hitRate).toBeGreaterThan(0.5);
  });

  it('a damaged entry is dropped and rebuilt, never shipped', async () => {
    await damageFirstEntry(cache);

    const r = await create(def, { cache });
    expect(r.warnings.map((w) => w.code)).toContain('CACHE_ENTRY_CORRUPT');
    expect(r.result.cache).toMatchObject({ corrupt: 1, misses: 1, added: 1 });
    // The entry is checked while the layer is hashed: the layer itself comes from a second save.
    expect(r.result.layerWork.secondSave).toBe(true);
    expect(await contents(r.out)).toEqual(reference);

    const after = await create(def, { cache });
    expect(after.result.cache).toMatchObject({ corrupt: 0, misses: 0 });
    expect(await contents(after.out)).toEqual(reference);
  });

  it('with --base of the previous release, no held layer is compressed: only hashed', async () => {
    const r1 = await create(def, {});
    const def2 = await definition('r2', `1.1.0${SUFFIX}`);
    for (const c of [undefined, join(work, 'cache-base')]) {
      const r2 = await create(def2, { bases: [r1.out], ...(c ? { cache: c } : {}) });
      expect(r2.result.totals.leftOutLayers).toBeGreaterThan(0);
      expect(r2.result.layerWork.compressedHeld).toBe(0);
      expect(r2.result.layerWork.hashedOnly).toBe(r2.result.totals.leftOutLayers);
      expect(r2.result.layerWork.compressed).toBe(shipped(r2.result));
    }
  });

  it('two creates into one cache at once both make good bundles', async () => {
    const shared = join(work, 'cache-concurrent');
    const [a, b] = await Promise.all([create(def, { cache: shared }), create(def, { cache: shared })]);
    expect(await contents(a.out)).toEqual(reference);
    expect(await contents(b.out)).toEqual(reference);
    expect(await readdir(join(shared, 'tmp'))).toEqual([]);
    const c = await create(def, { cache: shared });
    expect(c.result.cache).toMatchObject({ misses: 0, corrupt: 0 });
    expect(await contents(c.out)).toEqual(reference);
  });

  it('a remembered name that lies is caught by the hash, and a second save gives the layer', async () => {
    const lying = join(work, 'cache-lying');
    await cp(cache, lying, { recursive: true });
    const t = await tamper(lying, await archiveLayers(BUILD(), ['web', 'worker', 'smoke'].map((s) => `ferry-demo/${s}:1.0.0${SUFFIX}`), lying));
    const r = await create(def, { cache: lying });
    const warning = r.warnings.find((w) => w.code === 'LAYER_GUESS_WRONG');
    expect(warning?.message).toContain(t.first.slice(7, 19));
    expect(r.result.layerWork).toMatchObject({ wrongGuesses: 1, secondSave: true });
    expect(await contents(r.out)).toEqual(reference);
    // Repaired: the next create is all hits, with no guess wrong.
    const next = await create(def, { cache: lying });
    expect(next.result.layerWork.wrongGuesses).toBe(0);
    expect(next.result.cache!.misses).toBe(0);
  });
});

// The same engine read through its store on this machine (the default there): layers named by
// their diffIDs, and those held or cached passed by unread.
describe('layer cache on the classic store (Docker 20.10), read from its files', () => {
  let cache: string;
  let def: string;
  let reference: Record<string, string>;

  beforeAll(async () => {
    cache = join(work, 'cache-store');
    def = await definition('s1', `1.0.0${SUFFIX}`);
    reference = await contents((await create(def, { fromSave: true })).out);
  }, 120_000);

  it('reads the layers from the store, cached ones not at all, and makes the bundle a save makes', async () => {
    const cold = await create(def, { cache });
    expect(cold.result.layerWork).toMatchObject({ read: 'layer store', skippedUnread: 0, hashedOnly: 0 });
    expect(cold.result.layerWork.compressed).toBeGreaterThan(2);
    expect(await contents(cold.out)).toEqual(reference);
    const warm = await create(def, { cache });
    expect(warm.result.layerWork).toMatchObject({ read: 'layer store', compressed: 0, hashedOnly: 0, skippedUnread: cold.result.layerWork.compressed });
    expect(warm.result.cache).toMatchObject({ hits: cold.result.layerWork.compressed, misses: 0 });
    expect(await contents(warm.out)).toEqual(reference);
  });

  it('a damaged cache entry is dropped and the layer read from the store, never shipped', async () => {
    const damaged = join(work, 'cache-store-damaged');
    await cp(cache, damaged, { recursive: true });
    await damageFirstEntry(damaged);
    const r = await create(def, { cache: damaged });
    expect(r.warnings.map((w) => w.code)).toContain('CACHE_ENTRY_CORRUPT');
    expect(r.result.layerWork).toMatchObject({ read: 'layer store', compressed: 1, secondSave: false });
    expect(await contents(r.out)).toEqual(reference);
  });

  it('with --base of the previous release, held layers are skipped unread', async () => {
    const r1 = await create(def, {});
    const def2 = await definition('s2', `1.1.0${SUFFIX}`);
    const r2 = await create(def2, { bases: [r1.out] });
    expect(r2.result.totals.leftOutLayers).toBeGreaterThan(0);
    expect(r2.result.layerWork).toMatchObject({ read: 'layer store', hashedOnly: 0, compressedHeld: 0, skippedUnread: r2.result.totals.leftOutLayers });
    expect(r2.result.layerWork.compressed).toBe(shipped(r2.result));
    const saved = await create(def2, { bases: [r1.out], fromSave: true });
    expect(await contents(r2.out)).toEqual(await contents(saved.out));
  });
});

describe('layer cache on the containerd image store (Docker 26)', () => {
  const tag = `14.0.0${SUFFIX}`;
  let def: string;
  let cache: string;
  let reference: Record<string, string>;

  beforeAll(async () => {
    const built = await run('bash', [join(ROOT, 'scripts/build-demo-images.sh'), '--version', '14.0.0', '--tag-suffix', SUFFIX], { env: { DOCKER_HOST: D26C() }, timeoutMs: 300_000 });
    expect(built.code, built.stderr).toBe(0);
    def = await definition(`d26c-${uniqueName('c').slice(-6)}`, tag);
    cache = join(work, 'cache-d26c');
  }, 600_000);

  it('skips cached layers unread, and the bundle is the same', async () => {
    const cold = await create(def, { cache, dockerHost: D26C() });
    expect(cold.result.cache!.hits).toBe(0);
    reference = await contents(cold.out);
    const warm = await create(def, { cache, dockerHost: D26C() });
    expect(warm.result.layerWork.compressed).toBe(0);
    expect(warm.result.layerWork.skippedUnread).toBe(cold.result.cache!.misses);
    expect(warm.result.cache).toMatchObject({ hits: cold.result.cache!.misses, misses: 0 });
    expect(await contents(warm.out)).toEqual(reference);
    const none = await create(def, { dockerHost: D26C() });
    expect(await contents(none.out)).toEqual(reference);
  });

  it('with --base, held layers are skipped unread', async () => {
    const base = await create(def, { dockerHost: D26C() });
    const r = await create(def, { cache, bases: [base.out], dockerHost: D26C() });
    expect(r.result.layerWork).toMatchObject({ compressed: 0, compressedHeld: 0 });
    expect(r.result.layerWork.skippedUnread).toBe(r.result.totals.leftOutLayers);
  });

  it('a remembered blob name that lies is caught by the image config, and a second save gives the layer', async () => {
    const lying = join(work, 'cache-d26c-lying');
    await cp(cache, lying, { recursive: true });
    const t = await tamper(lying, await archiveLayers(D26C(), [`ferry-demo/web:${tag}`, `ferry-demo/worker:${tag}`, `ferry-demo/smoke:${tag}`], lying));
    const r = await create(def, { cache: lying, dockerHost: D26C() });
    expect(r.warnings.map((w) => w.code)).toContain('LAYER_GUESS_WRONG');
    expect(r.result.layerWork.secondSave).toBe(true);
    expect(await contents(r.out)).toEqual(reference);
    void t;
  });
});
