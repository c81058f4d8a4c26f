/**
 * `ferry host status --ssh a,b,c` against real sshd hosts (scripts/ssh-hosts.sh): one table of
 * what runs where, a host that cannot be reached is a row with its error and never hides the
 * others, --json an entry per host. And an SSH connect retried while sshd does not answer yet:
 * a proxy in this process opens the host's SSH port only after 2 s.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ferry, run, tmpDir, uniqueName, type RunResult } from '../support/engines.js';
import { hostDocker, sshHostsDown, sshHostsUp, type SshHosts } from '../support/ssh-hosts.js';

let hosts: SshHosts;
let work: string;
let home: string;
let stack: string;
let trust: string;
let bundle: string;
/** A target nothing listens on: connection refused at once, every attempt. */
const REFUSED = 'root@127.0.0.1:1';

const env = () => ({ HOME: home, SSH_AUTH_SOCK: '' });
const sshArgs = () => ['-i', hosts.identity, '--known-hosts', hosts.knownHosts];
const target = (n: number) => hosts.targets[n - 1]!;
const cli = (args: string[], timeoutMs = 300_000) => ferry(args, { env: env(), timeoutMs });
const json = (r: RunResult) => JSON.parse(r.stdout) as { ok: boolean; result: any; error: { code: string; exitCode: number; message: string; details: any }; warnings: { code: string; message: string }[] };
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

beforeAll(async () => {
  hosts = await sshHostsUp(3);
  work = await tmpDir('ferry-fleet-status-');
  home = join(work, 'home');
  await run('mkdir', ['-p', home], { check: true });
  stack = uniqueName('fst').replace(/-/g, '').slice(0, 24);
  const key = join(work, 'signer');
  const gen = await ferry(['keys', 'generate', '--out', key, '--json']);
  trust = join(work, 'allowed_signers');
  await writeFile(trust, `${JSON.parse(gen.stdout).result.allowedSignersLine}\n`);
  const def = join(work, 'def');
  await run('mkdir', ['-p', def], { check: true });
  await writeFile(join(def, 'ferry.yaml'), `name: ${stack}\nversion: 1.0.0\ncompose: compose.yaml\n`);
  await writeFile(
    join(def, 'compose.yaml'),
    'services:\n  worker:\n    image: ferry-demo/worker:1.0.0\n    restart: unless-stopped\n    stop_grace_period: 1s\n    environment:\n      WORKER_INTERVAL: "5"\n    healthcheck:\n      test: ["CMD", "/bin/sh", "/app/healthcheck"]\n      interval: 2s\n      timeout: 3s\n      retries: 5\n      start_period: 5s\n',
  );
  bundle = join(work, 'b.ferry');
  const c = await ferry(['bundle', 'create', def, '--out', bundle, '--sign-key', key, '--sequence', '1'], { timeoutMs: 300_000 });
  expect(c.code, c.stderr).toBe(0);
  // Hosts 1 and 3 run the stack (Docker 20.10 and, on most runs, Docker 26 on the containerd store); host 2 does not.
  const i = await cli(['bundle', 'install', bundle, '--trust', trust, '--ssh', `${target(1)},${target(3)}`, ...sshArgs(), '--parallel', '2', '--wait-timeout', '90']);
  expect(i.code, i.stdout + i.stderr).toBe(0);
}, 600_000);

afterAll(async () => {
  for (const n of [1, 3]) {
    const d = hostDocker(hosts, n);
    const ids = (await d.run(['ps', '-aq', '--filter', `label=com.docker.compose.project=${stack}`])).stdout.split('\n').filter(Boolean);
    if (ids.length) await d.run(['rm', '-f', ...ids]);
    await run('ssh', ['-i', hosts.identity, '-o', `UserKnownHostsFile=${hosts.knownHosts}`, '-o', 'BatchMode=yes', target(n), `rm -rf /var/lib/ferry/stacks/${stack}`]);
  }
  await sshHostsDown(hosts);
}, 120_000);

