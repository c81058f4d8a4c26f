/**
 * The docker save reader against archives built in memory, in both layouts engines write, fed in
 * odd-sized chunks so that no assumption about chunk boundaries can hide.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import * as tar from 'tar-stream';
import { describe, expect, it } from 'vitest';
import { gzipSync } from 'node:zlib';
import { compress } from 'zstd-napi';
import { uncompressedLayer } from '../../src/adapters/layer-stream.js';
import { readSaveArchive } from '../../src/adapters/save-archive.js';

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

type Entry = { name: string; data?: Buffer; linkname?: string };

async function archive(entries: Entry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    pack.on('data', (c: Buffer) => chunks.push(c));
    pack.on('end', () => resolve());
    pack.on('error', reject);
  });
  for (const e of entries) {
    if (e.linkname) pack.entry({ name: e.name, type: 'symlink', linkname: e.linkname });
    else pack.entry({ name: e.name }, e.data!);
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** Re-chunks a buffer into pieces of 1, 7, 511, 513, 4096… bytes. */
function oddChunks(buf: Buffer): Readable {
  const sizes = [1, 7, 511, 513, 4096, 65537];
  const parts: Buffer[] = [];
  for (let off = 0, i = 0; off < buf.length; i++) {
    const n = sizes[i % sizes.length]!;
    parts.push(buf.subarray(off, off + n));
    off += n;
  }
  return Readable.from(parts);
}

async function read(buf: Buffer) {
  return readSaveArchive(oddChunks(buf), async (entry) => {
    const h = createHash('sha256');
    let n = 0;
    for await (const c of entry) {
      h.update(c as Buffer);
      n += (c as Buffer).length;
    }
    return { digest: h.digest('hex'), size: n };
  });
}

