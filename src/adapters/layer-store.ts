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
import { open, readFile, stat } from 'node:fs/promises';
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

/**
 * The layer's tar, reassembled front to back: segments as recorded, each file's content read from
 * the diff directory at exactly its recorded size. Memory stays at one read buffer whatever the
 * layer's size.
 */
export async function* readStoredLayer(paths: StoredLayerPaths): AsyncGenerator<Buffer> {
  const lines = createInterface({ input: createReadStream(paths.tarSplit).pipe(createGunzip()), crlfDelay: Infinity });
  for await (const line of lines) {
    if (line.length === 0) continue;
    const e = JSON.parse(line) as TarSplitEntry;
    if (e.type === SEGMENT) {
      if (e.payload) yield Buffer.from(e.payload, 'base64');
    } else if (e.type === FILE) {
      const size = e.size ?? 0;
      if (size > 0) yield* fileContent(paths.diffDir, e, size);
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

async function* fileContent(diffDir: string, e: TarSplitEntry, size: number): AsyncGenerator<Buffer> {
  // A name that is not UTF-8 is opened by its bytes; latin1 keeps one character per byte for the check.
  const raw = e.name_raw !== undefined ? Buffer.from(e.name_raw, 'base64') : null;
  const name = raw ? raw.toString('latin1') : (e.name ?? '');
  const relative = normalize(name);
  // The store is the engine's own, but a name must still never lead out of the layer's directory.
  if (relative === '..' || relative.startsWith(`..${sep}`) || isAbsolute(relative)) throw new Error(`tar-split names ${JSON.stringify(name)}, outside the layer`);
  const file = await open(raw ? Buffer.concat([Buffer.from(`${diffDir}${sep}`), raw]) : join(diffDir, relative), 'r');
  try {
    let left = size;
    while (left > 0) {
      const buffer = Buffer.allocUnsafe(Math.min(left, 1 << 20));
      const { bytesRead } = await file.read(buffer, 0, buffer.length, size - left);
      if (bytesRead === 0) throw new Error(`${name} in the layer store is shorter than the ${size} bytes its archive had`);
      left -= bytesRead;
      yield bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead);
    }
  } finally {
    await file.close();
  }
}
