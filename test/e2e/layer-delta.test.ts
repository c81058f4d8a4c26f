/**
 * Sub-layer deltas through the built CLI: release 2 of a stack whose dependency layer gains one
 * file and edits another travels as a delta against release 1's layer; it is rebuilt byte for
 * byte while it streams into the load on Docker 20.10 (classic), Docker 26 on both stores, and
 * Podman; refused, with nothing loaded, where the engine lacks the reference or the delta lies.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cp, mkdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tar from 'tar-stream';
import { encodeCopy, encodeDataStart, encodeDelta, encodeDeltaHeader, END_OP, planDelta, rebuildLayer } from '../../src/core/layer-delta.js';
import { indexTar, TarIndexError } from '../../src/core/tar-index.js';
import { makeKey, resignedManifest, signerLine, type Key } from '../security/campaign.js';
import { buildDocker, ferry, run, targetDocker, tmpDir, uniqueName, type DockerClient, type RunResult } from '../support/engines.js';
import { startPodmanService, type PodmanService } from '../support/podman.js';

const exec = promisify(execFile);

interface Layer {
  diffId: string;
  included: boolean;
  size: number;
  blob: { digest: string; size: number; path: string } | null;
  delta?: { reference: string; referenceSize: number; digest: string; size: number; path: string; wholeSize?: number };
}
interface Manifest {
  images: { refs: string[]; id: string; layers: Layer[] }[];
  files: { path: string; size: number; sha256: string }[];
}

const docker = (host: string): DockerClient => ({ host, run: (args, opts = {}) => run('docker', args, { ...opts, env: { ...opts.env, DOCKER_HOST: host, DOCKER_CONTEXT: '' } }) });
const json = (r: RunResult) => JSON.parse(r.stdout) as { ok: boolean; result: any; error: { code: string; exitCode: number; message: string } };
const manifestOf = async (bundle: string): Promise<Manifest> => JSON.parse(await readFile(join(bundle, 'ferry.json'), 'utf8'));

let work: string;
let key: Key;
let trust: string;
let stack: string;
let repo: string;
const bundles: Record<string, string> = {};
/** Release 2's image, its ID, and release 1's. */
const ids: Record<'r1' | 'r2', string> = { r1: '', r2: '' };

/**
 * The dependency layer: 300 files of 4 KiB; release 2 edits one and adds one, as a package bump
 * does. The content names the run: no layer of an earlier run on the same engines can stand in.
 */
async function context(dir: string, release: 1 | 2): Promise<void> {
  await mkdir(join(dir, 'deps'), { recursive: true });
  const old = new Date('2026-01-01T00:00:00Z');
  for (let i = 0; i < 300; i++) {
    const body = Array.from({ length: 64 }, (_, j) => createHash('sha256').update(`${stack}-${i}-${j}`).digest('hex')).join('');
    const file = join(dir, 'deps', `mod${String(i).padStart(3, '0')}.py`);
    await writeFile(file, release === 2 && i === 7 ? `${body}\n# patched\n` : body);
    await utimes(file, old, release === 2 && i === 7 ? new Date('2026-02-01T00:00:00Z') : old);
  }
  if (release === 2) await writeFile(join(dir, 'deps', 'zz_new.py'), 'print("new package")\n');
  // The application layer: 60 modules, big enough to travel as a delta too; release 2 edits one.
  await mkdir(join(dir, 'app'), { recursive: true });
  for (let i = 0; i < 60; i++) {
    const code = Array.from({ length: 24 }, (_, j) => `export const f${j} = () => '${createHash('sha256').update(`${stack}-code-${i}-${j}`).digest('hex')}';`).join('\n');
    const file = join(dir, 'app', `m${i}.js`);
    await writeFile(file, release === 2 && i === 30 ? `${code}\nexport const patched = true;\n` : `${code}\n`);
    await utimes(file, old, release === 2 && i === 30 ? new Date('2026-02-01T00:00:00Z') : old);
  }
  await writeFile(join(dir, 'app', 'app.sh'), `echo release ${release}\n`);
  await utimes(join(dir, 'app', 'app.sh'), old, old);
  await utimes(join(dir, 'app'), old, old);
  await utimes(join(dir, 'deps'), old, old);
  await writeFile(join(dir, 'Dockerfile'), 'FROM ferry-demo/base:1.0.0\nCOPY deps/ /opt/deps/\nCOPY app/ /app/\nCMD ["sleep", "3600"]\n');
}

