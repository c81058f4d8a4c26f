/**
 * A layer read straight from a classic Docker store on this machine (overlay2), without a
 * `docker save`. When the engine first unpacked the layer it kept the archive's tar-split: every
 * header, padding and end-of-archive block byte for byte, and for each file its name and size.
 * The file contents are in the layer's diff directory. Joined, they give back the layer's tar
 * exactly — what the engine itself does to export a layer — while Docker 20.10's save writes the
 * whole image out before its first byte. Whoever reads a layer this way checks it by hash as any
 * other reference; a store that does not give it back exactly is not used again (the caller falls
 * back to a save).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readFile, stat, type FileHandle } from 'node:fs/promises';
import { isAbsolute, join, normalize, sep } from 'node:path';
import { createInterface } from 'node:readline';
import { createGunzip } from 'node:zlib';
import { chainIds } from '../core/digest.js';

/** tar-split's entry kinds (github.com/vbatts/tar-split, archive/tar/storage). */
const FILE = 1;
const SEGMENT = 2;

interface TarSplitEntry {
  type: number;
  name?: string;
  /** The name's bytes, base64, when they are not UTF-8. */
  name_raw?: string;
  size?: number;
  /** SEGMENT: the raw archive bytes, base64. FILE: a CRC-64 of the content (the final hash checks instead). */
  payload?: string;
}

/** Where the store keeps one layer: its tar-split and its unpacked files. */
export interface StoredLayerPaths {
  tarSplit: string;
  diffDir: string;
}

/**
 * The store paths of layer `diffId` of an image whose layers are `imageDiffIds`, under the engine's
 * data root; null when this machine does not hold it that way (another driver, a containerd image
 * store, a remote engine, no permission to read the store).
 */
export async function storedLayerPaths(dataRoot: string, driver: string, imageDiffIds: readonly string[], diffId: string): Promise<StoredLayerPaths | null> {
  if (driver !== 'overlay2' || !isAbsolute(dataRoot)) return null;
  const at = imageDiffIds.indexOf(diffId);
  if (at < 0) return null;
  const chain = chainIds(imageDiffIds.slice(0, at + 1))[at]!;
  const layerDb = join(dataRoot, 'image', driver, 'layerdb', 'sha256', chain.slice('sha256:'.length));
  try {
    // The layer database says which layer this chain is: it must be the one asked for.
    if ((await readFile(join(layerDb, 'diff'), 'utf8')).trim() !== diffId) return null;
    const cacheId = (await readFile(join(layerDb, 'cache-id'), 'utf8')).trim();
    if (!/^[0-9a-f]{64}$/.test(cacheId)) return null;
    const paths = { tarSplit: join(layerDb, 'tar-split.json.gz'), diffDir: join(dataRoot, driver, cacheId, 'diff') };
    await Promise.all([stat(paths.tarSplit), stat(paths.diffDir)]);
    return paths;
  } catch {
    return null;
  }
}

/** Files at most this big are read ahead, whole, while earlier ones are being handed on. */
const READ_AHEAD_FILE = 1 << 20;
/** Bytes and entries read ahead at most: what the read-ahead may hold in memory. */
const READ_AHEAD_BYTES = 8 << 20;
const READ_AHEAD_ENTRIES = 256;

/**
 * The layer's tar, reassembled front to back: segments as recorded, each file's content read from
 * the diff directory at exactly its recorded size. A dependency layer is thousands of small files,
 * and one open-read-close after another spends its time waiting on each: small files are read
 * ahead, several at once, up to READ_AHEAD_BYTES (a few hundred files); a big one is streamed
 * when its turn comes. Memory stays bounded whatever the layer's size.
 */
