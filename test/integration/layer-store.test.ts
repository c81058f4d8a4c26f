/**
 * Layers read from a classic store's own files (src/adapters/layer-store.ts) against the engines
 * that keep them: every layer of the demo images on Docker 20.10 and on Docker 26's classic store
 * must hash to its diffID (the engine's own witness); the containerd image store and a foreign
 * driver are not read that way; a tar-split that names a file outside its layer is refused.
 */
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, inject, it } from 'vitest';
import { Engine } from '../../src/adapters/engine.js';
import { readStoredLayer, readStoredLayerChecked, storedLayerPaths, storedLayerTarSize } from '../../src/adapters/layer-store.js';
import { localClassicStore, readStoreImages } from '../../src/adapters/store-archive.js';
import { tmpDir } from '../support/engines.js';

async function digestOf(chunks: AsyncIterable<Buffer>): Promise<{ digest: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const c of chunks) {
    hash.update(c);
    bytes += c.length;
  }
  return { digest: `sha256:${hash.digest('hex')}`, bytes };
}

/** Every layer of every image the engine holds of `repos`: read from the store, hashed. */
async function checkEngine(host: string, refs: string[]): Promise<number> {
  const engine = new Engine(host);
  const info = await engine.info();
  let checked = 0;
  for (const ref of refs) {
    const image = await engine.inspectImage(ref);
    expect(image, ref).not.toBeNull();
    for (const diffId of image!.diffIds) {
      const paths = await storedLayerPaths(info.dataRoot, info.storageDriver, image!.diffIds, diffId);
      expect(paths, `${ref} ${diffId} on ${host}`).not.toBeNull();
      expect((await digestOf(readStoredLayer(paths!))).digest, `${ref} ${diffId} on ${host}`).toBe(diffId);
      checked++;
    }
  }
  return checked;
}

