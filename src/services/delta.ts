/**
 * The delta step of `bundle create`: after the layers are written whole, each changed layer that
 * has a held predecessor is planned against it, and where the delta pays it replaces the whole
 * blob. Every delta is rebuilt once here, from the same reference bytes a host will use, and
 * checked against the layer's diffID before the bundle may carry it.
 */
import type { BlobStoreWriter } from '../adapters/blob-store.js';
import type { Engine } from '../adapters/engine.js';
import type { LayerCache } from '../adapters/layer-cache.js';
import { bundleBlobBytes } from '../adapters/load-archive.js';
import { identifyLayer, identifyLayers, layerFromEngine, storedReference } from '../adapters/reference-layer.js';
import { readStoredLayer, readStoredLayerChecked } from '../adapters/layer-store.js';
import { zstdContent } from '../adapters/zstd.js';
import { referenceCandidates, type BaseImage } from '../core/bases.js';
import { formatBytes, shortDigest } from '../core/format.js';
import { DELTA_MEDIA_TYPE, encodeDelta, planDelta, rebuildLayer, type DeltaPlan } from '../core/layer-delta.js';
import type { LayerBlob, LayerDelta } from '../core/manifest.js';
import { indexTar, type TarIndex } from '../core/tar-index.js';
import type { Reporter } from './reporter.js';

/**
 * A delta replaces the whole layer only when it is at most this share of the whole blob: a smaller
 * saving is not worth reading the reference back on every host.
 */
const PAYS = 0.8;
/** A reference that leaves at most this share of the layer new is not bettered by reading more. */
const GOOD_ENOUGH = 0.1;
/** Below this a layer is not worth a delta (its blob is a few kilobytes whatever happens). */
const MIN_LAYER_BYTES = 64 * 1024;

export interface DeltaTarget {
  diffId: string;
  size: number;
  blob: LayerBlob;
  /** Where the layer sits in the new images: the repositories it was named by and its position. */
  uses: { repos: string[]; position: number; diffIds: string[] }[];
}

/** A base's images, and for a previous bundle where its whole blobs are. */
export interface DeltaBase {
  images: BaseImage[];
  bundle?: { root: string; blobs: Map<string, { blob: LayerBlob; size: number }> };
}

export interface DeltaContext {
  engine: Engine;
  store: BlobStoreWriter;
  /** The partial bundle directory the whole blobs were written to. */
  root: string;
  cache: LayerCache | null;
  reporter: Reporter;
  verbose: boolean;
  /** A layer's tar size where known before reading it (the layer cache, a previous bundle). */
  sizeOf: (diffId: string) => number | undefined;
}

export interface DeltaOutcome {
  deltas: Map<string, LayerDelta>;
  /** Changed layers shipped whole, and why (no reference, no bytes of it here, does not pay, …). */
  whole: { diffId: string; reason: string; noBytes?: boolean }[];
}

/** Where the bytes of a reference layer come from on this build server. */
export interface ReferenceSource {
  diffId: string;
  from: string;
  /** Cheap to read again (a file here), so the delta is rebuilt from it as a check. */
  rereadable: boolean;
  open(): Promise<AsyncIterable<Buffer>>;
  index: TarIndex;
  size: number;
}

/** References being read ahead of the save pass (prefetchReferences), by diffID. */
export type PrefetchedReferences = Map<string, Promise<ReferenceSource | null>>;

/**
 * Starts reading, during the save pass, the reference each changed layer would most likely be
 * planned against: its first candidate, from the places that cost no save (the layer cache, a
 * --base bundle, this machine's layer store). A reference of hundreds of MB takes seconds to read
 * and index, and the pass leaves a core free much of the time: Docker ≤ 24 on the classic store sends
 * nothing until its export is done, and a pass over the store reads little when most layers are
 * held. Which layers changed is known before the pass from the image configs (`prospects`: every
 * layer not held by every base); a guess that turns out unused costs only the read.
 */
export function prefetchReferences(ctx: DeltaContext, prospects: Pick<DeltaTarget, 'diffId' | 'uses'>[], bases: DeltaBase[], held: Set<string>): PrefetchedReferences {
  const baseImages = bases.flatMap((b) => b.images);
  const out: PrefetchedReferences = new Map();
  for (const p of prospects) {
    const first = referenceCandidates(p, baseImages, held)[0];
    if (!first || out.has(first)) continue;
    const found = findSource(ctx, first, bases, { save: false }).then((s) => s && { ...s, from: `${s.from}, read during the save` });
    out.set(first, found.catch(() => null));
  }
  return out;
}

