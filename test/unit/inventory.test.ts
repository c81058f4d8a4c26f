import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { podmanFromVersion } from '../../src/adapters/engine-inventory.js';
import {
  buildInventory,
  INVENTORY_FORMAT,
  InventoryInvalid,
  MAX_INVENTORY_BYTES,
  parseInventory,
  rawImageProblem,
  serializeInventory,
  validateInventory,
  type Inventory,
  type InventoryFacts,
} from '../../src/core/inventory.js';
import { emptyStackState, type ReleaseRecord, type StackState } from '../../src/core/state.js';
import { BugError, BuildInputError, ExitCode } from '../../src/errors.js';

const d = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;
/** Written out here rather than taken from core/digest, so the test checks the code, not itself. */
function chain(diffIds: string[]): string[] {
  const out: string[] = [];
  for (const id of diffIds) out.push(out.length === 0 ? id : d(`${out[out.length - 1]} ${id}`));
  return out;
}

const engine = { serverVersion: '20.10.24', apiVersion: '1.41', storageDriver: 'overlay2', containerdStore: false, os: 'linux', architecture: 'x86_64', podman: false };

function release(sequence: number, version: string): ReleaseRecord {
  return {
    id: `${sequence}-${version}`,
    version,
    sequence,
    created: '2026-11-01T00:00:00.000Z',
    installedAt: `2026-11-0${sequence}T00:00:00.000Z`,
    host: 'edge-1',
    images: [],
    services: [],
    composeFiles: ['compose/compose.yaml'],
    smoke: null,
    signer: null,
    result: 'installed',
  };
}

function shopState(): StackState {
  return { ...emptyStackState('shop'), current: '2-1.1', highestSequence: 2, releases: [release(2, '1.1'), release(1, '1.0')] };
}

function facts(): InventoryFacts {
  return {
    host: 'edge-1',
    created: new Date('2026-11-23T10:00:00.000Z'),
    tool: { name: 'ferry', version: '0.1.0' },
    engine,
    images: [
      // Shares its first two layers with the base image: their chain IDs must collapse in `layers`.
      { id: d('app'), repoTags: ['shop/app:1', '<none>:<none>', 'shop/app:latest'], diffIds: [d('L0'), d('L1'), d('L2')], size: 300 },
      { id: d('base'), repoTags: [], diffIds: [d('L0'), d('L1')], size: 200 },
      // Same diffID as the base's top layer but on another parent: another chain ID, another layer.
      { id: d('other'), repoTags: ['other:1'], diffIds: [d('X0'), d('L1')], size: 100 },
    ],
    stacks: [shopState(), emptyStackState('empty')],
  };
}

describe('buildInventory', () => {
  it('derives chain IDs and the sorted, unique layer set', () => {
    const inv = buildInventory(facts());
    expect(inv.format).toBe(INVENTORY_FORMAT);
    expect(inv.created).toBe('2026-11-23T10:00:00.000Z');
    const app = inv.images.find((i) => i.id === d('app'))!;
    expect(app.chainIds).toEqual(chain([d('L0'), d('L1'), d('L2')]));
    expect(app.repoTags).toEqual(['shop/app:1', 'shop/app:latest']);
    const other = inv.images.find((i) => i.id === d('other'))!;
    expect(other.chainIds[1]).not.toBe(app.chainIds[1]);

    const expected = [...new Set([...chain([d('L0'), d('L1'), d('L2')]), ...chain([d('X0'), d('L1')])])].sort();
    expect(inv.layers).toEqual(expected);
    expect(inv.layers).toHaveLength(5);
    expect(inv.images.map((i) => i.id)).toEqual([d('app'), d('base'), d('other')].sort());
  });

  it('lists releases per stack, sorted, with only the fields the inventory defines', () => {
    const inv = buildInventory(facts());
    expect(inv.releases).toEqual([
      { stack: 'empty', current: null, highestSequence: -1, releases: [] },
      {
        stack: 'shop',
        current: '2-1.1',
        highestSequence: 2,
        releases: [
          { id: '1-1.0', version: '1.0', sequence: 1, installedAt: '2026-11-01T00:00:00.000Z' },
          { id: '2-1.1', version: '1.1', sequence: 2, installedAt: '2026-11-02T00:00:00.000Z' },
        ],
      },
    ]);
  });

  it('is deterministic whatever order the engine lists in, and keeps one entry per image ID', () => {
    const f = facts();
    const reversed = { ...f, images: [...f.images].reverse(), stacks: [...f.stacks].reverse() };
    const dup = { ...f, images: [...f.images, f.images[0]!] };
    expect(serializeInventory(buildInventory(reversed))).toBe(serializeInventory(buildInventory(f)));
    expect(buildInventory(dup).images).toHaveLength(3);
  });

  it('handles an engine with no images and a host with no stacks', () => {
    const inv = buildInventory({ ...facts(), images: [], stacks: [] });
    expect(inv.images).toEqual([]);
    expect(inv.layers).toEqual([]);
    expect(inv.releases).toEqual([]);
    expect(parseInventory(serializeInventory(inv))).toEqual(inv);
  });

  it('refuses to build what another ferry could not read (a bug, exit 1)', () => {
    const bad = { ...facts(), images: [{ id: 'not-a-digest', repoTags: [], diffIds: [], size: 1 }] };
    expect(() => buildInventory(bad)).toThrow(BugError);
  });
});

