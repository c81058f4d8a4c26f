/**
 * What the targets of a bundle already hold, and so what the bundle may leave out. A layer is left
 * out only when EVERY base holds it, matched by chain ID: the same diffID on another parent chain
 * is another layer on a host. Pure; the create service reads the files.
 */
import { sha256Digest } from './digest.js';
import { parseInventory } from './inventory.js';
import type { FerryManifest } from './manifest.js';

export interface BundleBase {
  kind: 'inventory' | 'bundle';
  /** The host an inventory came from, or NAME-VERSION of a previous bundle. */
  name: string;
  /** sha256 of the file the base was read from (the inventory, or the bundle's ferry.json). */
  digest: string;
  /** Chain IDs the target holds, sorted. */
  held: string[];
}

export function baseFromInventory(bytes: Buffer, source: string): BundleBase {
  const inv = parseInventory(bytes, source);
  return { kind: 'inventory', name: inv.host, digest: sha256Digest(bytes), held: [...inv.layers].sort() };
}

/**
 * A host that installed a previous bundle holds every layer of its images (shipped or assumed),
 * and what all of that bundle's own bases held.
 */
export function baseFromBundle(manifestBytes: Buffer, manifest: FerryManifest): BundleBase {
  const held = new Set(manifest.images.flatMap((im) => im.layers.map((l) => l.chainId)));
  const bases = manifest.bases ?? [];
  if (bases.length > 0) {
    for (const id of intersect(bases.map((b) => new Set(b.held)))) held.add(id);
  }
  return { kind: 'bundle', name: `${manifest.name}-${manifest.version}`, digest: sha256Digest(manifestBytes), held: [...held].sort() };
}

/** Chain IDs every base holds; empty without bases (then nothing is left out). */
export function heldByAll(bases: BundleBase[]): Set<string> {
  return bases.length === 0 ? new Set() : intersect(bases.map((b) => new Set(b.held)));
}

function intersect(sets: Set<string>[]): Set<string> {
  const [first, ...rest] = sets;
  if (!first) return new Set();
  return new Set([...first].filter((x) => rest.every((s) => s.has(x))));
}

/**
 * DiffIDs whose bytes the bundle must carry: those that appear at least once at a chain position
 * the targets do not all hold. A diffID needed anywhere is shipped once and serves every position.
 */
export function neededDiffIds(images: { diffIds: string[]; chainIds: string[] }[], held: Set<string>): Set<string> {
  const needed = new Set<string>();
  for (const im of images) im.diffIds.forEach((d, i) => !held.has(im.chainIds[i]!) && needed.add(d));
  return needed;
}

/**
 * Whether every target already has the ferry executable with this digest. Only an inventory taken
 * with that executable says so (`null`: a previous bundle, or an inventory taken otherwise); with
 * no bases at all nothing is known, and the executable travels.
 */
export function executableHeldByAll(executables: readonly (string | null)[], digest: string): boolean {
  return executables.length > 0 && executables.every((e) => e === digest);
}

/** An image a base says its target holds: what a changed layer can be a delta against. */
export interface BaseImage {
  id: string;
  /** Repositories it was known by (tags without the tag): how a release finds its predecessor. */
  repos: string[];
  diffIds: string[];
}

/** The repository of an image reference: `shop/web:1.4` → `shop/web`, `reg:5000/a@sha256:…` → `reg:5000/a`. */
export function repositoryOf(ref: string): string {
  const at = ref.indexOf('@');
  const name = at >= 0 ? ref.slice(0, at) : ref;
  const colon = name.lastIndexOf(':');
  return colon > name.lastIndexOf('/') ? name.slice(0, colon) : name;
}

/** DiffIDs every base's images hold (a host gives any of them back through `docker save`). */
export function heldDiffIdsByAll(bases: BaseImage[][]): Set<string> {
  return bases.length === 0 ? new Set() : intersect(bases.map((images) => new Set(images.flatMap((im) => im.diffIds))));
}

/**
 * Held layers a changed layer may be a delta against, best first: the layer at the same position
 * of a previous image of the same repository (what a rebuilt dependency layer replaces), or of an
 * image built on the same lower layers (a host's inventory names images by ferry's tags, not by
 * repository), then their other layers, nearest position first. At most `max`, never the layer itself.
 */
export function referenceCandidates(
  target: { diffId: string; uses: { repos: string[]; position: number; diffIds: string[] }[] },
  baseImages: BaseImage[],
  held: Set<string>,
  max = 3,
): string[] {
  const scored: { diffId: string; score: number[] }[] = [];
  for (const use of target.uses) {
    for (const im of baseImages) {
      const sameRepo = im.repos.some((r) => use.repos.includes(r));
      let shared = 0;
      while (shared < use.position && im.diffIds[shared] === use.diffIds[shared]) shared++;
      if (!sameRepo && shared === 0) continue;
      // The lower layers both images share are below the target already: not what it replaces.
      im.diffIds.forEach((d, i) => i >= shared && scored.push({ diffId: d, score: [sameRepo ? 0 : 1, -shared, Math.abs(i - use.position)] }));
    }
  }
  scored.sort((a, b) => a.score[0]! - b.score[0]! || a.score[1]! - b.score[1]! || a.score[2]! - b.score[2]!);
  const out: string[] = [];
  for (const { diffId } of scored) {
    if (out.length >= max) break;
    if (diffId !== target.diffId && held.has(diffId) && !out.includes(diffId)) out.push(diffId);
  }
  return out;
}
