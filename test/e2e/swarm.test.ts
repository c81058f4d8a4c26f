/**
 * ferry onto a Docker Swarm, end to end with the built CLI: three nodes (scripts/swarm.sh), each
 * its own network namespace, engine and sshd, joined by a bridge; node 1 the manager. ferry
 * talks to the manager over SSH (--swarm --ssh) or through its socket as if run on it, loads every
 * node, then `docker stack deploy`s. Node 3 runs Docker 26 on the containerd image store (see D26C),
 * the others Docker 20.10. No IPVS here: web publishes its port in mode host, and is
 * read from inside the namespace of a node that runs a web task.
 */
import { cp, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDocker, ferry, ROOT, run, tmpDir, uniqueName, type RunResult } from '../support/engines.js';
import { inNodeNetns, nodeDocker, nodeSshd, swarmDown, swarmUp, type Swarm } from '../support/swarm.js';

let swarm: Swarm;
/**
 * Nodes on Docker 26 with the containerd image store (FERRY_TEST_SWARM_D26C, e.g. "3" or "2 3";
 * "" for none): a swarm of mixed engines by default, as clusters upgraded node by node are.
 */
const D26C = (process.env.FERRY_TEST_SWARM_D26C ?? '3').split(/[ ,]+/).filter(Boolean).map(Number);
let work: string;
let home: string;
let stack: string;
let trust: string;
let key: string;
const port = 21000 + (process.pid % 20000);
const bundles = { r1: '', r2: '', bad: '', r4: '' };

const env = () => ({ HOME: home, SSH_AUTH_SOCK: '' });
const sshArgs = () => ['-i', swarm.identity, '--known-hosts', swarm.knownHosts];
const json = (r: RunResult) => JSON.parse(r.stdout) as { ok: boolean; result: any; error: { code: string; exitCode: number; message: string; details: any } };
const install = (bundle: string, extra: string[] = []) =>
  ferry(['bundle', 'install', bundle, '--swarm', '--ssh', swarm.manager, ...sshArgs(), '--trust', trust, '--host', 'cluster', '--wait-timeout', '60', '--json', ...extra], { env: env(), timeoutMs: 300_000 });

/** The page web serves on the node that runs a web task (mode host: only there). */
async function page(): Promise<string> {
  const tasks = await nodeDocker(swarm, 1).run(['service', 'ps', `${stack}_web`, '--filter', 'desired-state=running', '--format', '{{.Node}}']);
  const nodes = [...new Set(tasks.stdout.split('\n').filter(Boolean))];
  for (const node of nodes) {
    const r = await inNodeNetns(Number(node.replace('swarm-', '')), 'wget', ['-qO-', `http://127.0.0.1:${port}/`]);
    if (r.code === 0) return r.stdout;
  }
  return `no node answers (web tasks on ${nodes.join(', ') || 'none'})`;
}

/** Images of 1.0.0 or 1.1.0 (the demo images built here); later versions reuse 1.1.0's. */
async function definition(name: string, version: string, opts: { failingWeb?: boolean; workerOn?: string } = {}): Promise<string> {
  const images = version === '1.0.0' ? '1.0.0' : '1.1.0';
  const dir = join(work, `def-${name}`);
  await cp(join(ROOT, 'bundles/demo'), dir, { recursive: true, filter: (src) => !src.includes('/images') });
  await writeFile(
    join(dir, 'hosts/cluster.yaml'),
    `services:\n  web:\n    ports:\n      - "${port}:8080"\n    environment:\n      HOST_LABEL: cluster\n  smoke:\n    environment:\n      EXPECT_HOST: cluster\n      EXPECT_VERSION: "${images}"\n` +
      (opts.workerOn ? `  worker:\n    deploy:\n      placement:\n        constraints: ["node.hostname == ${opts.workerOn}"]\n` : ''),
  );
  await writeFile(join(dir, 'ferry.yaml'), `name: ${stack}\nversion: ${version}\ncompose: compose.yaml\nhosts:\n  cluster: hosts/cluster.yaml\n`);
  let compose = (await readFile(join(dir, 'compose.yaml'), 'utf8')).replace(/ferry-demo\/(web|worker|smoke):1\.0\.0/g, (_m, svc) => `ferry-demo/${svc}:${images}`);
  // A release whose web never becomes healthy: Swarm rolls the update back, ferry restores.
  if (opts.failingWeb) compose = compose.replace('test: ["CMD", "wget", "-qO-", "http://127.0.0.1:8080/health"]', 'test: ["CMD", "false"]');
  await writeFile(join(dir, 'compose.yaml'), compose);
  return dir;
}