describe('docker save archive reader', () => {
  it('reads the classic layout, resolving layer symlinks', async () => {
    const l0 = randomBytes(3000);
    const l1 = randomBytes(70_000);
    const config = Buffer.from(JSON.stringify({ rootfs: { type: 'layers', diff_ids: [`sha256:${sha(l0)}`, `sha256:${sha(l1)}`] } }));
    const id0 = 'a'.repeat(64);
    const id1 = 'b'.repeat(64);
    const id2 = 'c'.repeat(64);
    const manifest = Buffer.from(JSON.stringify([{ Config: `${sha(config)}.json`, RepoTags: ['x:1'], Layers: [`${id0}/layer.tar`, `${id2}/layer.tar`] }]));
    const buf = await archive([
      { name: `${id0}/VERSION`, data: Buffer.from('1.0') },
      { name: `${id0}/json`, data: Buffer.from('{}') },
      { name: `${id0}/layer.tar`, data: l0 },
      { name: `${id1}/layer.tar`, data: l1 },
      { name: `${id2}/layer.tar`, linkname: `../${id1}/layer.tar` },
      { name: `${sha(config)}.json`, data: config },
      { name: 'manifest.json', data: manifest },
      { name: 'repositories', data: Buffer.from('{}') },
    ]);
    const { images, layers } = await read(buf);
    expect(images).toHaveLength(1);
    expect(images[0]!.id).toBe(`sha256:${sha(config)}`);
    expect(images[0]!.repoTags).toEqual(['x:1']);
    expect(images[0]!.layerPaths.map((p) => layers.get(p)!.digest)).toEqual([sha(l0), sha(l1)]);
    expect(layers.size).toBe(2);
  });

  it('reads the OCI-style layout of Docker 25+, telling small layers from JSON blobs', async () => {
    const small = randomBytes(900); // a layer smaller than any JSON limit: only its bytes tell
    const config = Buffer.from(JSON.stringify({ rootfs: { diff_ids: [`sha256:${sha(small)}`] } }));
    const ociManifest = Buffer.from(JSON.stringify({ schemaVersion: 2, config: { digest: `sha256:${sha(config)}` } }));
    const buf = await archive([
      { name: 'blobs/sha256/' + sha(small), data: small },
      { name: 'blobs/sha256/' + sha(config), data: config },
      { name: 'blobs/sha256/' + sha(ociManifest), data: ociManifest },
      { name: 'index.json', data: Buffer.from('{"schemaVersion":2,"manifests":[]}') },
      { name: 'oci-layout', data: Buffer.from('{"imageLayoutVersion":"1.0.0"}') },
      { name: 'manifest.json', data: Buffer.from(JSON.stringify([{ Config: `blobs/sha256/${sha(config)}`, RepoTags: null, Layers: [`blobs/sha256/${sha(small)}`] }])) },
    ]);
    const { images, layers } = await read(buf);
    expect(images[0]!.id).toBe(`sha256:${sha(config)}`);
    expect(images[0]!.repoTags).toEqual([]);
    expect(layers.get(images[0]!.layerPaths[0]!)).toEqual({ digest: sha(small), size: 900 });
    expect(layers.size).toBe(1);
  });

  it('fails clearly when a layer the manifest names is absent', async () => {
    const config = Buffer.from('{}');
    const buf = await archive([
      { name: `${sha(config)}.json`, data: config },
      { name: 'manifest.json', data: Buffer.from(JSON.stringify([{ Config: `${sha(config)}.json`, Layers: ['d'.repeat(64) + '/layer.tar'] }])) },
    ]);
    await expect(read(buf)).rejects.toThrow(/has no layer/);
  });

  it('fails clearly without a manifest.json', async () => {
    await expect(read(await archive([{ name: 'x', data: Buffer.from('y') }]))).rejects.toThrow(/no manifest\.json/);
  });

  it('names an image by the manifest and index digests the containerd image store calls it by', async () => {
    const layer = gzipSync(randomBytes(5000));
    const config = Buffer.from(JSON.stringify({ os: 'linux', architecture: 'amd64', rootfs: { type: 'layers', diff_ids: [`sha256:${'a'.repeat(64)}`] } }));
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, config: { digest: `sha256:${sha(config)}`, size: config.length }, layers: [{ digest: `sha256:${sha(layer)}`, size: layer.length }] }));
    const index = Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [{ digest: `sha256:${sha(manifest)}`, size: manifest.length }] }));
    const buf = await archive([
      { name: `blobs/sha256/${sha(layer)}`, data: layer },
      { name: `blobs/sha256/${sha(config)}`, data: config },
      { name: `blobs/sha256/${sha(manifest)}`, data: manifest },
      { name: `blobs/sha256/${sha(index)}`, data: index },
      { name: 'manifest.json', data: Buffer.from(JSON.stringify([{ Config: `blobs/sha256/${sha(config)}`, RepoTags: ['shop/web:1'], Layers: [`blobs/sha256/${sha(layer)}`] }])) },
    ]);
    const { images } = await read(buf);
    expect(images[0]!.id).toBe(`sha256:${sha(config)}`);
    expect(images[0]!.aliases.sort()).toEqual([`sha256:${sha(manifest)}`, `sha256:${sha(index)}`].sort());
  });
});

describe('layers as uncompressed tars', () => {
  const tarBytes = randomBytes(200_000);
  const read = async (input: Buffer) => {
    const { stream, compression } = await uncompressedLayer(oddChunks(input));
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    return { bytes: Buffer.concat(chunks), compression };
  };
  it.each([
    ['none', tarBytes],
    ['gzip', gzipSync(tarBytes)],
    ['zstd', compress(tarBytes)],
  ] as const)('%s: the same bytes, whatever the store kept', async (kind, input) => {
    const got = await read(input);
    expect(got.compression).toBe(kind);
    expect(sha(got.bytes)).toBe(sha(tarBytes));
  });
  it('an empty layer is an empty uncompressed one', async () => {
    expect(await read(Buffer.alloc(0))).toEqual({ bytes: Buffer.alloc(0), compression: 'none' });
  });
  it('a corrupt gzip layer fails the stream', async () => {
    const bad = gzipSync(tarBytes);
    bad[bad.length >> 1] ^= 0xff;
    await expect(read(bad)).rejects.toThrow();
  });
});
