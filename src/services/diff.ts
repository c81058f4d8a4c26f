/**
 * `ferry bundle diff OLD NEW`: what a change board reviews before a stick may go in. NEW is a
 * bundle; OLD the bundle it replaces, or a host inventory (what the host holds). Per image: its ID,
 * its layers by diffID, and for each layer NEW ships whole the files added, changed and removed;
 * then the compose file, the host overrides and the project files.
 *
 * Like inspect, diff is for looking: each bundle's signature is judged with the usual trust flags
 * and shown, and an untrusted bundle is still compared (exit 0). What diff reads is held to the
 * manifest as it is read (texts by size and sha256, layers by diffID): a stick whose bytes differ
 * from its manifest is refused with BUNDLE_INTEGRITY, as verify would.
 */
import { isDirectory, readBounded } from '../adapters/fs.js';
import { LayerMismatch, listLayerFiles, readLayerDeltaHeader } from '../adapters/layer-files.js';
import {
  compareCompose,
  compareLayerFiles,
  compareLayers,
  composeTexts,
  imagesOfInventory,
  imagesOfManifest,
  layerFilesFromDelta,
  matchImages,
  MAX_LISTED_FILES,
  worthReading,
  type ComposeDiff,
  type FilesBasis,
  type LayerFiles,
  type LayerRow,
  type SideImage,
} from '../core/bundle-diff.js';
import { MAX_INVENTORY_BYTES, parseInventory, type Inventory } from '../core/inventory.js';
import type { FerryManifest, LayerBlob, ManifestLayer } from '../core/manifest.js';
import type { DeltaHeader } from '../core/layer-delta.js';
import type { LayerListing } from '../core/tar-files.js';
import { UsageError, type Problem } from '../errors.js';
import { integrityFailure, judgeSignature, readBundleUnverified, readVerified, type TrustOptions } from './bundle.js';
import type { Reporter } from './reporter.js';

/** Files kept over all layers of one diff: each listing is capped too, this bounds their sum. */
const MAX_TOTAL_FILES = 1_000_000;

export interface SignatureVerdict {
  present: boolean;
  fingerprint: string | null;
  /** As inspect judges it: null when not judged (a signed bundle and no trust file at hand). */
  trusted: boolean | null;
  principals: string[];
  /** The error code verify and install would refuse it with. */
  code: string | null;
  problem: string | null;
}

export interface DiffBundleSide {
  kind: 'bundle';
  path: string;
  name: string;
  version: string;
  sequence: number;
  created: string;
  signature: SignatureVerdict;
}

export interface DiffInventorySide {
  kind: 'inventory';
  path: string;
  host: string;
  created: string;
  /** The stacks ferry installed on that host and their current release. */
  stacks: { stack: string; current: string | null; highestSequence: number }[];
}

export interface DiffLayer extends LayerRow {
  /** The files of the new layer against the old one; null when the layer is unchanged or removed, or its files cannot be read. */
  files: LayerFiles | null;
  /** Why files is null for an added or changed layer: a delta, or a layer the bundle does not ship. */
  filesUnavailable: string | null;
}

export interface DiffImage {
  status: 'unchanged' | 'changed' | 'added' | 'removed';
  old: { refs: string[]; id: string; services: string[] } | null;
  new: { refs: string[]; id: string; services: string[] } | null;
  /** Against an inventory: the host already holds the new image (by ID). Null against a bundle. */
  held: boolean | null;
  layers: DiffLayer[];
  counts: { unchanged: number; changed: number; added: number; removed: number };
}

export interface DiffResult {
  old: DiffBundleSide | DiffInventorySide;
  new: DiffBundleSide;
  images: DiffImage[];
  /** null against an inventory: a host inventory does not record compose files. */
  compose: ComposeDiff | null;
  composeUnknown: string | null;
  summary: {
    images: { unchanged: number; changed: number; added: number; removed: number };
    layers: { unchanged: number; changed: number; added: number; removed: number };
    files: { added: number; changed: number; removed: number };
    /** Some file lists were cut at the caps (MAX_LISTED_FILES per layer, a million in all). */
    truncated: boolean;
  };
}

interface OpenedSide {
  dir: string;
  manifest: FerryManifest;
  side: DiffBundleSide;
}

