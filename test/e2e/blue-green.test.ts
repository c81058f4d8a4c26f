/**
 * Health that settles, and blue/green switching (issue 16), through the built CLI on real engines:
 * Docker 20.10 with Compose v1 and Docker 26 with Compose v2.
 *
 * The stack: a front proxy (busybox httpd, a CGI that fetches http://web:8080/ per request, so it
 * resolves `web` by DNS each time) whose health check goes through to web; web answers its
 * release's version, or 500 in a broken release. Every service runs ferry-demo/base (busybox), so
 * releases differ only in their compose file.
 */
import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ferry, run, tmpDir, uniqueName, type RunResult } from '../support/engines.js';

interface Target {
  name: string;
  dockerHost: () => string;
  netns: () => string;
  compose: 'v1' | 'v2';
}

const TARGETS: Target[] = [
  { name: 'Docker 20.10, Compose v1', dockerHost: () => process.env.FERRY_TARGET_DOCKER_HOST!, netns: () => process.env.FERRY_TARGET_NETNS ?? '/var/run/netns/ferry-airgap', compose: 'v1' },
  { name: 'Docker 26, Compose v2', dockerHost: () => process.env.FERRY_D26_DOCKER_HOST!, netns: () => process.env.FERRY_D26_NETNS!, compose: 'v2' },
];

const json = (r: RunResult) => JSON.parse(r.stdout) as { ok: boolean; result: any; error: { code: string; exitCode: number; message: string; details: any } };

const WEB_OK = (version: string) => `#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nversion ${version}\\n'`;
const WEB_BROKEN = `#!/bin/sh\nprintf 'Status: 500 Internal Server Error\\r\\nContent-Type: text/plain\\r\\n\\r\\nbroken\\n'`;
// Resolves web on every request. A second try covers a connection to a container that left the
// network mid-request, as nginx's proxy_next_upstream does.
const FRONT = [
  '#!/bin/sh',
  'for i in 1 2; do',
  '  if body=$$(timeout 3 wget -qO- http://web:8080/cgi-bin/app 2>/dev/null); then',
  "    printf 'Content-Type: text/plain\\r\\n\\r\\n%s\\n' \"$$body\"; exit 0",
  '  fi',
  'done',
  "printf 'Status: 502 Bad Gateway\\r\\nContent-Type: text/plain\\r\\n\\r\\nno upstream\\n'",
].join('\n');

/** A compose service running busybox httpd with one CGI script. */
function httpd(name: string, cgi: string, extra: string): string {
  const script = cgi.split('\n').map((l) => `        ${l}`).join('\n');
  return `  ${name}:
    image: ferry-demo/base:1.0.0
    restart: unless-stopped
    stop_grace_period: 1s
    entrypoint: ["/bin/sh", "-c"]
    command:
      - |
        mkdir -p /tmp/www/cgi-bin
        cat > /tmp/www/cgi-bin/${name === 'front' ? 'proxy' : 'app'} <<'EOF'
${script}
        EOF
        chmod 755 /tmp/www/cgi-bin/*
        exec httpd -f -p 8080 -h /tmp/www
    healthcheck:
      test: ["CMD", "wget", "-qO-", "http://127.0.0.1:8080/cgi-bin/${name === 'front' ? 'proxy' : 'app'}"]
      interval: 1s
      timeout: 3s
      retries: 2
      start_period: 2s
${extra}`;
}

function composeFile(opts: { version: string; broken?: boolean; port: number; blueGreen?: boolean; smokeFails?: boolean }): string {
  const xferry = opts.blueGreen ? 'x-ferry:\n  smoke: smoke\n  switch: blue-green\n  front: [front]\n' : 'x-ferry:\n  smoke: smoke\n';
  return `${xferry}
services:
${httpd('front', FRONT, `    ports:\n      - "${opts.port}:8080"\n`)}
${httpd('web', opts.broken ? WEB_BROKEN : WEB_OK(opts.version), '')}
  smoke:
    image: ferry-demo/base:1.0.0
    profiles: ["smoke"]
    restart: "no"
    command: ["/bin/sh", "-c", "wget -qO- http://web:8080/cgi-bin/app | grep -q '${opts.smokeFails ? 'never-there' : `version ${opts.version}`}'"]
`;
}

let work: string;
let key: string;
let trust: string;

beforeAll(async () => {
  work = await tmpDir('ferry-bluegreen-');
  key = join(work, 'signer');
  const gen = await ferry(['keys', 'generate', '--out', key, '--json']);
  trust = join(work, 'allowed_signers');
  await writeFile(trust, `${JSON.parse(gen.stdout).result.allowedSignersLine}\n`);
}, 60_000);

