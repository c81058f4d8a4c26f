/**
 * The files of a layer tar with a digest of each one's content, for `bundle diff`: fed the layer's
 * bytes in chunks of any size, it never holds more than one header block and the kept list. The
 * headers are read by the same scanner create uses (PAX and GNU long names included); this only
 * adds where each regular file's content lies, which the scanner skips, so that it can be hashed.
 */
import { createHash, type Hash } from 'node:crypto';
import { TarHeaderScanner, type TarEntry } from './tar-scan.js';

export interface LayerFile {
  /** As in the tar, without a leading "./" or a trailing "/". */
  path: string;
  /** `unknown`: a path a layer delta names as removed, which it records without facts. */
  type: 'file' | 'dir' | 'symlink' | 'hardlink' | 'other' | 'unknown';
  size: number;
  /** Permission bits, setuid/setgid/sticky included. */
  mode: number;
  /** sha256:<hex> of a regular file's content; of "link:" and the target for links; null otherwise. */
  digest: string | null;
  /** A link's target as the header names it (up to 100 bytes: a longer PAX linkpath is not read). */
  link?: string;
}

export interface LayerListing {
  /** Every entry up to the cap, a later entry for the same path replacing the earlier one. */
  files: LayerFile[];
  /** Entries in the tar, counted past the cap too. */
  entries: number;
  /** More entries than the cap: `files` is incomplete. */
  truncated: boolean;
}

const BLOCK = 512;
const REGULAR = new Set(['0', '\0', '7']);
/** Longer paths are kept cut: one hostile PAX record may name a megabyte-long path. */
const MAX_PATH = 4096;

export function kindOf(type: string): LayerFile['type'] {
  if (REGULAR.has(type)) return 'file';
  if (type === '5') return 'dir';
  if (type === '2') return 'symlink';
  if (type === '1') return 'hardlink';
  return 'other';
}

export function normalizeTarPath(path: string): string {
  let p = path.length > MAX_PATH ? `${path.slice(0, MAX_PATH)}…` : path;
  while (p.startsWith('./')) p = p.slice(2);
  if (p.startsWith('/')) p = p.replace(/^\/+/, '');
  if (p.length > 1 && p.endsWith('/')) p = p.replace(/\/+$/, '');
  return p;
}

export class TarFileLister {
  private readonly scanner: TarHeaderScanner;
  private readonly byPath = new Map<string, LayerFile>();
  private entries = 0;
  private dropped = false;
  /** Header-side bytes fed to the scanner one block at a time: its onEntry then follows one header. */
  private block = Buffer.alloc(BLOCK);
  private blockFill = 0;
  /** Content of the current regular file still to hash, then its padding. */
  private content: { left: number; pad: number; hash: Hash; file: LayerFile | null } | null = null;

  constructor(private readonly maxFiles: number) {
    this.scanner = new TarHeaderScanner((e) => this.onEntry(e));
  }

  feed(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      const c = this.content;
      if (c) {
        const take = Math.min(c.left + c.pad, chunk.length - at);
        const part = chunk.subarray(at, at + take);
        const data = Math.min(c.left, take);
        if (data > 0) c.hash.update(part.subarray(0, data));
        c.left -= data;
        c.pad -= take - data;
        // The scanner skips these same bytes; it must see them to stay in step.
        this.scanner.feed(part);
        at += take;
        if (c.left === 0 && c.pad === 0) this.finishContent();
        continue;
      }
      const take = Math.min(BLOCK - this.blockFill, chunk.length - at);
      chunk.copy(this.block, this.blockFill, at, at + take);
      this.blockFill += take;
      at += take;
      if (this.blockFill === BLOCK) {
        this.blockFill = 0;
        this.scanner.feed(this.block);
      }
    }
  }

  finish(): LayerListing {
    if (this.content) this.finishContent();
    return { files: [...this.byPath.values()], entries: this.entries, truncated: this.dropped };
  }

  private onEntry(e: TarEntry): void {
    this.entries++;
    const type = kindOf(e.type);
    // A hostile PAX size may be 10^400 (Infinity): then the entry runs to the end of the stream.
    const size = Number.isSafeInteger(e.size) && e.size >= 0 ? e.size : Number.MAX_SAFE_INTEGER;
    const path = normalizeTarPath(e.path);
    const keep = this.byPath.has(path) || this.byPath.size < this.maxFiles;
    if (!keep) this.dropped = true;
    const file: LayerFile = { path, type, size: type === 'file' ? size : 0, mode: e.mode, digest: null };
    if (type === 'symlink' || type === 'hardlink') {
      // The scanner has just been fed this header: the link target is in it.
      const nul = this.block.indexOf(0, 157);
      file.link = this.block.subarray(157, nul >= 157 && nul < 257 ? nul : 257).toString('utf8');
      file.digest = `sha256:${createHash('sha256').update(`link:${file.link}`).digest('hex')}`;
    }
    if (keep) {
      // A later entry for a path replaces the earlier one, as extraction would.
      this.byPath.delete(path);
      this.byPath.set(path, file);
    }
    if (type === 'file') {
      const pad = size % BLOCK === 0 ? 0 : BLOCK - (size % BLOCK);
      this.content = { left: size, pad, hash: createHash('sha256'), file: keep ? file : null };
      if (size === 0) this.finishContent();
    }
  }

  private finishContent(): void {
    const c = this.content!;
    this.content = null;
    if (c.file && c.left === 0) c.file.digest = `sha256:${c.hash.digest('hex')}`;
  }
}