export async function makeDeltas(ctx: DeltaContext, targets: DeltaTarget[], bases: DeltaBase[], held: Set<string>, prefetched: PrefetchedReferences = new Map()): Promise<DeltaOutcome> {
  const outcome: DeltaOutcome = { deltas: new Map(), whole: [] };
  const baseImages = bases.flatMap((b) => b.images);
  const sources = new Map<string, Promise<ReferenceSource | null>>();
  const sourceOf = (diffId: string) => {
    if (!sources.has(diffId)) {
      const early = prefetched.get(diffId);
      // Not found where prefetching looked: a save of an image that holds it may still have it.
      const found = early ? early.then((s) => s ?? findSource(ctx, diffId, bases)) : findSource(ctx, diffId, bases);
      sources.set(diffId, found.catch(() => null));
    }
    return sources.get(diffId)!;
  };
  await preferredFromEngine(ctx, targets, bases, held, sources, prefetched);
  for (const t of targets) {
    if (t.size < MIN_LAYER_BYTES) continue;
    const candidates = referenceCandidates(t, baseImages, held);
    if (candidates.length === 0) {
      outcome.whole.push({ diffId: t.diffId, reason: 'no earlier image of its repository is held by every base' });
      continue;
    }
    // The target is indexed while the first reference is (two cores: two streams at once).
    const indexing = bundleBlobBytes(ctx.root, t.blob).then((bytes) => indexTar(bytes as AsyncIterable<Buffer>));
    indexing.catch(() => undefined);
    // Candidates one at a time, best first: each may cost a save of an image, and a good first
    // one (the same repository's layer at the same position, usually) ends the search.
    let best: { source: ReferenceSource; plan: DeltaPlan } | null = null;
    for (const [i, candidate] of candidates.entries()) {
      // Past the first, a candidate far from the layer's size is not read: reading a big runtime
      // layer to plan a small one costs more than the delta could save.
      const size = ctx.sizeOf(candidate);
      if (i > 0 && (size === undefined || size < t.size / 2 || size > t.size * 2)) continue;
      const source = await sourceOf(candidate);
      if (!source) continue;
      const plan = planDelta(source.index, await indexing);
      if (!best || plan.literal < best.plan.literal) best = { source, plan };
      if (plan.literal <= t.size * GOOD_ENOUGH) break;
    }
    if (!best) {
      await indexing.catch(() => undefined);
      outcome.whole.push({ diffId: t.diffId, noBytes: true, reason: `no bytes of its reference ${candidates.map(shortDigest).join(' or ')} on this build server (not in the layer cache, in a --base bundle, or in an image on the engine)` });
      continue;
    }
    const { source, plan } = best;
    const reference = source.diffId;
    if (plan.literal > t.size * PAYS) {
      outcome.whole.push({ diffId: t.diffId, reason: `${formatBytes(plan.literal)} of its ${formatBytes(t.size)} are new against ${shortDigest(reference)}: a delta does not pay` });
      continue;
    }
    const header = { reference, referenceSize: source.size, target: t.diffId, targetSize: t.size, changes: plan.changes };
    const written = await ctx.store.writeBlob(encodeDelta(header, plan, (await bundleBlobBytes(ctx.root, t.blob)) as AsyncIterable<Buffer>), DELTA_MEDIA_TYPE);
    if (written.size > t.blob.size * PAYS) {
      outcome.whole.push({ diffId: t.diffId, reason: `its delta (${formatBytes(written.size)}) is not much smaller than the whole blob (${formatBytes(t.blob.size)})` });
      continue;
    }
    // Rebuilt here exactly as a host will, from the same reference bytes: a delta that does not
    // give the layer back is never shipped (the whole blob is). A reference read from the engine
    // was hashed whole as it was indexed, and a second save would double the cost of the delta:
    // there the check is the construction itself (and every host's own).
    try {
      if (source.rereadable) {
        const rebuilt = rebuildLayer((await bundleBlobBytes(ctx.root, written)) as AsyncIterable<Buffer>, await source.open(), header);
        for await (const _ of rebuilt) void _;
      }
    } catch (e) {
      ctx.reporter.warn({ code: 'DELTA_UNVERIFIED', subject: t.diffId, message: `the delta of layer ${shortDigest(t.diffId)} did not rebuild it (${(e as Error).message}): the layer is shipped whole` });
      outcome.whole.push({ diffId: t.diffId, reason: 'its delta did not rebuild it' });
      continue;
    }
    outcome.deltas.set(t.diffId, { ...written, reference, referenceSize: source.size, wholeSize: t.blob.size });
    if (ctx.verbose) {
      ctx.reporter.log(`layer ${shortDigest(t.diffId)}: ${formatBytes(t.blob.size)} whole → ${formatBytes(written.size)} as a delta against ${shortDigest(reference)} (${source.from}; ${plan.changes.added.length} added, ${plan.changes.changed.length} changed, ${plan.changes.removed.length} removed)`);
    }
  }
  return outcome;
}

