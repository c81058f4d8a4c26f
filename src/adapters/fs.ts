/**
 * Filesystem access for bundles and definitions. Bundle files are untrusted: they are opened with
 * O_NOFOLLOW, checked to be regular files, and never read beyond the size the manifest declares.
 */
import { createHash } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import { lstat, mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, relative, sep } from 'node:path';

export interface ListedFile {
  /** Bundle-relative, with "/" separators. */
  path: string;
  kind: 'file' | 'directory' | 'symlink' | 'other';
  size: number;
}

/** Every entry below `root`, without following links. */
export async function listTree(root: string): Promise<ListedFile[]> {
  const out: ListedFile[] = [];
  const walk = async (dir: string): Promise<void> => {
    const names = await readdir(dir);
    for (const name of names.sort()) {
      const full = join(dir, name);
      const st = await lstat(full);
      const path = relative(root, full).split(sep).join('/');
      if (st.isDirectory()) {
        out.push({ path, kind: 'directory', size: 0 });
        await walk(full);
      } else {
        out.push({ path, kind: st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : 'other', size: st.size });
      }
    }
  };
  await walk(root);
  return out;
}

/** Reads a file that must be a regular file of at most `max` bytes; null when it does not exist. */
export async function readBounded(path: string, max: number): Promise<Buffer | null> {
  let fh;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new Error(`${path} is not a regular file`);
    if (st.size > max) throw new Error(`${path} is ${st.size} bytes, more than the ${max} allowed`);
    const buf = Buffer.alloc(st.size);
    const { bytesRead } = await fh.read(buf, 0, st.size, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/**
 * sha256 of at most `limit` bytes of a regular file, streamed; reports how many bytes were there, so
 * a file longer than declared is caught without reading more than one byte past the limit.
 */
export async function hashFile(
  path: string,
  limit: number,
  onBytes?: (delta: number) => void,
): Promise<{ sha256: string; bytes: number; longer: boolean }> {
  const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new Error('not a regular file');
    const hash = createHash('sha256');
    let bytes = 0;
    let longer = false;
    const stream = createReadStream('', { fd: fh.fd, autoClose: false, start: 0, end: limit, highWaterMark: 1 << 20 });
    for await (const chunk of stream) {
      let c = chunk as Buffer;
      if (bytes + c.length > limit) {
        longer = true;
        c = c.subarray(0, limit - bytes);
      }
      hash.update(c);
      bytes += c.length;
      onBytes?.(c.length);
    }
    return { sha256: hash.digest('hex'), bytes, longer };
  } finally {
    await fh.close();
  }
}

/**
 * Copies at most `limit` bytes of a regular file while hashing them: the staged copy and its
 * digest come from the same read, so what was checked is exactly what is used afterwards.
 */
export async function copyHashed(
  src: string,
  dst: string,
  limit: number,
  onBytes?: (delta: number) => void,
): Promise<{ sha256: string; bytes: number; longer: boolean }> {
  await mkdir(dirname(dst), { recursive: true });
  const fh = await open(src, constants.O_RDONLY | constants.O_NOFOLLOW);
  const out = await open(dst, 'w', 0o640);
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new Error('not a regular file');
    const hash = createHash('sha256');
    let bytes = 0;
    let longer = false;
    for await (const chunk of createReadStream('', { fd: fh.fd, autoClose: false, start: 0, end: limit, highWaterMark: 1 << 20 })) {
      let c = chunk as Buffer;
      if (bytes + c.length > limit) {
        longer = true;
        c = c.subarray(0, limit - bytes);
      }
      hash.update(c);
      await out.write(c);
      bytes += c.length;
      onBytes?.(c.length);
    }
    await out.sync();
    return { sha256: hash.digest('hex'), bytes, longer };
  } finally {
    await fh.close();
    await out.close();
  }
}

export async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}

export async function readText(path: string): Promise<string> {
  return readFile(path, 'utf8');
}

export async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/**
 * A temporary sibling of `target` for building a directory that appears under its final name only
 * when complete (rename is atomic within one filesystem). A crash leaves a `.partial-` directory,
 * which no ferry command mistakes for a bundle.
 */
export async function createPartialSibling(target: string): Promise<string> {
  await mkdir(dirname(target), { recursive: true });
  const partial = join(dirname(target), `${basename(target)}.partial-${process.pid}-${Date.now().toString(36)}`);
  await mkdir(partial);
  return partial;
}

export async function sealDirectory(partial: string, target: string): Promise<void> {
  await syncDirectory(partial);
  await rename(partial, target);
  await syncDirectory(dirname(target));
}

export async function removeTree(path: string): Promise<void> {
  await rm(path, { recursive: true, force: true });
}

async function syncDirectory(path: string): Promise<void> {
  const fh = await open(path, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await fh.sync();
  } catch {
    // Some filesystems (vfat on a stick among them) refuse fsync on directories; the rename stands.
  } finally {
    await fh.close();
  }
}