async function create(def: string, out: string, sequence: number, extra: string[] = []): Promise<string> {
  const path = join(work, out);
  const r = await ferry(['bundle', 'create', def, '--out', path, '--sign-key', key, '--sequence', String(sequence), ...extra], { timeoutMs: 300_000 });
  expect(r.code, r.stdout + r.stderr).toBe(0);
  return path;
}

beforeAll(async () => {
  swarm = await swarmUp(3, { docker26c: D26C });
  work = await tmpDir('ferry-swarm-');
  home = join(work, 'home');
  await mkdir(home, { recursive: true });
  stack = uniqueName('swarmdemo').replace(/-/g, '').slice(0, 24);
  key = join(work, 'signer');
  const gen = await ferry(['keys', 'generate', '--out', key, '--json']);
  trust = join(work, 'allowed_signers');
  await writeFile(trust, `${JSON.parse(gen.stdout).result.allowedSignersLine}\n`);
  const built = await run('bash', [join(ROOT, 'scripts/build-demo-images.sh'), '--version', '1.1.0'], { env: { DOCKER_HOST: buildDocker().host }, timeoutMs: 300_000 });
  expect(built.stdout).toContain('ferry-demo/web:1.1.0');
  // The worker on the last node (Docker 26 on the containerd store unless FERRY_TEST_SWARM_D26C says
  // otherwise): a task must run from images ferry loaded into that store. Not in r4, which is
  // installed while that node cannot be reached.
  const workerOn = 'swarm-3';
  bundles.r1 = await create(await definition('r1', '1.0.0', { workerOn }), 'r1.ferry', 1);
  // A delta against r1: each node gets only the layers it lacks (partial load on 20.10, spliced from
  // its own images on the containerd store).
  bundles.r2 = await create(await definition('r2', '1.1.0', { workerOn }), 'r2.ferry', 2, ['--base', bundles.r1]);
  bundles.bad = await create(await definition('bad', '1.2.0', { failingWeb: true, workerOn }), 'bad.ferry', 3);
  bundles.r4 = await create(await definition('r4', '1.3.0'), 'r4.ferry', 4);
}, 600_000);

afterAll(async () => {
  if (!swarm) return;
  await nodeSshd(3, 'start').catch(() => undefined);
  await nodeDocker(swarm, 1).run(['stack', 'rm', stack]).catch(() => undefined);
  await swarmDown(swarm);
}, 300_000);

