import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { decompress } from 'zstd-napi';
import { BlobStoreWriter } from '../../src/adapters/blob-store.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

async function store(maxPartSize: number) {
  const root = await mkdtemp(join(tmpdir(), 'ferry-blob-'));
  dirs.push(root);
  const s = new BlobStoreWriter(root, { level: 3, workers: 2, maxPartSize });
  await s.init();
  return { root, s };
}

describe('blob store', () => {
  it('writes a zstd blob named by its digest, reporting the diffID of the input', async () => {
    const { root, s } = await store(1 << 30);
    const input = Buffer.concat([randomBytes(100_000), Buffer.alloc(400_000, 7)]);
    const layer = await s.writeLayer(Readable.from([input]));
    expect(layer.diffId).toBe(`sha256:${sha(input)}`);
    expect(layer.size).toBe(input.length);
    const blob = await readFile(join(root, layer.blob.path!));
    expect(`sha256:${sha(blob)}`).toBe(layer.blob.digest);
    expect(blob.length).toBe(layer.blob.size);
    expect(blob.length).toBeLessThan(input.length / 2);
    expect(decompress(blob).equals(input)).toBe(true);
    expect(s.files()).toEqual([{ path: layer.blob.path, size: blob.length, sha256: layer.blob.digest.slice(7) }]);
  });

  it('cuts a blob larger than the part size into parts that concatenate to it', async () => {
    const { root, s } = await store(1 << 20);
    const input = randomBytes(3_500_000); // incompressible: about 3.3 parts of 1 MiB
    const layer = await s.writeLayer(Readable.from([input.subarray(0, 1_000_001), input.subarray(1_000_001)]));
    const parts = layer.blob.parts!;
    expect(parts.length).toBe(4);
    expect(layer.blob.path).toBeUndefined();
    const bytes = await Promise.all(parts.map((p) => readFile(join(root, p.path))));
    bytes.forEach((b, i) => {
      expect(b.length).toBeLessThanOrEqual(1 << 20);
      expect(sha(b)).toBe(parts[i]!.sha256);
      expect(b.length).toBe(parts[i]!.size);
    });
    const whole = Buffer.concat(bytes);
    expect(`sha256:${sha(whole)}`).toBe(layer.blob.digest);
    expect(decompress(whole).equals(input)).toBe(true);
  });

  it('stores the same layer once and leaves no scratch files', async () => {
    const { root, s } = await store(1 << 30);
    const input = randomBytes(50_000);
    const a = await s.writeLayer(Readable.from([input]));
    const b = await s.writeLayer(Readable.from([input]));
    expect(b.blob.digest).toBe(a.blob.digest);
    await s.finishScratch();
    expect(await readdir(join(root, 'blobs', 'sha256'))).toHaveLength(1);
    expect(await readdir(root)).toEqual(['blobs']);
  });

  it('removes its scratch part when the input stream fails', async () => {
    const { root, s } = await store(1 << 30);
    const failing = new Readable({
      read() {
        this.push(randomBytes(1000));
        this.destroy(new Error('engine went away'));
      },
    });
    await expect(s.writeLayer(failing)).rejects.toThrow(/engine went away/);
    expect(await readdir(join(root, '.tmp'))).toEqual([]);
  });
  it('names a layer by the diffID its own stream vouches for, without hashing it again', async () => {
    const { root, s } = await store(1 << 30);
    const input = randomBytes(200_000);
    // The store's layer streams fail at their end unless their bytes are the layer; writeLayer takes
    // the name as given (here a deliberately different one shows it was not computed).
    const claimed = `sha256:${'ab'.repeat(32)}`;
    const layer = await s.writeLayer(Readable.from([input]), undefined, () => true, undefined, claimed);
    expect(layer.diffId).toBe(claimed);
    expect(layer.size).toBe(input.length);
    expect(decompress(await readFile(join(root, layer.blob!.path!))).equals(input)).toBe(true);
  });

  it('fsyncs blobs off the write path: synced() waits for them and every file handle is closed after', async () => {
    const { s } = await store(1 << 20);
    const fds = async () => (await readdir('/proc/self/fd')).length;
    const before = await fds();
    const layers = [];
    for (let i = 0; i < 4; i++) layers.push(await s.writeLayer(Readable.from([randomBytes(1_500_000)])));
    expect(layers.every((l) => l.blob !== null)).toBe(true);
    await s.synced();
    expect(await fds()).toBe(before);
  });
});
