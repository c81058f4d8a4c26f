/**
 * Finding the image a release pins on whatever store the engine has. ferry pins images by config
 * digest (the image ID of the classic store and Podman) and their layers by diffID. The containerd
 * image store names images by manifest digest instead and cannot look one up by config digest, so
 * there an image is found by the ID its docker-archive import gives it (a digest over the config
 * digest: as strong as the classic ID), else by the tag ferry gave it after checking it, with the
 * layers compared again.
 */
import type { Engine, ImageDetails } from '../adapters/engine.js';
import { dockerArchiveImportId } from '../core/oci.js';
import { ferryTag } from '../core/state.js';

export interface PinnedImage {
  /** Config digest. */
  id: string;
  configSize: number;
  layers: { diffId: string; size: number }[];
}

const sameLayers = (d: ImageDetails, im: PinnedImage) => JSON.stringify(d.diffIds) === JSON.stringify(im.layers.map((l) => l.diffId));

/** The engine's record of a pinned image, or null when the engine does not hold it. */
export async function findPinned(engine: Engine, containerdStore: boolean, stack: string, im: PinnedImage): Promise<ImageDetails | null> {
  const byId = await engine.inspectImage(im.id);
  if (byId && byId.id === im.id) return byId;
  if (!containerdStore) return null;
  const imported = await engine.inspectImage(dockerArchiveImportId({ digest: im.id, size: im.configSize }, im.layers.map((l) => ({ digest: l.diffId, size: l.size }))));
  if (imported && sameLayers(imported, im)) return imported;
  const tagged = await engine.inspectImage(ferryTag(stack, im.id));
  return tagged && sameLayers(tagged, im) ? tagged : null;
}

/** For status: config digest → the ID the engine shows for it (itself on a classic store). */
export async function engineIds(engine: Engine, stack: string, configIds: string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const id of configIds) {
    const tagged = await engine.inspectImage(ferryTag(stack, id)).catch(() => null);
    out.set(id, tagged?.id ?? id);
  }
  return out;
}
