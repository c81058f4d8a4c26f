/**
 * ferry over SSH, end to end with the built CLI: three hosts (scripts/ssh-hosts.sh), each with its
 * own network namespace, address, hostname, engine, /var/lib/ferry and sshd. Hosts 1 and 2 run
 * Docker 20.10 with Compose v1; host 3 runs what users run today: Docker 26 on the containerd image
 * store, with its own containerd and Compose v2 (`docker compose`). Inventory, install, status and
 * rollback over SSH; install and a delta upgrade (layers spliced) on the containerd store; host keys
 * refused when unknown or changed; a mixed fleet with one host down; a connection killed in the
 * middle of loading into the containerd store, then the install run again.
 */
import { execFile, spawn } from 'node:child_process';
import { cp, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectSsh } from '../../src/adapters/ssh.js';
import { buildDocker, ferry, ROOT, run, tmpDir, uniqueName, type RunResult } from '../support/engines.js';
import { hostDocker, inHostNetns, killSessions, resetEngine, sshd, sshHostsDown, sshHostsUp, type SshHosts } from '../support/ssh-hosts.js';

const exec = promisify(execFile);

let hosts: SshHosts;
let work: string;
let home: string;
let stack: string;
let trust: string;
let key: string;
const port = 20000 + (process.pid % 20000);
/** The Docker 26 host on the containerd image store, with Compose v2. */
const D26C = 3;
const bundles = { r1: '', r2: '', big: '' };
let bigStack: string;
let bigImageId: string;

/** The test's own HOME and no agent: nothing of this machine's ~/.ssh may help or hurt. */
const env = () => ({ HOME: home, SSH_AUTH_SOCK: '' });
const sshArgs = () => ['-i', hosts.identity, '--known-hosts', hosts.knownHosts];
const target = (n: number) => hosts.targets[n - 1]!;
const cli = (args: string[], timeoutMs = 300_000) => ferry(args, { env: env(), timeoutMs });
const json = (r: RunResult) => JSON.parse(r.stdout) as { ok: boolean; result: any; error: { code: string; exitCode: number; message: string; details: any } };

async function page(n: number): Promise<string> {
  const r = await inHostNetns(n, 'wget', ['-qO-', `http://127.0.0.1:${port}/`]);
  return r.code === 0 ? r.stdout : `unreachable (${r.code}): ${r.stderr}`;
}

async function definition(name: string, version: string): Promise<string> {
  const dir = join(work, `def-${name}`);
  await cp(join(ROOT, 'bundles/demo'), dir, { recursive: true, filter: (src) => !src.includes('/images') });
  // One override per test host, each publishing the web page on this run's port.
  const hostsYaml: string[] = [];
  for (const n of [1, 2, 3]) {
    await writeFile(
      join(dir, `hosts/edge-${n}.yaml`),
      `services:\n  web:\n    ports:\n      - "${port}:8080"\n    environment:\n      HOST_LABEL: edge-${n}\n  worker:\n    environment:\n      HOST_LABEL: edge-${n}\n  smoke:\n    environment:\n      EXPECT_HOST: edge-${n}\n`,
    );
    hostsYaml.push(`  edge-${n}: hosts/edge-${n}.yaml`);
  }
  await writeFile(join(dir, 'ferry.yaml'), `name: ${stack}\nversion: ${version}\ncompose: compose.yaml\nhosts:\n${hostsYaml.join('\n')}\n`);
  const compose = (await readFile(join(dir, 'compose.yaml'), 'utf8')).replace(/ferry-demo\/(web|worker|smoke):1\.0\.0/g, (_m, svc) => `ferry-demo/${svc}:${version}`);
  await writeFile(join(dir, 'compose.yaml'), compose);
  return dir;
}

async function create(def: string, out: string, sequence: number, extra: string[] = []): Promise<string> {
  const path = join(work, out);
  const r = await ferry(['bundle', 'create', def, '--out', path, '--sign-key', key, '--sequence', String(sequence), ...extra], { timeoutMs: 300_000 });
  expect(r.code, r.stdout + r.stderr).toBe(0);
  return path;
}