describe('host status --ssh a,b,c', () => {
  it('one table of what runs where; an unreachable host is a row with its error and the others still show', async () => {
    const all = `${target(1)},${target(2)},${REFUSED},${target(3)}`;
    const r = await cli(['host', 'status', stack, '--ssh', all, ...sshArgs(), '--ssh-timeout', '5']);
    expect(r.code, r.stdout + r.stderr).toBe(6);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toMatch(/^HOST\s+STACK\s+RELEASE\s+SERVICE\s+PINNED\s+STATE\s+HEALTH$/);
    for (const n of [1, 3]) expect(r.stdout).toMatch(new RegExp(`^${escape(target(n))}\\s+${stack}\\s+1\\.0\\.0\\s+worker\\s+yes\\s+running\\s+(healthy|starting)$`, 'm'));
    expect(r.stdout).toMatch(new RegExp(`^${escape(target(2))}\\s+${stack}\\s+-\\s+-\\s+-\\s+not installed$`, 'm'));
    expect(r.stdout).toMatch(new RegExp(`^${escape(REFUSED)}\\s+-\\s+-\\s+-\\s+-\\s+FAILED SSH_UNREACHABLE$`, 'm'));
    // Rows in the order the hosts were given.
    const order = [target(1), target(2), REFUSED, target(3)].map((t) => lines.findIndex((l) => l.startsWith(`${t} `)));
    expect(order).toEqual([...order].sort((a, b) => a - b));
    expect(r.stdout).toContain(`${REFUSED}: cannot connect to ${REFUSED} (127.0.0.1:1): connection refused`);
    expect(r.stdout).toMatch(/3 of 4 hosts read in [\d.]+ s/);
    // The refused host was tried 5 times, each pause announced, named by its host.
    expect(r.stderr.match(new RegExp(`warning: \\[${escape(REFUSED)}\\] SSH host ${escape(REFUSED)} \\(127\\.0\\.0\\.1:1\\) not answering \\(ECONNREFUSED\\), retrying in`, 'g'))).toHaveLength(4);
    expect(r.stderr).toMatch(/FLEET_FAILED|3 hosts|1 of 4 hosts failed/);
  }, 120_000);

  it('--json: an entry per host, each its whole status or its error', async () => {
    const r = await cli(['host', 'status', stack, '--ssh', `${target(1)},${REFUSED},${target(3)}`, ...sshArgs(), '--json']);
    expect(r.code, r.stderr).toBe(6);
    const doc = json(r);
    expect(doc.error.code).toBe('FLEET_FAILED');
    const entries = doc.error.details.hosts as { target: string; ok: boolean; exitCode: number; error?: { code: string }; status?: any }[];
    expect(entries.map((h) => [h.target, h.ok, h.exitCode])).toEqual([
      [target(1), true, 0],
      [REFUSED, false, 6],
      [target(3), true, 0],
    ]);
    expect(entries[1]!.error!.code).toBe('SSH_UNREACHABLE');
    for (const h of [entries[0]!, entries[2]!]) {
      expect(h.status.stacks).toHaveLength(1);
      expect(h.status.stacks[0]).toMatchObject({ stack, current: { version: '1.0.0' } });
      expect(h.status.stacks[0].services).toEqual([expect.objectContaining({ service: 'worker', state: 'running', imageMatches: true })]);
    }
    expect(doc.warnings.filter((w) => w.code === 'SSH_RETRY')).toHaveLength(4);

    const ok = await cli(['host', 'status', stack, '--ssh', `${target(1)},${target(3)}`, ...sshArgs(), '--json']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(json(ok).result.hosts.map((h: { target: string; ok: boolean }) => [h.target, h.ok])).toEqual([
      [target(1), true],
      [target(3), true],
    ]);
  }, 120_000);
});

describe('the engine on an SSH host, retried while its socket does not answer', () => {
  it('a remote socket that never answers: ENGINE_RETRY warnings, then ENGINE_UNREACHABLE (exit 6) after the bound', async () => {
    const r = await cli(['host', 'status', '--ssh', target(1), ...sshArgs(), '--remote-docker-socket', '/run/ferry-no-engine.sock', '--json'], 60_000);
    expect(r.code, r.stderr).toBe(6);
    const doc = json(r);
    expect(doc.error.code).toBe('ENGINE_UNREACHABLE');
    // sshd's "connect failed" to the socket reads as refused: retried, like a local socket.
    expect(doc.warnings.map((w) => [w.code, w.message.replace(/^.*not answering /, '')])).toEqual([
      ['ENGINE_RETRY', '(ECONNREFUSED), retrying in 0.5 s (attempt 2 of 5)'],
      ['ENGINE_RETRY', '(ECONNREFUSED), retrying in 1.0 s (attempt 3 of 5)'],
      ['ENGINE_RETRY', '(ECONNREFUSED), retrying in 2.0 s (attempt 4 of 5)'],
      ['ENGINE_RETRY', '(ECONNREFUSED), retrying in 4.0 s (attempt 5 of 5)'],
    ]);
  }, 60_000);
});

describe('an SSH connect retried while sshd does not answer yet', () => {
  let server: Server | undefined;
  const open = new Set<Socket>();
  afterAll(async () => {
    for (const s of open) s.destroy();
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  });

  it('host status --ssh through a port that opens after 2 s: retried, said so, and it succeeds', async () => {
    const port = 30000 + (process.pid % 20000);
    const [host1] = target(1).split('@').slice(-1);
    // The host's key, listed under the name ferry will look it up by ([127.0.0.1]:port).
    const line = (await readFile(hosts.knownHosts, 'utf8')).split('\n').find((l) => l.startsWith(`${host1} `))!;
    const knownHosts = join(work, 'known_hosts.proxy');
    await writeFile(knownHosts, `[127.0.0.1]:${port} ${line.split(' ').slice(1).join(' ')}\n`);
    const timer = setTimeout(() => {
      server = createServer((client) => {
        const upstream = createConnection({ host: host1!, port: 22 });
        for (const s of [client, upstream]) {
          open.add(s);
          s.on('close', () => open.delete(s));
        }
        upstream.on('error', () => client.destroy());
        client.on('error', () => upstream.destroy());
        client.pipe(upstream).pipe(client);
      }).listen(port, '127.0.0.1');
    }, 2000);
    try {
      const t = `root@127.0.0.1:${port}`;
      const r = await cli(['host', 'status', stack, '--ssh', t, '-i', hosts.identity, '--known-hosts', knownHosts], 60_000);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stderr).toContain(`warning: SSH host ${t} (127.0.0.1:${port}) not answering (ECONNREFUSED), retrying in 0.5 s (attempt 2 of 5)`);
      expect(r.stdout).toMatch(new RegExp(`^stack\\s+${stack}$`, 'm'));
      expect(r.stdout).toMatch(/worker\s+\S+\s+running\s+(healthy|starting)/);
    } finally {
      clearTimeout(timer);
    }
  }, 90_000);
});
