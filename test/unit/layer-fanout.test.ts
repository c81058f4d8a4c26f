/**
 * One read per layer for loads running at once (src/adapters/layer-fanout.ts), with real zstd
 * blobs (the zstd CLI writes them): every load gets the layer byte for byte, a layer is read once
 * however many loads want it, a load that leaves or stalls never holds the others, and bytes that
 * are not the layer fail every stream. Each case runs with the layer read on this thread and on
 * the worker thread fleets and swarms use (src/adapters/layer-reader.ts), whose own edges follow.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { beforeAll, describe, expect, it } from 'vitest';
import { DiffIdCheck, LayerFanout, type FanoutLayer } from '../../src/adapters/layer-fanout.js';
import { checkedLayerInWorker } from '../../src/adapters/layer-reader.js';
import { zstdDecompressor } from '../../src/adapters/zstd.js';
import type { LayerBlob } from '../../src/core/manifest.js';

let dir: string;
const layers: Record<string, FanoutLayer & { bytes: Buffer }> = {};

async function blobOf(name: string, bytes: Buffer, diffId?: string): Promise<void> {
  await writeFile(join(dir, name), bytes);
  execFileSync('zstd', ['-q', '-3', '-f', join(dir, name), '-o', join(dir, `${name}.zst`)]);
  const blob = { path: `${name}.zst` } as LayerBlob;
  layers[name] = { diffId: diffId ?? `sha256:${createHash('sha256').update(bytes).digest('hex')}`, size: bytes.length, blob, bytes };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ferry-fanout-'));
  await blobOf('a', Buffer.concat([randomBytes(3 << 20), Buffer.alloc(5 << 20)]));
  await blobOf('b', randomBytes(1 << 20));
  await blobOf('lying', randomBytes(200_000), `sha256:${'0'.repeat(64)}`);
});

const open = (blob: LayerBlob): Readable => createReadStream(join(dir, blob.path!));
/** The plainest reader, on this thread: the fan-out's logic does not depend on where a layer is read. */
const readHere = (l: FanoutLayer): Readable => {
  const check = new DiffIdCheck(l.diffId, l.size);
  void zstdDecompressor().then((decompress) => open(l.blob).pipe(decompress).pipe(check));
  return check;
};
const readers: [string, (l: FanoutLayer) => Readable][] = [
  ['this thread', readHere],
  ['a worker thread', (l) => checkedLayerInWorker([join(dir, l.blob.path!)], l.diffId, l.size)],
];
const rank = (diffId: string) => Object.values(layers).findIndex((l) => l.diffId === diffId);
const collect = async (s: Readable, slowMs = 0): Promise<Buffer> => {
  const parts: Buffer[] = [];
  for await (const c of s as AsyncIterable<Buffer>) {
    parts.push(c);
    if (slowMs) await new Promise((r) => setTimeout(r, slowMs));
  }
  return Buffer.concat(parts);
};

describe.each(readers)('layer fan-out, layers read on %s', (_, read) => {
  it('reads each layer once for three loads, each getting it byte for byte, the slowest setting the pace', async () => {
    const fanout = new LayerFanout(3, read, rank);
    const { a, b } = layers;
    const load = async (name: string, slowMs: number) => {
      fanout.declare(name, [a!.diffId, b!.diffId]);
      const got = [await collect(fanout.layer(name, a!), slowMs), await collect(fanout.layer(name, b!), slowMs)];
      fanout.leave(name);
      return got;
    };
    const results = await Promise.all([load('n1', 0), load('n2', 0), load('n3', 1)]);
    for (const [gotA, gotB] of results) {
      expect(gotA.equals(a!.bytes)).toBe(true);
      expect(gotB.equals(b!.bytes)).toBe(true);
    }
    expect(fanout.stats).toEqual({ layers: 2, reads: 2, fed: 6, alone: 0 });
  });

  it('feeds a layer only to the loads that declared it, and waits for no load that left', async () => {
    const fanout = new LayerFanout(3, read, rank);
    const { a, b } = layers;
    fanout.leave('n3'); // already current: loads nothing
    fanout.declare('n2', [b!.diffId]);
    const n2 = collect(fanout.layer('n2', b!));
    fanout.declare('n1', [a!.diffId, b!.diffId]);
    const n1a = await collect(fanout.layer('n1', a!));
    const n1b = await collect(fanout.layer('n1', b!));
    expect(n1a.equals(a!.bytes) && n1b.equals(b!.bytes) && (await n2).equals(b!.bytes)).toBe(true);
    expect(fanout.stats).toEqual({ layers: 2, reads: 2, fed: 3, alone: 0 });
  });

  it('a load that fails mid-layer does not hold the others', async () => {
    const fanout = new LayerFanout(2, read, rank);
    const { a } = layers;
    fanout.declare('n1', [a!.diffId]);
    fanout.declare('n2', [a!.diffId]);
    const s1 = fanout.layer('n1', a!);
    const s2 = fanout.layer('n2', a!);
    s2.once('data', () => fanout.leave('n2')); // its engine went away after the first chunk
    s2.on('error', () => undefined);
    expect((await collect(s1)).equals(a!.bytes)).toBe(true);
  });

  it('a load that declared but never asks holds a layer only for the patience given; asking later, it reads alone', async () => {
    const fanout = new LayerFanout(2, read, rank, 50);
    const { b } = layers;
    fanout.declare('n1', [b!.diffId]);
    fanout.declare('n2', [b!.diffId]);
    expect((await collect(fanout.layer('n1', b!))).equals(b!.bytes)).toBe(true);
    expect((await collect(fanout.layer('n2', b!))).equals(b!.bytes)).toBe(true);
    expect(fanout.stats).toMatchObject({ reads: 2, alone: 1 });
  });

  it('no layer starts before every load has declared or left', async () => {
    const fanout = new LayerFanout(2, read, rank);
    const { b } = layers;
    fanout.declare('n1', [b!.diffId]);
    const s = fanout.layer('n1', b!);
    await new Promise((r) => setTimeout(r, 50));
    expect(fanout.stats.reads).toBe(0);
    fanout.leave('n2');
    expect((await collect(s)).equals(b!.bytes)).toBe(true);
  });

  it('bytes that are not the layer fail the stream of every load', async () => {
    const fanout = new LayerFanout(2, read, rank);
    const { lying } = layers;
    fanout.declare('n1', [lying!.diffId]);
    fanout.declare('n2', [lying!.diffId]);
    const results = await Promise.allSettled([collect(fanout.layer('n1', lying!)), collect(fanout.layer('n2', lying!))]);
    for (const r of results) expect(r.status === 'rejected' && String(r.reason)).toMatch(/refusing to load it/);
  });
});

