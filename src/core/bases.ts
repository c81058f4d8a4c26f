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
