/**
 * The medium ferry writes a bundle or an inventory to (a USB stick, a share, a local disk): how
 * much room it has, where it is mounted, and what a failed write there means. Operators fill
 * sticks every day, so a full, read-only or vanished medium is an expected condition with its own
 * code (exit 10), never "unexpected error".
 */
import { readFile, statfs } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { formatBytes } from '../core/format.js';
import { BuildInputError } from '../errors.js';

export interface MediumInfo {
  /** The mount point holding the path. */
  mountPoint: string;
  /** Filesystem type (vfat, ext4, tmpfs, ...). */
  fsType: string;
  /** null when the filesystem does not say (some FUSE filesystems report zero blocks in all). */
  freeBytes: number | null;
}

/** The nearest existing directory at or above `path`. */
async function existingDir(path: string): Promise<string> {
  for (let dir = resolve(path); ; dir = dirname(dir)) {
    if (await statfs(dir).then(() => true, () => false)) return dir;
    if (dirname(dir) === dir) return dir;
  }
}

/** Unescapes the octal escapes mountinfo uses for spaces and such in paths. */
const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));

export async function mediumOf(path: string): Promise<MediumInfo> {
  const dir = await existingDir(path);
  const fs = await statfs(dir);
  let mountPoint = '/';
  let fsType = 'unknown';
  try {
    // Fields: id parent major:minor root mountpoint options ... - fstype source superoptions
    for (const line of (await readFile('/proc/self/mountinfo', 'utf8')).split('\n')) {
      const parts = line.split(' ');
      const sep = parts.indexOf('-');
      if (parts.length < 5 || sep < 0) continue;
      const mp = unescape(parts[4]!);
      const inside = mp === '/' || dir === mp || dir.startsWith(`${mp}/`);
      // The last matching entry of the longest mount point is the one in force (mounts stack).
      if (inside && mp.length >= mountPoint.length) {
        mountPoint = mp;
        fsType = parts[sep + 1] ?? fsType;
      }
    }
  } catch {
    // No /proc (not Linux): the numbers still hold, only the names are missing.
  }
  return { mountPoint, fsType, freeBytes: fs.blocks > 0 ? fs.bavail * fs.bsize : null };
}

const CAUSES: Record<string, { code: string; what: string; todo: string }> = {
  ENOSPC: { code: 'NO_SPACE_ON_OUTPUT', what: 'the medium is full', todo: 'Use a larger medium or free space on it, or build a smaller bundle (--base against what the host holds), then create again.' },
  EDQUOT: { code: 'NO_SPACE_ON_OUTPUT', what: 'the disk quota is used up', todo: 'Free space within the quota or write elsewhere, then create again.' },
  EFBIG: { code: 'OUTPUT_FILE_TOO_BIG', what: 'the medium refuses a file that large', todo: 'Lower --max-part-size (FAT32 takes files below 4 GiB), then create again.' },
  EROFS: { code: 'OUTPUT_READ_ONLY', what: 'the medium is read-only', todo: 'Check the stick\'s write-protect switch or remount it read-write, then create again.' },
  EIO: { code: 'OUTPUT_IO_ERROR', what: 'the medium failed to write (I/O error)', todo: 'The medium may be failing: use another one, then create again, and verify the copy.' },
  ENOENT: { code: 'OUTPUT_GONE', what: 'the output directory disappeared (medium removed?)', todo: 'Reconnect or remount the medium, then create again.' },
  ENODEV: { code: 'OUTPUT_GONE', what: 'the medium disappeared', todo: 'Reconnect or remount the medium, then create again.' },
  ENXIO: { code: 'OUTPUT_GONE', what: 'the medium disappeared', todo: 'Reconnect or remount the medium, then create again.' },
  EACCES: { code: 'OUTPUT_NOT_WRITABLE', what: 'permission denied', todo: 'Choose an output you may write to, then create again.' },
  EPERM: { code: 'OUTPUT_NOT_WRITABLE', what: 'permission denied', todo: 'Choose an output you may write to, then create again.' },
};

export interface WriteFailure {
  /** What was being written: "the bundle", "the inventory". */
  what: string;
  /** The output the user named. */
  output: string;
  /** The file being written, when the error says. */
  file?: string;
  bytesWritten?: number;
  /** Set when the partial output could not be removed. */
  leftBehind?: string;
}

/**
 * The error a failed write to the medium ends in, or undefined when the failure is not about the
 * medium (a bug, an engine error): those keep their own handling.
 */
export async function mediumWriteError(e: unknown, f: WriteFailure): Promise<BuildInputError | undefined> {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  const cause = code ? CAUSES[code] : undefined;
  if (!cause) return undefined;
  const medium = await mediumOf(f.output).catch(() => null);
  const file = f.file ?? (e as NodeJS.ErrnoException).path;
  const written = f.bytesWritten !== undefined ? `, ${formatBytes(f.bytesWritten)} written so far` : '';
  const left = f.leftBehind ? ` The partial output ${f.leftBehind} could not be removed: delete it by hand.` : '';
  return new BuildInputError(cause.code, `writing ${f.what} to ${f.output} failed: ${cause.what} (${code}${file ? ` while writing ${file}` : ''}${written})${medium ? `; medium mounted at ${medium.mountPoint} (${medium.fsType})${medium.freeBytes !== null ? `, ${formatBytes(medium.freeBytes)} free` : ''}` : ''}`, {
    hint: `${cause.todo}${left}`,
    details: { output: f.output, errno: code, file: file ?? null, bytesWritten: f.bytesWritten ?? null, mountPoint: medium?.mountPoint ?? null, fsType: medium?.fsType ?? null, freeBytes: medium?.freeBytes ?? null, leftBehind: f.leftBehind ?? null },
    cause: e,
  });
}

