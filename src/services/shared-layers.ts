/**
 * One read of each bundle layer for installs that run at once from the same bundle (a fleet's
 * hosts, a swarm's nodes): decompressed and checked once, fed to every load that needs it. The
 * loads take the layers in the manifest's order, so none waits on a layer another asks for later.
 */
import { join } from 'node:path';
import { LayerFanout, type FanoutLayer } from '../adapters/layer-fanout.js';
import { checkedLayerInWorker, startLayerReader } from '../adapters/layer-reader.js';
import { blobPaths, type FerryManifest } from '../core/manifest.js';
import type { Reporter } from './reporter.js';

/** Starts the thread that will read the shared layers, ahead of the fan-out (its start-up then overlaps other work). */
export function prepareSharedLayers(): void {
  startLayerReader();
}

export function sharedLayers(bundleDir: string, manifest: FerryManifest, loads: number): LayerFanout {
  const rank = new Map<string, number>();
  for (const im of manifest.images) for (const l of im.layers) if (!rank.has(l.diffId)) rank.set(l.diffId, rank.size);
  // Decompressed and checked on a worker thread: this one encrypts and sends every load's copy.
  // Started here, as the fan-out is made, for callers that did not start it ahead (a swarm): its
  // start-up then overlaps the nodes' connections rather than delaying the first layer.
  startLayerReader();
  const read = (l: FanoutLayer) => checkedLayerInWorker(blobPaths(l.blob).map((p) => join(bundleDir, p)), l.diffId, l.size);
  return new LayerFanout(loads, read, (diffId) => rank.get(diffId) ?? rank.size);
}

/** What a fan-out saved: layers read once, loads they fed, layers a late load read alone. */
export interface SharedLayersStats {
  layers: number;
  fed: number;
  alone: number;
}

/** The result's `sharedLayers`, and its log line (null and nothing when no layer was shared). */
export function sharedLayersReport(hub: LayerFanout | undefined, reporter: Reporter): SharedLayersStats | null {
  if (!hub) return null;
  const { layers, fed, alone } = hub.stats;
  if (layers > 0) reporter.log(`bundle layers: ${layers} read and checked once for ${fed} loads${alone ? `, ${alone} read alone` : ''}`);
  return { layers, fed, alone };
}
