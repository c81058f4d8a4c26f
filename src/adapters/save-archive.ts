/**
 * Reads a `docker save` archive as it streams, in both layouts engines write:
 * - classic (Docker ≤ 24): `<v1id>/layer.tar`, `<config-hex>.json`, `manifest.json`;
 * - OCI-style (Docker 25+): `blobs/sha256/<hex>` for layers, configs and manifests, `index.json`,
 *   and a `manifest.json` in the classic shape that names blob paths;
 * - Podman's: `<diffID>.tar` layers and `<config>.json` at the top level.
 * Layers go to the handler as streams the moment they arrive; only small JSON is buffered. Which
 * layer belongs to which image is learned from manifest.json, which engines write last.
 */
import { posix } from 'node:path';
import { Readable } from 'node:stream';
import * as tar from 'tar-stream';
import { sha256Digest } from '../core/digest.js';

/** JSON entries (manifests, configs) larger than this are treated as layers, never buffered. */
const MAX_JSON_BYTES = 16 * 1024 * 1024;

export interface LayerInfo {
  /** The path of the layer in the archive. */
  path: string;
  /** Size of the entry in the archive (the uncompressed tar for classic, may be compressed for OCI). */
  size: number;
}

export interface SavedImage {
  /** Image ID: the sha256 of the config bytes. */
  id: string;
  /**
   * Other digests the engine may call this image by: on the containerd image store an image's ID
   * is the digest of its manifest (or of an index listing it), which OCI-style archives carry as
   * blobs; a classic store names images by config digest and needs none.
   */
  aliases: string[];
  config: Buffer;
  repoTags: string[];
  /** Archive paths of the layers, bottom first, symlinks resolved. */
  layerPaths: string[];
}

export class SaveArchiveError extends Error {}

export async function readSaveArchive<L>(
  archive: Readable,
  onLayer: (entry: Readable, info: LayerInfo) => Promise<L>,
  onEntryBytes?: (bytes: number) => void,
): Promise<{ images: SavedImage[]; layers: Map<string, L> }> {
  const extract = tar.extract();
  const layers = new Map<string, L>();
  const json = new Map<string, Buffer>();
  const links = new Map<string, string>();
  let consumed = 0;

  const feed = archive.pipe(extract);
  archive.on('error', (e) => extract.destroy(e));

  for await (const entry of feed) {
    const header = entry.header;
    const name = normalize(header.name);
    const size = header.size ?? 0;
    if (header.type === 'symlink' || header.type === 'link') {
      links.set(name, header.type === 'symlink' ? posix.normalize(posix.join(posix.dirname(name), header.linkname ?? '')) : normalize(header.linkname ?? ''));
      entry.resume();
      continue;
    }
    if (header.type !== 'file' && header.type !== 'contiguous-file') {
      entry.resume();
      continue;
    }
    // Podman's docker-archive names layers <diffID>.tar at the top level.
    const isClassicLayer = /^[0-9a-f]{64}\/layer\.tar$/.test(name) || /^[0-9a-f]{64}\.tar$/.test(name);
    const isBlob = /^blobs\/sha256\/[0-9a-f]{64}$/.test(name);
    const isTopJson = /^[^/]+\.json$/.test(name);

    if (isClassicLayer || (isBlob && size > MAX_JSON_BYTES)) {
      layers.set(name, await onLayer(Readable.from(entry), { path: name, size }));
    } else if (isBlob) {
      // A small blob may be a config, an image manifest or a small layer: only its bytes tell.
      const buf = await collect(Readable.from(entry), size);
      if (looksLikeJson(buf)) json.set(name, buf);
      else layers.set(name, await onLayer(Readable.from([buf]), { path: name, size }));
    } else if (isTopJson && size <= MAX_JSON_BYTES) {
      json.set(name, await collect(Readable.from(entry), size));
    } else {
      // Legacy metadata and entries newer engines add are not needed: skipped, not fatal.
      entry.resume();
    }
    consumed += size;
    onEntryBytes?.(consumed);
  }

  const manifestBytes = json.get('manifest.json');
  if (!manifestBytes) throw new SaveArchiveError('the engine\'s save archive has no manifest.json');
  let manifest: { Config?: unknown; RepoTags?: unknown; Layers?: unknown }[];
  try {
    manifest = JSON.parse(manifestBytes.toString('utf8'));
  } catch (e) {
    throw new SaveArchiveError(`the engine's manifest.json is not JSON: ${(e as Error).message}`);
  }
  if (!Array.isArray(manifest)) throw new SaveArchiveError('the engine\'s manifest.json is not a list');

  const resolve = (path: string): string => {
    let p = path;
    for (let i = 0; i < 16 && links.has(p); i++) p = links.get(p)!;
    return p;
  };
  const aliases = manifestAliases(json);
  const images: SavedImage[] = manifest.map((m, i) => {
    if (typeof m.Config !== 'string' || !Array.isArray(m.Layers)) {
      throw new SaveArchiveError(`manifest.json entry ${i} lacks Config or Layers`);
    }
    const configPath = resolve(normalize(m.Config));
    const config = json.get(configPath);
    if (!config) throw new SaveArchiveError(`the archive has no config ${m.Config}`);
    const layerPaths = m.Layers.map((l) => {
      const p = resolve(normalize(String(l)));
      if (!layers.has(p)) throw new SaveArchiveError(`the archive has no layer ${String(l)}`);
      return p;
    });
    const id = sha256Digest(config);
    return {
      id,
      aliases: aliases.get(id) ?? [],
      config,
      repoTags: Array.isArray(m.RepoTags) ? m.RepoTags.map(String) : [],
      layerPaths,
    };
  });
  return { images, layers };
}

/** Config digest → the manifest and index digests in the archive that lead to it. */
function manifestAliases(json: Map<string, Buffer>): Map<string, string[]> {
  const configOf = new Map<string, string>();
  const children = new Map<string, string[]>();
  for (const [name, buf] of json) {
    const m = /^blobs\/sha256\/([0-9a-f]{64})$/.exec(name);
    if (!m) continue;
    let doc: { config?: { digest?: unknown }; layers?: unknown; manifests?: { digest?: unknown }[] };
    try {
      doc = JSON.parse(buf.toString('utf8'));
    } catch {
      continue;
    }
    const digest = `sha256:${m[1]}`;
    if (typeof doc.config?.digest === 'string' && Array.isArray(doc.layers)) configOf.set(digest, doc.config.digest);
    else if (Array.isArray(doc.manifests)) children.set(digest, doc.manifests.map((c) => String(c?.digest)));
  }
  const out = new Map<string, string[]>();
  const add = (config: string, alias: string) => out.set(config, [...(out.get(config) ?? []), alias]);
  for (const [digest, config] of configOf) add(config, digest);
  for (const [index, list] of children) for (const child of list) if (configOf.has(child)) add(configOf.get(child)!, index);
  return out;
}

function normalize(name: string): string {
  return posix.normalize(name).replace(/^\.\//, '').replace(/^\/+/, '');
}

function looksLikeJson(buf: Buffer): boolean {
  for (const byte of buf.subarray(0, 64)) {
    if (byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09) continue;
    return byte === 0x7b; // "{"
  }
  return false;
}

async function collect(stream: Readable, expected: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of stream) {
    total += (chunk as Buffer).length;
    if (total > Math.max(expected, MAX_JSON_BYTES)) throw new SaveArchiveError('an archive entry is larger than its header says');
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks, total);
}