/**
 * Each layer's preferred reference that only the engine has, read in ONE save of the images that
 * hold them (a classic store writes every image it saves out before its first byte, so a save per
 * reference would cost that many times).
 */
async function preferredFromEngine(ctx: DeltaContext, targets: DeltaTarget[], bases: DeltaBase[], held: Set<string>, sources: Map<string, Promise<ReferenceSource | null>>, prefetched: PrefetchedReferences): Promise<void> {
  const baseImages = bases.flatMap((b) => b.images);
  const wanted = new Map<string, string>();
  for (const t of targets) {
    if (t.size < MIN_LAYER_BYTES) continue;
    const first = referenceCandidates(t, baseImages, held)[0];
    if (!first || wanted.has(first) || bases.some((b) => b.bundle?.blobs.has(first))) continue;
    if (prefetched.has(first) && (await prefetched.get(first))) continue;
    if (ctx.cache && (await ctx.cache.lookup(first).catch(() => null))) continue;
    const holder = await holderOnEngine(ctx, first, baseImages);
    // A layer in this machine's store is read from there by findSource: no save needed for it.
    if (holder && !(await storedReference(ctx.engine, holder, first))) wanted.set(first, holder);
  }
  if (wanted.size < 2) return; // one reference: findSource reads it alone, at the same cost
  const located = await identifyLayers(ctx.engine, [...new Set(wanted.values())], new Set(wanted.keys())).catch(() => new Map<string, { index: TarIndex | null }>());
  for (const [diffId, { index }] of located) {
    if (!index) continue;
    const holder = wanted.get(diffId)!;
    const open = async () => layerFromEngine(ctx.engine, holder, { diffId, size: index.size, path: (await identifyLayer(ctx.engine, holder, diffId)).path }) as AsyncIterable<Buffer>;
    sources.set(diffId, Promise.resolve({ diffId, from: 'an image on the engine', rereadable: false, open, index, size: index.size }));
  }
}

/** An image on the engine that holds the layer, among the images the bases name. */
async function holderOnEngine(ctx: DeltaContext, diffId: string, images: BaseImage[]): Promise<string | null> {
  for (const im of images) {
    if (!im.diffIds.includes(diffId)) continue;
    const details = await ctx.engine.inspectImage(im.id).catch(() => null);
    if (details?.diffIds.includes(diffId)) return details.id;
  }
  return null;
}

/**
 * The reference's bytes, from the cheapest place that has them: the layer cache (a zstd blob by
 * diffID), a previous bundle given as --base, the engine's own store when it is on this machine,
 * or a save of an image on this engine that holds the layer.
 * Each is indexed here once; `open` gives the bytes again for the rebuild check. Without
 * `save`, only the first three are looked in.
 */
async function findSource(ctx: DeltaContext, diffId: string, bases: DeltaBase[], options: { save: boolean } = { save: true }): Promise<ReferenceSource | null> {
  const make = async (from: string, open: () => Promise<AsyncIterable<Buffer>>, index?: TarIndex): Promise<ReferenceSource> => {
    const ix = index ?? (await indexTar(await open()));
    return { diffId, from, rereadable: index === undefined, open, index: ix, size: ix.size };
  };
  const cache = ctx.cache;
  if (cache && (await cache.lookup(diffId).catch(() => null))) {
    const open = async () => (await zstdContent(await cache.read(diffId))) as AsyncIterable<Buffer>;
    const source = await make('the layer cache', open).catch(() => null);
    if (source) return source;
  }
  for (const base of bases) {
    const held = base.bundle?.blobs.get(diffId);
    if (!held || !base.bundle) continue;
    const root = base.bundle.root;
    const open = async () => (await bundleBlobBytes(root, held.blob)) as AsyncIterable<Buffer>;
    const source = await make(`the --base bundle ${root}`, open).catch(() => null);
    if (source) return source;
  }
  const holder = await holderOnEngine(ctx, diffId, bases.flatMap((b) => b.images));
  if (!holder) return null;
  // As a save's, the store's bytes are hashed whole while they are indexed; reading them twice
  // more for the rebuild check would double a big layer's cost.
  const stored = await storedReference(ctx.engine, holder, diffId);
  const storedIndex = stored ? await indexTar(readStoredLayerChecked(stored, diffId)).catch(() => null) : null;
  if (stored && storedIndex) return make("the engine's layer store", async () => readStoredLayer(stored), storedIndex);
  if (!options.save) return null;
  const { path, index } = await identifyLayer(ctx.engine, holder, diffId, true);
  if (!index) return null;
  const open = async () => layerFromEngine(ctx.engine, holder, { diffId, size: index.size, path }) as AsyncIterable<Buffer>;
  return make('an image on the engine', open, index);
}