async function bundle(stack: string, version: string, sequence: number, compose: string): Promise<string> {
  const dir = join(work, `def-${stack}-${sequence}`);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'ferry.yaml'), `name: ${stack}\nversion: ${version}\ncompose: compose.yaml\n`);
  await writeFile(join(dir, 'compose.yaml'), compose);
  const out = join(work, `${stack}-${sequence}.ferry`);
  const r = await ferry(['bundle', 'create', dir, '--out', out, '--sign-key', key, '--sequence', String(sequence)], { timeoutMs: 300_000 });
  expect(r.code, r.stdout + r.stderr).toBe(0);
  return out;
}

/**
 * A request loop through the front, inside the engine's network namespace: about 20 requests a
 * second until stop() (or 240 s at most), each with a 10 s limit. Counts answers by body.
 */
function requestLoop(netns: string, port: number) {
  const stopFile = join(work, `stop-${port}-${Date.now()}`);
  const script = `end=$(( $(date +%s) + 240 )); while [ ! -e ${stopFile} ] && [ $(date +%s) -lt $end ]; do
    if out=$(timeout 10 wget -qO- http://127.0.0.1:${port}/cgi-bin/proxy 2>/dev/null); then echo "ok $out"; else echo "fail"; fi; usleep 30000; done`;
  const child = spawn('nsenter', [`--net=${netns}`, 'busybox', 'sh', '-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  const done = new Promise<void>((r) => child.on('close', () => r()));
  return {
    async stop() {
      await writeFile(stopFile, '');
      await done;
      const lines = out.split('\n').filter(Boolean);
      const versions: Record<string, number> = {};
      for (const l of lines.filter((x) => x.startsWith('ok '))) versions[l.slice(3)] = (versions[l.slice(3)] ?? 0) + 1;
      return { total: lines.length, failed: lines.filter((l) => l === 'fail').length, versions };
    },
  };
}

describe.each(TARGETS)('$name', (t) => {
  const env = () => ({ DOCKER_HOST: t.dockerHost(), ...(t.compose === 'v2' ? { DOCKER_CONFIG: process.env.FERRY_COMPOSE_V2_CONFIG! } : {}) });
  const docker = (args: string[]) => run('docker', args, { env: { DOCKER_HOST: t.dockerHost(), DOCKER_CONTEXT: '' } });
  const projects: string[] = [];
  const install = (stateDir: string, b: string, timeout = 30) =>
    ferry(['bundle', 'install', b, '--trust', trust, '--state-dir', stateDir, '--wait-timeout', String(timeout), '--compose-cmd', t.compose === 'v2' ? 'docker compose' : 'docker-compose', '--json'], { env: env(), timeoutMs: 300_000 });
  const get = async (port: number) => {
    const r = await run('nsenter', [`--net=${t.netns()}`, 'wget', '-qO-', `http://127.0.0.1:${port}/cgi-bin/proxy`]);
    return r.code === 0 ? r.stdout.trim() : `unreachable (${r.code})`;
  };

  afterAll(async () => {
    for (const p of projects) {
      const ids = (await docker(['ps', '-aq', '--filter', `label=com.docker.compose.project=${p}`])).stdout.split('\n').filter(Boolean);
      if (ids.length) await docker(['rm', '-f', ...ids]);
      const nets = (await docker(['network', 'ls', '-q', '--filter', `label=com.docker.compose.project=${p}`])).stdout.split('\n').filter(Boolean);
      if (nets.length) await docker(['network', 'rm', ...nets]);
    }
  }, 120_000);

  it('in place: a restore waits for health to settle (exit 7, not 8) when the front checks through web', async () => {
    const stack = uniqueName(`ip${t.compose}`).replace(/-/g, '').slice(0, 24);
    projects.push(stack);
    const port = 23000 + ((process.pid + TARGETS.indexOf(t)) % 4000);
    const stateDir = join(work, `state-${stack}`);
    const good = await bundle(stack, '1.0.2', 1, composeFile({ version: '1.0.2', port }));
    const broken = await bundle(stack, '1.0.3', 2, composeFile({ version: '1.0.3', port, broken: true }));
    const r1 = await install(stateDir, good);
    expect(r1.code, r1.stdout + r1.stderr).toBe(0);
    expect(await get(port)).toBe('version 1.0.2');

    const r2 = await install(stateDir, broken, 15);
    expect(r2.code, r2.stdout + r2.stderr).toBe(7);
    expect(json(r2).error.code).toBe('DEPLOY_FAILED_RESTORED');
    expect(json(r2).error.message).toMatch(/web.* unhealthy/);
    expect(await get(port)).toBe('version 1.0.2');
  }, 300_000);
});
