/**
 * Reads the headers of a tar stream as it passes, without holding its contents: create looks at
 * every file of a layer on the way to the compressor (setuid and setgid files, for a warning) and
 * must not slow that stream down or buffer it. Fed chunks of any size; only headers (512 bytes)
 * and the small records that name long paths (PAX `x`, GNU `L`) are ever copied.
 */

export interface TarEntry {
  path: string;
  /** Permission bits, setuid/setgid/sticky included. */
  mode: number;
  /** The typeflag: '0' a regular file, '5' a directory, '2' a symbolic link, … */
  type: string;
  size: number;
}

const BLOCK = 512;
/** A path record larger than this is not a path: skipped, not kept. */
const MAX_RECORD = 1024 * 1024;

const REGULAR = new Set(['0', '\0', '7']);

export class TarHeaderScanner {
  private header = Buffer.alloc(BLOCK);
  private headerFill = 0;
  /** Bytes of the current entry's content and padding still to pass. */
  private skip = 0;
  /** Content of a PAX or GNU long-name record being collected, and what it is. */
  private record: { kind: 'pax' | 'longname'; bytes: Buffer[]; left: number; pad: number } | null = null;
  private nextPath: string | null = null;
  private nextSize: number | null = null;

  constructor(private readonly onEntry: (entry: TarEntry) => void) {}

  feed(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.record) {
        const take = Math.min(this.record.left, chunk.length - at);
        if (take > 0) {
          this.record.bytes.push(chunk.subarray(at, at + take));
          this.record.left -= take;
          at += take;
        }
        if (this.record.left === 0) {
          this.finishRecord();
        }
        continue;
      }
      if (this.skip > 0) {
        const take = Math.min(this.skip, chunk.length - at);
        this.skip -= take;
        at += take;
        continue;
      }
      const take = Math.min(BLOCK - this.headerFill, chunk.length - at);
      chunk.copy(this.header, this.headerFill, at, at + take);
      this.headerFill += take;
      at += take;
      if (this.headerFill === BLOCK) {
        this.headerFill = 0;
        this.onHeader(this.header);
      }
    }
  }

  private finishRecord(): void {
    const r = this.record!;
    this.record = null;
    this.skip = r.pad;
    if (r.kind === 'longname') {
      this.nextPath = cString(Buffer.concat(r.bytes), 0, Number.MAX_SAFE_INTEGER);
      return;
    }
    const pax = parsePax(Buffer.concat(r.bytes));
    if (pax.path !== undefined) this.nextPath = pax.path;
    if (pax.size !== undefined) this.nextSize = pax.size;
  }

  private onHeader(h: Buffer): void {
    // The end of the archive is two zero blocks; a zero block carries nothing either way.
    if (h.every((b) => b === 0)) return;
    const type = String.fromCharCode(h[156]!);
    const size = this.nextSize ?? numeric(h, 124, 12);
    const padded = Math.ceil(size / BLOCK) * BLOCK;
    if (type === 'x' || type === 'L') {
      if (size > MAX_RECORD) {
        this.skip = padded;
        return;
      }
      this.record = { kind: type === 'x' ? 'pax' : 'longname', bytes: [], left: size, pad: padded - size };
      if (size === 0) this.finishRecord();
      return;
    }
    if (type === 'g' || type === 'K') {
      // A global PAX header or a GNU long link target: nothing ferry looks at.
      this.skip = padded;
      return;
    }
    const name = cString(h, 0, 100);
    const prefix = h.subarray(257, 262).toString('latin1') === 'ustar' ? cString(h, 345, 155) : '';
    const path = this.nextPath ?? (prefix ? `${prefix}/${name}` : name);
    this.nextPath = null;
    this.nextSize = null;
    this.onEntry({ path, mode: numeric(h, 100, 8) & 0o7777, type, size });
    // Links, directories and devices carry no content whatever their size field says.
    this.skip = REGULAR.has(type) ? padded : 0;
  }
}

/** A regular file whose mode gives its owner's or group's rights to whoever runs it. */
export function isSetuidFile(entry: TarEntry): boolean {
  return REGULAR.has(entry.type) && (entry.mode & 0o6000) !== 0;
}

export function cString(buf: Buffer, start: number, length: number): string {
  const end = Math.min(buf.length, start + length);
  const nul = buf.indexOf(0, start);
  return buf.subarray(start, nul >= 0 && nul < end ? nul : end).toString('utf8');
}

/** Octal, or GNU's base-256 for values that do not fit (high bit of the first byte set). */
export function numeric(buf: Buffer, start: number, length: number): number {
  if (buf[start]! & 0x80) {
    let v = 0;
    for (let i = start + 1; i < start + length; i++) v = v * 256 + buf[i]!;
    return v;
  }
  const text = buf.subarray(start, start + length).toString('latin1').replace(/[\0 ]+$/g, '').trim();
  return text === '' ? 0 : parseInt(text, 8) || 0;
}

/** PAX records: "<length> <key>=<value>\n", one after another. */
export function parsePax(buf: Buffer): { path?: string; size?: number } {
  const out: { path?: string; size?: number } = {};
  let at = 0;
  while (at < buf.length) {
    const space = buf.indexOf(0x20, at);
    if (space < 0) break;
    const len = parseInt(buf.subarray(at, space).toString('latin1'), 10);
    if (!Number.isSafeInteger(len) || len <= 0 || at + len > buf.length) break;
    const record = buf.subarray(space + 1, at + len - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (eq > 0) {
      const key = record.slice(0, eq);
      const value = record.slice(eq + 1);
      if (key === 'path') out.path = value;
      else if (key === 'size' && /^\d+$/.test(value)) out.size = Number(value);
    }
    at += len;
  }
  return out;
}
