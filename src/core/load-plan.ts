/**
 * The install's load plan, apart from the engine it is made for: which layers the images to load
 * assume the host holds, which held layers their deltas are rebuilt from, where on the engine each
 * comes from, and what is missing. The install service reads the engine, this decides, and the
 * service then loads (read → plan → write), so the decisions are unit-tested without an engine.
 */
import { chainIds } from './digest.js';
import { shortDigest } from './format.js';
import type { ManifestImage } from './manifest.js';
import { HostPreconditionError } from '../errors.js';

/** A layer the bundle leaves out, by chain ID: the host is assumed to hold it. */
export interface AssumedLayer {
  diffId: string;
  /** The images (first ref, else ID) that need it, once per image layer. */
  images: string[];
}

/** A held layer some deltas are rebuilt from, by its diffID. */
export interface WantedReference {
  size: number;
  needs: { diffId: string; image: string }[];
}

/** What the images to load need from the engine besides the bundle's own bytes. */
export interface LayerNeeds {
  /** By chain ID. */
  assumed: Map<string, AssumedLayer>;
  /** By the reference's diffID. */
  references: Map<string, WantedReference>;
}

/** The part of an engine image the plan reads. */
export interface HeldImage {
  id: string;
  diffIds: string[];
  size: number;
}

/** A delta reference's holder: the host image whose save gives its bytes (path: where, once known). */
export interface ReferenceHolder {
  holder: string;
  size: number;
  path?: string;
}

export interface HeldLayers {
  /** For each chain ID the engine holds, the first image listed that holds it. */
  sources: Map<string, string>;
  references: Map<string, ReferenceHolder>;
}

const nameOf = (im: ManifestImage): string => im.refs[0] ?? im.id;

export function layerNeeds(toLoad: readonly ManifestImage[]): LayerNeeds {
  const assumed = new Map<string, AssumedLayer>();
  for (const im of toLoad) {
    for (const l of im.layers.filter((x) => !x.included)) {
      const a = assumed.get(l.chainId) ?? { diffId: l.diffId, images: [] };
      a.images.push(nameOf(im));
      assumed.set(l.chainId, a);
    }
  }
  // Every delta's reference must be a layer of some image on this engine: its save gives the bytes.
  const references = new Map<string, WantedReference>();
  for (const im of toLoad) {
    for (const l of im.layers) {
      if (!l.delta) continue;
      const r = references.get(l.delta.reference) ?? { size: l.delta.referenceSize, needs: [] };
      r.needs.push({ diffId: l.diffId, image: nameOf(im) });
      references.set(l.delta.reference, r);
    }
  }
  return { assumed, references };
}

/** Whether the plan must know the engine's layers (listing them inspects every image: not for nothing). */
export function needsHeldLayers(needs: LayerNeeds): boolean {
  return needs.assumed.size > 0 || needs.references.size > 0;
}

/**
 * Where each needed layer is on the engine. Refuses, before anything is loaded, when a delta's
 * reference is held by no image (MISSING_REFERENCE_LAYERS) or an assumed layer is absent
 * (MISSING_BASE_LAYERS), listing every one.
 */
export function findHeldLayers(needs: LayerNeeds, images: readonly HeldImage[]): HeldLayers {
  const sources = new Map<string, string>();
  const references = new Map<string, ReferenceHolder>();
  for (const img of images) for (const c of chainIds(img.diffIds)) if (!sources.has(c)) sources.set(c, img.id);
  for (const [ref, r] of needs.references) {
    // The smallest image that holds it: a save gives all of an image's layers, and on a classic
    // store writes them out before sending the first byte.
    const holder = images.filter((img) => img.diffIds.includes(ref)).sort((a, b) => a.size - b.size)[0];
    if (holder) references.set(ref, { holder: holder.id, size: r.size });
  }
  const lacking = [...needs.references].filter(([ref]) => !references.has(ref));
  if (lacking.length > 0) throw missingReferences(lacking);
  const absent = [...needs.assumed].filter(([chainId]) => !sources.has(chainId));
  if (absent.length > 0) throw missingBaseLayers(absent);
  return { sources, references };
}

function missingReferences(lacking: [string, WantedReference][]): HostPreconditionError {
  const s = lacking.length > 1 ? 's' : '';
  const lines = lacking.map(([ref, r]) => `  - ${shortDigest(ref)}, the reference of layer ${r.needs.map((n) => `${shortDigest(n.diffId)} of ${n.image}`).join(', ')}`);
  return new HostPreconditionError('MISSING_REFERENCE_LAYERS', `this engine lacks ${lacking.length} layer${s} the bundle's deltas are rebuilt from:\n${lines.join('\n')}`, {
    details: { missing: lacking.map(([reference, r]) => ({ reference, needs: r.needs })) },
    hint: 'The bundle was built for a host that held these layers (--base). Install the release it was built against first, or ask for a bundle built against this host\'s inventory (or with --no-delta). Nothing was loaded.',
  });
}

function missingBaseLayers(absent: [string, AssumedLayer][]): HostPreconditionError {
  const s = absent.length > 1 ? 's' : '';
  const lines = absent.map(([c, a]) => `  - ${shortDigest(a.diffId)} (chain ${shortDigest(c)}), needed by ${[...new Set(a.images)].join(', ')}`);
  return new HostPreconditionError('MISSING_BASE_LAYERS', `this engine lacks ${absent.length} layer${s} the bundle assumes it holds:\n${lines.join('\n')}`, {
    details: { missing: absent.map(([chainId, a]) => ({ chainId, diffId: a.diffId, images: [...new Set(a.images)] })) },
    hint: ['The bundle was built for a host that had these layers (--base).', 'Install the release it was built against first, or ask for a bundle built against this host\'s inventory.'],
  });
}

/** For splicing: one save per host image that holds some assumed layers, each wanting only its own diffIDs. */
export function spliceSaves(assumed: LayerNeeds['assumed'], sources: HeldLayers['sources']): Map<string, Set<string>> {
  const byImage = new Map<string, Set<string>>();
  for (const [chainId, a] of assumed) {
    const id = sources.get(chainId)!;
    byImage.set(id, (byImage.get(id) ?? new Set()).add(a.diffId));
  }
  return byImage;
}

/** Uncompressed bytes the bundle sends into the engine for these images (left-out layers count nothing). */
export function loadBytes(images: readonly ManifestImage[]): number {
  return images.reduce((n, im) => n + im.layers.reduce((k, l) => k + (l.included ? l.size : 0), 0), 0);
}

/** Free space and inodes a load of `bytes` needs on the engine's data root. */
export function loadSpaceNeed(bytes: number): { bytes: number; inodes: number } {
  // The classic store unpacks a load into a temporary directory first: count the bytes twice.
  return { bytes: bytes * 2 + 256 * 1024 * 1024, inodes: Math.max(10_000, Math.ceil(bytes / 32_768)) };
}
