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
import { hostDocker, sshHostsDown, sshHostsUp, type SshHosts } from '../support/ssh-hosts.js';

interface Target {
  name: string;
  dockerHost: () => string;
  netns: () => string;
  compose: 'v1' | 'v2';
}

const TARGETS: Target[] = [
  { name: 'Docker 20.10, Compose v1', dockerHost: () => process.env.FERRY_TARGET_DOCKER_HOST!, netns: () => process.env.FERRY_TARGET_NETNS ?? '/var/run/netns/ferry-airgap', compose: 'v1' },
  { name: 'Docker 26, Compose v2', dockerHost: () => process.env.FERRY_D26_DOCKER_HOST!, netns: () => process.env.FERRY_D26_NETNS!, compose: 'v2' },
  { name: 'Docker 20.10, Compose v2', dockerHost: () => process.env.FERRY_TARGET_DOCKER_HOST!, netns: () => process.env.FERRY_TARGET_NETNS ?? '/var/run/netns/ferry-airgap', compose: 'v2' },
];

const json = (r: RunResult) => JSON.parse(r.stdout) as { ok: boolean; result: any; error: { code: string; exitCode: number; message: string; details: any; nextSteps: string[] } };

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

// web asks db on every request: a colour must reach the shared services.
const WEB_WITH_DB = (version: string) =>
  `#!/bin/sh\nif d=$$(wget -qO- http://db:8080/cgi-bin/app 2>/dev/null); then :; else d=no-db; fi\nprintf 'Content-Type: text/plain\\r\\n\\r\\nversion ${version} %s\\n' "$$d"`;
const DB = `#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\ndb-one'`;

// Answers its own health check (from 127.0.0.1) and the smoke test (user agent "smoke"), but 500
// to the front: a release that passes every test of its colour and breaks only after the switch.
const WEB_FAILS_FRONT = (version: string) =>
  `#!/bin/sh\ncase "$$REMOTE_ADDR $$HTTP_USER_AGENT" in\n  *127.0.0.1*|*smoke) printf 'Content-Type: text/plain\\r\\n\\r\\nversion ${version}\\n' ;;\n  *) printf 'Status: 500 Internal Server Error\\r\\n\\r\\nnot for the front\\n' ;;\nesac`;