export async function diffBundles(oldPath: string, newPath: string, trust: TrustOptions, reporter: Reporter): Promise<DiffResult> {
  const next = await openSide(newPath, trust, reporter);
  const old = (await isDirectory(oldPath)) ? await openSide(oldPath, trust, reporter) : await readInventorySide(oldPath);
  const inventory = 'inventory' in old ? old.inventory : null;
  const oldBundle = 'manifest' in old ? old : null;
  const held = inventory ? new Set(inventory.layers) : null;
  const heldImages = inventory ? new Set(inventory.images.map((i) => i.id)) : null;

  let pairs = matchImages(inventory ? imagesOfInventory(inventory) : imagesOfManifest(oldBundle!.manifest), imagesOfManifest(next.manifest));
  // An inventory lists every image of the host: the ones NEW does not replace are not removed.
  if (inventory) pairs = pairs.filter((p) => p.new !== null);

  const reader = new LayerReader(reporter);
  const images: DiffImage[] = [];
  try {
    reader.plan(oldBundle, pairs);
    for (const p of pairs) images.push(await diffImage(p.old, p.new, held, heldImages, next, oldBundle, reader));
  } finally {
    reader.done();
  }

  let compose: ComposeDiff | null = null;
  if (oldBundle) compose = compareCompose(oldBundle.manifest, next.manifest, await readTexts(oldBundle), await readTexts(next));
  return {
    old: oldBundle ? oldBundle.side : old.side,
    new: next.side,
    images,
    compose,
    composeUnknown: oldBundle ? null : 'the old side is a host inventory: it records images and releases, not compose files',
    summary: summarize(images, reader.truncated),
  };
}

async function openSide(path: string, trust: TrustOptions, reporter: Reporter): Promise<OpenedSide> {
  const b = await readBundleUnverified(path);
  // Judged exactly as inspect judges it.
  const { trusted, principals, code, problem } = await judgeSignature(b, trust, reporter);
  const m = b.manifest;
  return {
    dir: b.dir,
    manifest: m,
    side: {
      kind: 'bundle',
      path: b.dir,
      name: m.name,
      version: m.version,
      sequence: m.sequence,
      created: m.created,
      signature: { present: b.signature !== null || b.signatureError !== null, fingerprint: b.signature?.fingerprint ?? null, trusted, principals, code, problem },
    },
  };
}

async function readInventorySide(path: string): Promise<{ inventory: Inventory; side: DiffInventorySide }> {
  let bytes: Buffer | null;
  try {
    bytes = await readBounded(path, MAX_INVENTORY_BYTES);
  } catch (e) {
    throw notFound(path, (e as Error).message);
  }
  if (!bytes) throw notFound(path, 'it does not exist');
  const inventory = parseInventory(bytes, path);
  return {
    inventory,
    side: {
      kind: 'inventory',
      path,
      host: inventory.host,
      created: inventory.created,
      stacks: inventory.releases.map((s) => ({ stack: s.stack, current: s.releases.find((r) => r.id === s.current)?.version ?? null, highestSequence: s.highestSequence })),
    },
  };
}

function notFound(path: string, why: string): UsageError {
  return new UsageError('BUNDLE_NOT_FOUND', `${path} is neither a bundle directory nor a readable host inventory: ${why}`, {
    hint: 'OLD is a bundle directory or the file `ferry host inventory --out` wrote; NEW is a bundle directory.',
  });
}

/** The manifest layer at a position of an image, to find its blob. */
function manifestLayer(m: FerryManifest, imageId: string, index: number): ManifestLayer | undefined {
  return m.images.find((im) => im.id === imageId)?.layers[index];
}

async function diffImage(
  old: SideImage | null,
  next: SideImage | null,
  held: ReadonlySet<string> | null,
  heldImages: ReadonlySet<string> | null,
  nextSide: OpenedSide,
  oldSide: OpenedSide | null,
  reader: LayerReader,
): Promise<DiffImage> {
  const rows = compareLayers(old, next, held);
  const layers: DiffLayer[] = [];
  for (const row of rows) {
    const layer: DiffLayer = { ...row, files: null, filesUnavailable: null };
    layers.push(layer);
    if (row.status !== 'changed' && row.status !== 'added') continue;
    if (row.shipping === 'delta') {
      // A delta records what changed against its reference, which is often the old layer itself.
      layer.files = layerFilesFromDelta((await reader.deltaHeader(nextSide, manifestLayer(nextSide.manifest, next!.id, row.index)!)).changes);
      continue;
    }
    if (row.shipping !== 'whole') {
      layer.filesUnavailable = 'not in the bundle: assumed on the host';
      continue;
    }
    const newEntry = manifestLayer(nextSide.manifest, next!.id, row.index)!;
    const newListing = await reader.list(nextSide.dir, newEntry);
    let basis: FilesBasis = row.status === 'added' ? 'none' : 'unknown';
    let oldListing: LayerListing | null = null;
    if (row.status === 'changed' && oldSide && old) {
      const oldEntry = manifestLayer(oldSide.manifest, old.id, row.index);
      if (oldEntry?.included && oldEntry.blob && !oldEntry.delta) {
        oldListing = await reader.list(oldSide.dir, oldEntry);
        basis = 'old-layer';
      }
    }
    layer.files = compareLayerFiles(oldListing, newListing, basis);
  }
  const count = (s: LayerRow['status']) => rows.filter((r) => r.status === s).length;
  const counts = { unchanged: count('unchanged'), changed: count('changed'), added: count('added'), removed: count('removed') };
  const info = (s: SideImage | null) => (s ? { refs: s.refs, id: s.id, services: s.services } : null);
  return {
    status: !old ? 'added' : !next ? 'removed' : old.id === next.id && counts.changed + counts.added + counts.removed === 0 ? 'unchanged' : 'changed',
    old: info(old),
    new: info(next),
    held: heldImages && next ? heldImages.has(next.id) : null,
    layers,
    counts,
  };
}

