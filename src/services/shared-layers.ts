/**
 * One read of each bundle layer for installs that run at once from the same bundle (a fleet's
 * hosts, a swarm's nodes): decompressed and checked once, fed to every load that needs it. The
 * loads take the layers in the manifest's order, so none waits on a layer another asks for later.
 */
import { LayerFanout } from '../adapters/layer-fanout.js';
import { openBlob } from '../adapters/load-archive.js';
import type { FerryManifest } from '../core/manifest.js';

export function sharedLayers(bundleDir: string, manifest: FerryManifest, loads: number): LayerFanout {
  const rank = new Map<string, number>();
  for (const im of manifest.images) for (const l of im.layers) if (!rank.has(l.diffId)) rank.set(l.diffId, rank.size);
  return new LayerFanout(loads, (blob) => openBlob(bundleDir, blob), (diffId) => rank.get(diffId) ?? rank.size);
}
