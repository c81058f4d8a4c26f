/**
 * Writing onto a medium that fills up, is read-only, or loses files, through the built CLI on real
 * filesystems: a small tmpfs (ENOSPC), a read-only bind mount (EROFS), and a FAT32 image (mkfs.vfat)
 * mounted with fusefat. Every failure is exit 10 with its
 * own code, the file and the bytes written, and nothing half-written is left on the medium. (A
 * loop-mounted FAT32 filling up cannot be tested here: no vfat in this kernel, see below.)
 */
import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ferry, ROOT, run, tmpDir } from '../support/engines.js';

let work: string;
const mounts: string[] = [];
const json = (stdout: string) => JSON.parse(stdout) as { ok: boolean; error: { code: string; exitCode: number; message: string; details: any }; warnings: { code: string }[] };

async function sh(cmd: string, args: string[]): Promise<void> {
  const r = await run(cmd, args);
  expect(r.code, `${cmd} ${args.join(' ')}: ${r.stderr}`).toBe(0);
}

async function tmpfs(name: string, size: string): Promise<string> {
  const dir = join(work, name);
  await mkdir(dir, { recursive: true });
  await sh('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
  mounts.push(dir);
  return dir;
}

const create = (out: string, extra: string[] = []) => ferry(['bundle', 'create', join(ROOT, 'bundles/demo'), '--out', out, ...extra], { timeoutMs: 300_000 });

beforeAll(async () => {
  work = await tmpDir('ferry-medium-');
});

afterAll(async () => {
  for (const m of mounts.reverse()) {
    if ((await run('umount', [m])).code !== 0) await run('fusermount', ['-u', m]);
  }
});

describe('a medium that is too small', () => {
  it('is refused before anything is saved (NO_SPACE_ON_OUTPUT: needed, free, mount point), text and --json', async () => {
    const stick = await tmpfs('small', '600k');
    const out = join(stick, 'demo.ferry');
    const r = await create(out, ['--json']);
    expect(r.code, r.stderr).toBe(10);
    const e = json(r.stdout).error;
    expect(e.code).toBe('NO_SPACE_ON_OUTPUT');
    expect(e.details).toMatchObject({ mountPoint: stick, fsType: 'tmpfs' });
    expect(e.details.neededBytes).toBeGreaterThan(e.details.freeBytes);
    expect(await readdir(stick)).toEqual([]);
    const text = await create(out);
    expect(text.code).toBe(10);
    expect(text.stderr).toMatch(new RegExp(`error: the bundle needs about [\\d.]+ [kM]B and ${stick} \\(tmpfs\\) has [\\d.]+ kB free`));
    expect(text.stderr).toContain('--force');
    expect(text.stderr).not.toMatch(/unexpected error|at .*\.js:\d+/);
  });

  // Both ways create reads the images: a save (whose archive brings the small layers first, so some
  // bytes are written before the medium fills) and the build engine's store on this machine (the
  // base layer first: it may fail at once). A full medium is that, never a store or archive error.
  it.each([
    ['from a save', ['--from-save']],
    ["from the engine's store", []],
  ])('with --force, fills up while writing %s: exit 10, the file and the bytes written, nothing left', async (how, extra) => {
    const stick = await tmpfs(`forced-${extra.length}`, '600k');
    const r = await create(join(stick, 'demo.ferry'), ['--force', '--json', ...extra]);
    expect(r.code, r.stderr).toBe(10);
    const doc = json(r.stdout);
    expect(doc.warnings.map((w) => w.code)).toContain('NO_SPACE_ON_OUTPUT');
    expect(doc.error.code).toBe('NO_SPACE_ON_OUTPUT');
    expect(doc.error.message).toMatch(/the medium is full \(ENOSPC while writing .*\.partial-.*, [\d.]+ k?B written so far\)/);
    expect(doc.error.details).toMatchObject({ errno: 'ENOSPC', mountPoint: stick, leftBehind: null });
    if (how === 'from a save') expect(doc.error.details.bytesWritten).toBeGreaterThan(0);
    else expect(doc.error.details.bytesWritten).toBeGreaterThanOrEqual(0);
    expect(await readdir(stick)).toEqual([]);
  });
});

describe('a read-only medium', () => {
  it('bundle create and host inventory --out: exit 10 OUTPUT_READ_ONLY, naming the medium', async () => {
    const src = join(work, 'ro-src');
    const ro = join(work, 'ro');
    await mkdir(src, { recursive: true });
    await mkdir(ro, { recursive: true });
    await sh('mount', ['--bind', src, ro]);
    mounts.push(ro);
    await sh('mount', ['-o', 'remount,ro,bind', ro]);
    const r = await create(join(ro, 'demo.ferry'), ['--json']);
    expect(r.code, r.stderr).toBe(10);
    expect(json(r.stdout).error).toMatchObject({ code: 'OUTPUT_READ_ONLY', details: { errno: 'EROFS', mountPoint: ro } });
    const inv = await ferry(['host', 'inventory', '--out', join(ro, 'host.json'), '--state-dir', join(work, 'state')]);
    expect(inv.code, inv.stderr).toBe(10);
    expect(inv.stderr).toMatch(/error: writing the inventory to .* failed: the medium is read-only \(EROFS/);
    expect(await readdir(ro)).toEqual([]);
  });
});

describe('a medium that loses files', () => {
  // A FAT32 image (mkfs.vfat) mounted with fusefat, the only FAT32 these machines can mount (their
  // kernel has no vfat module): its rename of a directory leaves the directory empty, as a failing
  // stick can. create must not report a bundle that is not there.
  it('a bundle whose files vanish in the final rename is refused (exit 10, OUTPUT_IO_ERROR), nothing left', async () => {
    const img = join(work, 'fat32.img');
    const mnt = join(work, 'fat32');
    await mkdir(mnt, { recursive: true });
    await sh('truncate', ['-s', '48M', img]);
    await sh('mkfs.vfat', ['-F', '32', img]);
    await sh('fusefat', ['-o', 'rw+', img, mnt]);
    mounts.push(mnt);
    expect((await run('grep', [' - fuse.fusefat ', '/proc/self/mountinfo'])).stdout).toContain(mnt);
    const r = await create(join(mnt, 'demo.ferry'), ['--json']);
    expect(r.code, r.stdout + r.stderr).toBe(10);
    const e = json(r.stdout).error;
    expect(e.code).toBe('OUTPUT_IO_ERROR');
    expect(e.message).toMatch(/the medium lost the bundle's files when the bundle was moved into place/);
    expect(e.details.leftBehind).toBeNull();
    expect(await readdir(mnt)).toEqual([]);
  });
});