/** Reads layer listings once per blob (images share layers), within one budget of files for the whole diff. */
class LayerReader {
  private readonly cache = new Map<string, LayerListing>();
  private budget = MAX_TOTAL_FILES;
  truncated = false;
  private readonly progress;
  private bar: ReturnType<ReturnType<Reporter['progress']>['overall']> | null = null;
  private doneBytes = 0;

  constructor(reporter: Reporter) {
    this.progress = reporter.progress();
  }

  /** Sizes the progress bar: every whole layer of a changed or added position, both sides. */
  plan(old: OpenedSide | null, pairs: { old: SideImage | null; new: SideImage | null }[]): void {
    const sizes = new Map<string, number>();
    for (const p of pairs) {
      for (const r of compareLayers(p.old, p.new, null)) {
        if ((r.status !== 'changed' && r.status !== 'added') || r.shipping !== 'whole') continue;
        sizes.set(`new:${r.newDiffId}`, r.size);
        const o = old && p.old && r.status === 'changed' ? manifestLayer(old.manifest, p.old.id, r.index) : undefined;
        if (o?.included && o.blob) sizes.set(`old:${o.diffId}`, o.size);
      }
    }
    const total = [...sizes.values()].reduce((n, s) => n + s, 0);
    if (total > 0) this.bar = this.progress.overall('reading layers', total);
  }

  async list(dir: string, layer: ManifestLayer): Promise<LayerListing> {
    const key = `${dir}\0${layer.diffId}`;
    const hit = this.cache.get(key);
    if (hit) return hit;
    const blob = layer.blob as LayerBlob;
    let listing: LayerListing;
    try {
      listing = await listLayerFiles(dir, blob, layer.diffId, layer.size, Math.min(MAX_LISTED_FILES, this.budget), (n) => this.bar?.update((this.doneBytes += n)));
    } catch (e) {
      const file = blob.path ?? blob.parts?.[0]?.path ?? layer.diffId;
      const problem: Problem =
        e instanceof LayerMismatch
          ? { file, kind: 'digest', message: `${file}: ${e.message}` }
          : { file, kind: 'unreadable', message: `${file} (layer ${layer.diffId}) cannot be read: ${(e as Error).message}` };
      throw integrityFailure([problem]);
    }
    this.budget -= listing.files.length;
    if (listing.truncated) this.truncated = true;
    this.cache.set(key, listing);
    return listing;
  }

  /** A delta layer's header, checked against the layer the manifest says it rebuilds. */
  async deltaHeader(side: OpenedSide, layer: ManifestLayer): Promise<DeltaHeader> {
    const delta = layer.delta!;
    const file = delta.path ?? delta.parts?.[0]?.path ?? layer.diffId;
    let header: DeltaHeader;
    try {
      header = await readLayerDeltaHeader(side.dir, delta, side.manifest.files);
    } catch (e) {
      throw integrityFailure([{ file, kind: e instanceof LayerMismatch ? 'malformed' : 'unreadable', message: `${file} (delta of layer ${layer.diffId}): ${(e as Error).message}` }]);
    }
    const expected = { reference: delta.reference, referenceSize: delta.referenceSize, target: layer.diffId, targetSize: layer.size };
    for (const key of ['reference', 'referenceSize', 'target', 'targetSize'] as const) {
      if (header[key] !== expected[key]) {
        throw integrityFailure([{ file, kind: 'malformed', message: `${file}: the delta's header says ${key} ${String(header[key])}, the manifest ${String(expected[key])}` }]);
      }
    }
    return header;
  }

  done(): void {
    this.bar?.done();
    this.progress.stop();
  }
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** The compose file and host files small enough to diff, each checked against the manifest as read. */
async function readTexts(side: OpenedSide): Promise<Map<string, string>> {
  const texts = new Map<string, string>();
  for (const entry of composeTexts(side.manifest)) {
    if (!worthReading(entry)) continue;
    const bytes = await readVerified(side.dir, entry);
    if (bytes.includes(0)) continue;
    try {
      texts.set(entry.path, UTF8.decode(bytes));
    } catch {
      // Not UTF-8: shown as a binary change, by sha256.
    }
  }
  return texts;
}

function summarize(images: DiffImage[], truncated: boolean): DiffResult['summary'] {
  const zero = () => ({ unchanged: 0, changed: 0, added: 0, removed: 0 });
  const summary = { images: zero(), layers: zero(), files: { added: 0, changed: 0, removed: 0 }, truncated };
  for (const im of images) {
    summary.images[im.status]++;
    for (const l of im.layers) {
      summary.layers[l.status]++;
      if (!l.files) continue;
      summary.files.added += l.files.counts.added;
      summary.files.changed += l.files.counts.changed;
      summary.files.removed += l.files.counts.removed;
      if (l.files.truncated) summary.truncated = true;
    }
  }
  return summary;
}
