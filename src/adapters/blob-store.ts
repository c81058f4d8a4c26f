/**
 * Writes a bundle's files: layers as zstd blobs, content-addressed, cut into parts that a FAT32
 * stick can hold; small JSON and compose files as they are. Every byte is hashed as it is written,
 * so the manifest's file list comes from what actually reached the disk, with no second read.
 */
import { createHash, type Hash } from 'node:crypto';
import { chmod, mkdir, open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable, Transform, Writable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { hexOf, sha256Digest } from '../core/digest.js';
import type { BlobPart, FileEntry, LayerBlob } from '../core/manifest.js';
import { LAYER_MEDIA_TYPE } from '../core/manifest.js';
import { copyHashed } from './fs.js';
import { zstdCompressorFactory } from './zstd.js';

export interface CompressOptions {
  level: number;
  workers: number;
  maxPartSize: number;
}

export interface WrittenLayer {
  diffId: string;
  size: number;
  /** null when `keep` said the targets hold this layer already. */
  blob: LayerBlob | null;
}

/** Counts and hashes what flows through, unchanged; only counts when `hashing` is false. */
export class HashingPassThrough extends Transform {
  readonly hash: Hash = createHash('sha256');
  bytes = 0;

  constructor(
    private readonly onBytes?: (total: number) => void,
    private readonly hashing = true,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.hashing) this.hash.update(chunk);
    this.bytes += chunk.length;
    this.onBytes?.(this.bytes);
    cb(null, chunk);
  }
}

/**
 * Waits for `pending` while `input`, already flowing, may fail: its error is held (the stream keeps
 * it as `errored`, and the pipeline built next reports it) instead of being thrown as an unhandled
 * 'error' event before anything listens. A small layer can fail that fast.
 */
async function heldErrors<T>(input: AsyncIterable<Buffer> | Readable, pending: Promise<T>): Promise<T> {
  if (!(input instanceof Readable)) return pending;
  const hold = () => undefined;
  input.on('error', hold);
  try {
    return await pending;
  } finally {
    input.off('error', hold);
  }
}

/**
 * A sink that rotates to a new file every `maxPartSize` bytes, hashing the whole and each part.
 * Almost every blob is one part, whose digest is the whole's: the first part has no hash of its
 * own (its digest is taken from a copy of the whole's state when the second part begins), so the
 * common case hashes each compressed byte once, not twice.
 */
export class PartSink extends Writable {
  readonly whole: Hash = createHash('sha256');
  readonly parts: { file: string; size: number; hash: Hash | null; sha256?: string }[] = [];
  size = 0;
  private fh: FileHandle | undefined;

  private mirrorFh: FileHandle | undefined;

  constructor(
    private readonly tmpBase: string,
    private readonly maxPartSize: number,
    /** Also written whole to this file (the layer cache's temp file): the compressed bytes are not read back. */
    private readonly mirror: string | undefined,
    /**
     * Takes a finished part's handle, to fsync and close it off the write path (BlobStoreWriter
     * awaits them all before the bundle is sealed).
     */
    private readonly syncLater: (fh: FileHandle, file: string) => void,
  ) {
    super({ highWaterMark: 1 << 20 });
  }

  /** The current part's file is complete: handed on to be made durable. */
  private finishPart(): void {
    const fh = this.fh!;
    this.fh = undefined;
    this.syncLater(fh, this.parts.at(-1)!.file);
  }

  private async openPart(): Promise<FileHandle> {
    if (this.fh) this.finishPart();
    const first = this.parts[0];
    if (this.parts.length === 1 && first) first.sha256 = this.whole.copy().digest('hex');
    const file = `${this.tmpBase}.${this.parts.length}`;
    this.fh = await open(file, 'wx');
    this.parts.push({ file, size: 0, hash: this.parts.length === 0 ? null : createHash('sha256') });
    return this.fh;
  }

  /** Each part's sha256, once the stream has ended. */
  partDigests(): string[] {
    return this.parts.map((p, i) => p.sha256 ?? (i === 0 ? this.whole.copy().digest('hex') : p.hash!.digest('hex')));
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.writeChunk(chunk).then(() => cb(), cb);
  }

  private async writeChunk(chunk: Buffer): Promise<void> {
    if (this.mirror) {
      this.mirrorFh ??= await open(this.mirror, 'wx');
      await this.mirrorFh.write(chunk);
    }
    this.size += chunk.length;
    let offset = 0;
    while (offset < chunk.length) {
      let part = this.parts.at(-1);
      if (!this.fh || !part || part.size >= this.maxPartSize) {
        await this.openPart();
        part = this.parts.at(-1)!;
      }
      const n = Math.min(chunk.length - offset, this.maxPartSize - part.size);
      const slice = chunk.subarray(offset, offset + n);
      // Whole and part are fed slice by slice, so that at a part boundary the whole's state is
      // exactly the bytes before it.
      this.whole.update(slice);
      part.hash?.update(slice);
      await this.fh!.write(slice).catch((e: unknown) => {
        throw withPath(e, part.file);
      });
      part.size += n;
      offset += n;
    }
  }

