/**
 * One read per layer for loads running at once (src/adapters/layer-fanout.ts), with real zstd
 * blobs (the zstd CLI writes them): every load gets the layer byte for byte, a layer is read once
 * however many loads want it, a load that leaves or stalls never holds the others, and bytes that
 * are not the layer fail every stream.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { beforeAll, describe, expect, it } from 'vitest';
import { LayerFanout, type FanoutLayer } from '../../src/adapters/layer-fanout.js';
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
const rank = (diffId: string) => Object.values(layers).findIndex((l) => l.diffId === diffId);
const collect = async (s: Readable, slowMs = 0): Promise<Buffer> => {
  const parts: Buffer[] = [];
  for await (const c of s as AsyncIterable<Buffer>) {
    parts.push(c);
    if (slowMs) await new Promise((r) => setTimeout(r, slowMs));
  }
  return Buffer.concat(parts);
};

describe('layer fan-out', () => {
  it('reads each layer once for three loads, each getting it byte for byte, the slowest setting the pace', async () => {
    const fanout = new LayerFanout(3, open, rank);
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
    const fanout = new LayerFanout(3, open, rank);
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
    const fanout = new LayerFanout(2, open, rank);
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
    const fanout = new LayerFanout(2, open, rank, 50);
    const { b } = layers;
    fanout.declare('n1', [b!.diffId]);
    fanout.declare('n2', [b!.diffId]);
    expect((await collect(fanout.layer('n1', b!))).equals(b!.bytes)).toBe(true);
    expect((await collect(fanout.layer('n2', b!))).equals(b!.bytes)).toBe(true);
    expect(fanout.stats).toMatchObject({ reads: 2, alone: 1 });
  });

  it('no layer starts before every load has declared or left', async () => {
    const fanout = new LayerFanout(2, open, rank);
    const { b } = layers;
    fanout.declare('n1', [b!.diffId]);
    const s = fanout.layer('n1', b!);
    await new Promise((r) => setTimeout(r, 50));
    expect(fanout.stats.reads).toBe(0);
    fanout.leave('n2');
    expect((await collect(s)).equals(b!.bytes)).toBe(true);
  });

  it('bytes that are not the layer fail the stream of every load', async () => {
    const fanout = new LayerFanout(2, open, rank);
    const { lying } = layers;
    fanout.declare('n1', [lying!.diffId]);
    fanout.declare('n2', [lying!.diffId]);
    const results = await Promise.allSettled([collect(fanout.layer('n1', lying!)), collect(fanout.layer('n2', lying!))]);
    for (const r of results) expect(r.status === 'rejected' && String(r.reason)).toMatch(/refusing to load it/);
  });
});