async function definition(release: 1 | 2): Promise<string> {
  const dir = join(work, `def-${release}`);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'ferry.yaml'), `name: ${stack}\nversion: 1.0.${release}\ncompose: compose.yaml\nhosts: {}\nimages: []\n`);
  await writeFile(join(dir, 'compose.yaml'), `services:\n  app:\n    image: ${repo}:r${release}\n    mem_limit: 64m\n`);
  return dir;
}

/** What each create printed on stderr, by bundle name. */
const createLogs: Record<string, string> = {};

async function create(name: string, release: 1 | 2, args: string[] = []): Promise<string> {
  const out = join(work, `${name}.ferry`);
  const r = await ferry(['bundle', 'create', await definition(release), '--out', out, '--sign-key', key.path, '--sequence', String(release), ...args], { timeoutMs: 300_000 });
  expect(r.code, r.stderr).toBe(0);
  bundles[name] = out;
  createLogs[name] = r.stderr;
  return out;
}

const install = (bundle: string, host: string, state: string, extra: string[] = [], asJson = true) =>
  ferry(['bundle', 'install', bundle, '--trust', trust, '--state-dir', state, '--no-up', ...(asJson ? ['--json'] : []), ...extra], { env: { DOCKER_HOST: host }, timeoutMs: 300_000 });

/** The layers an engine reports for the image ferry tagged for this stack and image ID. */
async function layersOn(d: DockerClient, imageId: string): Promise<string[] | null> {
  const r = await d.run(['image', 'inspect', '--format', '{{json .RootFS.Layers}}', `ferry.local/${stack}:${imageId.slice(7)}`]);
  return r.code === 0 ? (JSON.parse(r.stdout) as string[]) : null;
}

/** Removes both releases from an engine (by ferry's tags), so each case starts from what it sets up. */
async function forget(d: DockerClient): Promise<void> {
  for (const id of [ids.r2, ids.r1]) await d.run(['rmi', '-f', `ferry.local/${stack}:${id.slice(7)}`]);
}

beforeAll(async () => {
  work = await tmpDir();
  stack = uniqueName('dl').replace(/-/g, '').slice(0, 24);
  repo = `ferry-dl-${stack}/app`;
  key = await makeKey(work, 'signer');
  trust = join(work, 'allowed_signers');
  await writeFile(trust, `${signerLine(key)}\n`);
  for (const release of [1, 2] as const) {
    const dir = join(work, `ctx-${release}`);
    await context(dir, release);
    const built = await run('docker', ['build', '-q', '-t', `${repo}:r${release}`, dir], { env: { DOCKER_HOST: buildDocker().host, DOCKER_CONTEXT: '', DOCKER_BUILDKIT: '0' } });
    expect(built.code, built.stderr).toBe(0);
    ids[`r${release}`] = built.stdout.trim();
  }
  await create('r1', 1);
  await create('r2', 2, ['--base', bundles.r1!]);
  await create('r2-whole', 2, ['--base', bundles.r1!, '--no-delta']);
}, 600_000);

afterAll(async () => {
  await buildDocker().run(['rmi', '-f', `${repo}:r1`, `${repo}:r2`]);
  for (const t of TARGETS) await forget(docker(t.host()));
  await rm(work, { recursive: true, force: true });
});

