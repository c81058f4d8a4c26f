/**
 * Loads a native addon that the single executable carries as an asset. Node can only dlopen a
 * file, so the bytes go to a private directory (mkdtemp, 0700), are loaded, and are removed at once:
 * the mapping outlives the file. Removable and hardened systems mount some temporary directories
 * noexec, where dlopen fails to map the file; the next candidate is tried then.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { getRawAsset } from 'node:sea';

export function loadNativeAsset(name: string): unknown {
  const bytes = new Uint8Array(getRawAsset(name) as ArrayBuffer);
  const dirs = [process.env.TMPDIR, process.env.XDG_RUNTIME_DIR, '/dev/shm', tmpdir(), join(homedir(), '.cache')];
  const tried: string[] = [];
  for (const dir of [...new Set(dirs.filter((d): d is string => Boolean(d)))]) {
    let scratch: string | undefined;
    try {
      scratch = mkdtempSync(join(dir, 'ferry-native-'));
      const file = join(scratch, name);
      writeFileSync(file, bytes, { mode: 0o500 });
      const mod = { exports: {} as unknown };
      process.dlopen(mod, file);
      return mod.exports;
    } catch (e) {
      tried.push(`${dir}: ${(e as Error).message.split('\n')[0]}`);
    } finally {
      if (scratch) rmSync(scratch, { recursive: true, force: true });
    }
  }
  throw new Error(
    `could not load ${name}, the native zstd compressor that bundle create needs (hosts never need it). ` +
      `Tried: ${tried.join('; ')}. A "GLIBC_2.xx not found" above means this system's C library is older than the build server's: ` +
      `run bundle create on the build server; a directory that is mounted noexec can be avoided with TMPDIR=<an exec-mounted directory>.`,
  );
}
