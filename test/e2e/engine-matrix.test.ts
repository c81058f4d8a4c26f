/**
 * The whole host journey on today's engines, through the built CLI: Docker 26 on the classic
 * overlay2 store and on the containerd image store (the default of fresh Docker 29 installs), with
 * Compose v2 and v1, each engine in its own network namespace (scripts/engines26.sh). Docker 20.10
 * with Compose v1 is host-journey.test.ts.
 *
 * Bundles are made on the 20.10 build engine (crossed: 20.10 → 26), release 2 against an inventory
 * the target itself wrote (so a containerd-store inventory is a valid --base), and one bundle is
 * made on the containerd store and installed on 20.10 (crossed the other way).
 */
import { cp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDocker, ferry, ROOT, run, targetDocker, tmpDir, uniqueName, type DockerClient, type RunResult } from '../support/engines.js';

interface Target {
  name: string;
  dockerHost: () => string;
  netns: () => string;
  compose: 'v1' | 'v2';
  containerdStore: boolean;
  /** The engine an earlier target used, emptied first: every journey starts on a fresh host. */
  reset?: 'd26' | 'd26c';
}

const TARGETS: Target[] = [
  { name: 'Docker 26, classic store, Compose v2', dockerHost: () => process.env.FERRY_D26_DOCKER_HOST!, netns: () => process.env.FERRY_D26_NETNS!, compose: 'v2', containerdStore: false },
  { name: 'Docker 26, containerd store, Compose v2', dockerHost: () => process.env.FERRY_D26C_DOCKER_HOST!, netns: () => process.env.FERRY_D26C_NETNS!, compose: 'v2', containerdStore: true },
  { name: 'Docker 26, containerd store, Compose v1', dockerHost: () => process.env.FERRY_D26C_DOCKER_HOST!, netns: () => process.env.FERRY_D26C_NETNS!, compose: 'v1', containerdStore: true, reset: 'd26c' },
];

let work: string;
let trust: string;
let key: string;
/** The demo images' second version, built once on the 20.10 build engine. */
const IMAGES_V2 = `1.1.0`;

const docker = (host: string): DockerClient => ({ host, run: (args, opts = {}) => run('docker', args, { ...opts, env: { ...opts.env, DOCKER_HOST: host, DOCKER_CONTEXT: '' } }) });
const json = (r: RunResult) => JSON.parse(r.stdout) as { ok: boolean; result: any; error: { code: string; exitCode: number; message: string; details: any } };

async function definition(dir: string, stack: string, version: string, port: number, edit?: (compose: string) => string): Promise<string> {
  await cp(join(ROOT, 'bundles/demo'), dir, { recursive: true, filter: (src) => !src.includes('/images') });
  const edge1 = join(dir, 'hosts/edge-1.yaml');
  await writeFile(edge1, (await readFile(edge1, 'utf8')).replace('"8081:8080"', `"${port}:8080"`));
  const f = join(dir, 'ferry.yaml');
  await writeFile(f, (await readFile(f, 'utf8')).replace(/^name: .*$/m, `name: ${stack}`).replace(/^version: .*$/m, `version: ${version}`));
  let compose = (await readFile(join(dir, 'compose.yaml'), 'utf8')).replace(/ferry-demo\/(web|worker|smoke):1\.0\.0/g, (_m, svc) => `ferry-demo/${svc}:${version.startsWith('1.1') ? IMAGES_V2 : '1.0.0'}`);
  // The demo's shell entrypoints ignore SIGTERM: a short grace period keeps every switch quick.
  compose = compose.replace(/^( +)restart: unless-stopped$/gm, '$1restart: unless-stopped\n$1stop_grace_period: 1s');
  await writeFile(join(dir, 'compose.yaml'), edit ? edit(compose) : compose);
  return dir;
}