describe('bundle create with --base: a changed layer travels as a delta', () => {
  it('ships the dependency layer as a delta against release 1\'s, far smaller than whole, and inspect and verify show it', async () => {
    const m1 = await manifestOf(bundles.r1!);
    const m2 = await manifestOf(bundles.r2!);
    const whole = await manifestOf(bundles['r2-whole']!);
    const deltas = m2.images[0]!.layers.filter((l) => l.delta);
    // The dependency layer and the application layer, each against its predecessor.
    expect(deltas).toHaveLength(2);
    const d = deltas[0]!;
    // The same position of release 1's image: the layer release 2 rebuilt.
    const position = m2.images[0]!.layers.indexOf(d);
    expect(d.delta!.reference).toBe(m1.images[0]!.layers[position]!.diffId);
    expect(d.blob).toBeNull();
    expect(d.included).toBe(true);
    const wholeBlob = whole.images[0]!.layers[position]!.blob!;
    expect(d.delta!.wholeSize).toBe(wholeBlob.size);
    expect(d.delta!.size * 20).toBeLessThan(wholeBlob.size);

    const inspect = json(await ferry(['bundle', 'inspect', bundles.r2!, '--trust', trust, '--json']));
    const shown = inspect.result.images[0].layers[position];
    expect(shown).toMatchObject({ shipping: 'delta', delta: { reference: d.delta!.reference, size: d.delta!.size } });
    const text = await ferry(['bundle', 'inspect', bundles.r2!, '--trust', trust]);
    expect(text.stdout).toMatch(/delta +layer \w{12} of .*against \w{12}.*% saved/);

    const verify = json(await ferry(['bundle', 'verify', bundles.r2!, '--trust', trust, '--json']));
    expect(verify.ok).toBe(true);
    expect(verify.result.deltas).toBe(2);
  });

  it('makes the same delta from the build engine alone (an inventory base, no layer cache)', async () => {
    const inv = join(work, 'holder.json');
    const d = targetDocker();
    await forget(d);
    expect((await install(bundles.r1!, d.host, join(work, 'state-inv'))).code).toBe(0);
    const r = await ferry(['host', 'inventory', '--out', inv], { env: { DOCKER_HOST: d.host } });
    expect(r.code, r.stderr).toBe(0);
    const out = await create('r2-inv', 2, ['--base', inv, '--no-cache', '-v']);
    // The build engine is a local classic store: the references are read from its files, no save,
    // and while the engine exports the images (the layers that changed are known from their configs).
    expect(createLogs['r2-inv']).toMatch(/as a delta against \S+ \(the engine's layer store, read during the save;/);
    expect((await manifestOf(out)).images[0]!.layers.filter((l) => l.delta).map((l) => l.diffId)).toEqual(
      (await manifestOf(bundles.r2!)).images[0]!.layers.filter((l) => l.delta).map((l) => l.diffId),
    );
  });
});

describe('byte-exact by construction', () => {
  it('rebuilds every layer of the test fixtures from a delta against another layer, sha256 equal to its diffID', async () => {
    const refs = ['ferry-demo/base:1.0.0', 'ferry-demo/web:1.0.0', 'ferry-demo/worker:1.0.0', 'ferry-demo/smoke:1.0.0', `${repo}:r1`, `${repo}:r2`];
    const save = spawn('docker', ['save', ...refs], { env: { ...process.env, DOCKER_HOST: buildDocker().host, DOCKER_CONTEXT: '' }, stdio: ['ignore', 'pipe', 'inherit'] });
    const extract = tar.extract();
    save.stdout!.pipe(extract);
    const chunks = async function* (b: Buffer) {
      for (let i = 0; i < b.length; i += 65_536) yield b.subarray(i, i + 65_536);
    };
    let previous: { bytes: Buffer; diffId: string } | null = null;
    const rebuilt: string[] = [];
    for await (const entry of extract) {
      const parts: Buffer[] = [];
      for await (const c of entry) parts.push(c as Buffer);
      const bytes = Buffer.concat(parts);
      if (!/(^|\/)layer\.tar$|^blobs\/sha256\/|^[0-9a-f]{64}\.tar$/.test(entry.header.name) || bytes.length < 1024) continue;
      const index = await indexTar(chunks(bytes)).catch((e: unknown) => (e instanceof TarIndexError ? null : Promise.reject(e)));
      if (!index) continue; // a config or manifest blob, not a layer
      const diffId = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
      const reference = previous ?? { bytes: Buffer.alloc(1024), diffId: `sha256:${createHash('sha256').update(Buffer.alloc(1024)).digest('hex')}` };
      const plan = planDelta(await indexTar(chunks(reference.bytes)), index);
      const header = { reference: reference.diffId, referenceSize: reference.bytes.length, target: diffId, targetSize: bytes.length, changes: plan.changes };
      const delta: Buffer[] = [];
      for await (const c of encodeDelta(header, plan, chunks(bytes))) delta.push(c);
      const out = createHash('sha256');
      for await (const c of rebuildLayer(chunks(Buffer.concat(delta)), chunks(reference.bytes), header)) out.update(c);
      expect(`sha256:${out.digest('hex')}`).toBe(diffId);
      rebuilt.push(diffId);
      previous = { bytes, diffId };
    }
    // base (3 layers), web, worker and smoke on top of it, and both releases of this test's image.
    expect(new Set(rebuilt).size).toBeGreaterThanOrEqual(8);
  });
});

interface Target {
  name: string;
  host: () => string;
  /** A classic store on this machine: references come from its own files, not from a save. */
  store: boolean;
}
const TARGETS: Target[] = [
  { name: 'Docker 20.10, classic store', host: () => targetDocker().host, store: true },
  { name: 'Docker 26, classic store', host: () => process.env.FERRY_D26_DOCKER_HOST!, store: true },
  { name: 'Docker 26, containerd image store', host: () => process.env.FERRY_D26C_DOCKER_HOST!, store: false },
];

describe('bundle install rebuilds the layer byte for byte while it streams into the load', () => {
  for (const t of TARGETS) {
    it(t.name, async () => {
      const d = docker(t.host());
      await forget(d);
      const state = join(work, `state-${uniqueName('t')}`);
      const r1 = await install(bundles.r1!, d.host, state);
      expect(r1.code, r1.stderr).toBe(0);
      const r2 = await install(bundles.r2!, d.host, state, [], false);
      expect(r2.code, r2.stderr).toBe(0);
      expect(r2.stderr).toMatch(/2 layers rebuilt from deltas against 2 layers this engine holds/);
      expect(r2.stderr.match(/read from the engine's layer store \(no save\)/g) ?? []).toHaveLength(t.store ? 2 : 0);
      const m2 = await manifestOf(bundles.r2!);
      expect(await layersOn(d, m2.images[0]!.id)).toEqual(m2.images[0]!.layers.map((l) => l.diffId));
    });
  }

  describe('Podman (Docker-compatible API)', () => {
    let podman: PodmanService | undefined;
    beforeAll(async () => {
      podman = await startPodmanService(work);
    }, 60_000);
    afterAll(async () => {
      for (const id of [ids.r1, ids.r2]) await run('podman', ['rmi', '-f', id.slice(7)]);
      podman?.stop();
    });

    it('rebuilds from what Podman\'s save gives back', async () => {
      const host = podman!.host;
      for (const id of [ids.r2, ids.r1]) await run('podman', ['rmi', '-f', id.slice(7)]);
      const state = join(work, 'state-podman');
      expect((await install(bundles.r1!, host, state)).code).toBe(0);
      const r2 = await install(bundles.r2!, host, state, [], false);
      expect(r2.code, r2.stderr).toBe(0);
      expect(r2.stderr).toMatch(/rebuilt from deltas/);
      const m2 = await manifestOf(bundles.r2!);
      const layers = JSON.parse((await exec('podman', ['image', 'inspect', '--format', '{{json .RootFS.Layers}}', m2.images[0]!.id.slice(7)])).stdout);
      expect(layers).toEqual(m2.images[0]!.layers.map((l) => l.diffId));
    });
  });
});

describe('refusals leave nothing loaded', () => {
  it('an engine without the reference layer: exit 6 naming the layer and the image, before anything is loaded', async () => {
    const d = targetDocker();
    await forget(d);
    // The host holds the base layers release 2 assumes, not release 1's dependency layer.
    const tar = join(work, 'base.tar');
    await exec('docker', ['save', '-o', tar, 'ferry-demo/base:1.0.0'], { env: { ...process.env, DOCKER_HOST: buildDocker().host } });
    expect((await d.run(['load', '-i', tar])).code).toBe(0);
    const r = await install(bundles.r2!, d.host, join(work, 'state-noref'));
    expect(r.code, r.stderr).toBe(6);
    const err = json(r).error;
    expect(err.code).toBe('MISSING_REFERENCE_LAYERS');
    expect(err.message).toContain(`of ${repo}:r2`);
    expect(await layersOn(d, (await manifestOf(bundles.r2!)).images[0]!.id)).toBeNull();
  });

  it('a delta signed by a trusted key that lies (ranges outside, overlapping, truncated, another reference): verify and install exit 4, nothing loaded', async () => {
    const d = targetDocker();
    await forget(d);
    expect((await install(bundles.r1!, d.host, join(work, 'state-lies'))).code).toBe(0);
    const m2 = await manifestOf(bundles.r2!);
    const layer = m2.images[0]!.layers.find((l) => l.delta)!;
    const delta = layer.delta!;
    const headOf = (reference: string, referenceSize: number) => encodeDeltaHeader({ reference, referenceSize, target: layer.diffId, targetSize: layer.size, changes: { added: [], changed: [], removed: [], omitted: 0 } });
    const head = headOf(delta.reference, delta.referenceSize);
    // A layer the host holds too (release 1's base), claimed as the reference: well formed, so
    // only the rebuild can tell that the bytes it gives are not the layer.
    const other = m2.images[0]!.layers.find((l) => !l.included && l.size >= 1024)!;
    const copied = Math.min(layer.size, other.size);
    const cases: { name: string; bytes: Buffer; reference?: { diffId: string; size: number }; verify: boolean }[] = [
      { name: 'a COPY outside the reference', bytes: Buffer.concat([head, encodeCopy(delta.referenceSize - 10, layer.size), END_OP]), verify: true },
      { name: 'overlapping COPYs', bytes: Buffer.concat([head, encodeCopy(0, 1024), encodeCopy(512, layer.size - 1024), END_OP]), verify: true },
      { name: 'a truncated DATA', bytes: Buffer.concat([head, encodeDataStart(layer.size), Buffer.alloc(4096)]), verify: true },
      {
        name: 'another reference',
        bytes: Buffer.concat([headOf(other.diffId, other.size), encodeCopy(0, copied), ...(layer.size > copied ? [encodeDataStart(layer.size - copied), Buffer.alloc(layer.size - copied)] : []), END_OP]),
        reference: { diffId: other.diffId, size: other.size },
        verify: false,
      },
    ];
    for (const c of cases) {
      const dir = join(work, `lie-${cases.indexOf(c)}.ferry`);
      await cp(bundles.r2!, dir, { recursive: true });
      const file = join(dir, delta.path);
      await writeFile(`${file}.raw`, c.bytes);
      await exec('zstd', ['-q', '-f', '-o', file, `${file}.raw`]);
      await rm(`${file}.raw`);
      const bytes = await readFile(file);
      const sha = createHash('sha256').update(bytes).digest('hex');
      await resignedManifest(dir, key, (text) => {
        const m = JSON.parse(text) as Manifest;
        const l = m.images[0]!.layers.find((x) => x.delta)!;
        l.delta!.size = bytes.length;
        if (c.reference) Object.assign(l.delta!, { reference: c.reference.diffId, referenceSize: c.reference.size });
        const f = m.files.find((x) => x.path === delta.path)!;
        f.size = bytes.length;
        f.sha256 = sha;
        return JSON.stringify(m, null, 2);
      });
      const v = await ferry(['bundle', 'verify', dir, '--trust', trust, '--json']);
      if (c.verify) {
        expect(v.code, `${c.name}: ${v.stdout}`).toBe(4);
        expect(json(v).error.code).toBe('DELTA_INVALID');
      } else {
        expect(v.code, `${c.name}: ${v.stdout}`).toBe(0);
      }
      const r = await install(dir, d.host, join(work, `state-lie-${cases.indexOf(c)}`));
      expect(r.code, `${c.name}: ${r.stdout}`).toBe(4);
      expect(json(r).error.code).toBe('DELTA_INVALID');
      expect(await layersOn(d, m2.images[0]!.id), c.name).toBeNull();
    }
  });
});