const install = (bundle: string, n: number, extra: string[] = []) => cli(['bundle', 'install', bundle, '--trust', trust, '--ssh', target(n), ...sshArgs(), '--wait-timeout', '60', ...extra]);

beforeAll(async () => {
  hosts = await sshHostsUp(3, { docker26c: [D26C] });
  work = await tmpDir('ferry-ssh-');
  home = join(work, 'home');
  await mkdir(home, { recursive: true });
  stack = uniqueName('sshdemo').replace(/-/g, '').slice(0, 30);
  key = join(work, 'signer');
  const gen = await ferry(['keys', 'generate', '--out', key, '--json']);
  trust = join(work, 'allowed_signers');
  await writeFile(trust, `${JSON.parse(gen.stdout).result.allowedSignersLine}\n`);

  const built = await exec('bash', [join(ROOT, 'scripts/build-demo-images.sh'), '--version', '1.1.0'], { env: { ...process.env, DOCKER_HOST: buildDocker().host } });
  expect(built.stdout).toContain('ferry-demo/web:1.1.0');
  bundles.r1 = await create(await definition('r1', '1.0.0'), 'r1.ferry', 1);
  bundles.r2 = await create(await definition('r2', '1.1.0'), 'r2.ferry', 2);

  // Incompressible, so that loading it over SSH takes long enough to be cut in the middle.
  const tag = `${uniqueName('ferry-sshbig')}/app:1`;
  const ctx = join(work, 'big-ctx');
  await mkdir(ctx, { recursive: true });
  await writeFile(join(ctx, 'Dockerfile'), 'FROM ferry-demo/base:1.0.0\nRUN head -c 200000000 /dev/urandom > /blob\nUSER 10001\nCMD ["sleep","3600"]\n');
  const b = await buildDocker().run(['build', '-q', '-t', tag, ctx], { env: { DOCKER_BUILDKIT: '0' }, timeoutMs: 300_000 });
  expect(b.code, b.stderr).toBe(0);
  bigImageId = b.stdout.trim();
  const def = join(work, 'def-big');
  await mkdir(def, { recursive: true });
  bigStack = `${stack}big`;
  await writeFile(join(def, 'ferry.yaml'), `name: ${bigStack}\nversion: 1.0.0\ncompose: compose.yaml\n`);
  await writeFile(join(def, 'compose.yaml'), `services:\n  app:\n    image: ${tag}\n    restart: unless-stopped\n`);
  bundles.big = await create(def, 'big.ferry', 1);
  await buildDocker().run(['rmi', tag]);
}, 600_000);

afterAll(async () => {
  if (!hosts) return;
  // Started by us or not, the hosts go back to how they were: no containers of this run.
  for (const n of [2, 3]) await sshd(n, 'start').catch(() => undefined);
  for (const n of [1, 2, 3]) {
    for (const project of [stack, bigStack]) {
      const ids = (await hostDocker(hosts, n).run(['ps', '-aq', '--filter', `label=com.docker.compose.project=${project}`])).stdout.split('\n').filter(Boolean);
      if (ids.length) await hostDocker(hosts, n).run(['rm', '-f', ...ids]);
    }
  }
  await sshHostsDown(hosts);
}, 300_000);