describe('the worker thread that reads layers', () => {
  const inWorker = (l: FanoutLayer, paths = [join(dir, l.blob.path!)]) => checkedLayerInWorker(paths, l.diffId, l.size);

  it('reads several layers at once, each byte for byte', async () => {
    const { a, b } = layers;
    const got = await Promise.all([collect(inWorker(a!)), collect(inWorker(b!)), collect(inWorker(a!), 1)]);
    expect(got.map((g, i) => g.equals([a!, b!, a!][i]!.bytes))).toEqual([true, true, true]);
  });

  it('concatenates a blob cut into parts, in order', async () => {
    const { a } = layers;
    const whole = await readFile(join(dir, a!.blob.path!));
    const cut = [whole.subarray(0, 1000), whole.subarray(1000, 70_000), whole.subarray(70_000)];
    const paths = await Promise.all(cut.map(async (c, i) => {
      const p = join(dir, `a.part${i}`);
      await writeFile(p, c);
      return p;
    }));
    expect((await collect(inWorker(a!, paths))).equals(a!.bytes)).toBe(true);
  });

  it('fails a blob cut short, a missing file (with its code) and a layer longer than the manifest says', async () => {
    const { a, b } = layers;
    const whole = await readFile(join(dir, a!.blob.path!));
    await writeFile(join(dir, 'a.short'), whole.subarray(0, whole.length - 100));
    await expect(collect(inWorker(a!, [join(dir, 'a.short')]))).rejects.toThrow(/middle of a frame|unexpected end of file|refusing to load it/);
    await expect(collect(inWorker(a!, [join(dir, 'absent.zst')]))).rejects.toMatchObject({ code: 'ENOENT', message: expect.stringContaining('absent.zst') });
    await expect(collect(checkedLayerInWorker([join(dir, b!.blob.path!)], b!.diffId, b!.size - 1))).rejects.toThrow(/longer than the/);
  });

  it('a reader that gives up mid-layer leaves the thread free for the next', async () => {
    const { a, b } = layers;
    const s = inWorker(a!);
    await new Promise<void>((r) => s.once('data', () => r()));
    s.destroy();
    expect((await collect(inWorker(b!))).equals(b!.bytes)).toBe(true);
  });

  it('keeps memory flat on a layer that decompresses 10,000 to 1 (256 MiB of zeros), read slowly', async () => {
    const zeros = Buffer.alloc(256 << 20);
    await writeFile(join(dir, 'zeros'), zeros);
    execFileSync('zstd', ['-q', '-3', '-f', join(dir, 'zeros'), '-o', join(dir, 'zeros.zst')]);
    const diffId = `sha256:${createHash('sha256').update(zeros).digest('hex')}`;
    await collect(inWorker(layers.b!)); // the thread started: its own heap is not what is measured
    const before = process.memoryUsage().rss;
    let peak = before;
    let bytes = 0;
    const s = checkedLayerInWorker([join(dir, 'zeros.zst')], diffId, zeros.length);
    // A millisecond per 128 KiB read, about 2 s in all: the thread would be done in a quarter of a second.
    for await (const c of s as AsyncIterable<Buffer>) {
      bytes += c.length;
      peak = Math.max(peak, process.memoryUsage().rss);
      await new Promise((r) => setTimeout(r, Math.ceil(c.length / (128 << 10))));
    }
    expect(bytes).toBe(zeros.length);
    expect(peak - before).toBeLessThan(128 << 20);
  });
});