function composeFile(opts: { version: string; broken?: boolean; port: number; blueGreen?: boolean; smokeFails?: boolean; withDb?: boolean; failsFront?: boolean }): string {
  const shared = opts.withDb ? '  shared: [db]\n' : '';
  const xferry = opts.blueGreen ? `x-ferry:\n  smoke: smoke\n  switch: blue-green\n  front: [front]\n${shared}` : 'x-ferry:\n  smoke: smoke\n';
  return `${xferry}
services:
${httpd('front', FRONT, `    ports:\n      - "${opts.port}:8080"\n`)}
${httpd('web', opts.broken ? WEB_BROKEN : opts.failsFront ? WEB_FAILS_FRONT(opts.version) : opts.withDb ? WEB_WITH_DB(opts.version) : WEB_OK(opts.version), '')}
${opts.withDb ? httpd('db', DB, '') : ''}
  smoke:
    image: ferry-demo/base:1.0.0
    profiles: ["smoke"]
    restart: "no"
    command: ["/bin/sh", "-c", "wget -U smoke -qO- http://web:8080/cgi-bin/app | grep -q '${opts.smokeFails ? 'never-there' : `version ${opts.version}`}'"]
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
    if out=$(timeout 10 wget -qO- http://127.0.0.1:${port}/cgi-bin/proxy 2>/dev/null); then echo "ok $out"; else echo "fail"; fi; usleep 10000; done`;
  const started = Date.now();
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
      const perSecond = Math.round(lines.length / ((Date.now() - started) / 1000));
      return { total: lines.length, failed: lines.filter((l) => l === 'fail').length, versions, perSecond };
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

    const loop = requestLoop(t.netns(), port);
    const r2 = await install(stateDir, broken, 15);
    const counts = await loop.stop();
    console.log(`${t.name}, in place, broken release: ${counts.failed} of ${counts.total} requests failed (${counts.perSecond}/s) ${JSON.stringify(counts.versions)}`);
    // In place, users meet the broken release until the restore: the contrast with blue/green.
    expect(counts.failed).toBeGreaterThan(0);
    expect(r2.code, r2.stdout + r2.stderr).toBe(7);
    expect(json(r2).error.code).toBe('DEPLOY_FAILED_RESTORED');
    expect(json(r2).error.message).toMatch(/web.* unhealthy/);
    expect(await get(port)).toBe('version 1.0.2');
  }, 300_000);

  describe('blue/green', () => {
    const stack = uniqueName(`bg${t.compose}`).replace(/-/g, '').slice(0, 24);
    const port = 27000 + ((process.pid + TARGETS.indexOf(t)) % 3000);
    let stateDir: string;
    const b: Record<string, string> = {};
    projects.push(stack, `${stack}-blue`, `${stack}-green`);
    const status = async () => json(await ferry(['host', 'status', stack, '--state-dir', stateDir, '--json'], { env: env() })).result.stacks[0];
    const colourOf = async () => (await status()).current?.colour;

    beforeAll(async () => {
      stateDir = join(work, `state-${stack}`);
      b.r1 = await bundle(stack, '2.0.1', 1, composeFile({ version: '2.0.1', port, blueGreen: true }));
      b.r2 = await bundle(stack, '2.0.2', 2, composeFile({ version: '2.0.2', port, blueGreen: true }));
      b.broken = await bundle(stack, '2.0.3', 3, composeFile({ version: '2.0.3', port, blueGreen: true, broken: true }));
      b.smokeFails = await bundle(stack, '2.0.4', 4, composeFile({ version: '2.0.4', port, blueGreen: true, smokeFails: true }));
      b.failsFront = await bundle(stack, '2.0.5', 5, composeFile({ version: '2.0.5', port, blueGreen: true, failsFront: true }));
    }, 300_000);
    const webOf = async (colour: string) => (await docker(['ps', '-aq', '--no-trunc', '--filter', `label=com.docker.compose.project=${stack}-${colour}`, '--filter', 'label=com.docker.compose.service=web'])).stdout.trim();
    /** The aliases a container has on the network the front uses. */
    const aliases = async (id: string) => {
      const nets = JSON.parse((await docker(['inspect', '-f', '{{json .NetworkSettings.Networks}}', id])).stdout) as Record<string, { Aliases: string[] | null }>;
      return nets[`${stack}_default`]?.Aliases ?? [];
    };
    let blueWeb = '';

    it('first install: the front in the stack project, web as the blue colour', async () => {
      const r = await install(stateDir, b.r1);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(await get(port)).toBe('version 2.0.1');
      expect(await colourOf()).toBe('blue');
      blueWeb = await webOf('blue');
      const web = await docker(['ps', '--filter', `label=com.docker.compose.project=${stack}-blue`, '--format', '{{.Names}}']);
      expect(web.stdout).toMatch(/web/);
      // No port of web is published: only the front's.
      const ports = await docker(['ps', '--filter', `label=com.docker.compose.project=${stack}-blue`, '--format', '{{.Ports}}']);
      expect(ports.stdout).not.toMatch(/->/);
    }, 300_000);

    it('upgrade with a request loop running: no failed request, green serves 2.0.2, blue stopped', async () => {
      const loop = requestLoop(t.netns(), port);
      const r = await ferry(['bundle', 'install', b.r2, '--trust', trust, '--state-dir', stateDir, '--wait-timeout', '30', '--drain', '2', '--compose-cmd', t.compose === 'v2' ? 'docker compose' : 'docker-compose', '--json'], { env: env(), timeoutMs: 300_000 });
      const counts = await loop.stop();
      console.log(`${t.name}, blue/green upgrade: ${counts.failed} of ${counts.total} requests failed (${counts.perSecond}/s) ${JSON.stringify(counts.versions)}`);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      // From "switch" to the new colour holding every name (the old one holds none).
      console.log(`${t.name}, blue/green upgrade: the switch took ${json(r).result.timings.switch} ms`);
      expect(json(r).result.timings.switch).toBeLessThan(2000);
      expect(counts.total).toBeGreaterThan(20);
      expect(counts.failed).toBe(0);
      expect(counts.versions['version 2.0.2']).toBeGreaterThan(0);
      expect(await get(port)).toBe('version 2.0.2');
      expect(await colourOf()).toBe('green');
      const blue = await docker(['ps', '-a', '--filter', `label=com.docker.compose.project=${stack}-blue`, '--format', '{{.State}}']);
      expect(blue.stdout.trim()).toMatch(/^exited$/m);
    }, 300_000);

    it('rollback flips back to 2.0.1 with no failed request: the kept blue containers started as they are', async () => {
      const loop = requestLoop(t.netns(), port);
      const r = await ferry(['host', 'rollback', stack, '--state-dir', stateDir, '--wait-timeout', '30', '--drain', '1', '--compose-cmd', t.compose === 'v2' ? 'docker compose' : 'docker-compose', '--json'], { env: env(), timeoutMs: 300_000 });
      const counts = await loop.stop();
      console.log(`${t.name}, blue/green rollback: ${counts.failed} of ${counts.total} requests failed (${counts.perSecond}/s) ${JSON.stringify(counts.versions)} in ${json(r).result?.durationMs} ms, names moved ${json(r).result?.timings?.flipped} ms after the start, the switch ${json(r).result?.timings?.switch} ms`);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(json(r).result.timings.switch).toBeLessThan(2000);
      // By alias flip: the very container 2.0.1 ran as (started, not recreated), no compose run.
      expect(json(r).result.timings.flipped).toBeGreaterThan(0);
      expect(await webOf('blue')).toBe(blueWeb);
      expect(await aliases(blueWeb)).toContain('web');
      expect(counts.failed).toBe(0);
      expect(await get(port)).toBe('version 2.0.1');
      expect(await colourOf()).toBe('blue');
      const green = await docker(['ps', '-a', '--filter', `label=com.docker.compose.project=${stack}-green`, '--format', '{{.State}}']);
      expect(green.stdout.trim()).toBe('exited');
    }, 300_000);

    it('a release whose web answers 500: exit 7, nothing switched, no failed request, 2.0.1 still serving', async () => {
      const loop = requestLoop(t.netns(), port);
      const r = await install(stateDir, b.broken, 10);
      const counts = await loop.stop();
      console.log(`${t.name}, blue/green broken release: ${counts.failed} of ${counts.total} requests failed (${counts.perSecond}/s) ${JSON.stringify(counts.versions)}`);
      expect(r.code, r.stdout + r.stderr).toBe(7);
      expect(json(r).error.code).toBe('DEPLOY_FAILED_KEPT');
      expect(counts.failed).toBe(0);
      expect(Object.keys(counts.versions)).toEqual(['version 2.0.1']);
      expect(await get(port)).toBe('version 2.0.1');
      expect(await colourOf()).toBe('blue');
      // The failed colour is gone.
      expect(await webOf('green')).toBe('');
    }, 300_000);

    it('a release whose smoke test fails: exit 7, no failed request', async () => {
      const loop = requestLoop(t.netns(), port);
      const r = await install(stateDir, b.smokeFails, 20);
      const counts = await loop.stop();
      console.log(`${t.name}, blue/green smoke test failing: ${counts.failed} of ${counts.total} requests failed (${counts.perSecond}/s) ${JSON.stringify(counts.versions)}`);
      expect(r.code, r.stdout + r.stderr).toBe(7);
      expect(json(r).error.message).toMatch(/smoke test/);
      expect(counts.failed).toBe(0);
      expect(Object.keys(counts.versions)).toEqual(['version 2.0.1']);
    }, 300_000);


    it('a release that breaks the front only once it holds the names: the switch is undone, exit 7, 2.0.1 serves', async () => {
      const loop = requestLoop(t.netns(), port);
      const r = await install(stateDir, b.failsFront, 20);
      const counts = await loop.stop();
      // Users meet the release between the switch and its undoing: the front's check confirms it at once.
      console.log(`${t.name}, blue/green front failing after the switch: ${counts.failed} of ${counts.total} requests failed (${counts.perSecond}/s) ${JSON.stringify(counts.versions)}`);
      expect(r.code, r.stdout + r.stderr).toBe(7);
      expect(json(r).error.code).toBe('DEPLOY_FAILED_RESTORED');
      expect(json(r).error.details.switched).toBe(true);
      expect(json(r).error.message).toMatch(/front service front fails its health check with green \(2\.0\.5\) holding the service names/);
      expect(await get(port)).toBe('version 2.0.1');
      expect(await colourOf()).toBe('blue');
      // The names went back to blue; green is gone.
      expect(await aliases(blueWeb)).toContain('web');
      expect(await webOf('green')).toBe('');
    }, 300_000);

    // The judgment behind exit 8 reads the engine, not compose: one target is enough (the file's
    // running time is CI's longest).
    if (t === TARGETS[1]) it('exit 8 when the previous colour really is not serving', async () => {
      // 2.0.1's web killed: nothing serves; a release that fails before the switch cannot be undone into it.
      await docker(['stop', '-t', '0', blueWeb]);
      const r = await ferry(['bundle', 'install', b.broken, '--trust', trust, '--state-dir', stateDir, '--wait-timeout', '3', '--allow-downgrade', '--compose-cmd', t.compose === 'v2' ? 'docker compose' : 'docker-compose', '--json'], { env: env(), timeoutMs: 300_000 });
      expect(r.code, r.stdout + r.stderr).toBe(8);
      expect(json(r).error.code).toBe('RESTORE_FAILED');
      expect(json(r).error.message).toMatch(/previous release 2\.0\.1 is not healthy either/);
    }, 300_000);
  });

  describe('in place, then blue/green with a shared service, then in place again', () => {
    const stack = uniqueName(`mg${t.compose}`).replace(/-/g, '').slice(0, 24);
    const port = 24500 + ((process.pid + TARGETS.indexOf(t)) % 2000);
    let stateDir: string;
    const b: Record<string, string> = {};
    projects.push(stack, `${stack}-blue`, `${stack}-green`);
    const status = async () => json(await ferry(['host', 'status', stack, '--state-dir', stateDir, '--json'], { env: env() })).result.stacks[0];
    const installDrain = (bundlePath: string) =>
      ferry(['bundle', 'install', bundlePath, '--trust', trust, '--state-dir', stateDir, '--wait-timeout', '30', '--drain', '2', '--compose-cmd', t.compose === 'v2' ? 'docker compose' : 'docker-compose', '--json'], { env: env(), timeoutMs: 300_000 });

    beforeAll(async () => {
      stateDir = join(work, `state-${stack}`);
      b.r1 = await bundle(stack, '3.0.1', 1, composeFile({ version: '3.0.1', port, withDb: true }));
      b.r2 = await bundle(stack, '3.0.2', 2, composeFile({ version: '3.0.2', port, withDb: true, blueGreen: true }));
      b.r3 = await bundle(stack, '3.0.3', 3, composeFile({ version: '3.0.3', port, withDb: true }));
    }, 300_000);

    it('moves from in place to blue/green and back, web reaching db throughout', async () => {
      const r1 = await installDrain(b.r1);
      expect(r1.code, r1.stdout + r1.stderr).toBe(0);
      expect(await get(port)).toBe('version 3.0.1 db-one');

      let loop = requestLoop(t.netns(), port);
      const r2 = await installDrain(b.r2);
      let counts = await loop.stop();
      console.log(`${t.name}, in place to blue/green: ${counts.failed} of ${counts.total} requests failed (${counts.perSecond}/s) ${JSON.stringify(counts.versions)}`);
      expect(r2.code, r2.stdout + r2.stderr).toBe(0);
      // front and db run the same images as before: nothing to warn about.
      expect(json(r2).warnings).toEqual([]);
      expect(counts.failed).toBe(0);
      expect(await get(port)).toBe('version 3.0.2 db-one');
      const s2 = await status();
      expect(s2.current.colour).toBe('blue');
      // The in-place web is gone; db stayed in the stack's own project, never run twice.
      const own = await docker(['ps', '-a', '--filter', `label=com.docker.compose.project=${stack}`, '--format', '{{.Label "com.docker.compose.service"}}']);
      expect(own.stdout.split('\n').filter(Boolean).sort()).toEqual(['db', 'front']);
      expect(s2.services.filter((x: { state: string }) => x.state === 'running').map((x: { service: string }) => x.service).sort()).toEqual(['db', 'front', 'web']);

      loop = requestLoop(t.netns(), port);
      const r3 = await installDrain(b.r3);
      counts = await loop.stop();
      console.log(`${t.name}, blue/green back to in place: ${counts.failed} of ${counts.total} requests failed (${counts.perSecond}/s) ${JSON.stringify(counts.versions)}`);
      expect(r3.code, r3.stdout + r3.stderr).toBe(0);
      expect(await get(port)).toBe('version 3.0.3 db-one');
      expect((await status()).current.colour).toBeNull();
      const colours = await docker(['ps', '-aq', '--filter', `label=com.docker.compose.project=${stack}-blue`]);
      expect(colours.stdout.trim()).toBe('');
    }, 600_000);
  });
});

