import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, utimesSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tar from 'tar-stream';
import { afterAll, describe, expect, it } from 'vitest';
import { DeltaError, encodeCopy, encodeDataStart, encodeDelta, encodeDeltaHeader, END_OP, planDelta, readDelta, rebuildLayer, type DeltaExpectation, type DeltaHeader } from '../../src/core/layer-delta.js';
import { indexTar, TarIndexer, TarIndexError } from '../../src/core/tar-index.js';

const digest = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function* chunks(b: Buffer, size = 777): AsyncGenerator<Buffer> {
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
}

async function collect(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of it) out.push(c);
  return Buffer.concat(out);
}

async function packed(entries: { name: string; body?: string | Buffer; mode?: number; mtime?: Date; type?: 'directory' | 'symlink'; linkname?: string }[]): Promise<Buffer> {
  const pack = tar.pack();
  for (const e of entries) {
    const header = { name: e.name, mode: e.mode ?? 0o644, mtime: e.mtime ?? new Date(1_700_000_000_000), ...(e.type ? { type: e.type } : {}), ...(e.linkname ? { linkname: e.linkname } : {}) };
    if (e.type) pack.entry(header);
    else pack.entry(header, e.body ?? '');
  }
  pack.finalize();
  return collect(pack as unknown as AsyncIterable<Buffer>);
}

/** The whole round trip: index both, plan, encode, rebuild; returns the rebuilt layer and the delta's size. */
async function roundTrip(ref: Buffer, target: Buffer): Promise<{ rebuilt: Buffer; delta: Buffer; literal: number }> {
  const plan = planDelta(await indexTar(chunks(ref)), await indexTar(chunks(target, 1000)));
  const header: DeltaHeader = { reference: digest(ref), referenceSize: ref.length, target: digest(target), targetSize: target.length, changes: plan.changes };
  const delta = await collect(encodeDelta(header, plan, chunks(target, 333)));
  const rebuilt = await collect(rebuildLayer(chunks(delta, 101), chunks(ref, 4096), header));
  return { rebuilt, delta, literal: plan.literal };
}

