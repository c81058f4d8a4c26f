import { describe, expect, it } from 'vitest';
import { chainIds, sha256Digest } from '../../src/core/digest.js';
import { findHeldLayers, layerNeeds, loadBytes, loadSpaceNeed, needsHeldLayers, spliceSaves } from '../../src/core/load-plan.js';
import type { ManifestImage, ManifestLayer } from '../../src/core/manifest.js';
import { HostPreconditionError } from '../../src/errors.js';

const d = (s: string) => sha256Digest(s);
const [os, lib, app, appV1, work] = [d('os'), d('lib'), d('app'), d('app v1'), d('work')];

/** An image of these layers: `kind` per layer says how the bundle carries it. */
function image(ref: string, layers: [string, 'whole' | 'assumed' | { reference: string }][]): ManifestImage {
  const chains = chainIds(layers.map(([diffId]) => diffId));
  const built: ManifestLayer[] = layers.map(([diffId, kind], i) => ({
    diffId,
    chainId: chains[i]!,
    size: 1000 * (i + 1),
    included: kind !== 'assumed',
    blob: kind === 'whole' ? { path: `blobs/${diffId}`, digest: diffId, size: 10, mediaType: 'application/zstd' } : null,
    ...(typeof kind === 'object' ? { delta: { path: `deltas/${diffId}`, digest: diffId, size: 5, mediaType: 'application/zstd', reference: kind.reference, referenceSize: 777 } } : {}),
  }));
  return { refs: [ref], id: d(ref), os: 'linux', architecture: 'amd64', config: { path: `config/${ref}`, size: 1 }, ociManifest: { digest: d(`m ${ref}`), size: 1, path: 'x' }, layers: built };
}

const web = image('web:2', [[os, 'assumed'], [lib, 'assumed'], [app, { reference: appV1 }]]);
const worker = image('worker:2', [[os, 'assumed'], [work, 'whole']]);
const heldWeb = { id: 'sha256:oldweb', diffIds: [os, lib, appV1], size: 300 };
const heldBase = { id: 'sha256:base', diffIds: [os], size: 100 };

describe('the install load plan', () => {
  it('lists each assumed layer once by chain, with every image that needs it, and each delta reference', () => {
    const needs = layerNeeds([web, worker]);
    expect([...needs.assumed.keys()]).toEqual([web.layers[0]!.chainId, web.layers[1]!.chainId]);
    expect(needs.assumed.get(web.layers[0]!.chainId)).toEqual({ diffId: os, images: ['web:2', 'worker:2'] });
    expect(needs.references.get(appV1)).toEqual({ size: 777, needs: [{ diffId: app, image: 'web:2' }] });
    expect(needsHeldLayers(needs)).toBe(true);
    expect(needsHeldLayers(layerNeeds([image('whole:1', [[work, 'whole']])]))).toBe(false);
  });

  it('takes each chain from the first image listed and a reference from the smallest holder', () => {
    const bigger = { ...heldWeb, id: 'sha256:bigger', size: 900 };
    const held = findHeldLayers(layerNeeds([web, worker]), [bigger, heldBase, heldWeb]);
    expect(held.sources.get(web.layers[0]!.chainId)).toBe('sha256:bigger');
    expect(held.references.get(appV1)).toEqual({ holder: 'sha256:oldweb', size: 777 });
    // Splicing saves each holding image once, wanting only its own layers.
    expect(spliceSaves(layerNeeds([web, worker]).assumed, held.sources)).toEqual(new Map([['sha256:bigger', new Set([os, lib])]]));
  });

  it('refuses a missing delta reference before a missing base layer, naming each', () => {
    let err: unknown;
    try {
      findHeldLayers(layerNeeds([web, worker]), [heldBase]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(HostPreconditionError);
    expect((err as HostPreconditionError).code).toBe('MISSING_REFERENCE_LAYERS');
    expect((err as HostPreconditionError).message).toContain(`the reference of layer ${app.slice(7, 19)} of web:2`);
    const noRefs = image('web:3', [[os, 'assumed'], [lib, 'assumed'], [app, 'whole']]);
    expect(() => findHeldLayers(layerNeeds([noRefs]), [heldBase])).toThrow(expect.objectContaining({ code: 'MISSING_BASE_LAYERS', details: { missing: [{ chainId: noRefs.layers[1]!.chainId, diffId: lib, images: ['web:3'] }] } }));
  });

  it('counts only the bytes the bundle sends, twice over on the data root', () => {
    expect(loadBytes([web, worker])).toBe(3000 + 2000);
    expect(loadSpaceNeed(5000)).toEqual({ bytes: 10_000 + 256 * 1024 * 1024, inodes: 10_000 });
  });
});
