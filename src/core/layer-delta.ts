/**
 * Layer deltas: a changed layer carried as "these byte ranges of a layer the host holds, and these
 * new bytes", instead of whole. The delta names byte ranges, not files: the rebuilt layer is the
 * concatenation of what the ops give, so tar headers, padding and end-of-archive blocks come out
 * exactly as the engine wrote them, and its sha256 equals the diffID by construction.
 *
 * Format (the content of a delta file, before zstd):
 *   "FERRYDELTA1\n"                          12 bytes
 *   u32 BE n, then n bytes of JSON           DeltaHeader
 *   ops, each one byte then big-endian u64s:
 *     0x01 COPY offset length                reference bytes [offset, offset+length)
 *     0x02 DATA length, then length bytes    new bytes
 *     0x00 END                               nothing may follow
 * COPY ranges increase and never overlap, so the reference is read once, front to back, as the
 * engine's save streams it; every rule is checked as the ops are read, so a hostile delta is
 * refused in time and memory bounded by its own size.
 */
import { createHash } from 'node:crypto';
import { isDigest } from './digest.js';
import type { TarIndex, TarRecord } from './tar-index.js';

export const DELTA_MAGIC = Buffer.from('FERRYDELTA1\n', 'latin1');
export const DELTA_MEDIA_TYPE = 'application/vnd.ferry.layer.delta.v1+zstd';
const MAX_HEADER_BYTES = 8 * 1024 * 1024;
/** Change lists longer than this are cut (the rest is counted): the header is read whole. */
export const MAX_LISTED_CHANGES = 20_000;
const OP_END = 0x00;
const OP_COPY = 0x01;
const OP_DATA = 0x02;

export interface DeltaFile {
  path: string;
  size: number;
  mode: number;
  type: string;
}

export interface DeltaChanges {
  added: DeltaFile[];
  changed: DeltaFile[];
  removed: string[];
  /** How many entries each list left out (0 unless over MAX_LISTED_CHANGES). */
  omitted: number;
}

export interface DeltaHeader {
  reference: string;
  referenceSize: number;
  target: string;
  targetSize: number;
  changes: DeltaChanges;
}

export type DeltaOp = { kind: 'copy'; offset: number; length: number } | { kind: 'data'; from: number; length: number };

export interface DeltaPlan {
  ops: DeltaOp[];
  copied: number;
  literal: number;
  changes: DeltaChanges;
}

export class DeltaError extends Error {
  constructor(
    /** Which rule the delta or its reference broke. */
    readonly reason: 'format' | 'range' | 'size' | 'reference' | 'target' | 'truncated',
    message: string,
  ) {
    super(message);
  }
}

/**
 * The delta that rebuilds `target` from `reference`: each entry of the target that the reference
 * holds byte for byte is copied whole; one whose data is the same under a changed header (a new
 * mtime, owner or mode) copies only its data; everything else is new bytes. Matches are taken
 * front to back so the reference streams once; an entry found only behind the cursor is new.
 */
export function planDelta(reference: TarIndex, target: TarIndex): DeltaPlan {
  const exact = groupBy(reference.records, (r) => `${r.headerHash}:${r.dataHash}`);
  const sameData = groupBy(
    reference.records.filter((r) => r.end > r.dataStart),
    (r) => `${r.end - r.dataStart}:${r.dataHash}`,
  );
  const ops: DeltaOp[] = [];
  const push = (op: DeltaOp) => {
    const last = ops.at(-1);
    if (last?.kind === 'copy' && op.kind === 'copy' && last.offset + last.length === op.offset) last.length += op.length;
    else if (last?.kind === 'data' && op.kind === 'data' && last.from + last.length === op.from) last.length += op.length;
    else ops.push({ ...op });
  };
  let cursor = 0;
  const refPaths = new Map(reference.records.map((r) => [r.path, r]));
  const changes: DeltaChanges = { added: [], changed: [], removed: [], omitted: 0 };
  const note = (list: DeltaFile[], t: TarRecord) => {
    if (list.length < MAX_LISTED_CHANGES) list.push({ path: t.path, size: t.size, mode: t.mode, type: t.type });
    else changes.omitted++;
  };
  for (const t of target.records) {
    const whole = firstFrom(exact.get(`${t.headerHash}:${t.dataHash}`), cursor, (r) => r.start);
    if (whole) {
      push({ kind: 'copy', offset: whole.start, length: whole.end - whole.start });
      cursor = whole.end;
      if (refPaths.get(t.path) !== whole) note(changes.changed, t);
      continue;
    }
    const data = t.end > t.dataStart ? firstFrom(sameData.get(`${t.end - t.dataStart}:${t.dataHash}`), cursor, (r) => r.dataStart) : undefined;
    if (data) {
      push({ kind: 'data', from: t.start, length: t.dataStart - t.start });
      push({ kind: 'copy', offset: data.dataStart, length: data.end - data.dataStart });
      cursor = data.end;
    } else {
      push({ kind: 'data', from: t.start, length: t.end - t.start });
    }
    note(refPaths.has(t.path) ? changes.changed : changes.added, t);
  }
  if (target.size > target.trailerStart) push({ kind: 'data', from: target.trailerStart, length: target.size - target.trailerStart });
  const targetPaths = new Set(target.records.map((r) => r.path));
  for (const r of reference.records) {
    if (targetPaths.has(r.path)) continue;
    if (changes.removed.length < MAX_LISTED_CHANGES) changes.removed.push(r.path);
    else changes.omitted++;
  }
  const copied = ops.reduce((n, op) => n + (op.kind === 'copy' ? op.length : 0), 0);
  return { ops, copied, literal: target.size - copied, changes };
}