  override _final(cb: (e?: Error | null) => void): void {
    const finish = async () => {
      if (this.parts.length === 0) await this.openPart(); // an empty stream still makes a (zero-byte) file
      this.finishPart();
      if (this.mirror) {
        this.mirrorFh ??= await open(this.mirror, 'wx');
        await this.mirrorFh.close();
        this.mirrorFh = undefined;
      }
    };
    finish().then(() => cb(), cb);
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    const fh = this.fh;
    const mirror = this.mirrorFh;
    this.fh = undefined;
    this.mirrorFh = undefined;
    Promise.all([fh?.close(), mirror?.close()]).then(
      () => cb(err),
      () => cb(err),
    );
  }
}

export class BlobStoreWriter {
  private readonly entries = new Map<string, FileEntry>();
  private tmpCounter = 0;
  private compressor: (() => Transform) | undefined;
  /**
   * Blob files being fsynced while the next layer is compressed: a layer's pipeline waited for its
   * own fsync before, and layer after layer that was a quarter of a second of a cold create here.
   */
  private readonly syncing: Promise<void>[] = [];
  private syncFailure: unknown;

  constructor(
    readonly root: string,
    private readonly options: CompressOptions,
  ) {}

  /** Every file written so far, for the manifest. */
  files(): FileEntry[] {
    return [...this.entries.values()].sort((a, b) => a.path.localeCompare(b.path));
  }

  async init(): Promise<void> {
    await mkdir(join(this.root, 'blobs', 'sha256'), { recursive: true });
    await mkdir(join(this.root, '.tmp'), { recursive: true });
  }

  /** Removes the scratch directory; called before the bundle is sealed. */
  async finishScratch(): Promise<void> {
    await rm(join(this.root, '.tmp'), { recursive: true, force: true });
  }

  /** Every blob written so far is on the medium (fsynced); throws the first failure to make one so. */
  async synced(): Promise<void> {
    await Promise.all(this.syncing.splice(0));
    if (this.syncFailure) throw this.syncFailure;
  }

  private readonly syncLater = (fh: FileHandle, file: string): void => {
    const done = fh
      .sync()
      .catch((e: unknown) => void (this.syncFailure ??= withPath(e, file)))
      .finally(() => fh.close().catch(() => undefined));
    this.syncing.push(done);
  };

  /**
   * Uncompressed tar in, zstd blob out: one pass computes the diffID, compresses, and hashes and
   * writes the compressed bytes. `onBytes` reports uncompressed bytes consumed.
   */
  async writeLayer(input: Readable, onBytes?: (total: number) => void, keep: (diffId: string) => boolean = () => true, mirror?: string, verifiedAs?: string): Promise<WrittenLayer> {
    // An input that fails unless its bytes are layer `verifiedAs` (a layer read from the engine's
    // store) is not hashed a second time: a pipeline that ends without error had exactly those.
    const hasher = new HashingPassThrough(onBytes, verifiedAs === undefined);
    this.compressor ??= await heldErrors(input, zstdCompressorFactory(this.options));
    const compressor = this.compressor();
    const sink = this.newSink(mirror);
    try {
      await pipeline(input, hasher, compressor, sink);
    } catch (e) {
      await discard(sink);
      throw e;
    }
    const diffId = verifiedAs ?? `sha256:${hasher.hash.digest('hex')}`;
    if (!keep(diffId)) {
      // Only known to be held once hashed (classic save archives do not name layers by digest).
      await discard(sink);
      return { diffId, size: hasher.bytes, blob: null };
    }
    return { diffId, size: hasher.bytes, blob: await this.commit(sink) };
  }

  /** Any other stream stored as a blob is (a layer delta): compressed, hashed, cut into parts. */
  async writeBlob(input: AsyncIterable<Buffer> | Readable, mediaType: string): Promise<LayerBlob> {
    this.compressor ??= await heldErrors(input, zstdCompressorFactory(this.options));
    const sink = this.newSink();
    try {
      await pipeline(input, this.compressor(), sink);
    } catch (e) {
      await discard(sink);
      throw e;
    }
    return { ...(await this.commit(sink)), mediaType };
  }

  /** A layer that needs no compression (held, or its blob comes from the cache): only hashed on its way through. */
  async hashLayer(input: Readable, onBytes?: (total: number) => void): Promise<{ diffId: string; size: number }> {
    const hasher = new HashingPassThrough(onBytes);
    await pipeline(
      input,
      hasher,
      new Writable({
        highWaterMark: 1 << 20,
        write: (_c, _e, cb) => cb(),
      }),
    );
    return { diffId: `sha256:${hasher.hash.digest('hex')}`, size: hasher.bytes };
  }

