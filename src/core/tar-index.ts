/**
 * An index of a tar stream by byte offset: where each entry's header blocks (with any pax or GNU
 * long-name blocks before it) and its data (with padding) lie, and a digest of each. A layer delta
 * is planned from two of these, and since it copies byte ranges rather than re-creating entries,
 * the rebuilt layer is the original byte for byte whatever tar dialect wrote it.
 */
import { createHash, type Hash } from 'node:crypto';
import { cString, numeric, parsePax } from './tar-scan.js';

const BLOCK = 512;
/** Pax and GNU long-name data is parsed for the path; longer is refused (no real path is this long). */
const MAX_EXTENSION_BYTES = 1024 * 1024;
const HEADER_ONLY = new Set(['1', '2', '3', '4', '5', '6']);

export interface TarRecord {
  /** Offset of the first header block, extension headers included. */
  start: number;
  /** Offset of the main header's data. */
  dataStart: number;
  /** Offset after the data's padding: the next record's start. */
  end: number;
  path: string;
  /** The tar type flag as a character: '0' file, '5' directory, '2' symlink, '1' hard link… */
  type: string;
  size: number;
  mode: number;
  /** sha256 of bytes [start, dataStart), its first 128 bits in base64. */
  headerHash: string;
  /** sha256 of bytes [dataStart, end), its first 128 bits in base64. */
  dataHash: string;
}

export interface TarIndex {
  records: TarRecord[];
  /** Where the end-of-archive blocks begin (the archive's size when it has none). */
  trailerStart: number;
  /** Bytes in all. */
  size: number;
}

export class TarIndexError extends Error {}

type State = 'header' | 'extension' | 'data' | 'trailer';

/** Fed the archive chunk by chunk (it never holds more than one header's extensions). */
export class TarIndexer {
  private readonly records: TarRecord[] = [];
  private offset = 0;
  private state: State = 'header';
  private block = Buffer.alloc(BLOCK);
  private blockFill = 0;
  private remaining = 0;
  private recordStart = 0;
  private headerHash: Hash = createHash('sha256');
  private dataHash: Hash = createHash('sha256');
  private extension: { type: string; chunks: Buffer[]; bytes: number } | null = null;
  private pending: { path?: string; size?: number } = {};
  private current: Omit<TarRecord, 'end' | 'headerHash' | 'dataHash'> | null = null;
  private trailerStart = -1;

  push(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.state === 'trailer') {
        this.offset += chunk.length - at;
        return;
      }
      if (this.state === 'header') {
        const n = Math.min(BLOCK - this.blockFill, chunk.length - at);
        chunk.copy(this.block, this.blockFill, at, at + n);
        this.blockFill += n;
        at += n;
        this.offset += n;
        if (this.blockFill === BLOCK) {
          this.blockFill = 0;
          this.onHeader(this.block);
        }
        continue;
      }
      const n = Math.min(this.remaining, chunk.length - at);
      const slice = chunk.subarray(at, at + n);
      if (this.state === 'extension') {
        this.headerHash.update(slice);
        const ext = this.extension!;
        if (ext.bytes < MAX_EXTENSION_BYTES) ext.chunks.push(Buffer.from(slice));
        ext.bytes += n;
      } else {
        this.dataHash.update(slice);
      }
      this.remaining -= n;
      at += n;
      this.offset += n;
      if (this.remaining === 0) this.endData();
    }
  }

  finish(): TarIndex {
    if (this.state === 'extension' || (this.state === 'data' && this.remaining > 0) || this.blockFill !== 0) {
      throw new TarIndexError(`the tar stream ends inside an entry (at byte ${this.offset})`);
    }
    return { records: this.records, trailerStart: this.trailerStart >= 0 ? this.trailerStart : this.offset, size: this.offset };
  }

  private onHeader(block: Buffer): void {
    const start = this.offset - BLOCK;
    if (block.every((b) => b === 0)) {
      if (this.recordOpen) throw new TarIndexError(`an extension header at byte ${this.recordStart} is followed by the end of the archive`);
      this.trailerStart = start;
      this.state = 'trailer';
      return;
    }
    if (!checksumOk(block)) throw new TarIndexError(`the tar header at byte ${start} has a bad checksum`);
    if (!this.recordOpen) {
      this.recordStart = start;
      this.recordOpen = true;
    }
    this.headerHash.update(block);
    const type = String.fromCharCode(block[156] || 0x30);
    const size = numeric(block, 124, 12);
    const padded = Math.ceil(size / BLOCK) * BLOCK;
    if (type === 'x' || type === 'L' || type === 'K') {
      if (padded === 0) return;
      this.extension = { type, chunks: [], bytes: 0 };
      this.state = 'extension';
      this.remaining = padded;
      this.extensionSize = size;
      return;
    }
    const name = cString(block, 0, 100);
    const prefix = block.subarray(257, 262).toString('latin1') === 'ustar' ? cString(block, 345, 155) : '';
    const path = this.pending.path ?? (prefix ? `${prefix}/${name}` : name);
    const realSize = this.pending.size ?? size;
    this.pending = {};
    // As Go's archive/tar (which wrote the layer) reads it: these types never carry data; pax may
    // give the true size of a huge file.
    const dataPadded = HEADER_ONLY.has(type) ? 0 : Math.ceil(realSize / BLOCK) * BLOCK;
    this.current = { start: this.recordStart, dataStart: this.offset, path, type, size: realSize, mode: numeric(block, 100, 8) & 0o7777 };
    this.remaining = dataPadded;
    this.state = 'data';
    if (dataPadded === 0) this.endData();
  }

  private recordOpen = false;
  private extensionSize = 0;

  private endData(): void {
    if (this.state === 'extension') {
      const ext = this.extension!;
      this.extension = null;
      this.state = 'header';
      if (ext.bytes > MAX_EXTENSION_BYTES) throw new TarIndexError(`an extension header at byte ${this.recordStart} is larger than ${MAX_EXTENSION_BYTES} bytes`);
      const text = Buffer.concat(ext.chunks).subarray(0, this.extensionSize);
      if (ext.type === 'L') this.pending.path = cString(text, 0, text.length);
      else if (ext.type === 'x') Object.assign(this.pending, parsePax(text));
      return;
    }
    const c = this.current!;
    this.records.push({ ...c, end: this.offset, headerHash: short(this.headerHash), dataHash: short(this.dataHash) });
    this.current = null;
    this.headerHash = createHash('sha256');
    this.dataHash = createHash('sha256');
    this.recordOpen = false;
    this.state = 'header';
  }
}

/**
 * 128 bits of a sha256 are plenty to match entries (and a false match could only make a wrong
 * rebuild, which the layer's own diffID refuses); a layer of 500 000 files keeps its index small.
 */
function short(hash: Hash): string {
  return hash.digest('base64').slice(0, 22);
}

/** Indexes a whole tar stream. */
export async function indexTar(stream: AsyncIterable<Buffer>): Promise<TarIndex> {
  const indexer = new TarIndexer();
  for await (const chunk of stream) indexer.push(chunk);
  return indexer.finish();
}

function checksumOk(block: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i]!;
  const text = block.subarray(148, 156).toString('latin1').replace(/[\0 ]+$/, '').trim();
  return /^[0-7]+$/.test(text) && parseInt(text, 8) === sum;
}
