/**
 * Only new bytes travel: bundles built against what a host holds (its inventory, or the previous
 * bundle), installed on the air-gapped classic-store engine both as a partial load and through
 * the splice path, refused when the host lacks an assumed layer, and loaded into Podman, which
 * refuses partial archives, through the splice path.
 */
import { execFile } from 'node:child_process';
import { cp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDocker, ferry, ROOT, run, targetDocker, tmpDir, uniqueName } from '../support/engines.js';
import { startPodmanService, type PodmanService } from '../support/podman.js';

const exec = promisify(execFile);

interface Layer {
  diffId: string;
  chainId: string;
  included: boolean;
  size: number;
}
interface Manifest {
  images: { refs: string[]; id: string; layers: Layer[] }[];
  bases: { kind: string; name: string }[];
}

let work: string;
let key: string;
let trust: string;
let stack: string;
let stateDir: string;
const bundles: Record<string, string> = {};
const target = () => ({ DOCKER_HOST: process.env.FERRY_TARGET_DOCKER_HOST! });

async function definition(version: string, tag: string): Promise<string> {
  const dir = join(work, `def-${version}`);
  await cp(join(ROOT, 'bundles/demo'), dir, { recursive: true, filter: (src) => !src.includes('/images') });
  const f = join(dir, 'ferry.yaml');
  await writeFile(f, (await readFile(f, 'utf8')).replace(/^name: .*$/m, `name: ${stack}`).replace(/^version: .*$/m, `version: ${version}`));
  const c = join(dir, 'compose.yaml');
  await writeFile(c, (await readFile(c, 'utf8')).replace(/:1\.0\.0/g, `:${tag}`));
  // Not the demo's port: a demo left running on the same engine must not break the test.
  const e1 = join(dir, 'hosts/edge-1.yaml');
  await writeFile(e1, (await readFile(e1, 'utf8')).replace('"8081:8080"', `"${30000 + (process.pid % 20000)}:8080"`));
  return dir;
}

async function create(version: string, tag: string, sequence: number, bases: string[] = []): Promise<string> {
  const out = join(work, `${version}.ferry`);
  const r = await ferry(['bundle', 'create', await definition(version, tag), '--out', out, '--sign-key', key, '--sequence', String(sequence), ...bases.flatMap((b) => ['--base', b])]);
  expect(r.code, r.stderr).toBe(0);
  return out;
}

const manifestOf = async (bundle: string): Promise<Manifest> => JSON.parse(await readFile(join(bundle, 'ferry.json'), 'utf8'));
const install = (bundle: string, extra: string[] = [], env = target()) =>
  ferry(['bundle', 'install', bundle, '--trust', trust, '--host', 'edge-1', '--state-dir', stateDir, '--wait-timeout', '60', ...extra], { env, timeoutMs: 300_000 });

async function imageIds(docker = targetDocker()): Promise<string> {
  return (await docker.run(['images', '-q', '--no-trunc'])).stdout.split('\n').sort().join('\n');
}

beforeAll(async () => {
  work = await tmpDir();
  stack = uniqueName('dd').replace(/-/g, '').slice(0, 24);
  stateDir = join(work, 'state');
  key = join(work, 'signer');
  const gen = await ferry(['keys', 'generate', '--out', key, '--json']);
  trust = join(work, 'allowed_signers');
  await writeFile(trust, `${JSON.parse(gen.stdout).result.allowedSignersLine}\n`);
  // Releases of the demo: 1.1.0 changes web's top layer; 1.3.0 again (its own build of the script).
  for (const v of ['1.1.0', '1.3.0']) {
    const built = await exec('bash', [join(ROOT, 'scripts/build-demo-images.sh'), '--version', v], { env: { ...process.env, DOCKER_HOST: process.env.FERRY_BUILD_DOCKER_HOST } });
    expect(built.stdout).toContain(`ferry-demo/web:${v}`);
  }
  // A target without these releases (by ID: other tags, e.g. ferry.local/…, may point at them),
  // so that what a bundle ships depends on this test alone.
  for (const v of ['1.0.0', '1.1.0', '1.3.0']) {
    for (const s of ['web', 'worker', 'smoke']) {
      const id = (await buildDocker().run(['image', 'inspect', '--format', '{{.Id}}', `ferry-demo/${s}:${v}`])).stdout.trim();
      const users = (await targetDocker().run(['ps', '-aq', '--filter', `ancestor=${id}`])).stdout.split('\n').filter(Boolean);
      if (users.length) await targetDocker().run(['rm', '-f', ...users]);
      await targetDocker().run(['rmi', '-f', id]);
    }
  }
  bundles.r1 = await create('1.0.0', '1.0.0', 1);
}, 600_000);