  /**
   * An already compressed blob (the layer cache's) copied in, cut into parts exactly as a fresh
   * compression would be, and hashed on the way: null (and nothing kept) when its digest is not
   * `digest`. Staged only: `commitStaged` places it once the layer it stands for is confirmed.
   */
  async stageBlob(src: Readable, digest: string): Promise<StagedBlob | null> {
    const sink = this.newSink();
    try {
      await pipeline(src, sink);
    } catch (e) {
      await discard(sink);
      throw e;
    }
    if (`sha256:${sink.whole.copy().digest('hex')}` !== digest) {
      await discard(sink);
      return null;
    }
    return { sink };
  }

  async commitStaged(staged: StagedBlob): Promise<LayerBlob> {
    return this.commit(staged.sink);
  }

  async discardStaged(staged: StagedBlob): Promise<void> {
    await discard(staged.sink);
  }

  private newSink(mirror?: string): PartSink {
    return new PartSink(join(this.root, '.tmp', `layer-${process.pid}-${this.tmpCounter++}`), this.options.maxPartSize, mirror, this.syncLater);
  }

  private async commit(sink: PartSink): Promise<LayerBlob> {
    const partDigests = sink.partDigests();
    const hex = sink.whole.digest('hex');
    const digest = `sha256:${hex}`;
    const blob: LayerBlob = { digest, size: sink.size, mediaType: LAYER_MEDIA_TYPE };
    const base = `blobs/sha256/${hex}`;

    if (sink.parts.length === 1) {
      await this.place(sink.parts[0]!.file, base, sink.size, hex);
      blob.path = base;
    } else {
      const parts: BlobPart[] = [];
      for (const [i, p] of sink.parts.entries()) {
        const path = `${base}.part-${String(i + 1).padStart(4, '0')}`;
        const sha256 = partDigests[i]!;
        await this.place(p.file, path, p.size, sha256);
        parts.push({ path, size: p.size, sha256 });
      }
      blob.parts = parts;
    }
    return blob;
  }

  /**
   * Drops layer blobs written so far whose digest is not in `digests`: a cached blob taken for a
   * layer that turned out to be another must not ride along unlisted by any image.
   */
  async keepOnly(digests: Set<string>): Promise<void> {
    for (const path of [...this.entries.keys()]) {
      const m = /^blobs\/sha256\/([0-9a-f]{64})(\.part-\d+)?$/.exec(path);
      if (!m || digests.has(`sha256:${m[1]}`)) continue;
      await rm(join(this.root, path), { force: true });
      this.entries.delete(path);
    }
  }

  /** Small files (configs, OCI manifests, compose files) at a fixed bundle path. */
  async writeFile(path: string, data: Buffer): Promise<FileEntry> {
    const sha256 = hexOf(sha256Digest(data));
    const existing = this.entries.get(path);
    if (existing) {
      if (existing.sha256 !== sha256) throw new Error(`bundle file ${path} would be written twice with different content`);
      return existing;
    }
    const target = join(this.root, path);
    await mkdir(dirname(target), { recursive: true });
    const fh = await open(target, 'wx');
    try {
      await fh.writeFile(data);
      await fh.sync();
    } catch (e) {
      throw withPath(e, target);
    } finally {
      await fh.close();
    }
    const entry = { path, size: data.length, sha256 };
    this.entries.set(path, entry);
    return entry;
  }

  /**
   * A file copied in as it is, executable (the ferry executable a bundle carries, run from the
   * stick): hashed from the same read that copies it, so the listed digest is what was written.
   */
  async copyExecutable(src: string, path: string): Promise<FileEntry> {
    const target = join(this.root, path);
    try {
      const { sha256, bytes } = await copyHashed(src, target, Number.MAX_SAFE_INTEGER);
      await chmod(target, 0o755);
      const entry = { path, size: bytes, sha256 };
      this.entries.set(path, entry);
      return entry;
    } catch (e) {
      throw withPath(e, target);
    }
  }

  private async place(tmpFile: string, path: string, size: number, sha256: string): Promise<void> {
    if (this.entries.has(path)) {
      // The same compressed bytes already stored (the same layer reached twice): keep one.
      await rm(tmpFile, { force: true });
      return;
    }
    const target = join(this.root, path);
    const exists = await stat(target).then(
      () => true,
      () => false,
    );
    if (exists) await rm(tmpFile, { force: true });
    else await rename(tmpFile, target);
    this.entries.set(path, { path, size, sha256 });
  }
}

/** A blob copied into the bundle's scratch directory, not yet placed. */
export interface StagedBlob {
  readonly sink: PartSink;
}

async function discard(sink: PartSink): Promise<void> {
  await Promise.all(sink.parts.map((p) => rm(p.file, { force: true })));
}

/** A failed write names its file, as a failed open does: the operator hears which file the medium refused. */
function withPath(e: unknown, file: string): unknown {
  if (e && typeof e === 'object' && !('path' in e)) (e as NodeJS.ErrnoException).path = file;
  return e;
}