describe('bundle install --swarm', () => {
  it('loads every node in parallel, deploys the stack, and web answers on a node (mode host)', async () => {
    const r = await install(bundles.r1);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const result = json(r).result;
    expect(result).toMatchObject({ stack, version: '1.0.0', outcome: 'installed', host: 'cluster', previous: null });
    expect(result.nodes.map((n: any) => [n.node, n.role, n.ok])).toEqual([
      ['swarm-1', 'manager', true],
      ['swarm-2', 'worker', true],
      ['swarm-3', 'worker', true],
    ]);
    // Workers reached at the address Swarm reports for them.
    expect(result.nodes[1].target).toBe(swarm.nodes[1]);
    // Each layer was decompressed and checked once, fed to the three loads at once.
    expect(result.sharedLayers.layers).toBeGreaterThan(0);
    expect(result.sharedLayers).toEqual({ layers: result.sharedLayers.layers, fed: 3 * result.sharedLayers.layers, alone: 0 });
    const web = result.services.find((s: any) => s.service === 'web');
    expect(web).toMatchObject({ pinned: true, running: 1, replicas: 1 });
    expect(result.services.find((s: any) => s.service === 'worker')).toMatchObject({ pinned: true, running: 1, nodes: { 'swarm-3': 1 } });
    // Every node holds the images: whichever runs a task needs nothing from a registry.
    for (const n of [1, 2, 3]) {
      const images = await nodeDocker(swarm, n).run(['images', '--format', '{{.Repository}}', `ferry.local/${stack}`]);
      expect(images.stdout.split('\n').filter(Boolean)).toHaveLength(3);
    }
    const html = await page();
    expect(html).toContain('<span id="version">1.0.0</span>');
    expect(html).toContain('<span id="host">cluster</span>');
    // State on the manager, as on a single host.
    const state = JSON.parse(await readFile(join(swarm.dir, 'h1/state/stacks', stack, 'state.json'), 'utf8'));
    expect(state.current).toBe('1-1.0.0');
    const stackFile = await readFile(join(swarm.dir, 'h1/state/stacks', stack, 'releases/1-1.0.0/ferry.stack.yaml'), 'utf8');
    expect(stackFile).toContain('mode: host');
    expect(stackFile).toContain('endpoint_mode: dnsrr');
  });

  it('installing the current release again deploys nothing', async () => {
    const r = await install(bundles.r1);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(json(r).result).toMatchObject({ version: '1.0.0', outcome: 'already-current' });
  });

  it('upgrades with a delta bundle: the new layers on every node, the stack updated', async () => {
    const manifest = JSON.parse(await readFile(join(bundles.r2, 'ferry.json'), 'utf8'));
    expect(manifest.images.flatMap((i: any) => i.layers).some((l: any) => !l.included)).toBe(true);
    const r = await install(bundles.r2);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(json(r).result.nodes.map((n: any) => n.ok)).toEqual([true, true, true]);
    expect(json(r).result).toMatchObject({ version: '1.1.0', outcome: 'installed', previous: '1-1.0.0' });
    expect(await page()).toContain('<span id="version">1.1.0</span>');
  });

  it('a release that never gets healthy is rolled back to the previous one (exit 7)', async () => {
    const r = await install(bundles.bad);
    expect(r.code, r.stdout + r.stderr).toBe(7);
    expect(json(r).error.code).toBe('DEPLOY_FAILED_RESTORED');
    expect(await page()).toContain('<span id="version">1.1.0</span>');
    const state = JSON.parse(await readFile(join(swarm.dir, 'h1/state/stacks', stack, 'state.json'), 'utf8'));
    expect(state.current).toBe('2-1.1.0');
  });

  it('a node ferry cannot reach stops the rollout before anything is deployed (exit 6, the node named)', async () => {
    await nodeSshd(3, 'stop');
    try {
      const r = await install(bundles.r4, ['--ssh-timeout', '5']);
      expect(r.code, r.stdout + r.stderr).toBe(6);
      const err = json(r).error;
      expect(err.code).toBe('SWARM_NODE_FAILED');
      expect(err.message).toContain('swarm-3');
      expect(err.details.nodes.find((n: any) => n.node === 'swarm-3').error.code).toBe('SSH_UNREACHABLE');
      // Nothing deployed: the stack still runs 1.1.0.
      expect(await page()).toContain('<span id="version">1.1.0</span>');

      // Told to, ferry deploys while keeping the stack off that node. --keep 2 prunes 1.0.0.
      const partial = await install(bundles.r4, ['--ssh-timeout', '5', '--allow-partial-nodes', '--keep', '2']);
      expect(partial.code, partial.stdout + partial.stderr).toBe(0);
      expect(json(partial).result).toMatchObject({ version: '1.3.0', outcome: 'installed', avoided: ['swarm-3'], pruned: ['1-1.0.0'] });
      expect(await page()).toContain('<span id="version">1.1.0</span>');
      const where = await nodeDocker(swarm, 1).run(['stack', 'ps', stack, '--filter', 'desired-state=running', '--format', '{{.Node}}']);
      expect(where.stdout).not.toContain('swarm-3');

      // 1.0.0's images (those 1.1.0 does not share) are gone from every node ferry reached, as on one
      // host, although Swarm's task history held them; the node it could not reach keeps them.
      const ids = async (b: string) => (JSON.parse(await readFile(join(b, 'ferry.json'), 'utf8')).images as { id: string }[]).map((i) => i.id.slice('sha256:'.length));
      const kept = new Set(await ids(bundles.r2));
      const old = (await ids(bundles.r1)).filter((id) => !kept.has(id));
      expect(old.length).toBeGreaterThan(0);
      const tags = async (n: number) => (await nodeDocker(swarm, n).run(['images', '--format', '{{.Tag}}', `ferry.local/${stack}`])).stdout.split('\n').filter(Boolean);
      for (const n of [1, 2]) {
        const held = await tags(n);
        expect(held.filter((t) => old.includes(t)), `node ${n}`).toEqual([]);
        expect(held, `node ${n}`).toEqual(expect.arrayContaining([...kept]));
      }
      expect(await tags(3)).toEqual(expect.arrayContaining(old));
      expect(json(partial).result.nodes.filter((n: any) => n.ok).map((n: any) => n.prunedImages.length)).toEqual([old.length, old.length]);
    } finally {
      await nodeSshd(3, 'start');
    }
  });

  it('host status --swarm: per service the replicas, where its tasks run, and whether its image is pinned', async () => {
    const r = await ferry(['host', 'status', stack, '--swarm', '--ssh', swarm.manager, ...sshArgs(), '--json'], { env: env(), timeoutMs: 120_000 });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const result = json(r).result;
    expect(result.current).toMatchObject({ id: '4-1.3.0', version: '1.3.0' });
    expect(result.nodes.map((n: any) => n.node)).toEqual(['swarm-1', 'swarm-2', 'swarm-3']);
    const web = result.services.find((s: any) => s.service === 'web');
    expect(web).toMatchObject({ pinned: true, replicas: 1, running: 1 });
    // Kept off the node that could not be loaded (--allow-partial-nodes above).
    expect(Object.keys(web.nodes)).not.toContain('swarm-3');
    const text = await ferry(['host', 'status', stack, '--swarm', '--ssh', swarm.manager, ...sshArgs()], { env: env(), timeoutMs: 120_000 });
    expect(text.stdout).toMatch(/web\s+1\/1\s+yes/);
  });

  it('host rollback --swarm deploys the kept release before the current one again', async () => {
    const r = await ferry(['host', 'rollback', stack, '--swarm', '--ssh', swarm.manager, ...sshArgs(), '--wait-timeout', '60', '--json'], { env: env(), timeoutMs: 300_000 });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(json(r).result).toMatchObject({ from: '4-1.3.0', to: '2-1.1.0', version: '1.1.0' });
    expect(json(r).result.services.every((s: any) => s.pinned)).toBe(true);
    const state = JSON.parse(await readFile(join(swarm.dir, 'h1/state/stacks', stack, 'state.json'), 'utf8'));
    expect(state.current).toBe('2-1.1.0');
    expect(await page()).toContain('<span id="version">1.1.0</span>');
  });

  it('host inventory --swarm: what every node holds, and a bundle built against it leaves that out', async () => {
    const out = join(work, 'cluster.json');
    const r = await ferry(['host', 'inventory', '--swarm', '--ssh', swarm.manager, ...sshArgs(), '--host', 'cluster', '--out', out], { env: env(), timeoutMs: 120_000 });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/swarm-3\s+root@\S+\s+\d+\s+\d+/);
    const inv = JSON.parse(await readFile(out, 'utf8'));
    expect(inv.host).toBe('cluster');
    for (const n of [1, 2, 3]) {
      const node = await ferry(['host', 'inventory', '--ssh', swarm.nodes[n - 1]!, ...sshArgs()], { env: env(), timeoutMs: 120_000 });
      const layers = new Set(JSON.parse(node.stdout).layers);
      expect(inv.layers.every((l: string) => layers.has(l)), `node ${n}`).toBe(true);
    }
    // Every node holds every image of 1.1.0: built against the swarm, the bundle carries no layer.
    const def = await definition('r5', '1.4.0');
    const bundle = await create(def, 'r5.ferry', 5, ['--base', out]);
    const manifest = JSON.parse(await readFile(join(bundle, 'ferry.json'), 'utf8'));
    expect(manifest.images.flatMap((i: any) => i.layers).every((l: any) => !l.included)).toBe(true);
  });

  it('works on the manager itself (its local socket), other nodes over SSH', async () => {
    const local = `${stack}l`;
    const def = await definition('local', '1.0.0');
    // No --host: the manager's own hostname picks the override.
    await writeFile(join(def, 'ferry.yaml'), `name: ${local}\nversion: 1.0.0\ncompose: compose.yaml\nhosts:\n  swarm-1: hosts/cluster.yaml\n`);
    // Another port: the SSH-installed stack keeps its own.
    await writeFile(join(def, 'hosts/cluster.yaml'), `services:\n  web:\n    ports:\n      - "${port + 1}:8080"\n`);
    const bundle = await create(def, 'local.ferry', 1);
    try {
      // Run on node 1 as an operator there would: its own namespaces, so /var/run/docker.sock and
      // /var/lib/ferry are the manager's.
      const h1 = join(swarm.dir, 'h1/ns');
      const r = await run(
        'nsenter',
        ['--net=/var/run/netns/ferry-sw1', `--mount=${h1}/mnt`, `--uts=${h1}/uts`, process.execPath, join(ROOT, 'bin/ferry'), 'bundle', 'install', bundle, '--swarm', ...sshArgs(), '--trust', trust, '--wait-timeout', '60', '--json'],
        { env: { ...env(), NO_COLOR: '1', DOCKER_HOST: '' }, timeoutMs: 300_000 },
      );
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(json(r).result.nodes.map((n: any) => n.ok)).toEqual([true, true, true]);
      expect(json(r).result).toMatchObject({ stack: local, host: 'swarm-1', outcome: 'installed' });
      expect(json(r).result.nodes[0].target).toBe('local');
      const state = JSON.parse(await readFile(join(swarm.dir, 'h1/state/stacks', local, 'state.json'), 'utf8'));
      expect(state.current).toBe('1-1.0.0');
    } finally {
      await nodeDocker(swarm, 1).run(['stack', 'rm', local]);
    }
  });
});