/** How many paths two layers share: what picks the best reference among several held layers. */
export function pathsInCommon(a: TarIndex, b: TarIndex): number {
  const paths = new Set(a.records.map((r) => r.path));
  return b.records.reduce((n, r) => n + (paths.has(r.path) ? 1 : 0), 0);
}

/** The magic and header that start a delta file. */
export function encodeDeltaHeader(header: DeltaHeader): Buffer {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(json.length);
  return Buffer.concat([DELTA_MAGIC, len, json]);
}

export function encodeCopy(offset: number, length: number): Buffer {
  const b = Buffer.alloc(17);
  b[0] = OP_COPY;
  b.writeBigUInt64BE(BigInt(offset), 1);
  b.writeBigUInt64BE(BigInt(length), 9);
  return b;
}

export function encodeDataStart(length: number): Buffer {
  const b = Buffer.alloc(9);
  b[0] = OP_DATA;
  b.writeBigUInt64BE(BigInt(length), 1);
  return b;
}

export const END_OP = Buffer.from([OP_END]);

/**
 * The delta file's bytes (before zstd): the header, then the plan's ops with their literal bytes
 * taken from the target layer as it streams by (read once, front to back).
 */
export async function* encodeDelta(header: DeltaHeader, plan: DeltaPlan, target: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  yield encodeDeltaHeader(header);
  const reader = new ByteReader(target);
  for (const op of plan.ops) {
    if (op.kind === 'copy') {
      yield encodeCopy(op.offset, op.length);
      for await (const _ of reader.stream(op.length)) void _;
    } else {
      yield encodeDataStart(op.length);
      yield* reader.stream(op.length);
    }
  }
  if (!(await reader.atEnd())) throw new DeltaError('target', 'the layer is longer than its index said');
  yield END_OP;
}

export type DeltaEvent = { kind: 'header'; header: DeltaHeader } | { kind: 'copy'; offset: number; length: number } | { kind: 'data'; chunk: Buffer } | { kind: 'end' };

export interface DeltaExpectation {
  reference: string;
  referenceSize: number;
  target: string;
  targetSize: number;
}

/**
 * Reads a (decompressed) delta as events, checking every rule as it goes: the header matches what
 * the signed manifest says, COPY ranges increase and stay inside the reference, the ops give
 * exactly targetSize bytes, END comes once and last. Literal bytes stream through unbuffered.
 */