export async function* readStoredLayer(paths: StoredLayerPaths): AsyncGenerator<Buffer> {
  const lines = createInterface({ input: createReadStream(paths.tarSplit).pipe(createGunzip()), crlfDelay: Infinity })[Symbol.asyncIterator]();
  const ahead: { e: TarSplitEntry; content?: Promise<Buffer> }[] = [];
  let aheadBytes = 0;
  let ended = false;
  const fill = async () => {
    while (!ended && ahead.length < READ_AHEAD_ENTRIES && aheadBytes < READ_AHEAD_BYTES) {
      const next = await lines.next();
      if (next.done) {
        ended = true;
        break;
      }
      if (next.value.length === 0) continue;
      const e = JSON.parse(next.value) as TarSplitEntry;
      const size = e.size ?? 0;
      if (e.type === FILE && size > 0 && size <= READ_AHEAD_FILE) {
        const content = wholeFile(paths.diffDir, e, size);
        content.catch(() => undefined); // awaited, and its error thrown, when its turn comes
        aheadBytes += size;
        ahead.push({ e, content });
      } else {
        ahead.push({ e });
      }
    }
  };
  for (;;) {
    await fill();
    const item = ahead.shift();
    if (!item) return;
    const { e, content } = item;
    if (e.type === SEGMENT) {
      if (e.payload) yield Buffer.from(e.payload, 'base64');
    } else if (e.type === FILE) {
      if (content) {
        const bytes = await content;
        aheadBytes -= bytes.length;
        yield bytes;
      } else if ((e.size ?? 0) > 0) {
        yield* fileContent(paths.diffDir, e, e.size!);
      }
    } else {
      throw new Error(`tar-split ${paths.tarSplit}: unknown entry type ${e.type}`);
    }
  }
}

/** readStoredLayer, hashed on the way: fails at the end unless the bytes were layer `diffId`. */
export async function* readStoredLayerChecked(paths: StoredLayerPaths, diffId: string): AsyncGenerator<Buffer> {
  const hash = createHash('sha256');
  for await (const chunk of readStoredLayer(paths)) {
    hash.update(chunk);
    yield chunk;
  }
  const got = `sha256:${hash.digest('hex')}`;
  if (got !== diffId) throw new Error(`the layer store's files give ${got}, not layer ${diffId}`);
}

/** The file an entry names, opened inside the layer's directory (never outside it). */
async function openEntry(diffDir: string, e: TarSplitEntry): Promise<{ name: string; file: FileHandle }> {
  // A name that is not UTF-8 is opened by its bytes; latin1 keeps one character per byte for the check.
  const raw = e.name_raw !== undefined ? Buffer.from(e.name_raw, 'base64') : null;
  const name = raw ? raw.toString('latin1') : (e.name ?? '');
  const relative = normalize(name);
  // The store is the engine's own, but a name must still never lead out of the layer's directory.
  if (relative === '..' || relative.startsWith(`..${sep}`) || isAbsolute(relative)) throw new Error(`tar-split names ${JSON.stringify(name)}, outside the layer`);
  return { name, file: await open(raw ? Buffer.concat([Buffer.from(`${diffDir}${sep}`), raw]) : join(diffDir, relative), 'r') };
}

async function wholeFile(diffDir: string, e: TarSplitEntry, size: number): Promise<Buffer> {
  const { name, file } = await openEntry(diffDir, e);
  try {
    const buffer = Buffer.allocUnsafe(size);
    let at = 0;
    while (at < size) {
      const { bytesRead } = await file.read(buffer, at, size - at, at);
      if (bytesRead === 0) throw shorter(name, size);
      at += bytesRead;
    }
    return buffer;
  } finally {
    await file.close();
  }
}

async function* fileContent(diffDir: string, e: TarSplitEntry, size: number): AsyncGenerator<Buffer> {
  const { name, file } = await openEntry(diffDir, e);
  try {
    let left = size;
    while (left > 0) {
      const buffer = Buffer.allocUnsafe(Math.min(left, 1 << 20));
      const { bytesRead } = await file.read(buffer, 0, buffer.length, size - left);
      if (bytesRead === 0) throw shorter(name, size);
      left -= bytesRead;
      yield bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead);
    }
  } finally {
    await file.close();
  }
}

const shorter = (name: string, size: number) => new Error(`${name} in the layer store is shorter than the ${size} bytes its archive had`);