// Compose v1 cannot update a container in place on Docker 25 and later (KeyError 'ContainerConfig'):
// blue/green there would drop the front, so install refuses by name before touching anything.
describe('Docker 26 with Compose v1', () => {
  const stack = uniqueName('bgv1d26').replace(/-/g, '').slice(0, 24);
  const docker = (args: string[]) => run('docker', args, { env: { DOCKER_HOST: process.env.FERRY_D26_DOCKER_HOST!, DOCKER_CONTEXT: '' } });

  afterAll(async () => {
    for (const p of [stack, `${stack}-blue`, `${stack}-green`]) {
      const ids = (await docker(['ps', '-aq', '--filter', `label=com.docker.compose.project=${p}`])).stdout.split('\n').filter(Boolean);
      if (ids.length) await docker(['rm', '-f', ...ids]);
    }
  }, 120_000);

  it('refuses blue/green by name (exit 6 BLUE_GREEN_UNSUPPORTED): the images loaded, nothing started', async () => {
    const port = 25500 + (process.pid % 500);
    const b = await bundle(stack, '5.0.1', 1, composeFile({ version: '5.0.1', port, blueGreen: true }));
    const stateDir = join(work, `state-${stack}`);
    const r = await ferry(['bundle', 'install', b, '--trust', trust, '--state-dir', stateDir, '--wait-timeout', '20', '--compose-cmd', 'docker-compose', '--json'], {
      env: { DOCKER_HOST: process.env.FERRY_D26_DOCKER_HOST! },
      timeoutMs: 300_000,
    });
    expect(r.code, r.stdout + r.stderr).toBe(6);
    expect(json(r).error.code).toBe('BLUE_GREEN_UNSUPPORTED');
    expect(json(r).error.message).toMatch(/Compose v1 on Docker 25 and later/);
    expect(json(r).error.nextSteps.join(' ')).toMatch(/docker compose/);
    for (const p of [stack, `${stack}-blue`, `${stack}-green`]) {
      expect((await docker(['ps', '-aq', '--filter', `label=com.docker.compose.project=${p}`])).stdout.trim()).toBe('');
    }
  }, 300_000);
});

