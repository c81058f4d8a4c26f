import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tar from 'tar-stream';
import { describe, expect, it } from 'vitest';
import {
  compareCompose,
  compareLayerFiles,
  compareLayers,
  compareText,
  imagesOfManifest,
  matchImages,
  MAX_DIFF_BYTES,
  repositoryOf,
  type SideImage,
} from '../../src/core/bundle-diff.js';
import type { FerryManifest } from '../../src/core/manifest.js';
import { TarFileLister, type LayerListing } from '../../src/core/tar-files.js';
import { LayerMismatch, listLayerFiles } from '../../src/adapters/layer-files.js';
import type { DiffResult } from '../../src/services/diff.js';
import { renderDiff } from '../../src/ui/render/diff.js';

const sha = (s: string | Buffer) => `sha256:${createHash('sha256').update(s).digest('hex')}`;
const d = (n: number) => `sha256:${n.toString(16).padStart(64, '0')}`;

async function packed(entries: { name: string; mode?: number; type?: 'file' | 'directory' | 'symlink' | 'link'; body?: string; linkname?: string }[]): Promise<Buffer> {
  const pack = tar.pack();
  for (const e of entries) {
    if (e.type && e.type !== 'file') pack.entry({ name: e.name, mode: e.mode ?? 0o755, type: e.type, ...(e.linkname ? { linkname: e.linkname } : {}) });
    else pack.entry({ name: e.name, mode: e.mode ?? 0o644 }, e.body ?? '');
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

function list(archive: Buffer, sizes: number[], max = 1000): LayerListing {
  const lister = new TarFileLister(max);
  let at = 0;
  for (let i = 0; at < archive.length; i++) {
    const n = sizes[i % sizes.length]!;
    lister.feed(archive.subarray(at, at + n));
    at += n;
  }
  return lister.finish();
}

describe('the files of a layer tar, with their content digests', () => {
  it('lists every entry with type, size, mode and sha256, however the bytes are cut', async () => {
    const long = `usr/lib/${'x'.repeat(180)}/file.py`;
    const archive = await packed([
      { name: 'app/', type: 'directory' },
      { name: 'app/main.py', body: 'print(1)\n'.repeat(100) },
      { name: 'app/empty', body: '' },
      { name: long, mode: 0o755, body: 'y'.repeat(513) },
      { name: 'app/link', type: 'symlink', linkname: 'main.py' },
      { name: 'app/hard', type: 'link', linkname: 'app/main.py' },
    ]);
    const want = [
      { path: 'app', type: 'dir', size: 0, mode: 0o755, digest: null },
      { path: 'app/main.py', type: 'file', size: 900, mode: 0o644, digest: sha('print(1)\n'.repeat(100)) },
      { path: 'app/empty', type: 'file', size: 0, mode: 0o644, digest: sha('') },
      { path: long, type: 'file', size: 513, mode: 0o755, digest: sha('y'.repeat(513)) },
      { path: 'app/link', type: 'symlink', size: 0, mode: 0o755, digest: sha('link:main.py'), link: 'main.py' },
      { path: 'app/hard', type: 'hardlink', size: 0, mode: 0o755, digest: sha('link:app/main.py'), link: 'app/main.py' },
    ];
    for (const sizes of [[archive.length], [1], [511, 3], [7, 1024, 100_000]]) {
      const l = list(archive, sizes);
      expect(l.files).toEqual(want);
      expect(l.entries).toBe(6);
      expect(l.truncated).toBe(false);
    }
  });

  it('reads a tar GNU tar wrote (./ prefixes, long names), with the digests sha256sum gives', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ferry-tarfiles-'));
    try {
      const root = join(dir, 'root');
      const deep = join(root, 'a'.repeat(120), 'b'.repeat(120));
      mkdirSync(deep, { recursive: true });
      writeFileSync(join(deep, 'f.txt'), 'hello\n');
      writeFileSync(join(root, 'g.bin'), Buffer.alloc(70_000, 7));
      symlinkSync('g.bin', join(root, 'g.link'));
      execFileSync('tar', ['--format=posix', '-C', root, '-cf', join(dir, 'l.tar'), '.']);
      const l = list(readFileSync(join(dir, 'l.tar')), [4096]);
      const byPath = new Map(l.files.map((f) => [f.path, f]));
      const f = byPath.get(`${'a'.repeat(120)}/${'b'.repeat(120)}/f.txt`)!;
      expect(f.digest).toBe(`sha256:${execFileSync('sha256sum', [join(deep, 'f.txt')]).toString().split(' ')[0]}`);
      expect(byPath.get('g.bin')).toMatchObject({ type: 'file', size: 70_000, digest: sha(Buffer.alloc(70_000, 7)) });
      expect(byPath.get('g.link')).toMatchObject({ type: 'symlink', link: 'g.bin' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('keeps at most the cap, counts the rest and says it is truncated', async () => {
    const archive = await packed(Array.from({ length: 50 }, (_, i) => ({ name: `f${i}`, body: `${i}` })));
    const l = list(archive, [1000], 10);
    expect(l.files).toHaveLength(10);
    expect(l.entries).toBe(50);
    expect(l.truncated).toBe(true);
  });
});

describe('a hostile layer tar', () => {
  it('never throws, keeps at most the cap, and ends, whatever the bytes', async () => {
    const archive = await packed([
      { name: 'app/', type: 'directory' },
      ...Array.from({ length: 20 }, (_, i) => ({ name: `${'p'.repeat(i * 13)}/f${i}`, body: 'z'.repeat(i * 300) })),
      { name: 'ln', type: 'symlink', linkname: 'x' },
    ]);
    let seed = 11;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
    for (let round = 0; round < 400; round++) {
      const bytes = Buffer.from(archive);
      // Mostly header bytes: where the parser decides sizes, types and names.
      for (let k = 0; k < 1 + rand(8); k++) bytes[rand(4) ? (rand(bytes.length / 512) | 0) * 512 + rand(512) : rand(bytes.length)] = rand(256);
      const cut = bytes.subarray(0, bytes.length - rand(2000));
      const l = list(cut, [1 + rand(3000)], 5);
      expect(l.files.length).toBeLessThanOrEqual(5);
      for (const f of l.files) expect(Number.isSafeInteger(f.size)).toBe(true);
    }
    // A PAX size of 10^400 is Infinity as a number: the entry runs to the end, nothing breaks.
    const pax = Buffer.alloc(1536);
    const record = `${'9'.repeat(400)}`;
    const line = `${String(record.length + 8).padStart(3, '0')} size=${record}\n`;
    const fixed = `${line.length + (String(line.length).length - 3)} size=${record}\n`;
    pax.write('pax', 0);
    pax.write(Buffer.byteLength(fixed).toString(8).padStart(11, '0'), 124);
    pax.write('x', 156);
    pax.write(fixed, 512);
    pax.write('huge', 1024);
    pax.write('0', 1024 + 156);
    const l = list(Buffer.concat([pax, Buffer.alloc(4096, 1)]), [100]);
    expect(l.files).toMatchObject([{ path: 'huge', size: Number.MAX_SAFE_INTEGER, digest: null }]);
  });
});

describe('a layer read from its zstd blob', () => {
  it('lists it when it is the diffID the manifest says; refuses other bytes, and stops at the size given', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ferry-layerfiles-'));
    try {
      const archive = await packed([{ name: 'a', body: 'x'.repeat(100_000) }, { name: 'b', body: 'y' }]);
      writeFileSync(join(dir, 'l.tar'), archive);
      execFileSync('zstd', ['-q', join(dir, 'l.tar'), '-o', join(dir, 'l.zst')]);
      const blob = { digest: d(1), size: 0, mediaType: 'x', path: 'l.zst' };
      const l = await listLayerFiles(dir, blob, sha(archive), archive.length, 100);
      expect(l.files.map((f) => f.path)).toEqual(['a', 'b']);
      await expect(listLayerFiles(dir, blob, d(2), archive.length, 100)).rejects.toThrow(LayerMismatch);
      // A blob that decompresses to more than the manifest says (a zstd bomb) stops there.
      await expect(listLayerFiles(dir, blob, sha(archive), 4096, 100)).rejects.toThrow(/longer than the 4096 bytes/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('comparing two layers file by file', () => {
  it('sorts files into added, changed (type, size, mode or content) and removed', async () => {
    const old = list(await packed([{ name: 'same', body: 'x' }, { name: 'content', body: 'aaa' }, { name: 'mode', body: 'm' }, { name: 'gone', body: 'g' }, { name: 'ln', type: 'symlink', linkname: 'a' }]), [10_000]);
    const next = list(await packed([{ name: 'same', body: 'x' }, { name: 'content', body: 'bbb' }, { name: 'mode', mode: 0o755, body: 'm' }, { name: 'new', body: 'n' }, { name: 'ln', type: 'symlink', linkname: 'b' }]), [10_000]);
    const c = compareLayerFiles(old, next, 'old-layer');
    expect(c.added.map((f) => f.path)).toEqual(['new']);
    expect(c.changed.map((f) => f.path)).toEqual(['content', 'ln', 'mode']);
    expect(c.changed[0]).toMatchObject({ old: { size: 3, digest: sha('aaa') }, new: { size: 3, digest: sha('bbb') } });
    expect(c.changed[2]).toMatchObject({ old: { mode: 0o644 }, new: { mode: 0o755 } });
    expect(c.removed.map((f) => f.path)).toEqual(['gone']);
    expect(c.counts).toEqual({ added: 1, changed: 3, removed: 1 });
    const unknown = compareLayerFiles(null, next, 'unknown');
    expect(unknown.counts).toEqual({ added: 5, changed: 0, removed: 0 });
    expect(unknown.newEntries).toBe(5);
  });
});

const layer = (n: number, extra: Partial<SideImage['layers'][number]> = {}) => ({ diffId: d(n), chainId: d(1000 + n), size: n * 10, shipping: 'whole' as const, reference: null, ...extra });

describe('matching images and comparing their layers', () => {
  it('takes the repository from a reference with a port, a tag or a digest', () => {
    expect(repositoryOf('shop/web:1.4.2')).toBe('shop/web');
    expect(repositoryOf('registry:5000/shop/web:1')).toBe('registry:5000/shop/web');
    expect(repositoryOf('registry:5000/shop/web')).toBe('registry:5000/shop/web');
    expect(repositoryOf(`shop/web@${d(1)}`)).toBe('shop/web');
  });

  it('pairs by ID, then service, then repository (the closest candidate), leaving the rest added or removed', () => {
    const im = (id: number, refs: string[], services: string[], layers: number[]): SideImage => ({ id: d(id), refs, services, layers: layers.map((n) => layer(n)) });
    const olds = [im(1, ['shop/db:1'], ['db'], [1]), im(2, ['shop/web:1.4.1'], [], [1, 2]), im(3, ['shop/web:1.4.2'], [], [1, 3]), im(4, ['shop/api:1'], ['api'], [4]), im(5, ['old/gone:1'], [], [5])];
    const news = [im(1, ['shop/db:1'], ['db'], [1]), im(6, ['shop/web:1.4.3'], [], [1, 3, 6]), im(7, ['other/api:2'], ['api'], [7]), im(8, ['new/thing:1'], [], [8])];
    const pairs = matchImages(olds, news).map((p) => [p.old?.id ?? null, p.new?.id ?? null]);
    expect(pairs).toEqual([[d(1), d(1)], [d(3), d(6)], [d(4), d(7)], [null, d(8)], [d(2), null], [d(5), null]]);
  });

  it('compares layers position by position and marks what a host holds by chain ID', () => {
    const o: SideImage = { id: d(1), refs: [], services: [], layers: [layer(1), layer(2), layer(3)] };
    const n: SideImage = { id: d(2), refs: [], services: [], layers: [layer(1), layer(4, { shipping: 'delta', reference: d(2) }), layer(3), layer(5)] };
    const rows = compareLayers(o, n, new Set([d(1001), d(1003)]));
    expect(rows.map((r) => [r.status, r.shipping, r.held])).toEqual([
      ['unchanged', 'whole', true],
      ['changed', 'delta', false],
      ['unchanged', 'whole', true],
      ['added', 'whole', false],
    ]);
    expect(rows[1]).toMatchObject({ oldDiffId: d(2), newDiffId: d(4), reference: d(2) });
    expect(compareLayers(n, o, null).map((r) => r.status)).toEqual(['unchanged', 'changed', 'unchanged', 'removed']);
    expect(compareLayers(n, o, null)[3]).toMatchObject({ held: null, shipping: null, size: 50 });
  });
});

function manifest(over: { compose?: string; hosts?: Record<string, Record<string, string>>; project?: Record<string, string>; images?: FerryManifest['images'] }): { m: FerryManifest; texts: Map<string, string> } {
  const files: FerryManifest['files'] = [];
  const texts = new Map<string, string>();
  const add = (path: string, text: string) => {
    files.push({ path, size: Buffer.byteLength(text), sha256: sha(text).slice(7) });
    texts.set(path, text);
  };
  add('compose/compose.yaml', over.compose ?? 'services: {}\n');
  const hosts: FerryManifest['hosts'] = {};
  for (const [h, fs] of Object.entries(over.hosts ?? {})) {
    hosts[h] = { files: Object.keys(fs).map((name) => `compose/hosts/${h}/${name}`) };
    for (const [name, text] of Object.entries(fs)) add(`compose/hosts/${h}/${name}`, text);
  }
  const projectFiles = Object.entries(over.project ?? {}).map(([p, text]) => {
    add(`compose/project/${p}`, text);
    return { path: `compose/project/${p}`, kind: 'bind' as const, services: ['web'] };
  });
  const m = {
    compose: { file: 'compose/compose.yaml', smoke: null, services: [{ name: 'web', image: 'shop/web:1', imageId: d(1) }], projectFiles },
    hosts,
    files,
    images: over.images ?? [],
  } as unknown as FerryManifest;
  return { m, texts };
}

describe('comparing the compose side', () => {
  it('diffs the compose file and each host override, and compares project files by sha256', () => {
    const a = manifest({ compose: 'services:\n  web:\n    image: shop/web:1.4.2\n', hosts: { 'edge-1': { 'compose.yaml': 'ports: [8081]\n' }, 'edge-2': { 'compose.yaml': 'x\n' } }, project: { 'app.env': 'A=1\n', 'same.conf': 's\n', 'gone.conf': 'g\n' } });
    const b = manifest({ compose: 'services:\n  web:\n    image: shop/web:1.4.3\n', hosts: { 'edge-1': { 'compose.yaml': 'ports: [8082]\n', 'env': 'E=1\n' }, 'edge-3': { 'compose.yaml': 'y\n' } }, project: { 'app.env': 'A=2\n', 'same.conf': 's\n', 'new.conf': 'n\n' } });
    const c = compareCompose(a.m, b.m, a.texts, b.texts);
    expect(c.file).toMatchObject({ status: 'changed', linesAdded: 1, linesRemoved: 1, notDiffed: null });
    expect(c.file.hunks![0]!.lines).toContain('+    image: shop/web:1.4.3');
    expect(c.hosts.map((h) => [h.host, h.status, h.files.map((f) => f.status)])).toEqual([
      ['edge-1', 'changed', ['changed', 'added']],
      ['edge-2', 'removed', ['removed']],
      ['edge-3', 'added', ['added']],
    ]);
    expect(c.projectFiles.map((p) => [p.path, p.status])).toEqual([
      ['compose/project/app.env', 'changed'],
      ['compose/project/gone.conf', 'removed'],
      ['compose/project/new.conf', 'added'],
    ]);
    expect(c.projectFilesUnchanged).toBe(1);
  });

  it('does not diff a text too large or not read (binary), naming both sha256', () => {
    const side = (text: string | null, size: number) => ({ path: 'compose/compose.yaml', size, sha256: sha(`${size}${text}`).slice(7), text });
    expect(compareText(side('a', MAX_DIFF_BYTES + 1), side('b', 1))).toMatchObject({ status: 'changed', notDiffed: 'too-large', hunks: null });
    expect(compareText(side(null, 10), side('b', 1))).toMatchObject({ notDiffed: 'binary', hunks: null });
    expect(compareText(side('a\n'.repeat(20_001), 40_002), side('b', 1))).toMatchObject({ notDiffed: 'too-large' });
    const same = side('a', 1);
    expect(compareText(same, same)).toMatchObject({ status: 'unchanged', hunks: null });
  });

  it('reads a delta layer from the manifest with its reference', () => {
    const { m } = manifest({
      images: [
        {
          refs: ['shop/web:1'],
          id: d(1),
          os: 'linux',
          architecture: 'amd64',
          config: { path: 'c', size: 1 },
          ociManifest: { digest: d(9), size: 1, path: 'o' },
          layers: [
            { diffId: d(2), chainId: d(2), size: 5, included: true, blob: null, delta: { reference: d(3), referenceSize: 4, digest: d(4), size: 1, mediaType: 'x', path: 'p' } } as FerryManifest['images'][number]['layers'][number],
            { diffId: d(5), chainId: d(6), size: 5, included: false, blob: null },
          ],
        },
      ],
    });
    const [im] = imagesOfManifest(m);
    expect(im!.services).toEqual(['web']);
    expect(im!.layers.map((l) => [l.shipping, l.reference])).toEqual([['delta', d(3)], ['assumed', null]]);
  });
});

describe('the text a reviewer reads', () => {
  it('lists 200 files per layer then counts the rest; marks setuid files, whiteouts and what the old side does not know', () => {
    const next = list0([
      ...Array.from({ length: 250 }, (_, i) => ({ path: `f${String(i).padStart(3, '0')}`, type: 'file' as const, size: 1, mode: 0o644, digest: sha(`${i}`) })),
      { path: 'usr/bin/su', type: 'file', size: 9, mode: 0o4755, digest: sha('su') },
      { path: 'etc/.wh.motd', type: 'file', size: 0, mode: 0o644, digest: sha('') },
    ]);
    const files = compareLayerFiles(null, next, 'unknown');
    const result = {
      old: { kind: 'inventory', path: 'inv.json', host: 'edge-1', created: '2026-01-01T00:00:00.000Z', stacks: [{ stack: 'shop', current: '1.4.2', highestSequence: 3 }] },
      new: { kind: 'bundle', path: '/b', name: 'shop', version: '1.4.3', sequence: 4, created: '2026-01-02T00:00:00.000Z', signature: { present: false, fingerprint: null, trusted: false, principals: [], code: 'TRUST_UNSIGNED', problem: 'unsigned' } },
      images: [
        {
          status: 'changed',
          old: { refs: ['shop/web:1.4.2'], id: d(1), services: [] },
          new: { refs: ['shop/web:1.4.3'], id: d(2), services: ['web'] },
          held: false,
          counts: { unchanged: 0, changed: 1, added: 0, removed: 0 },
          layers: [{ index: 0, status: 'changed', oldDiffId: d(3), newDiffId: d(4), size: 1000, shipping: 'whole', reference: null, held: false, files, filesUnavailable: null }],
        },
      ],
      compose: null,
      composeUnknown: 'the old side is a host inventory',
      summary: { images: { unchanged: 0, changed: 1, added: 0, removed: 0 }, layers: { unchanged: 0, changed: 1, added: 0, removed: 0 }, files: { added: 252, changed: 0, removed: 0 }, truncated: false },
    } as DiffResult;
    const text = renderDiff(result);
    const rows = text.split('\n').filter((l) => l.startsWith('    + '));
    expect(rows).toHaveLength(200);
    expect(text).toContain('    … and 52 more (see --json)');
    expect(text).toContain("files: the old layer's contents are unknown (a host inventory lists layers, not files); its 252 entries are listed as added");
    expect(text).toContain('runs shop 1.4.2');
    expect(text).toMatch(/none \(UNSIGNED: TRUST_UNSIGNED/);
    const few = renderDiff(result, { filesPerLayer: 1000 });
    expect(few).toContain('    + usr/bin/su  9 B 4755 SETUID');
    expect(few).toContain('    + etc/.wh.motd  0 B 0644  (whiteout: deletes etc/motd)');
  });
});

function list0(files: LayerListing['files']): LayerListing {
  return { files, entries: files.length, truncated: false };
}