afterAll(async () => {
  if (!stack) return;
  const ids = (await targetDocker().run(['ps', '-aq', '--filter', `label=com.docker.compose.project=${stack}`])).stdout.split('\n').filter(Boolean);
  if (ids.length) await targetDocker().run(['rm', '-f', ...ids]);
});

describe('bundles that carry only what the host lacks', () => {
  it('release 2 built against the host inventory ships only the changed layer', async () => {
    const r = await install(bundles.r1);
    expect(r.code, r.stderr).toBe(0);
    const inv = join(work, 'edge-1.inventory.json');
    expect((await ferry(['host', 'inventory', '--out', inv, '--state-dir', stateDir], { env: target() })).code).toBe(0);

    bundles.r2 = await create('1.1.0', '1.1.0', 2, [inv]);
    const m = await manifestOf(bundles.r2);
    const web = m.images.find((i) => i.refs[0]!.includes('/web:'))!;
    expect(web.layers.filter((l) => l.included).length).toBe(1);
    expect(web.layers.at(-1)!.included).toBe(true);
    for (const im of m.images.filter((i) => i !== web)) expect(im.layers.every((l) => !l.included)).toBe(true);
    expect(m.bases.map((b) => b.kind)).toEqual(['inventory']);

    const full = await create('1.1.0-full', '1.1.0', 2);
    const size = async (b: string) => Number((await exec('du', ['-sb', b])).stdout.split('\t')[0]);
    expect(await size(bundles.r2)).toBeLessThan((await size(full)) / 10);

    const inspect = JSON.parse((await ferry(['bundle', 'inspect', bundles.r2, '--json'])).stdout).result;
    expect(inspect.bases[0].kind).toBe('inventory');
    const text = (await ferry(['bundle', 'inspect', bundles.r2])).stdout;
    expect(text).toMatch(/built for .*\(inventory\)/);
    expect(text).toMatch(/ASSUMED/);
  });

  it('installs it as a partial load on the classic store', async () => {
    const r = await install(bundles.r2, ['--splice', 'never']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/partial load/);
  });

  it('a previous bundle as base assumes its layers; installs through the splice path', async () => {
    bundles.r3 = await create('1.3.0', '1.3.0', 3, [bundles.r2]);
    const m = await manifestOf(bundles.r3);
    expect(m.bases).toMatchObject([{ kind: 'bundle', name: `${stack}-1.1.0` }]);
    const shipped = m.images.flatMap((i) => i.layers.filter((l) => l.included));
    expect(shipped.length).toBe(1);
    const r = await install(bundles.r3, ['--splice', 'always']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/\(splice\)/);
    // The loaded image is the one the manifest names, layer for layer.
    const web = m.images.find((i) => i.refs[0]!.includes('/web:'))!;
    const diffIds = JSON.parse((await targetDocker().run(['image', 'inspect', '--format', '{{json .RootFS.Layers}}', web.id])).stdout);
    expect(diffIds).toEqual(web.layers.map((l) => l.diffId));
  });

  it('refuses in preflight, naming layer and image, when the host lacks an assumed layer', async () => {
    // An image whose base only the build engine has; the bundle assumes the build engine's layers.
    const tag = `${uniqueName('ferry-lack')}/app:1`;
    const ctx = join(work, 'lack-ctx');
    await mkdir(ctx, { recursive: true });
    await writeFile(join(ctx, 'Dockerfile'), `FROM ferry-demo/base:1.0.0\nRUN echo ${tag} > /unique\nRUN echo top > /top\nUSER 10001\n`);
    expect((await buildDocker().run(['build', '-q', '-t', tag, ctx], { env: { DOCKER_BUILDKIT: '0' } })).code).toBe(0);
    const buildInv = join(work, 'build.inventory.json');
    expect((await ferry(['host', 'inventory', '--out', buildInv, '--state-dir', join(work, 'nostate')], { env: { DOCKER_HOST: process.env.FERRY_BUILD_DOCKER_HOST! } })).code).toBe(0);
    const def = join(work, 'def-lack');
    await mkdir(def, { recursive: true });
    await writeFile(join(def, 'ferry.yaml'), `name: ${stack}lack\ncompose: compose.yaml\n`);
    await writeFile(join(def, 'compose.yaml'), `services:\n  app:\n    image: ${tag}\n`);
    const out = join(work, 'lack.ferry');
    expect((await ferry(['bundle', 'create', def, '--out', out, '--sign-key', key, '--base', buildInv])).code).toBe(0);

    const before = await imageIds();
    const r = await ferry(['bundle', 'install', out, '--trust', trust, '--state-dir', stateDir, '--json'], { env: target() });
    expect(r.code).toBe(6);
    const err = JSON.parse(r.stdout).error;
    expect(err.code).toBe('MISSING_BASE_LAYERS');
    expect(err.message).toContain(tag);
    expect(err.details.missing.length).toBeGreaterThanOrEqual(2);
    expect(await imageIds()).toBe(before);
  });
});

