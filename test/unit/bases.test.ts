import { describe, expect, it } from 'vitest';
import { baseFromBundle, heldByAll, neededDiffIds, type BundleBase } from '../../src/core/bases.js';
import { chainIds, sha256Digest } from '../../src/core/digest.js';
import { serializeManifest } from '../../src/core/manifest.js';
import { validManifest } from './manifest.test.js';

const d = (s: string) => sha256Digest(s);
const base = (name: string, held: string[]): BundleBase => ({ kind: 'inventory', name, digest: d(name), held });

describe('what bases hold', () => {
  const [os, lib, app1, app2] = [d('os'), d('lib'), d('app1'), d('app2')];
  const web = { diffIds: [os, lib, app1], chainIds: chainIds([os, lib, app1]) };
  const worker = { diffIds: [os, app2], chainIds: chainIds([os, app2]) };

  it('leaves a layer out only when every base holds its chain', () => {
    const edge1 = base('edge-1', [web.chainIds[0]!, web.chainIds[1]!]);
    const edge2 = base('edge-2', [web.chainIds[0]!]);
    const held = heldByAll([edge1, edge2]);
    expect([...held]).toEqual([web.chainIds[0]]);
    expect([...neededDiffIds([web, worker], held)].sort()).toEqual([lib, app1, app2].sort());
  });

  it('ships a diffID held at one chain position when another position needs it', () => {
    // The same bytes (app1) on another parent is another layer on the host.
    const other = { diffIds: [lib, app1], chainIds: chainIds([lib, app1]) };
    const held = heldByAll([base('h', [...web.chainIds])]);
    expect(neededDiffIds([web, other], held)).toEqual(new Set([lib, app1]));
  });

  it('leaves nothing out without bases', () => {
    expect(heldByAll([]).size).toBe(0);
    expect(neededDiffIds([web], new Set()).size).toBe(3);
  });

  it('takes a previous bundle as holding its own layers and what all its bases held', () => {
    const m = validManifest();
    m.bases = [base('edge-1', [d('x'), d('y')]), base('edge-2', [d('y'), d('z')])];
    const b = baseFromBundle(serializeManifest(m), m);
    expect(b.kind).toBe('bundle');
    expect(b.name).toBe('shop-1.4.2');
    expect(b.held).toEqual([...m.images[0]!.layers.map((l) => l.chainId), d('y')].sort());
    expect(b.digest).toBe(sha256Digest(serializeManifest(m)));
  });
});

describe('whether every target has the ferry executable', () => {
  it('only when every base is an inventory taken with that same executable', async () => {
    const { executableHeldByAll } = await import('../../src/core/bases.js');
    const exe = d('ferry-0.1.0');
    expect(executableHeldByAll([exe, exe], exe)).toBe(true);
    expect(executableHeldByAll([exe, d('ferry-0.0.9')], exe)).toBe(false);
    // A previous bundle, or an inventory taken under node: unknown, so it travels.
    expect(executableHeldByAll([exe, null], exe)).toBe(false);
    // No base at all: nothing is known about the target.
    expect(executableHeldByAll([], exe)).toBe(false);
  });
});

describe('reference candidates for a layer delta', () => {
  const d = (n: number) => `sha256:${String(n).repeat(64).slice(0, 64)}`;
  it('prefers the same repository at the same position, then an image on the same lower layers', async () => {
    const { referenceCandidates } = await import('../../src/core/bases.js');
    const target = { diffId: d(9), uses: [{ repos: ['shop/api'], position: 2, diffIds: [d(1), d(2), d(9)] }] };
    const bases = [
      { id: 'a', repos: ['shop/web'], diffIds: [d(1), d(3), d(4)] },
      { id: 'b', repos: ['shop/api'], diffIds: [d(1), d(2), d(5)] },
      { id: 'c', repos: ['ferry.local/shop'], diffIds: [d(1), d(2), d(6)] },
      { id: 'x', repos: ['other'], diffIds: [d(7), d(8)] },
    ];
    const held = new Set([d(1), d(2), d(3), d(4), d(5), d(6), d(7), d(8)]);
    expect(referenceCandidates(target, bases, held)).toEqual([d(5), d(6), d(4)]);
    // Only what every base holds can be a reference; never the layer itself.
    expect(referenceCandidates(target, bases, new Set([d(6), d(9)]))).toEqual([d(6)]);
  });
});

describe('what a fleet bundle may use as a delta reference', () => {
  it('only a layer every base (every host of the fleet) holds', async () => {
    const { heldDiffIdsByAll, referenceCandidates } = await import('../../src/core/bases.js');
    const d = (n: number) => `sha256:${String(n).repeat(64).slice(0, 64)}`;
    const edge1 = [{ id: 'a', repos: ['shop/api'], diffIds: [d(1), d(2), d(3)] }];
    const edge2 = [{ id: 'b', repos: ['shop/api'], diffIds: [d(1), d(2), d(4)] }];
    const held = heldDiffIdsByAll([edge1, edge2]);
    expect([...held].sort()).toEqual([d(1), d(2)]);
    const target = { diffId: d(9), uses: [{ repos: ['shop/api'], position: 2, diffIds: [d(1), d(2), d(9)] }] };
    // edge-1's previous layer 3 and edge-2's layer 4 are each held by one host only: no reference.
    expect(referenceCandidates(target, [...edge1, ...edge2], held)).toEqual([]);
    expect(referenceCandidates(target, edge1, heldDiffIdsByAll([edge1]))).toEqual([d(3)]);
    expect(heldDiffIdsByAll([])).toEqual(new Set());
  });
});