describe('layers read from a classic store', () => {
  const demo = Object.keys(inject('demoImages'));

  it('Docker 20.10: every layer of the demo images hashes to its diffID', async () => {
    expect(demo.length).toBeGreaterThan(1);
    expect(await checkEngine(inject('ferryEngines').build, demo)).toBeGreaterThan(demo.length);
  });

  it('Docker 26, classic store: the same, on an image loaded there', async () => {
    const host = process.env.FERRY_D26_DOCKER_HOST!;
    const engine = new Engine(host);
    const ref = demo[0]!;
    await engine.load(await new Engine(inject('ferryEngines').build).save([ref]));
    expect(await checkEngine(host, [ref])).toBeGreaterThan(0);
    // And whole, as create reads it there: the config is the image ID, every layer its diffID.
    const store = await localClassicStore(engine);
    expect(store).not.toBeNull();
    const image = (await engine.inspectImage(ref))!;
    const digests: string[] = [];
    const read = await readStoreImages(store!, [image.id], () => undefined, async (entry) => void digests.push((await digestOf(entry)).digest));
    expect(`sha256:${createHash('sha256').update(read!.images[0]!.config).digest('hex')}`).toBe(image.id);
    expect(digests).toEqual([...new Set(image.diffIds)]);
  });

  it('whole images as a save gives them: configs hashing to the image IDs, layers once each, bottom first, read only when consumed', async () => {
    const build = new Engine(inject('ferryEngines').build);
    const store = await localClassicStore(build);
    expect(store).not.toBeNull();
    const images = await Promise.all(demo.slice(0, 2).map(async (ref) => (await build.inspectImage(ref))!));
    const handed: { path: string; size: number; digest: string | null }[] = [];
    const read = await readStoreImages(store!, images.map((i) => i.id), () => undefined, async (entry, info) => {
      // The first layer is skipped unread, the others read: a skipped one ends at once, with no byte.
      if (handed.length === 0) {
        entry.skip();
        const skipped = await digestOf(entry);
        expect(skipped.bytes).toBe(0);
        handed.push({ ...info, digest: null });
      } else {
        handed.push({ ...info, digest: (await digestOf(entry)).digest });
      }
      return info.path;
    });
    expect(read).not.toBeNull();
    expect(read!.images.map((i) => i.id)).toEqual(images.map((i) => i.id));
    for (const [i, im] of read!.images.entries()) {
      expect(`sha256:${createHash('sha256').update(im.config).digest('hex')}`).toBe(im.id);
      expect(im.layerPaths).toEqual(images[i]!.diffIds.map((d) => `blobs/sha256/${d.slice(7)}`));
    }
    const all = [...new Set(images.flatMap((i) => i.diffIds))];
    expect(handed.map((h) => h.path)).toEqual(all.map((d) => `blobs/sha256/${d.slice(7)}`));
    for (const h of handed.slice(1)) expect(`sha256:${h.path.slice('blobs/sha256/'.length)}`).toBe(h.digest);
    // Sizes from the tar-split are the tar's: what a save sends for the layer.
    const saved = await digestOf(readStoredLayer((await storedLayerPaths(store!.dataRoot, store!.driver, images[0]!.diffIds, all[1]!))!));
    expect(handed[1]!.size).toBe(saved.bytes);
    expect(await storedLayerTarSize((await storedLayerPaths(store!.dataRoot, store!.driver, images[0]!.diffIds, all[1]!))!)).toBe(saved.bytes);
  });

  it('an image not in the store: nothing handed on, null (the caller saves instead)', async () => {
    const build = new Engine(inject('ferryEngines').build);
    const store = await localClassicStore(build);
    const id = (await build.inspectImage(demo[0]!))!.id;
    let handed = 0;
    const onLayer = async () => void handed++;
    expect(await readStoreImages(store!, [id, `sha256:${'e'.repeat(64)}`], () => undefined, onLayer)).toBeNull();
    expect(await readStoreImages({ ...store!, dataRoot: '/nonexistent/ferry-store' }, [id], () => undefined, onLayer)).toBeNull();
    expect(handed).toBe(0);
    expect(await localClassicStore(new Engine(process.env.FERRY_D26C_DOCKER_HOST!))).toBeNull();
  });

  it('the containerd image store and other drivers are not read as files', async () => {
    const engine = new Engine(process.env.FERRY_D26C_DOCKER_HOST!);
    const info = await engine.info();
    expect(info.containerdStore).toBe(true);
    const image = await new Engine(inject('ferryEngines').build).inspectImage(demo[0]!);
    expect(await storedLayerPaths(info.dataRoot, info.storageDriver, image!.diffIds, image!.diffIds[0]!)).toBeNull();
    expect(await storedLayerPaths('/var/lib/docker', 'vfs', image!.diffIds, image!.diffIds[0]!)).toBeNull();
    // A diffID the image does not have, and a chain the store does not hold.
    expect(await storedLayerPaths('/var/lib/docker', 'overlay2', image!.diffIds, `sha256:${'0'.repeat(64)}`)).toBeNull();
    expect(await storedLayerPaths('/var/lib/docker', 'overlay2', [`sha256:${'1'.repeat(64)}`], `sha256:${'1'.repeat(64)}`)).toBeNull();
  });

  it('gives the bytes in order whatever the sizes: headers and small files joined in pieces, a file bigger than a piece streamed', async () => {
    const dir = await tmpDir();
    await mkdir(join(dir, 'diff'));
    const sizes = [700_000, 700_000, 1, 0, 1_048_576, 3_500_000, 900_000, 12];
    const expected: Buffer[] = [];
    const entries: object[] = [];
    for (const [i, size] of sizes.entries()) {
      const header = Buffer.alloc(512 + (i % 3) * 512, i + 1);
      const content = Buffer.alloc(size, 0x41 + i);
      await writeFile(join(dir, 'diff', `f${i}`), content);
      entries.push({ type: 2, payload: header.toString('base64'), position: 2 * i }, { type: 1, name: `f${i}`, size, position: 2 * i + 1 });
      expected.push(header, content);
    }
    const trailer = Buffer.alloc(1024);
    entries.push({ type: 2, payload: trailer.toString('base64'), position: 2 * sizes.length });
    expected.push(trailer);
    await writeFile(join(dir, 'split.json.gz'), gzipSync(entries.map((e) => JSON.stringify(e)).join('\n')));
    const paths = { tarSplit: join(dir, 'split.json.gz'), diffDir: join(dir, 'diff') };
    const chunks: Buffer[] = [];
    for await (const c of readStoredLayer(paths)) chunks.push(Buffer.from(c));
    expect(Buffer.concat(chunks).equals(Buffer.concat(expected))).toBe(true);
    expect(chunks.every((c) => c.length <= 1 << 20)).toBe(true);
    expect(await storedLayerTarSize(paths)).toBe(Buffer.concat(expected).length);
  });

  it('refuses a tar-split naming a file outside its layer, a file shorter than recorded, and bytes that are not the layer asked for', async () => {
    const dir = await tmpDir();
    await mkdir(join(dir, 'diff'));
    await writeFile(join(dir, 'secret'), 'outside');
    await writeFile(join(dir, 'diff', 'short'), 'abc');
    const split = (entries: object[]) => gzipSync(entries.map((e) => JSON.stringify(e)).join('\n'));
    await writeFile(join(dir, 'escape.json.gz'), split([{ type: 1, name: '../secret', size: 7, position: 0 }]));
    await writeFile(join(dir, 'short.json.gz'), split([{ type: 2, payload: Buffer.from('hdr').toString('base64'), position: 0 }, { type: 1, name: 'short', size: 10, position: 1 }]));
    await writeFile(join(dir, 'ok.json.gz'), split([{ type: 2, payload: Buffer.from('hdr').toString('base64'), position: 0 }, { type: 1, name: './short', size: 3, position: 1 }]));
    const diffDir = join(dir, 'diff');
    await expect(digestOf(readStoredLayer({ tarSplit: join(dir, 'escape.json.gz'), diffDir }))).rejects.toThrow(/outside the layer/);
    await expect(digestOf(readStoredLayer({ tarSplit: join(dir, 'short.json.gz'), diffDir }))).rejects.toThrow(/shorter than the 10 bytes/);
    expect(await digestOf(readStoredLayer({ tarSplit: join(dir, 'ok.json.gz'), diffDir }))).toEqual({
      digest: `sha256:${createHash('sha256').update('hdrabc').digest('hex')}`,
      bytes: 6,
    });
    const ok = { tarSplit: join(dir, 'ok.json.gz'), diffDir };
    expect((await digestOf(readStoredLayerChecked(ok, `sha256:${createHash('sha256').update('hdrabc').digest('hex')}`))).bytes).toBe(6);
    await expect(digestOf(readStoredLayerChecked(ok, `sha256:${'0'.repeat(64)}`))).rejects.toThrow(/not layer sha256:0{64}/);
  });
});
