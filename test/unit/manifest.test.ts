import { describe, expect, it } from 'vitest';
import { chainIds, sha256Digest } from '../../src/core/digest.js';
import { ManifestInvalid, MANIFEST_FORMAT, parseManifest, serializeManifest, type FerryManifest } from '../../src/core/manifest.js';

const hex = (s: string) => sha256Digest(s).slice(7);

export function validManifest(): FerryManifest {
  const diffIds = [sha256Digest('l0'), sha256Digest('l1')];
  const chain = chainIds(diffIds);
  return {
    format: MANIFEST_FORMAT,
    name: 'shop',
    version: '1.4.2',
    sequence: 7,
    created: '2026-11-23T10:00:00.000Z',
    expires: null,
    tool: { name: 'ferry', version: '0.1.0' },
    compose: { file: 'compose/compose.yaml', smoke: null, services: [{ name: 'web', image: 'shop/web:1', imageId: sha256Digest('cfg') }] },
    hosts: { 'edge-1': { files: ['compose/hosts/edge-1.yaml'] } },
    images: [
      {
        refs: ['shop/web:1'],
        id: sha256Digest('cfg'),
        os: 'linux',
        architecture: 'amd64',
        config: { path: `blobs/sha256/${hex('cfg')}`, size: 3 },
        ociManifest: { digest: sha256Digest('m'), size: 1, path: `blobs/sha256/${hex('m')}` },
        layers: [
          { diffId: diffIds[0]!, chainId: chain[0]!, size: 100, included: true, blob: { digest: sha256Digest('b0'), size: 10, mediaType: 'x', path: `blobs/sha256/${hex('b0')}` } },
          {
            diffId: diffIds[1]!,
            chainId: chain[1]!,
            size: 100,
            included: true,
            blob: {
              digest: sha256Digest('b1'),
              size: 30,
              mediaType: 'x',
              parts: [
                { path: `blobs/sha256/${hex('b1')}.part-0001`, size: 20, sha256: hex('p1') },
                { path: `blobs/sha256/${hex('b1')}.part-0002`, size: 10, sha256: hex('p2') },
              ],
            },
          },
        ],
      },
    ],
    bases: [],
    files: [
      'compose/compose.yaml',
      'compose/hosts/edge-1.yaml',
      `blobs/sha256/${hex('cfg')}`,
      `blobs/sha256/${hex('m')}`,
      `blobs/sha256/${hex('b0')}`,
      `blobs/sha256/${hex('b1')}.part-0001`,
      `blobs/sha256/${hex('b1')}.part-0002`,
    ].map((path) => ({ path, size: 1, sha256: hex(path) })),
  };
}

function problemsOf(m: unknown): string[] {
  try {
    parseManifest(Buffer.from(JSON.stringify(m)));
  } catch (e) {
    expect(e).toBeInstanceOf(ManifestInvalid);
    return (e as ManifestInvalid).problems;
  }
  return [];
}

describe('manifest', () => {
  it('round-trips a valid manifest', () => {
    const m = validManifest();
    expect(parseManifest(serializeManifest(m))).toEqual(m);
  });

  it('refuses paths that could escape the bundle, naming the field', () => {
    const m = validManifest();
    m.files[0]!.path = '../../etc/passwd';
    m.compose.file = '/etc/passwd';
    const problems = problemsOf(m);
    expect(problems.join('\n')).toMatch(/files\[0\]\.path .*"\.\." segment/);
    expect(problems.join('\n')).toMatch(/compose\.file .*absolute/);
  });

  it('refuses references to files the manifest does not list', () => {
    const m = validManifest();
    m.files = m.files.filter((f) => !f.path.endsWith('.part-0002'));
    expect(problemsOf(m).join('\n')).toMatch(/parts\[1\]\.path .* is not in files/);
  });

  it('refuses parts that do not add up to the blob size', () => {
    const m = validManifest();
    m.images[0]!.layers[1]!.blob!.size = 31;
    expect(problemsOf(m).join('\n')).toMatch(/add up to 30, not 31/);
  });

  it('refuses duplicate files, bad digests, negative sizes and unknown formats', () => {
    const m = validManifest() as unknown as Record<string, unknown> & FerryManifest;
    m.files.push({ ...m.files[0]! });
    m.files[1]!.size = -1;
    m.images[0]!.id = 'sha256:nothex';
    (m as { format: string }).format = 'ferry.bundle/v9';
    const text = problemsOf(m).join('\n');
    expect(text).toMatch(/listed twice/);
    expect(text).toMatch(/files\[1\]\.size must be a whole number/);
    expect(text).toMatch(/images\[0\]\.id must be a sha256/);
    expect(text).toMatch(/this ferry reads ferry\.bundle\/v1/);
  });

  it('checks the carried executable against its files entry', () => {
    const m = validManifest();
    const entry = { path: 'ferry', size: 10, sha256: 'ab'.repeat(32) };
    m.files.push(entry);
    m.ferry = { path: 'ferry', version: '0.1.0', sha256: `sha256:${entry.sha256}`, size: 10 };
    expect(problemsOf(JSON.parse(serializeManifest(m).toString()))).toEqual([]);
    expect(problemsOf({ ...JSON.parse(serializeManifest(m).toString()), ferry: { ...m.ferry, size: 11 } })).toContain('ferry.sha256 and ferry.size differ from its files entry');
    expect(problemsOf({ ...JSON.parse(serializeManifest(m).toString()), ferry: { ...m.ferry, path: 'bin/ferry' } })).toContain('ferry.path must be "ferry"');
    m.files.pop();
    expect(problemsOf(JSON.parse(serializeManifest(m).toString()))).toContain('ferry.path ferry is not in files');
  });

  it('refuses garbage without throwing anything but ManifestInvalid', () => {
    for (const bytes of ['', 'null', '[]', '"x"', '{"format":', '{}', '{"files":{"length":1e9}}', '\u0000\u0001']) {
      expect(() => parseManifest(Buffer.from(bytes))).toThrow(ManifestInvalid);
    }
  });

  it('refuses a huge array before walking it', () => {
    const m = validManifest() as unknown as { files: unknown[] };
    m.files = new Array(200_001).fill(0);
    expect(problemsOf(m).join('\n')).toMatch(/more than 200000/);
  });
});
