/**
 * What a whole swarm holds, as one inventory: a bundle built against it (`create --base`) may
 * leave out only what EVERY node holds, since Swarm may start a task on any of them and each node
 * loads the bundle against its own engine. So: the layers (chain IDs) every node has, the images
 * every node has by the same ID, and the releases the manager records (its state is the stack's).
 * Pure.
 */
import type { Inventory } from './inventory.js';

export function clusterInventory(manager: Inventory, others: readonly Inventory[], host: string): Inventory {
  const layerSets = others.map((o) => new Set(o.layers));
  const imageSets = others.map((o) => new Set(o.images.map((i) => i.id)));
  return {
    ...manager,
    host,
    // The manager's images and layers are sorted; filtering keeps them so.
    images: manager.images.filter((im) => imageSets.every((s) => s.has(im.id))),
    layers: manager.layers.filter((l) => layerSets.every((s) => s.has(l))),
  };
}