export async function* readDelta(input: AsyncIterable<Buffer>, expect: DeltaExpectation): AsyncGenerator<DeltaEvent> {
  const reader = new ByteReader(input);
  const header = await takeHeader(reader);
  for (const key of ['reference', 'referenceSize', 'target', 'targetSize'] as const) {
    if (header[key] !== expect[key]) throw new DeltaError('format', `the delta's header says ${key} ${String(header[key])}, the manifest ${String(expect[key])}`);
  }
  yield { kind: 'header', header };
  let produced = 0;
  let refCursor = 0;
  for (;;) {
    const op = await reader.take(1);
    if (!op) throw new DeltaError('truncated', `the delta ends after ${produced} of ${expect.targetSize} bytes, without its END`);
    if (op[0] === OP_END) {
      if (produced !== expect.targetSize) throw new DeltaError('size', `the delta gives ${produced} bytes, the layer has ${expect.targetSize}`);
      if (!(await reader.atEnd())) throw new DeltaError('format', 'bytes follow the delta\'s END');
      yield { kind: 'end' };
      return;
    }
    if (op[0] === OP_COPY) {
      const f = await reader.take(16);
      if (!f) throw new DeltaError('truncated', 'the delta ends inside a COPY');
      const offset = safe(f.readBigUInt64BE(0));
      const length = safe(f.readBigUInt64BE(8));
      if (length === 0) throw new DeltaError('range', 'a COPY of zero bytes');
      if (offset < refCursor) throw new DeltaError('range', `a COPY at ${offset} overlaps or goes back before ${refCursor}`);
      if (offset + length > expect.referenceSize) throw new DeltaError('range', `a COPY of [${offset}, ${offset + length}) reaches outside the reference's ${expect.referenceSize} bytes`);
      if (produced + length > expect.targetSize) throw new DeltaError('size', `the delta gives more than the layer's ${expect.targetSize} bytes`);
      refCursor = offset + length;
      produced += length;
      yield { kind: 'copy', offset, length };
      continue;
    }
    if (op[0] === OP_DATA) {
      const f = await reader.take(8);
      if (!f) throw new DeltaError('truncated', 'the delta ends inside a DATA');
      const length = safe(f.readBigUInt64BE(0));
      if (length === 0) throw new DeltaError('range', 'a DATA of zero bytes');
      if (produced + length > expect.targetSize) throw new DeltaError('size', `the delta gives more than the layer's ${expect.targetSize} bytes`);
      produced += length;
      for await (const chunk of reader.stream(length)) yield { kind: 'data', chunk };
      continue;
    }
    throw new DeltaError('format', `unknown delta op 0x${op[0]!.toString(16)}`);
  }
}

/**
 * The layer rebuilt from its delta and the reference's bytes (front to back, read once). The
 * reference is hashed whole and checked against its diffID, and the layer against its own; the
 * last chunk is held back until both hold, so a consumer never sees the end of a wrong layer.
 */
export async function* rebuildLayer(delta: AsyncIterable<Buffer>, reference: AsyncIterable<Buffer>, expect: DeltaExpectation): AsyncGenerator<Buffer> {
  const ref = new ByteReader(reference);
  const refHash = createHash('sha256');
  const outHash = createHash('sha256');
  let refAt = 0;
  let held: Buffer | null = null;
  const give = (chunk: Buffer): Buffer | null => {
    outHash.update(chunk);
    const prev = held;
    held = chunk;
    return prev;
  };
  const skip = async (n: number) => {
    for await (const c of ref.stream(n)) refHash.update(c);
    refAt += n;
  };
  for await (const ev of readDelta(delta, expect)) {
    if (ev.kind === 'copy') {
      if (ev.offset > refAt) await skipChecked(ev.offset - refAt);
      for await (const c of refStream(ev.length)) {
        const out = give(c);
        if (out) yield out;
      }
    } else if (ev.kind === 'data') {
      const out = give(ev.chunk);
      if (out) yield out;
    }
  }
  // The rest of the reference, for its hash: a reference that is not what it claims is named as such.
  await skipChecked(expect.referenceSize - refAt);
  if (!(await ref.atEnd())) throw new DeltaError('reference', `the engine's copy of reference layer ${expect.reference} is longer than ${expect.referenceSize} bytes`);
  const refGot = `sha256:${refHash.digest('hex')}`;
  if (refGot !== expect.reference) throw new DeltaError('reference', `the engine's copy of reference layer ${expect.reference} hashes to ${refGot}: it does not give that layer back byte for byte`);
  const got = `sha256:${outHash.digest('hex')}`;
  if (got !== expect.target) throw new DeltaError('target', `the layer rebuilt from its delta hashes to ${got}, not ${expect.target}`);
  if (held) yield held;

  async function skipChecked(n: number) {
    try {
      await skip(n);
    } catch (e) {
      throw refShort(e);
    }
  }
  async function* refStream(n: number): AsyncGenerator<Buffer> {
    try {
      for await (const c of ref.stream(n)) {
        refHash.update(c);
        yield c;
      }
    } catch (e) {
      throw refShort(e);
    }
    refAt += n;
  }
  function refShort(e: unknown): unknown {
    if (e instanceof DeltaError && e.reason === 'truncated') return new DeltaError('reference', `the engine's copy of reference layer ${expect.reference} is shorter than ${expect.referenceSize} bytes`);
    return e;
  }
}

/** Only the header of a (decompressed) delta: what changed, for `bundle diff` and `inspect`; the ops are not read. */
export async function readDeltaHeader(input: AsyncIterable<Buffer>): Promise<DeltaHeader> {
  return takeHeader(new ByteReader(input));
}