describe('Podman (Docker-compatible API), which refuses partial archives', () => {
  let podman: PodmanService | undefined;

  beforeAll(async () => {
    podman = await startPodmanService(work);
    // The host holds release 1 (its base layers), as after a first full install.
    const tar = join(work, 'r1-images.tar');
    await exec('docker', ['save', '-o', tar, 'ferry-demo/web:1.0.0', 'ferry-demo/worker:1.0.0', 'ferry-demo/smoke:1.0.0'], { env: { ...process.env, DOCKER_HOST: process.env.FERRY_BUILD_DOCKER_HOST } });
    await exec('podman', ['load', '-i', tar]);
    await rm(tar);
    for (const s of ['web', 'worker', 'smoke']) await run('podman', ['rmi', '-f', `ferry-demo/${s}:1.1.0`]);
    for (const im of (await manifestOf(bundles.r2)).images) await run('podman', ['rmi', '-f', im.id.slice(7)]);
  }, 300_000);

  afterAll(async () => {
    podman?.stop();
  });

  it('is detected as Podman, refuses the partial archive, and loads through the splice path', async () => {
    const env = { DOCKER_HOST: podman!.host };
    const podmanState = join(work, 'podman-state');
    const partial = await ferry(['bundle', 'install', bundles.r2, '--trust', trust, '--host', 'edge-1', '--state-dir', podmanState, '--no-up', '--splice', 'never', '--json'], { env, timeoutMs: 300_000 });
    expect(partial.code).toBe(6);
    expect(JSON.parse(partial.stdout).error.message).toMatch(/layer tarfiles are missing|load/i);

    const spliced = await ferry(['bundle', 'install', bundles.r2, '--trust', trust, '--host', 'edge-1', '--state-dir', podmanState, '--no-up'], { env, timeoutMs: 300_000 });
    expect(spliced.code, spliced.stderr).toBe(0);
    expect(spliced.stderr).toMatch(/\(splice\)/);
    for (const im of (await manifestOf(bundles.r2)).images) {
      const layers = JSON.parse((await exec('podman', ['image', 'inspect', '--format', '{{json .RootFS.Layers}}', im.id.slice(7)])).stdout);
      expect(layers).toEqual(im.layers.map((l) => l.diffId));
    }
  });
});