const work = mkdtempSync(join(tmpdir(), 'ferry-delta-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('layer deltas rebuild the layer byte for byte', () => {
  it('copies unchanged entries and carries only the new and changed ones', async () => {
    const big = Buffer.alloc(300_000, 7);
    const files = [
      { name: 'usr/', type: 'directory' as const },
      { name: 'usr/lib/a.py', body: big },
      { name: 'usr/lib/b.py', body: 'print(1)\n' },
      { name: 'usr/lib/c.so', body: Buffer.alloc(100_000, 3) },
    ];
    const ref = await packed(files);
    const target = await packed([...files.slice(0, 2), { name: 'usr/lib/b.py', body: 'print(2)\n' }, { name: 'usr/lib/bb.py', body: 'new\n' }, files[3]!]);
    const { rebuilt, delta, literal } = await roundTrip(ref, target);
    expect(rebuilt.equals(target)).toBe(true);
    expect(literal).toBeLessThan(5000);
    expect(delta.length).toBeLessThan(6000);
    const header = (await readDelta(chunks(delta), { reference: digest(ref), referenceSize: ref.length, target: digest(target), targetSize: target.length }).next()).value;
    expect(header).toMatchObject({ kind: 'header', header: { changes: { added: [{ path: 'usr/lib/bb.py' }], changed: [{ path: 'usr/lib/b.py' }], removed: [] } } });
  });

  it('copies the data of a file whose header alone changed (mtime, mode)', async () => {
    const body = Buffer.alloc(200_000, 9);
    const ref = await packed([{ name: 'x/data.bin', body, mtime: new Date(1_600_000_000_000) }]);
    const target = await packed([{ name: 'x/data.bin', body, mtime: new Date(1_700_000_000_000), mode: 0o600 }]);
    const { rebuilt, literal } = await roundTrip(ref, target);
    expect(rebuilt.equals(target)).toBe(true);
    expect(literal).toBeLessThan(2048);
  });

  it('is exact for GNU tar with long names, pax records, hard links, symlinks and removals', async () => {
    const make = (dir: string, release: number) => {
      const root = join(work, dir);
      mkdirSync(join(root, 'deep', 'x'.repeat(120)), { recursive: true });
      writeFileSync(join(root, 'deep', 'x'.repeat(120), `${'y'.repeat(110)}.txt`), 'long name\n');
      writeFileSync(join(root, 'keep.bin'), Buffer.alloc(70_000, 1));
      writeFileSync(join(root, 'änderung.txt'), `release ${release}\n`);
      if (release === 1) writeFileSync(join(root, 'gone.txt'), 'removed in 2\n');
      execFileSync('ln', ['-f', join(root, 'keep.bin'), join(root, 'hard.bin')]);
      execFileSync('ln', ['-sf', 'keep.bin', join(root, 'soft')]);
      chmodSync(join(root, 'keep.bin'), 0o755);
      for (const f of ['keep.bin', 'änderung.txt']) utimesSync(join(root, f), 1_600_000_000, 1_600_000_000);
      const out = join(work, `${dir}.tar`);
      execFileSync('tar', ['--format=pax', '--sort=name', '-C', root, '-cf', out, '.']);
      return execFileSync('cat', [out], { maxBuffer: 1 << 26 });
    };
    const ref = make('r1', 1);
    const target = make('r2', 2);
    const { rebuilt } = await roundTrip(ref, target);
    expect(digest(rebuilt)).toBe(digest(target));
    const index = await indexTar(chunks(target));
    expect(index.records.map((r) => r.path)).toContain(`./deep/${'x'.repeat(120)}/${'y'.repeat(110)}.txt`);
    expect(index.records.every((r, i) => i === 0 || r.start === index.records[i - 1]!.end)).toBe(true);
  });

  it('refuses a reference that is not the layer it claims, before the last byte is given', async () => {
    const ref = await packed([{ name: 'a', body: Buffer.alloc(50_000, 1) }]);
    const target = await packed([{ name: 'a', body: Buffer.alloc(50_000, 1) }, { name: 'b', body: 'b' }]);
    const plan = planDelta(await indexTar(chunks(ref)), await indexTar(chunks(target)));
    const header: DeltaHeader = { reference: digest(ref), referenceSize: ref.length, target: digest(target), targetSize: target.length, changes: plan.changes };
    const delta = await collect(encodeDelta(header, plan, chunks(target)));
    const forged = Buffer.from(ref);
    forged[1000] ^= 1;
    const given: Buffer[] = [];
    const err = await (async () => {
      for await (const c of rebuildLayer(chunks(delta), chunks(forged), header)) given.push(c);
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeltaError);
    expect((err as DeltaError).reason).toBe('reference');
    expect(Buffer.concat(given).length).toBeLessThan(target.length);
  });
});

describe('hostile deltas are refused, bounded', () => {
  const expect1: DeltaExpectation = { reference: `sha256:${'a'.repeat(64)}`, referenceSize: 4096, target: `sha256:${'b'.repeat(64)}`, targetSize: 2048 };
  const head = encodeDeltaHeader({ ...expect1, changes: { added: [], changed: [], removed: [], omitted: 0 } });
  const reasonOf = async (bytes: Buffer, ref = Buffer.alloc(4096)) => {
    try {
      for await (const _ of rebuildLayer(chunks(bytes), chunks(ref), expect1)) void _;
      return 'accepted';
    } catch (e) {
      return e instanceof DeltaError ? e.reason : `other: ${(e as Error).message}`;
    }
  };
  it.each([
    ['a COPY outside the reference', Buffer.concat([head, encodeCopy(4000, 2048), END_OP]), 'range'],
    ['overlapping COPYs', Buffer.concat([head, encodeCopy(0, 1024), encodeCopy(512, 1024), END_OP]), 'range'],
    ['a huge COPY', Buffer.concat([head, encodeCopy(0, Number.MAX_SAFE_INTEGER), END_OP]), 'range'],
    ['a huge DATA', Buffer.concat([head, encodeDataStart(2 ** 40), END_OP]), 'size'],
    ['too few bytes', Buffer.concat([head, encodeCopy(0, 1024), END_OP]), 'size'],
    ['a truncated DATA', Buffer.concat([head, encodeDataStart(2048), Buffer.alloc(100)]), 'truncated'],
    ['no END', Buffer.concat([head, encodeCopy(0, 2048)]), 'truncated'],
    ['bytes after END', Buffer.concat([head, encodeCopy(0, 2048), END_OP, Buffer.from([1])]), 'format'],
    ['an unknown op', Buffer.concat([head, Buffer.from([9])]), 'format'],
    ['a header for another layer', Buffer.concat([encodeDeltaHeader({ ...expect1, target: `sha256:${'c'.repeat(64)}`, changes: { added: [], changed: [], removed: [], omitted: 0 } }), END_OP]), 'format'],
    ['a header length past the file', Buffer.concat([Buffer.from('FERRYDELTA1\n'), Buffer.from([0x7f, 0, 0, 0])]), 'format'],
    ['not a delta', Buffer.from('{"hello":1}'), 'format'],
  ])('%s', async (_what, bytes, reason) => {
    expect(await reasonOf(bytes)).toBe(reason);
  });

  it('a well-formed delta against the wrong reference bytes is a reference error, not a crash', async () => {
    expect(await reasonOf(Buffer.concat([head, encodeCopy(0, 2048), END_OP]))).toBe('reference');
  });

  it('random bytes after a valid header never crash or hang', async () => {
    let seed = 12345;
    const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff);
    for (let i = 0; i < 300; i++) {
      const junk = Buffer.from(Array.from({ length: rand() % 200 }, () => rand() & 0xff));
      const r = await reasonOf(Buffer.concat([head, junk]));
      expect(['range', 'size', 'truncated', 'format', 'reference']).toContain(r);
    }
  });
});

describe('the tar index', () => {
  it('refuses a tar that ends inside an entry, and a header with a bad checksum', async () => {
    const t = await packed([{ name: 'a', body: Buffer.alloc(5000, 1) }]);
    expect(() => {
      const ix = new TarIndexer();
      ix.push(t.subarray(0, 2000));
      ix.finish();
    }).toThrow(TarIndexError);
    const bad = Buffer.from(t);
    bad[10] ^= 0xff;
    await expect(indexTar(chunks(bad))).rejects.toThrow(/checksum/);
  });
});