describe('rawImageProblem', () => {
  it('accepts what Docker reports and names what it cannot use', () => {
    expect(rawImageProblem({ id: d('a'), repoTags: ['a:1'], diffIds: [d('l')], size: 1 })).toBeUndefined();
    expect(rawImageProblem({ id: d('a'), repoTags: [], diffIds: [], size: 0 })).toBeUndefined();
    expect(rawImageProblem({ id: 'abc', repoTags: [], diffIds: [], size: 0 })).toMatch(/ID/);
    expect(rawImageProblem({ id: d('a'), repoTags: [], diffIds: ['sha512:00'], size: 0 })).toMatch(/sha512:00/);
  });
});

describe('parseInventory', () => {
  const good = () => JSON.parse(serializeInventory(buildInventory(facts()))) as Inventory & Record<string, unknown>;
  const problemsOf = (doc: unknown): string[] => {
    try {
      parseInventory(typeof doc === 'string' ? doc : JSON.stringify(doc), 'host.json');
    } catch (e) {
      expect(e).toBeInstanceOf(InventoryInvalid);
      expect(e).toBeInstanceOf(BuildInputError);
      expect((e as InventoryInvalid).exitCode).toBe(ExitCode.buildInput);
      expect((e as InventoryInvalid).code).toBe('INVENTORY_INVALID');
      expect((e as Error).message).toMatch(/^host\.json is not a valid ferry\.inventory\/v1 document/);
      return (e as InventoryInvalid).problems;
    }
    throw new Error('parseInventory accepted the document');
  };

  it('round-trips what buildInventory writes, from text and from bytes', () => {
    const inv = buildInventory(facts());
    expect(parseInventory(serializeInventory(inv))).toEqual(inv);
    expect(parseInventory(Buffer.from(serializeInventory(inv)))).toEqual(inv);
    expect(parseInventory(new Uint8Array(Buffer.from(serializeInventory(inv))))).toEqual(inv);
  });

  it('returns only the fields it knows', () => {
    const doc = good();
    doc.extra = 'x';
    (doc.images[0] as unknown as Record<string, unknown>).secret = 1;
    const inv = parseInventory(JSON.stringify(doc));
    expect(inv).not.toHaveProperty('extra');
    expect(inv.images[0]).not.toHaveProperty('secret');
    expect(inv).toEqual(buildInventory(facts()));
  });

  it('refuses unknown formats, and says which it reads', () => {
    for (const format of ['ferry.inventory/v2', 'ferry.bundle/v1', undefined, 1]) {
      expect(problemsOf({ ...good(), format })).toEqual([`format is ${JSON.stringify(format)}, this ferry reads ${INVENTORY_FORMAT}`]);
    }
  });

  it('refuses what is not a JSON object', () => {
    expect(problemsOf('{"format":')[0]).toMatch(/^not JSON/);
    expect(problemsOf('')[0]).toMatch(/^not JSON/);
    for (const doc of [null, [], 'str', 42]) expect(problemsOf(JSON.stringify(doc))).toEqual(['the document must be an object']);
  });

  it('refuses a document above the size limit before parsing it', () => {
    const big = Buffer.alloc(MAX_INVENTORY_BYTES + 1, 0x20);
    expect(() => parseInventory(big)).toThrow(/more than the 134217728 allowed/);
  });

  it('refuses chain IDs that do not follow from the diffIDs', () => {
    const doc = good();
    const im = doc.images.find((i) => i.diffIds.length === 3)!;
    im.chainIds[2] = d('forged');
    expect(problemsOf(doc).join('\n')).toMatch(/chainIds\[2\] does not follow from the diffIds/);

    const short = good();
    short.images[0]!.chainIds.pop();
    expect(problemsOf(short).join('\n')).toMatch(/chainIds has 2 entries for 3 diffIds/);
  });

  it('refuses a layer set that differs from the images’ chain IDs, or is unsorted', () => {
    const extra = good();
    extra.layers = [...extra.layers, d('zz-extra')].sort();
    expect(problemsOf(extra).join('\n')).toMatch(/names 1 chain ID\(s\) no image has/);

    const missing = good();
    missing.layers = missing.layers.slice(1);
    expect(problemsOf(missing).join('\n')).toMatch(/leaves out 1 chain ID/);

    const unsorted = good();
    unsorted.layers = [...unsorted.layers].reverse();
    expect(problemsOf(unsorted).join('\n')).toMatch(/not sorted and unique/);

    const dup = good();
    dup.layers = [dup.layers[0]!, ...dup.layers];
    expect(problemsOf(dup).join('\n')).toMatch(/not sorted and unique/);
  });

  it('collects every bad field, naming where it is', () => {
    const doc = good() as unknown as Record<string, any>;
    doc.host = '';
    doc.created = 'yesterday';
    doc.engine.podman = 'no';
    doc.engine.serverVersion = 20;
    doc.images[0].id = 'sha256:XYZ';
    doc.images[1].size = -1;
    doc.images[1].repoTags = ['ok', 7];
    doc.images[2].diffIds[0] = '../../etc/passwd';
    doc.releases[1].highestSequence = 1.5;
    doc.releases[1].releases[0].sequence = '1';
    doc.releases[1].current = 3;
    doc.tool = null;
    const problems = problemsOf(doc);
    for (const where of [
      'host must be a non-empty string',
      'created must be an ISO date',
      'engine.podman must be true or false',
      'engine.serverVersion must be a string',
      'images[0].id must be a sha256',
      'images[1].size must be a whole number',
      'images[1].repoTags[1] must be a non-empty string',
      'images[2].diffIds[0] must be a sha256',
      'releases[1].highestSequence must be a whole number ≥ -1',
      'releases[1].releases[0].sequence must be a whole number',
      'releases[1].current must be a non-empty string',
      'tool must be an object',
    ]) {
      expect(problems.some((p) => p.startsWith(where)), `${where}\nin:\n${problems.join('\n')}`).toBe(true);
    }
  });

  it('keeps the executable the inventory was taken with, and checks its digest', () => {
    const withExe = buildInventory({ ...facts(), tool: { name: 'ferry', version: '0.1.0', executable: { sha256: d('exe') } } });
    expect(parseInventory(serializeInventory(withExe)).tool.executable).toEqual({ sha256: d('exe') });
    // Older inventories have none, and stay readable.
    expect(parseInventory(serializeInventory(buildInventory(facts()))).tool).toEqual({ name: 'ferry', version: '0.1.0' });
    const doc = JSON.parse(serializeInventory(withExe)) as Record<string, any>;
    doc.tool.executable.sha256 = 'md5:abc';
    expect(problemsOf(doc).some((p) => p.startsWith('tool.executable.sha256 must be a sha256'))).toBe(true);
  });

  it('refuses duplicates and missing arrays', () => {
    const dupImage = good();
    dupImage.images = [dupImage.images[0]!, ...dupImage.images];
    expect(problemsOf(dupImage).join('\n')).toMatch(/images\[1\]\.id .* is listed twice/);

    const dupStack = good();
    dupStack.releases = [dupStack.releases[0]!, ...dupStack.releases];
    expect(problemsOf(dupStack).join('\n')).toMatch(/releases\[1\]\.stack empty is listed twice/);

    const noImages = good() as unknown as Record<string, unknown>;
    delete noImages.images;
    delete noImages.layers;
    delete noImages.releases;
    expect(problemsOf(noImages)).toEqual(['images must be an array', 'layers must be an array', 'releases must be an array']);
  });

  it('bounds arrays before walking them', () => {
    const doc = good() as unknown as Record<string, any>;
    doc.images[0].diffIds = new Array(1001).fill(d('L0'));
    expect(problemsOf(doc).join('\n')).toMatch(/images\[0\]\.diffIds has 1001 entries, more than 1000/);
  });

  it('validateInventory takes an already-parsed document', () => {
    expect(validateInventory(good())).toEqual(buildInventory(facts()));
    expect(() => validateInventory({ format: 'x' })).toThrow(InventoryInvalid);
  });
});

describe('podmanFromVersion', () => {
  it('tells Podman’s compat API from Docker', () => {
    expect(podmanFromVersion({ Platform: { Name: '' }, Components: [{ Name: 'Engine' }, { Name: 'containerd' }] })).toBe(false);
    expect(podmanFromVersion({ Platform: { Name: 'Docker Engine - Community' }, Components: [{ Name: 'Engine' }] })).toBe(false);
    expect(podmanFromVersion({ Version: '5.1.0', Components: [{ Name: 'Podman Engine', Version: '5.1.0' }] })).toBe(true);
    expect(podmanFromVersion({ Platform: { Name: 'linux/amd64/fedora-39' }, Components: [{ Name: 'Podman Engine' }] })).toBe(true);
    expect(podmanFromVersion({ Components: null })).toBe(false);
    expect(podmanFromVersion(undefined)).toBe(false);
  });
});