describe('one host over SSH', () => {
  it('installs: layers stream into the remote engine, compose runs there, services answer inside the host', async () => {
    const r = await install(bundles.r1, 1, ['--json']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    // No --host: the host's own name (edge-1) picked the override.
    expect(json(r).result).toMatchObject({ stack, version: '1.0.0', outcome: 'installed', host: 'edge-1' });
    const html = await page(1);
    expect(html).toContain('<span id="version">1.0.0</span>');
    expect(html).toContain('<span id="host">edge-1</span>');
    // State on the host, in its own /var/lib/ferry; nothing staged there.
    const state = JSON.parse(await readFile(join(hosts.dir, 'h1/state/stacks', stack, 'state.json'), 'utf8'));
    expect(state.current).toBe('1-1.0.0');
    expect(await exec('ls', [join(hosts.dir, 'h1/state/staging')]).then((x) => x.stdout.trim())).toBe('');
  });

  it('inventory over SSH is the inventory of that engine', async () => {
    const remote = await cli(['host', 'inventory', '--ssh', target(1), ...sshArgs(), '--json']);
    expect(remote.code, remote.stdout + remote.stderr).toBe(0);
    // The same engine and state directory, read on this machine without SSH.
    const local = await ferry(['host', 'inventory', '--state-dir', join(hosts.dir, 'h1/state'), '--json'], { env: { DOCKER_HOST: hostDocker(hosts, 1).host } });
    expect(local.code, local.stderr).toBe(0);
    const a = json(remote).result;
    const b = json(local).result;
    expect(a.host).toBe('edge-1');
    for (const field of ['engine', 'images', 'layers', 'releases']) expect(a[field], field).toEqual(b[field]);
    expect(a.images.length).toBeGreaterThan(0);
    expect(JSON.stringify(a.releases)).toContain(stack);
  });

  it('status over SSH shows the release and its healthy services', async () => {
    const r = await cli(['host', 'status', stack, '--ssh', target(1), ...sshArgs()]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/current\s+1\.0\.0/);
    expect(r.stdout).toMatch(/web\s+\S+\s+running\s+healthy/);
  });

  it('upgrades, then rolls back over SSH', async () => {
    const up = await install(bundles.r2, 1);
    expect(up.code, up.stderr).toBe(0);
    expect(await page(1)).toContain('<span id="version">1.1.0</span>');
    const back = await cli(['host', 'rollback', stack, '--ssh', target(1), ...sshArgs(), '--wait-timeout', '60']);
    expect(back.code, back.stderr).toBe(0);
    expect(await page(1)).toContain('<span id="version">1.0.0</span>');
    const status = json(await cli(['host', 'status', stack, '--ssh', target(1), ...sshArgs(), '--json']));
    expect(status.result.stacks[0].current.version).toBe('1.0.0');
  });
});

describe('host keys', () => {
  it('refuses an unknown host (exit 6), then trusts it with --accept-new-host-key, in a file ssh itself reads', async () => {
    const kh = join(work, 'known_hosts_new');
    const refused = await cli(['host', 'status', '--ssh', target(2), '-i', hosts.identity, '--known-hosts', kh, '--json']);
    expect(refused.code).toBe(6);
    expect(json(refused).error.code).toBe('HOST_KEY_UNKNOWN');
    expect(json(refused).error.message).toMatch(/SHA256:/);

    const accepted = await cli(['host', 'status', '--ssh', target(2), '-i', hosts.identity, '--known-hosts', kh, '--accept-new-host-key']);
    expect(accepted.code, accepted.stderr).toBe(0);
    expect(accepted.stderr).toMatch(/added 198\.18\.2\.2 \(ssh-ed25519 SHA256:/);
    const ssh = await run('ssh', ['-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes', '-o', `UserKnownHostsFile=${kh}`, '-o', 'GlobalKnownHostsFile=/dev/null', '-i', hosts.identity, target(2), 'true']);
    expect(ssh.code, ssh.stderr).toBe(0);
  });

  it('refuses a CHANGED host key (exit 3), --accept-new-host-key or not', async () => {
    const kh = join(work, 'known_hosts_changed');
    await exec('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(work, 'impostor')]);
    const impostor = (await readFile(join(work, 'impostor.pub'), 'utf8')).split(' ').slice(0, 2).join(' ');
    await writeFile(kh, `${target(2).split('@')[1]} ${impostor}\n`);
    for (const extra of [[], ['--accept-new-host-key']]) {
      const r = await cli(['host', 'status', '--ssh', target(2), '-i', hosts.identity, '--known-hosts', kh, '--json', ...extra]);
      expect(r.code).toBe(3);
      expect(json(r).error.code).toBe('HOST_KEY_CHANGED');
      expect(json(r).error.message).toMatch(/HAS CHANGED/);
    }
    expect(await readFile(kh, 'utf8')).toBe(`${target(2).split('@')[1]} ${impostor}\n`);
  });
});

describe('OpenSSH client configuration and agent', () => {
  it('resolves an alias from ~/.ssh/config (HostName, User, IdentityFile) with the default known_hosts', async () => {
    const sshDir = join(home, '.ssh');
    await mkdir(sshDir, { recursive: true, mode: 0o700 });
    await cp(hosts.identity, join(sshDir, 'edge_key'));
    await cp(hosts.knownHosts, join(sshDir, 'known_hosts'));
    await writeFile(join(sshDir, 'config'), `Host edge-two\n  HostName ${target(2).split('@')[1]}\n  User root\n  IdentityFile ~/.ssh/edge_key\n`, { mode: 0o600 });
    const r = await cli(['host', 'inventory', '--ssh', 'edge-two', '--json']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(json(r).result.host).toBe('edge-2');
  });

  /** An ssh-agent of its own holding the hosts' identity, for `fn`; stopped after. */
  async function withAgent(name: string, fn: (sock: string) => Promise<void>): Promise<void> {
    const sock = join(work, `${name}.sock`);
    const agent = await run('ssh-agent', ['-a', sock, '-s'], { check: true });
    const pid = /SSH_AGENT_PID=(\d+)/.exec(agent.stdout)?.[1];
    try {
      await run('ssh-add', ['-q', hosts.identity], { env: { SSH_AUTH_SOCK: sock }, check: true });
      await fn(sock);
    } finally {
      if (pid) process.kill(Number(pid));
    }
  }

  it('logs in with a key held by ssh-agent', async () => {
    await withAgent('agent', async (sock) => {
      const r = await ferry(['host', 'status', '--ssh', target(2), '--known-hosts', hosts.knownHosts, '--ssh-config', 'none'], { env: { HOME: join(work, 'empty-home'), SSH_AUTH_SOCK: sock } });
      expect(r.code, r.stdout + r.stderr).toBe(0);
    });
  });

  it('reaches an engine named DOCKER_HOST=ssh://user@host, as the docker CLI would (ssh-agent, docker system dial-stdio)', async () => {
    await withAgent('agent-dh', async (sock) => {
      const r = await ferry(['host', 'inventory', '--json'], { env: { DOCKER_HOST: `ssh://${target(2)}:22`, SSH_AUTH_SOCK: sock } });
      expect(r.code, r.stdout + r.stderr).toBe(0);
      // docker-modem's own ssh:// URL drew Node's DEP0170 warning (and is refused by Node 26).
      expect(r.stderr).not.toMatch(/DEP0170/);
      const version = await hostDocker(hosts, 2).run(['version', '-f', '{{.Server.Version}}'], { check: true });
      expect(json(r).result.engine.serverVersion).toBe(version.stdout.trim());
      const ids = await hostDocker(hosts, 2).run(['images', '-q', '--no-trunc'], { check: true });
      expect(json(r).result.images.map((i: { id: string }) => i.id).sort()).toEqual([...new Set(ids.stdout.split('\n').filter(Boolean))].sort());
    });
  });
});

describe('commands run on the host', () => {
  it('reads the exit status of every command, however fast it ends', async () => {
    // A command that ends at once can have its exit status parsed in the same read as the
    // channel's confirmation; read late, it was lost (CI once saw `hostname` fail as "exit -1").
    // With the race open, about 1 in 100 of these came back -1 on this machine.
    const conn = await connectSsh(target(1), { identities: [hosts.identity], knownHosts: hosts.knownHosts, configFile: 'none' });
    try {
      const n = 600;
      const wrong: string[] = [];
      for (let i = 0; i < n; i++) {
        const want = i % 2 ? 3 : 0;
        const r = await conn.exec(want ? 'exit 3' : 'true');
        if (r.code !== want) wrong.push(`#${i}: ${r.code}${r.signal ? ` ${r.signal}` : ''}`);
      }
      expect(wrong, `of ${n}`).toEqual([]);
    } finally {
      await conn.close();
    }
  });
});

describe('Docker 26 on the containerd image store, with Compose v2 (host 3)', () => {
  const ssh = (n: number, command: string) =>
    run('ssh', ['-o', 'BatchMode=yes', '-o', `UserKnownHostsFile=${hosts.knownHosts}`, '-o', 'GlobalKnownHostsFile=/dev/null', '-i', hosts.identity, target(n), command]);
  const running = async (n: number) => {
    const r = await cli(['host', 'status', stack, '--ssh', target(n), ...sshArgs(), '--json']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const s = json(r).result.stacks[0];
    const services = s.services.filter((x: { service: string }) => x.service !== 'smoke');
    expect(services.length).toBeGreaterThan(0);
    for (const svc of services) expect(svc, JSON.stringify(svc)).toMatchObject({ imageMatches: true, state: 'running' });
    return s;
  };

  // A fresh host for the fleet below: the delta bundle made here is newer than the suite's release 2.
  afterAll(async () => {
    const ids = (await hostDocker(hosts, D26C).run(['ps', '-aq', '--filter', `label=com.docker.compose.project=${stack}`])).stdout.split('\n').filter(Boolean);
    if (ids.length) await hostDocker(hosts, D26C).run(['rm', '-f', ...ids]);
    await resetEngine(D26C);
  }, 300_000);

  it('is that engine, with Compose v2 as `docker compose` on that host only', async () => {
    expect(hosts.docker26c).toEqual([D26C]);
    const info = await hostDocker(hosts, D26C).run(['info', '--format', '{{.ServerVersion}} {{json .DriverStatus}}']);
    expect(info.stdout).toMatch(/^26\./);
    expect(info.stdout).toContain('io.containerd.snapshotter.v1');
    const v2 = await ssh(D26C, 'hostname; docker compose version --short');
    expect(v2.code, v2.stderr).toBe(0);
    expect(v2.stdout).toMatch(/^edge-3\n2\.\d+/);
    // Host 1 (Docker 20.10) has Compose v1 only: v2 is host 3's alone.
    const v1 = await ssh(1, 'docker compose version >/dev/null 2>&1 && echo v2; docker-compose version --short');
    expect(v1.stdout.trim()).toMatch(/^1\./);
  });

  it('installs over SSH: healthy, answering inside the host, every service on its pinned image', async () => {
    const r = await install(bundles.r1, D26C, ['--host', `edge-${D26C}`, '--json']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(json(r).result).toMatchObject({ stack, version: '1.0.0', outcome: 'installed', host: `edge-${D26C}` });
    const html = await page(D26C);
    expect(html).toContain('<span id="version">1.0.0</span>');
    expect(html).toContain(`<span id="host">edge-${D26C}</span>`);
    const s = await running(D26C);
    expect(s.current.version).toBe('1.0.0');
    // Compose v2 ran it: its containers carry v2's labels.
    const labels = await hostDocker(hosts, D26C).run(['ps', '--filter', `label=com.docker.compose.project=${stack}`, '--format', '{{.Label "com.docker.compose.version"}}']);
    expect(labels.stdout.trim().split('\n')[0]).toMatch(/^2\./);
  });

  it('upgrades with a delta bundle made against its inventory over SSH: the left-out layers spliced in', async () => {
    const inv = join(work, 'edge-3.inventory.json');
    const i = await cli(['host', 'inventory', '--ssh', target(D26C), ...sshArgs(), '--out', inv]);
    expect(i.code, i.stdout + i.stderr).toBe(0);
    const doc = JSON.parse(await readFile(inv, 'utf8'));
    expect(doc.host).toBe(`edge-${D26C}`);
    expect(doc.engine.containerdStore).toBe(true);
    expect(doc.engine.serverVersion).toMatch(/^26\./);
    expect(JSON.stringify(doc.releases)).toContain(stack);

    const delta = await create(await definition('r2-delta', '1.1.0'), 'r2-delta.ferry', 2, ['--base', inv]);
    const m = JSON.parse(await readFile(join(delta, 'ferry.json'), 'utf8'));
    const layers = m.images.flatMap((im: { layers: { included: boolean }[] }) => im.layers);
    expect(layers.some((l: { included: boolean }) => !l.included)).toBe(true);

    const up = await install(delta, D26C, ['--host', `edge-${D26C}`]);
    expect(up.code, up.stdout + up.stderr).toBe(0);
    expect(up.stderr).toMatch(/\(splice\)/);
    expect(await page(D26C)).toContain('<span id="version">1.1.0</span>');
    const s = await running(D26C);
    expect(s.current.version).toBe('1.1.0');
  });
});

describe('a fleet', () => {
  // Mixed: host 1 on Docker 20.10 with Compose v1, host 3 on Docker 26 (containerd store) with Compose v2.
  it('installs on three hosts in parallel, mixed engines; one unreachable host fails alone and sets the exit code', async () => {
    await sshd(2, 'stop');
    try {
      const all = hosts.targets.join(',');
      const r = await cli(['bundle', 'install', bundles.r2, '--trust', trust, '--ssh', all, ...sshArgs(), '--parallel', '3', '--wait-timeout', '60', '--ssh-timeout', '5']);
      expect(r.code, r.stderr).toBe(6);
      // The summary table: one row per host with its result, exit code and time.
      expect(r.stdout).toMatch(/TARGET\s+HOST\s+RESULT\s+EXIT\s+TIME/);
      expect(r.stdout).toMatch(new RegExp(`${target(1).replace(/\./g, '\\.')}\\s+edge-1\\s+installed 1\\.1\\.0\\s+0\\s+[\\d.]+ s`));
      expect(r.stdout).toMatch(new RegExp(`${target(3).replace(/\./g, '\\.')}\\s+edge-3\\s+installed 1\\.1\\.0\\s+0`));
      expect(r.stdout).toMatch(new RegExp(`${target(2).replace(/\./g, '\\.')}\\s+-\\s+FAILED SSH_UNREACHABLE\\s+6`));
      expect(r.stdout).toMatch(/2 of 3 hosts ok/);
      // One progress line per host step, prefixed with the host.
      for (const n of [1, 3]) expect(r.stderr).toContain(`[${target(n)}] ${stack} 1.1.0 installed and healthy`);
      // The bundle's files were read and hashed once for the run, not once per host.
      for (const n of [1, 3]) expect(r.stderr).toContain(`[${target(n)}] bundle files: checked once for every host of this run`);
      // ...and the bundle's layers through one fan-out: each read once, none left to read alone by
      // the unreachable host (these two hold different releases: every layer goes to one load; the
      // swarm e2e shows one read feeding three).
      expect(r.stderr).toMatch(/bundle layers: [1-9]\d* read and checked once for [1-9]\d* loads\n/);
      for (const n of [1, 3]) expect(await page(n)).toContain(`<span id="host">edge-${n}</span>`);
      for (const n of [1, 3]) expect(await page(n)).toContain('<span id="version">1.1.0</span>');

      // Again with --json: one entry per host. The hosts done are a no-op now (or, should a health
      // check have flickered on this busy machine meanwhile, installed again: ok either way).
      const again = await cli(['bundle', 'install', bundles.r2, '--trust', trust, '--ssh', all, ...sshArgs(), '--parallel', '3', '--wait-timeout', '60', '--ssh-timeout', '5', '--json']);
      expect(again.code, again.stdout).toBe(6);
      const doc = json(again);
      expect(doc.error.code).toBe('FLEET_FAILED');
      const entries = doc.error.details.hosts as { target: string; host: string | null; ok: boolean; outcome: string; exitCode: number; error?: { code: string } }[];
      expect(entries.map((h) => [h.target, h.host, h.ok, h.exitCode])).toEqual([
        [target(1), 'edge-1', true, 0],
        [target(2), null, false, 6],
        [target(3), 'edge-3', true, 0],
      ]);
      for (const h of [entries[0]!, entries[2]!]) expect(['already-current', 'installed']).toContain(h.outcome);
      expect(entries[1]!.error!.code).toBe('SSH_UNREACHABLE');
    } finally {
      await sshd(2, 'start');
    }
  });
});

describe('a fleet and a damaged bundle', () => {
  it('refuses the bundle once, exit 4 with the file named, before any host is contacted', async () => {
    const bad = join(work, 'r2-damaged.ferry');
    await cp(bundles.r2, bad, { recursive: true });
    const blobs = join(bad, 'blobs', 'sha256');
    const [blob] = (await readdir(blobs)).sort();
    const data = await readFile(join(blobs, blob!));
    data[Math.floor(data.length / 2)]! ^= 0xff;
    await writeFile(join(blobs, blob!), data);
    const r = await cli(['bundle', 'install', bad, '--trust', trust, '--ssh', hosts.targets.join(','), ...sshArgs(), '--parallel', '3']);
    expect(r.code, r.stdout + r.stderr).toBe(4);
    expect(r.stderr).toContain(`blobs/sha256/${blob}`);
    // Without the bundle's failure, every host's line would start with "connecting".
    expect(r.stderr).not.toMatch(/\] connecting/);
  });
});

describe('a connection lost while loading', () => {
  it('fails with the host named, loads nothing half, and the same command run again converges', async () => {
    const args = ['bundle', 'install', bundles.big, '--trust', trust, '--ssh', target(3), ...sshArgs(), '--wait-timeout', '60'];
    const child = spawn(process.execPath, [join(ROOT, 'bin/ferry'), ...args], { env: { ...process.env, ...env(), NO_COLOR: '1' }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const done = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    // Host 3 is on the containerd image store: a load streams into containerd's content store,
    // each blob into an ingest directory of its own (on Docker 20.10 the engine spools the load
    // into <data-root>/tmp/docker-import-* instead). Once a new one exists, bytes flow.
    const ingest = join(hosts.dir, 'h3/ctd-root/io.containerd.content.v1.content/ingest');
    const before = new Set(await readdir(ingest).catch(() => [] as string[]));
    let killed = false;
    for (let i = 0; i < 1200 && child.exitCode === null; i++) {
      const names = await readdir(ingest).catch(() => [] as string[]);
      if (names.some((n) => !before.has(n))) {
        await new Promise((r) => setTimeout(r, 150));
        await killSessions(3);
        killed = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    const code = await done;
    expect(killed, stderr).toBe(true);
    expect(code, stderr).toBe(6);
    expect(stderr).toContain(target(3));
    // Looked for as ferry sees images (by config digest, with their layers), since the engine
    // names images by manifest digest there: neither the image nor its big layer may be there.
    const bigLayer = (JSON.parse(await readFile(join(bundles.big, 'ferry.json'), 'utf8')).images[0].layers as { diffId: string }[]).at(-1)!.diffId;
    const inv = await cli(['host', 'inventory', '--ssh', target(3), ...sshArgs(), '--json']);
    expect(inv.code, inv.stdout + inv.stderr).toBe(0);
    const cut = (json(inv).result.images as { id: string; diffIds: string[] }[]).filter((im) => im.id === bigImageId || im.diffIds.includes(bigLayer));
    expect(cut, 'the image must not be on the engine: the load was cut').toEqual([]);

    const again = await cli(args);
    expect(again.code, again.stdout + again.stderr).toBe(0);
    const status = json(await cli(['host', 'status', bigStack, '--ssh', target(3), ...sshArgs(), '--json']));
    expect(status.result.stacks[0].current.version).toBe('1.0.0');
    expect(status.result.stacks[0].services[0]).toMatchObject({ service: 'app', state: 'running' });
  });
});
