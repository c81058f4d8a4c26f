import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tar from 'tar-stream';
import { describe, expect, it } from 'vitest';
import { isSetuidFile, TarHeaderScanner, type TarEntry } from '../../src/core/tar-scan.js';

async function packed(entries: { name: string; mode: number; type?: 'file' | 'directory' | 'symlink'; body?: string; linkname?: string }[]): Promise<Buffer> {
  const pack = tar.pack();
  for (const e of entries) {
    if (e.type === 'directory' || e.type === 'symlink') pack.entry({ name: e.name, mode: e.mode, type: e.type, ...(e.linkname ? { linkname: e.linkname } : {}) });
    else pack.entry({ name: e.name, mode: e.mode }, e.body ?? '');
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** Feeds the archive in chunks of the given sizes, cycling, as a stream would arrive. */
function scan(archive: Buffer, sizes: number[]): TarEntry[] {
  const seen: TarEntry[] = [];
  const scanner = new TarHeaderScanner((e) => seen.push(e));
  let at = 0;
  for (let i = 0; at < archive.length; i++) {
    const n = sizes[i % sizes.length]!;
    scanner.feed(archive.subarray(at, at + n));
    at += n;
  }
  return seen;
}

describe('tar headers read on the way through', () => {
  it('finds every entry with its path and mode, however the bytes are cut', async () => {
    const long = `usr/lib/${'x'.repeat(180)}/deep/file`;
    const archive = await packed([
      { name: 'bin/', mode: 0o755, type: 'directory' },
      { name: 'bin/su', mode: 0o4755, body: 'a'.repeat(1000) },
      { name: 'usr/bin/wall', mode: 0o2755, body: 'b'.repeat(512) },
      { name: 'var/mail/', mode: 0o2775, type: 'directory' },
      { name: 'bin/sh', mode: 0o777, type: 'symlink', linkname: 'busybox' },
      { name: long, mode: 0o6711, body: 'c' },
      { name: 'etc/empty', mode: 0o644 },
    ]);
    for (const sizes of [[archive.length], [1], [7, 511, 512, 513], [4096], [3, 1000]]) {
      const entries = scan(archive, sizes);
      expect(entries.map((e) => [e.path, e.mode.toString(8), e.type]), `chunks of ${sizes.join(',')}`).toEqual([
        ['bin/', '755', '5'],
        ['bin/su', '4755', '0'],
        ['usr/bin/wall', '2755', '0'],
        ['var/mail/', '2775', '5'],
        ['bin/sh', '777', '2'],
        [long, '6711', '0'],
        ['etc/empty', '644', '0'],
      ]);
      // Directories with setgid (common: /var/mail) and links are not what the warning is about.
      expect(entries.filter(isSetuidFile).map((e) => e.path)).toEqual(['bin/su', 'usr/bin/wall', long]);
    }
  });

  it('reads GNU tar archives, long names included (GNU and PAX formats)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ferry-tarscan-'));
    try {
      const deep = join('root', 'a'.repeat(120), 'b'.repeat(60));
      mkdirSync(join(dir, deep), { recursive: true });
      writeFileSync(join(dir, deep, 'suid-helper'), 'x'.repeat(3000));
      chmodSync(join(dir, deep, 'suid-helper'), 0o4750);
      writeFileSync(join(dir, 'root', 'plain'), 'y');
      symlinkSync('plain', join(dir, 'root', 'link'));
      for (const format of ['gnu', 'posix']) {
        const archive = execFileSync('tar', [`--format=${format}`, '--sort=name', '-C', dir, '-cf', '-', 'root']);
        const entries = scan(archive, [100, 700]);
        expect(entries.filter(isSetuidFile).map((e) => [e.path, e.mode.toString(8)]), format).toEqual([[`${deep}/suid-helper`, '4750']]);
        expect(entries.map((e) => e.path), format).toContain('root/plain');
        expect(entries.find((e) => e.path === 'root/link')?.type, format).toBe('2');
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