// Over SSH, as a fleet: host 1 runs Docker 20.10 with Compose v1, host 3 Docker 26 (containerd
// store) with Compose v2, each in its own network namespace.
describe('blue/green over SSH, a fleet of two hosts', () => {
  let hosts: SshHosts | undefined;
  const stack = uniqueName('bgssh').replace(/-/g, '').slice(0, 24);
  const port = 26000 + (process.pid % 1000);
  const nums = [1, 3];
  const b: Record<string, string> = {};
  let home: string;
  const env = () => ({ HOME: home, SSH_AUTH_SOCK: '' });
  const fleet = (bundlePath: string) =>
    ferry(['bundle', 'install', bundlePath, '--trust', trust, '--ssh', nums.map((n) => hosts!.targets[n - 1]).join(','), '--parallel', '2', '-i', hosts!.identity, '--known-hosts', hosts!.knownHosts, '--wait-timeout', '40', '--drain', '2', '--json'], { env: env(), timeoutMs: 400_000 });
  const get = async (n: number) => {
    const r = await run('nsenter', [`--net=/var/run/netns/ferry-ssh${n}`, 'wget', '-qO-', `http://127.0.0.1:${port}/cgi-bin/proxy`]);
    return r.code === 0 ? r.stdout.trim() : `unreachable (${r.code})`;
  };

  beforeAll(async () => {
    hosts = await sshHostsUp(3, { docker26c: [3] });
    home = join(work, 'ssh-home');
    await mkdir(home, { recursive: true });
    b.r1 = await bundle(stack, '4.0.1', 1, composeFile({ version: '4.0.1', port, blueGreen: true }));
    b.r2 = await bundle(stack, '4.0.2', 2, composeFile({ version: '4.0.2', port, blueGreen: true }));
  }, 400_000);

  afterAll(async () => {
    if (hosts) {
      for (const n of nums) {
        const d = hostDocker(hosts, n);
        for (const p of [stack, `${stack}-blue`, `${stack}-green`]) {
          const ids = (await d.run(['ps', '-aq', '--filter', `label=com.docker.compose.project=${p}`])).stdout.split('\n').filter(Boolean);
          if (ids.length) await d.run(['rm', '-f', ...ids]);
          const nets = (await d.run(['network', 'ls', '-q', '--filter', `label=com.docker.compose.project=${p}`])).stdout.split('\n').filter(Boolean);
          if (nets.length) await d.run(['network', 'rm', ...nets]);
        }
      }
    }
    await sshHostsDown(hosts);
  }, 180_000);

  it('installs, then upgrades both hosts with no failed request on either', async () => {
    const r1 = await fleet(b.r1);
    expect(r1.code, r1.stdout + r1.stderr).toBe(0);
    for (const n of nums) expect(await get(n)).toBe('version 4.0.1');

    const loops = nums.map((n) => requestLoop(`/var/run/netns/ferry-ssh${n}`, port));
    const r2 = await fleet(b.r2);
    const counts = await Promise.all(loops.map((l) => l.stop()));
    nums.forEach((n, i) => console.log(`ssh host ${n}, blue/green upgrade in a fleet: ${counts[i]!.failed} of ${counts[i]!.total} requests failed (${counts[i]!.perSecond}/s) ${JSON.stringify(counts[i]!.versions)}`));
    expect(r2.code, r2.stdout + r2.stderr).toBe(0);
    for (const [i, n] of nums.entries()) {
      expect(counts[i]!.failed).toBe(0);
      expect(await get(n)).toBe('version 4.0.2');
      const green = await hostDocker(hosts!, n).run(['ps', '--filter', `label=com.docker.compose.project=${stack}-green`, '--format', '{{.Names}}']);
      expect(green.stdout).toMatch(/web/);
    }
  }, 600_000);
});