async function takeHeader(reader: ByteReader): Promise<DeltaHeader> {
  const magic = await reader.take(DELTA_MAGIC.length);
  if (!magic || !magic.equals(DELTA_MAGIC)) throw new DeltaError('format', 'not a ferry layer delta (bad magic)');
  const lenBuf = await reader.take(4);
  if (!lenBuf) throw new DeltaError('truncated', 'the delta ends inside its header');
  const len = lenBuf.readUInt32BE(0);
  if (len > MAX_HEADER_BYTES) throw new DeltaError('format', `the delta's header says ${len} bytes, more than ${MAX_HEADER_BYTES}`);
  const json = await reader.take(len);
  if (!json) throw new DeltaError('truncated', 'the delta ends inside its header');
  return parseHeader(json);
}

function parseHeader(json: Buffer): DeltaHeader {
  let doc: unknown;
  try {
    doc = JSON.parse(json.toString('utf8'));
  } catch (e) {
    throw new DeltaError('format', `the delta's header is not JSON: ${(e as Error).message}`);
  }
  const h = doc as Partial<DeltaHeader> | null;
  if (!h || typeof h !== 'object') throw new DeltaError('format', 'the delta\'s header is not an object');
  if (!isDigest(h.reference) || !isDigest(h.target)) throw new DeltaError('format', 'the delta\'s header lacks its reference or target digest');
  if (!Number.isSafeInteger(h.referenceSize) || !Number.isSafeInteger(h.targetSize) || h.referenceSize! < 0 || h.targetSize! < 0) {
    throw new DeltaError('format', 'the delta\'s header lacks its sizes');
  }
  const c = h.changes as Partial<DeltaChanges> | undefined;
  const files = (v: unknown): DeltaFile[] =>
    Array.isArray(v)
      ? v.filter((f): f is DeltaFile => !!f && typeof f === 'object' && typeof f.path === 'string' && Number.isSafeInteger(f.size) && Number.isSafeInteger(f.mode) && typeof f.type === 'string')
      : [];
  const changes: DeltaChanges = {
    added: files(c?.added),
    changed: files(c?.changed),
    removed: Array.isArray(c?.removed) ? c.removed.filter((p): p is string => typeof p === 'string') : [],
    omitted: Number.isSafeInteger(c?.omitted) ? c!.omitted! : 0,
  };
  return { reference: h.reference, referenceSize: h.referenceSize!, target: h.target, targetSize: h.targetSize!, changes };
}

function safe(n: bigint): number {
  if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw new DeltaError('range', `a delta field of ${n} is out of range`);
  return Number(n);
}

function groupBy<T>(items: T[], key: (t: T) => string): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    const list = out.get(k);
    if (list) list.push(item);
    else out.set(k, [item]);
  }
  return out;
}

/** The first item (sorted by `at`) at or after `cursor`. */
function firstFrom<T>(list: T[] | undefined, cursor: number, at: (t: T) => number): T | undefined {
  if (!list) return undefined;
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (at(list[mid]!) < cursor) lo = mid + 1;
    else hi = mid;
  }
  return list[lo];
}

/** Pull-based reads of exact byte counts from a chunked stream. */
class ByteReader {
  private readonly it: AsyncIterator<Buffer>;
  private buf: Buffer = Buffer.alloc(0);
  private done = false;

  constructor(input: AsyncIterable<Buffer>) {
    this.it = input[Symbol.asyncIterator]();
  }

  private async fill(): Promise<boolean> {
    if (this.done) return false;
    const r = await this.it.next();
    if (r.done) {
      this.done = true;
      return false;
    }
    this.buf = this.buf.length === 0 ? r.value : Buffer.concat([this.buf, r.value]);
    return true;
  }

  /** Exactly n bytes (small n), or null at the end of the stream. */
  async take(n: number): Promise<Buffer | null> {
    while (this.buf.length < n) if (!(await this.fill())) return null;
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** n bytes as chunks as they arrive; a stream that ends first is a truncated delta. */
  async *stream(n: number): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      if (this.buf.length === 0 && !(await this.fill())) throw new DeltaError('truncated', `the stream ended ${left} bytes early`);
      const k = Math.min(left, this.buf.length);
      const out = this.buf.subarray(0, k);
      this.buf = this.buf.subarray(k);
      left -= k;
      yield out;
    }
  }

  async atEnd(): Promise<boolean> {
    while (this.buf.length === 0) if (!(await this.fill())) return true;
    return false;
  }
}