async function create(def: string, out: string, sequence: number, extra: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<string> {
  const path = join(work, out);
  const r = await ferry(['bundle', 'create', def, '--out', path, '--sign-key', key, '--sequence', String(sequence), ...extra], { env, timeoutMs: 300_000 });
  expect(r.code, r.stdout + r.stderr).toBe(0);
  return path;
}

beforeAll(async () => {
  work = await tmpDir('ferry-matrix-');
  key = join(work, 'signer');
  const gen = await ferry(['keys', 'generate', '--out', key, '--json']);
  trust = join(work, 'allowed_signers');
  await writeFile(trust, `${JSON.parse(gen.stdout).result.allowedSignersLine}\n`);
  const built = await run('bash', [join(ROOT, 'scripts/build-demo-images.sh'), '--version', IMAGES_V2], { env: { DOCKER_HOST: buildDocker().host }, timeoutMs: 300_000 });
  expect(built.code, built.stderr).toBe(0);
}, 600_000);

describe.each(TARGETS)('$name', (t) => {
  const port = 21000 + ((process.pid + TARGETS.indexOf(t)) % 9000);
  let stack: string;
  let stateDir: string;
  const bundles = { r1: '', r2: '', broken: '' };
  let engine: DockerClient;
  const composeArgs = () => ['--compose-cmd', t.compose === 'v2' ? 'docker compose' : 'docker-compose'];
  const env = () => ({ DOCKER_HOST: t.dockerHost(), ...(t.compose === 'v2' ? { DOCKER_CONFIG: process.env.FERRY_COMPOSE_V2_CONFIG! } : {}) });
  const install = (bundle: string, extra: string[] = []) =>
    ferry(['bundle', 'install', bundle, '--trust', trust, '--host', 'edge-1', '--state-dir', stateDir, '--wait-timeout', '60', ...composeArgs(), ...extra], { env: env(), timeoutMs: 300_000 });
  const page = async () => {
    const r = await run('nsenter', [`--net=${t.netns()}`, 'wget', '-qO-', `http://127.0.0.1:${port}/`]);
    return r.code === 0 ? r.stdout : `unreachable (${r.code}): ${r.stderr}`;
  };
  const status = async () => json(await ferry(['host', 'status', stack, '--state-dir', stateDir, '--json'], { env: env() })).result.stacks[0];

  beforeAll(async () => {
    engine = docker(t.dockerHost());
    if (t.reset) expect((await run('bash', [join(ROOT, 'scripts/engines26.sh'), 'reset', t.reset], { timeoutMs: 180_000 })).code).toBe(0);
    stack = uniqueName(`mx${TARGETS.indexOf(t)}`).replace(/-/g, '').slice(0, 30);
    stateDir = join(work, `state-${stack}`);
    bundles.r1 = await create(await definition(join(work, `def-${stack}-r1`), stack, '1.0.0', port), `${stack}-r1.ferry`, 1);
  }, 600_000);

  afterAll(async () => {
    const ids = (await engine.run(['ps', '-aq', '--filter', `label=com.docker.compose.project=${stack}`])).stdout.split('\n').filter(Boolean);
    if (ids.length) await engine.run(['rm', '-f', ...ids]);
  }, 120_000);

  it('is the engine and compose it says', async () => {
    const info = await engine.run(['info', '--format', '{{.ServerVersion}} {{json .DriverStatus}}']);
    expect(info.stdout).toMatch(/^26\./);
    expect(info.stdout.includes('io.containerd.snapshotter.v1')).toBe(t.containerdStore);
    const v = await run(t.compose === 'v2' ? 'docker' : 'docker-compose', t.compose === 'v2' ? ['compose', 'version', '--short'] : ['version', '--short'], { env: env() });
    expect(v.stdout.trim()).toMatch(t.compose === 'v2' ? /^2\./ : /^1\./);
  });

  // Regressions: on the containerd store, "after loading, image … is absent on the engine"; with
  // Compose v2 2.26, "smoke test smoke exited 16: unknown flag: --pull".
  it('installs release 1 made on Docker 20.10: healthy, answering, every service on its pinned image', async () => {
    const r = await install(bundles.r1, ['--json']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(json(r).result).toMatchObject({ stack, version: '1.0.0', outcome: 'installed' });
    const html = await page();
    expect(html).toContain('<span id="version">1.0.0</span>');
    const s = await status();
    const running = s.services.filter((x: { service: string }) => x.service !== 'smoke');
    expect(running.length).toBeGreaterThan(0);
    for (const svc of running) expect(svc, JSON.stringify(svc)).toMatchObject({ imageMatches: true, state: 'running' });
    // What the engine shows as the image ID is the config digest only on the classic store.
    const manifest = JSON.parse(await readFile(join(bundles.r1, 'ferry.json'), 'utf8'));
    const web = manifest.images.find((i: { refs: string[] }) => i.refs.some((x) => x.includes('/web:'))).id as string;
    const shown = (await engine.run(['image', 'inspect', '--format', '{{.Id}}', `ferry.local/${stack}:${web.slice(7)}`])).stdout.trim();
    expect(shown === web).toBe(!t.containerdStore);
  });

  it('installing the current release again is a no-op', async () => {
    const r = await install(bundles.r1);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/already current/);
  });

  it('upgrades with a delta bundle built against this engine\'s own inventory', async () => {
    const inv = join(work, `${stack}.inventory.json`);
    const i = await ferry(['host', 'inventory', '--out', inv, '--state-dir', stateDir], { env: env() });
    expect(i.code, i.stderr).toBe(0);
    const doc = JSON.parse(await readFile(inv, 'utf8'));
    expect(doc.engine.containerdStore).toBe(t.containerdStore);
    bundles.r2 = await create(await definition(join(work, `def-${stack}-r2`), stack, '1.1.0', port), `${stack}-r2.ferry`, 2, ['--base', inv]);
    const m = JSON.parse(await readFile(join(bundles.r2, 'ferry.json'), 'utf8'));
    const layers = m.images.flatMap((im: { layers: { included: boolean }[] }) => im.layers);
    expect(layers.some((l: { included: boolean }) => !l.included)).toBe(true);
    const r = await install(bundles.r2);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    // A partial archive where the engine takes one, the host's own layers spliced in where not.
    expect(r.stderr).toMatch(t.containerdStore ? /\(splice\)/ : /partial load/);
    expect(await page()).toContain('<span id="version">1.1.0</span>');
    for (const svc of (await status()).services.filter((x: { service: string }) => x.service !== 'smoke')) expect(svc).toMatchObject({ imageMatches: true });
  });

  it('restores release 2 when release 3 fails its health check (exit 7)', async () => {
    // Made after release 2: hosts refuse a bundle created before the newest they installed.
    bundles.broken = await create(
      await definition(join(work, `def-${stack}-broken`), stack, '1.1.1', port, (c) => c.replace('["CMD", "wget", "-qO-", "http://127.0.0.1:8080/health"]', '["CMD", "false"]').replace(/retries: 5/, 'retries: 1')),
      `${stack}-broken.ferry`,
      3,
    );
    const r = await install(bundles.broken, ['--json']);
    expect(r.code, r.stdout + r.stderr).toBe(7);
    expect(json(r).error.details.restored).toBe('2-1.1.0');
    expect(await page()).toContain('<span id="version">1.1.0</span>');
  });

  it('rolls back to release 1, and status says every service runs its pinned image', async () => {
    const r = await ferry(['host', 'rollback', stack, '--state-dir', stateDir, '--wait-timeout', '60', ...composeArgs()], { env: env(), timeoutMs: 300_000 });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(await page()).toContain('<span id="version">1.0.0</span>');
    const s = await status();
    expect(s.current.id).toBe('1-1.0.0');
    for (const svc of s.services.filter((x: { service: string }) => x.service !== 'smoke')) expect(svc).toMatchObject({ imageMatches: true, state: 'running' });
  });

  it('prunes releases beyond --keep, with the images no kept release uses', async () => {
    const r2 = JSON.parse(await readFile(join(bundles.r2, 'ferry.json'), 'utf8'));
    const r = await install(bundles.r2, ['--keep', '1']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const s = await status();
    expect(s.releases.map((x: { id: string }) => x.id)).toEqual(['2-1.1.0']);
    const tags = (await engine.run(['images', '--format', '{{.Repository}}:{{.Tag}}'])).stdout.split('\n').filter((x) => x.startsWith(`ferry.local/${stack}:`));
    expect(tags.sort()).toEqual([...new Set(r2.images.map((im: { id: string }) => `ferry.local/${stack}:${im.id.slice(7)}`))].sort());
  });
});

describe('crossed: a bundle made on the containerd image store installs on Docker 20.10', () => {
  // Regression: "the engine's save archive does not contain image sha256:…" (a manifest digest).
  it('creates on Docker 26 (containerd store) and installs on the 20.10 air-gapped engine', async () => {
    const d26c = docker(process.env.FERRY_D26C_DOCKER_HOST!);
    const built = await run('bash', [join(ROOT, 'scripts/build-demo-images.sh'), '--version', '2.6.0'], { env: { DOCKER_HOST: d26c.host }, timeoutMs: 300_000 });
    expect(built.code, built.stderr).toBe(0);
    const webEngineId = (await d26c.run(['image', 'inspect', '--format', '{{.Id}}', 'ferry-demo/web:2.6.0'])).stdout.trim();
    const stack = uniqueName('mxcross').replace(/-/g, '').slice(0, 30);
    const def = await definition(join(work, 'def-cross'), stack, '2.6.0', 21999, (c) => c.replace(/ferry-demo\/(web|worker|smoke):1\.0\.0/g, 'ferry-demo/$1:2.6.0'));
    const bundle = await create(def, 'cross.ferry', 1, [], { DOCKER_HOST: d26c.host });
    const m = JSON.parse(await readFile(join(bundle, 'ferry.json'), 'utf8'));
    const web = m.images.find((i: { refs: string[] }) => i.refs.includes('ferry-demo/web:2.6.0'));
    // Pinned by config digest, not by the manifest digest that engine shows as the image ID.
    expect(web.id).not.toBe(webEngineId);
    const config = await readFile(join(bundle, web.config.path));
    expect(`sha256:${(await import('node:crypto')).createHash('sha256').update(config).digest('hex')}`).toBe(web.id);
    const stateDir = join(work, 'state-cross');
    const r = await ferry(['bundle', 'install', bundle, '--trust', trust, '--host', 'edge-1', '--state-dir', stateDir, '--no-up', '--json'], { env: { DOCKER_HOST: targetDocker().host }, timeoutMs: 300_000 });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect((await targetDocker().run(['image', 'inspect', '--format', '{{.Id}}', `ferry.local/${stack}:${web.id.slice(7)}`])).stdout.trim()).toBe(web.id);
  });
});
