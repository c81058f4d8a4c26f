/**
 * Filesystem access for bundles and definitions. Bundle files are untrusted: they are opened with
 * O_NOFOLLOW, checked to be regular files with a single name, and never read beyond the size the
 * manifest declares.
 */
import { createHash } from 'node:crypto';
import { constants, existsSync, rmSync } from 'node:fs';
import { chmod, lstat, mkdir, open, opendir, readdir, readFile, rename, rm, stat, statfs, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { hostname } from 'node:os';
import { parsePartialName, partialHost, partialName } from '../core/partial.js';
import { HostPreconditionError } from '../errors.js';

export interface ListedFile {
  /** Bundle-relative, with "/" separators. Names that are not UTF-8 are shown with \xNN escapes. */
  path: string;
  kind: 'file' | 'directory' | 'symlink' | 'other' | 'unreadable';
  size: number;
  /** Hard links to the inode; more than one means the content has another name elsewhere. */
  links?: number;
}

export interface ListLimits {
  /** Entries listed before giving up; a stick full of junk must not exhaust memory. */
  maxEntries: number;
  /** Directories deeper than this are reported, not entered. */
  maxDepth: number;
}

/** The manifest allows 200 000 files; anything far beyond that is junk to be reported, not walked. */
export const DEFAULT_LIST_LIMITS: ListLimits = { maxEntries: 250_000, maxDepth: 32 };

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * A name as text. Names that are not UTF-8, or hold control characters or backslashes (which
 * could forge lines or escapes in a report), are shown byte by byte with \xNN escapes, so two
 * names never print the same; no listed bundle path contains any of them.
 */
function displayName(name: Buffer): { text: string; exact: boolean } {
  let text: string | undefined;
  try {
    text = utf8.decode(name);
  } catch {
    text = undefined;
  }
  if (text !== undefined && !/[\u0000-\u001f\u007f\\]/.test(text)) return { text, exact: true };
  let escaped = '';
  for (const b of name) escaped += b >= 0x20 && b < 0x7f && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`;
  return { text: escaped, exact: false };
}

/**
 * Every entry below `root`, without following links. Names are read as bytes: a name that is not
 * UTF-8 cannot be a listed file, so it is reported (escaped) and never entered. An entry that
 * cannot be examined is reported as unreadable rather than failing the whole listing.
 */
export async function listTree(root: string, limits: ListLimits = DEFAULT_LIST_LIMITS): Promise<ListedFile[]> {
  const out: ListedFile[] = [];
  let stopped = false;
  const walk = async (dir: Buffer, rel: string, depth: number): Promise<void> => {
    const names: Buffer[] = [];
    try {
      const handle = await opendir(dir as unknown as string, { encoding: 'buffer' as BufferEncoding });
      for await (const entry of handle) {
        if (out.length + names.length >= limits.maxEntries) {
          stopped = true;
          break;
        }
        names.push(entry.name as unknown as Buffer);
      }
    } catch (e) {
      if (rel !== '') out.push({ path: rel, kind: 'unreadable', size: 0 });
      else throw e;
      return;
    }
    names.sort(Buffer.compare);
    for (const name of names) {
      const { text, exact } = displayName(name);
      const path = rel === '' ? text : `${rel}/${text}`;
      const full = Buffer.concat([dir, Buffer.from('/'), name]);
      let st;
      try {
        st = await lstat(full);
      } catch {
        out.push({ path, kind: 'unreadable', size: 0 });
        continue;
      }
      if (st.isDirectory()) {
        out.push({ path, kind: 'directory', size: 0 });
        if (exact && depth < limits.maxDepth && !stopped) await walk(full, path, depth + 1);
      } else {
        out.push({ path, kind: st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : 'other', size: st.size, links: st.nlink });
      }
    }
  };
  await walk(Buffer.from(root), '', 1);
  if (stopped) out.push({ path: `(more than ${limits.maxEntries} entries: listing stopped)`, kind: 'unreadable', size: 0 });
  return out;
}

/**
 * O_NONBLOCK: a FIFO planted where a bundle file should be must fail the regular-file check at
 * once instead of blocking the open until some writer appears; on regular files it changes
 * nothing. O_NOCTTY: a terminal device must not become our controlling terminal.
 */
const UNTRUSTED_READ = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY;

export interface UntrustedOpenOptions {
  /** Refuse a file with more than one name (a hard link): its content can change under another name. */
  singleLink?: boolean;
}

/** Opens a file that must be a regular file, never through a symlink in its last component. */
async function openUntrusted(path: string, options: UntrustedOpenOptions = {}): Promise<{ fh: FileHandle; size: number }> {
  let fh: FileHandle;
  try {
    fh = await open(path, UNTRUSTED_READ);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ELOOP') throw new Error('it is a symbolic link (links are never followed)');
    throw e;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new Error(st.isDirectory() ? 'it is a directory, not a regular file' : 'it is not a regular file (a device, FIFO or socket)');
    if (options.singleLink && st.nlink > 1) throw new Error(`it is a hard link (${st.nlink} names); bundle files must be plain files`);
    return { fh, size: st.size };
  } catch (e) {
    await fh.close();
    throw e;
  }
}

/** Reads a file that must be a regular file of at most `max` bytes; null when it does not exist. */
export async function readBounded(path: string, max: number, options: UntrustedOpenOptions = {}): Promise<Buffer | null> {
  let opened;
  try {
    opened = await openUntrusted(path, options);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  const { fh, size } = opened;
  try {
    if (size > max) throw new Error(`${path} is ${size} bytes, more than the ${max} allowed`);
    // Allocated from the size just checked, and read until full: a file that grows meanwhile is
    // cut at that size, one that shrinks comes back short and fails the caller's size check.
    const buf = Buffer.alloc(size);
    let got = 0;
    while (got < size) {
      const { bytesRead } = await fh.read(buf, got, size - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return buf.subarray(0, got);
  } finally {
    await fh.close();
  }
}

/**
 * Reads at most `limit` bytes plus one (to notice a file longer than declared) in 1 MiB chunks,
 * handing each to `use`. A plain read loop on the handle rather than a stream on its descriptor:
 * a stream destroyed by an error in `use` closes the descriptor under the handle, and the
 * handle's own close then fails with EBADF, hiding the real error (a full disk, say).
 */
async function readChunks(fh: FileHandle, limit: number, use: (chunk: Buffer) => Promise<void> | void): Promise<{ bytes: number; longer: boolean }> {
  const buf = Buffer.allocUnsafe(Math.min(1 << 20, limit + 1));
  let bytes = 0;
  for (;;) {
    const want = Math.min(buf.length, limit + 1 - bytes);
    const { bytesRead } = await fh.read(buf, 0, want, bytes);
    if (bytesRead === 0) return { bytes, longer: false };
    if (bytes + bytesRead > limit) {
      await use(buf.subarray(0, limit - bytes));
      return { bytes: limit, longer: true };
    }
    await use(buf.subarray(0, bytesRead));
    bytes += bytesRead;
  }
}

/**
 * sha256 of at most `limit` bytes of a regular file; reports how many bytes were there, so a file
 * longer than declared is caught without reading more than one byte past the limit.
 */
export async function hashFile(
  path: string,
  limit: number,
  onBytes?: (delta: number) => void,
): Promise<{ sha256: string; bytes: number; longer: boolean }> {
  const { fh } = await openUntrusted(path, { singleLink: true });
  try {
    const hash = createHash('sha256');
    const { bytes, longer } = await readChunks(fh, limit, (c) => {
      hash.update(c);
      onBytes?.(c.length);
    });
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
  const { fh } = await openUntrusted(src, { singleLink: true });
  let out: FileHandle | undefined;
  try {
    await mkdir(dirname(dst), { recursive: true });
    out = await open(dst, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o640);
    const sink = out;
    const hash = createHash('sha256');
    const { bytes, longer } = await readChunks(fh, limit, async (c) => {
      hash.update(c);
      for (let off = 0; off < c.length; ) off += (await sink.write(c, off, c.length - off)).bytesWritten;
      onBytes?.(c.length);
    });
    await sink.sync();
    return { sha256: hash.digest('hex'), bytes, longer };
  } catch (e) {
    throw (await noSpace(e, dst)) ?? e;
  } finally {
    await fh.close();
    await out?.close().catch(() => undefined);
  }
}

/**
 * A full disk is a host precondition (exit 6) with the place named, not an unexpected error.
 * Recursive mkdir on a full ext4 reports ENOENT rather than ENOSPC, so an ENOENT on the way to
 * the destination counts as a full disk when its filesystem has no room left.
 */
export async function noSpace(e: unknown, path: string): Promise<HostPreconditionError | undefined> {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  let full = code === 'ENOSPC' || code === 'EDQUOT';
  if (!full && code === 'ENOENT') {
    for (let dir = dirname(path); ; dir = dirname(dir)) {
      const fs = await statfs(dir).catch(() => null);
      if (fs) {
        full = fs.bavail * fs.bsize < 1024 * 1024 || fs.ffree === 0;
        break;
      }
      if (dirname(dir) === dir) break;
    }
  }
  if (!full) return undefined;
  return new HostPreconditionError('NO_SPACE', `no space left while writing ${path} (${code})`, {
    hint: 'Free space on that filesystem, or pass --state-dir on a larger one, then run the command again.',
    details: { path, code },
    cause: e,
  });
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
/** Where create writes `target` before the final rename: a sibling, so the rename is atomic. */
export function partialSiblingOf(target: string): string {
  return join(dirname(target), partialName(basename(target), hostname(), process.pid, Date.now()));
}

export async function createPartialSibling(partial: string): Promise<string> {
  await mkdir(dirname(partial), { recursive: true });
  await mkdir(partial);
  return partial;
}

/**
 * Removes partial bundle directories under `parent` that a create on this machine left when it was
 * killed outright: same host, and no process with that pid alive. Returns what it removed.
 */
export async function removeStalePartials(parent: string): Promise<{ path: string; pid: number }[]> {
  const removed: { path: string; pid: number }[] = [];
  const names = await readdir(parent).catch(() => [] as string[]);
  for (const name of names) {
    const p = parsePartialName(name);
    if (!p || p.host !== partialHost(hostname()) || p.pid === process.pid || pidAlive(p.pid)) continue;
    const path = join(parent, name);
    if (!(await isDirectory(path))) continue;
    await rm(path, { recursive: true, force: true });
    removed.push({ path, pid: p.pid });
  }
  return removed;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: alive, someone else's.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export async function sealDirectory(partial: string, target: string): Promise<void> {
  await syncDirectory(partial);
  await rename(partial, target);
  await syncDirectory(dirname(target));
}

/** Bytes in the regular files under `path`. */
export async function treeBytes(path: string): Promise<number> {
  return (await listTree(path)).reduce((n, f) => n + (f.kind === 'file' ? f.size : 0), 0);
}

export async function removeTree(path: string): Promise<void> {
  await rm(path, { recursive: true, force: true });
}

/**
 * Removes a tree synchronously, for a signal handler that exits right after: no other JavaScript
 * runs meanwhile, so no new write can start. A write already in a worker thread may still land
 * during the first pass; the next pass removes what it made.
 */
export function removeTreeNow(path: string): void {
  for (let pass = 0; pass < 3; pass++) {
    rmSync(path, { recursive: true, force: true });
    if (!existsSync(path)) return;
  }
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

/**
 * Installs a copy of `src` at `dst` (mode exact, whatever the umask) so that `dst` is either the
 * old file or the complete new one, never part of it: copied beside it while hashing, fsynced,
 * renamed. Returns the sha256 of what was written, from the same read.
 */
export async function installFileAtomic(src: string, dst: string, mode: number): Promise<{ sha256: string; bytes: number }> {
  const tmp = `${dst}.partial-${process.pid}`;
  try {
    const copied = await copyHashed(src, tmp, Number.MAX_SAFE_INTEGER);
    await chmod(tmp, mode);
    await rename(tmp, dst);
    const dir = await open(dirname(dst), constants.O_RDONLY | constants.O_DIRECTORY);
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
    return { sha256: copied.sha256, bytes: copied.bytes };
  } catch (e) {
    await rm(tmp, { force: true }).catch(() => undefined);
    throw e;
  }
}

/** Creates a directory (and its parents) with `mode` for those it creates; true when it was new. */
export async function ensureDirectory(path: string, mode: number): Promise<boolean> {
  if (await isDirectory(path)) return false;
  await mkdir(path, { recursive: true, mode });
  return true;
}
