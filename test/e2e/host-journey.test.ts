/**
 * The host side, end to end with the built CLI: bundles created on the build engine, installed on
 * an air-gapped engine in its own network namespace (only loopback), services answering inside
 * that namespace, upgrade, automatic restore of a failing release, rollback, and every refusal
 * leaving the engine exactly as it was.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDocker, ferry, inTargetNetns, ROOT, targetDocker, tmpDir, uniqueName } from '../support/engines.js';

const exec = promisify(execFile);

let work: string;
let stack: string;
let trust: string;
let key: string;
let stateDir: string;
// Not the demo's 8081: a demo left running on the same engine must not break the tests.
const port = 20000 + (process.pid % 20000);
const bundles: Record<'r1' | 'r2' | 'broken' | 'big', string> = { r1: '', r2: '', broken: '', big: '' };

const target = () => ({ DOCKER_HOST: process.env.FERRY_TARGET_DOCKER_HOST! });
const install = (bundle: string, extra: string[] = []) =>
  ferry(['bundle', 'install', bundle, '--trust', trust, '--host', 'edge-1', '--state-dir', stateDir, '--wait-timeout', '60', ...extra], { env: target(), timeoutMs: 300_000 });

async function page(): Promise<string> {
  const r = await inTargetNetns('wget', ['-qO-', `http://127.0.0.1:${port}/`]);
  return r.code === 0 ? r.stdout : `unreachable (${r.code}): ${r.stderr}`;
}

/** What an engine holds: a refusal must leave this unchanged. */
async function engineSnapshot(): Promise<string> {
  const images = await targetDocker().run(['images', '--no-trunc', '--format', '{{.ID}} {{.Repository}}:{{.Tag}}']);
  const containers = await targetDocker().run(['ps', '-a', '--no-trunc', '--format', '{{.ID}} {{.Image}} {{.Status}}']);
  return `${images.stdout.split('\n').sort().join('\n')}\n--\n${containers.stdout.split('\n').map((l) => l.replace(/Up .*|Exited .*/, '')).sort().join('\n')}`;
}

async function definition(name: string, version: string, edit?: (compose: string) => string): Promise<string> {
  const dir = join(work, `def-${name}`);
  await cp(join(ROOT, 'bundles/demo'), dir, { recursive: true, filter: (src) => !src.includes('/images') });
  const edge1 = join(dir, 'hosts/edge-1.yaml');
  await writeFile(edge1, (await readFile(edge1, 'utf8')).replace('"8081:8080"', `"${port}:8080"`));
  const f = join(dir, 'ferry.yaml');
  await writeFile(f, (await readFile(f, 'utf8')).replace(/^name: .*$/m, `name: ${stack}`).replace(/^version: .*$/m, `version: ${version}`));
  let compose = await readFile(join(dir, 'compose.yaml'), 'utf8');
  compose = compose.replace(/ferry-demo\/(web|worker|smoke):1\.0\.0/g, (_m, svc) => `ferry-demo/${svc}:${version.startsWith('1.1') ? '1.1.0' : '1.0.0'}`);
  await writeFile(join(dir, 'compose.yaml'), edit ? edit(compose) : compose);
  return dir;
}

async function create(def: string, out: string, sequence: number): Promise<string> {
  const path = join(work, out);
  const r = await ferry(['bundle', 'create', def, '--out', path, '--sign-key', key, '--sequence', String(sequence)], { timeoutMs: 300_000 });
  expect(r.code, r.stderr).toBe(0);
  return path;
}

beforeAll(async () => {
  work = await tmpDir();
  stack = uniqueName('demo').replace(/-/g, '').slice(0, 30);
  stateDir = join(work, 'state');
  key = join(work, 'signer');
  const gen = await ferry(['keys', 'generate', '--out', key, '--json']);
  trust = join(work, 'allowed_signers');
  await writeFile(trust, `${JSON.parse(gen.stdout).result.allowedSignersLine}\n`);

  const built = await exec('bash', [join(ROOT, 'scripts/build-demo-images.sh'), '--version', '1.1.0'], { env: { ...process.env, DOCKER_HOST: process.env.FERRY_BUILD_DOCKER_HOST } });
  expect(built.stdout).toContain('ferry-demo/web:1.1.0');
  bundles.r1 = await create(await definition('r1', '1.0.0'), 'r1.ferry', 1);
  bundles.r2 = await create(await definition('r2', '1.1.0'), 'r2.ferry', 2);
  // Release 3 runs release 2's images, but web's health check can never pass.
  bundles.broken = await create(
    await definition('broken', '1.1.1', (c) => c.replace('["CMD", "wget", "-qO-", "http://127.0.0.1:8080/health"]', '["CMD", "false"]').replace(/retries: 5/, 'retries: 1')),
    'broken.ferry',
    3,
  );
}, 600_000);

afterAll(async () => {
  if (!stack) return;
  // By label: the compose files are gone with the temp dir by now.
  for (const project of [stack, `${stack}big`]) {
    const ids = (await targetDocker().run(['ps', '-aq', '--filter', `label=com.docker.compose.project=${project}`])).stdout.split('\n').filter(Boolean);
    if (ids.length) await targetDocker().run(['rm', '-f', ...ids]);
  }
});

describe('install on an air-gapped host', () => {
  it('installs release 1: images loaded, services healthy and answering inside the namespace', async () => {
    const before = (await targetDocker().run(['images', '-q', '--no-trunc'])).stdout;
    const r = await install(bundles.r1, ['--json']);
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.result).toMatchObject({ stack, version: '1.0.0', outcome: 'installed', previous: null });
    // On a fresh engine everything is loaded; an engine kept from an earlier run skips what it has.
    for (const i of doc.result.images as { id: string; loaded: boolean }[]) expect(i.loaded).toBe(!before.includes(i.id));
    const html = await page();
    expect(html).toContain('<span id="version">1.0.0</span>');
    expect(html).toContain('<span id="host">edge-1</span>');
    // Each service runs exactly the image ID the signed manifest names.
    const manifest = JSON.parse(await readFile(join(bundles.r1, 'ferry.json'), 'utf8'));
    for (const svc of manifest.compose.services.filter((s: { name: string }) => s.name !== 'smoke')) {
      const ps = await targetDocker().run(['ps', '--filter', `label=com.docker.compose.project=${stack}`, '--filter', `label=com.docker.compose.service=${svc.name}`, '--format', '{{.ID}}']);
      const image = await targetDocker().run(['inspect', '--format', '{{.Image}}', ps.stdout.trim()]);
      expect(image.stdout.trim()).toBe(svc.imageId);
    }
  });

  it('keeps the verification report as evidence, shown by host status --json', async () => {
    const status = JSON.parse((await ferry(['host', 'status', stack, '--state-dir', stateDir, '--json'], { env: target() })).stdout);
    const v = status.result.stacks[0].current.verification;
    const manifest = JSON.parse(await readFile(join(bundles.r1, 'ferry.json'), 'utf8'));
    expect(v).toMatchObject({ files: manifest.files.length, staged: true, trustFile: trust });
    const report = JSON.parse(await readFile(join(stateDir, 'stacks', stack, 'releases', '1-1.0.0', v.report), 'utf8'));
    expect(report.signature.principals).toEqual(['ferry']);
    expect(report.files).toEqual(manifest.files);
    expect(report.manifestSha256).toBe(`sha256:${createHash('sha256').update(await readFile(join(bundles.r1, 'ferry.json'))).digest('hex')}`);
  });

  it('installing the current release again is a fast no-op that says so', async () => {
    const r = await install(bundles.r1);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/already current/);
  });

  it('upgrades to release 2', async () => {
    const r = await install(bundles.r2);
    expect(r.code, r.stderr).toBe(0);
    expect(await page()).toContain('<span id="version">1.1.0</span>');
    // The wait after the upload, while the engine registers the layers, is announced.
    expect(r.stderr).toMatch(/all [\d.]+ [kMG]?B sent; the engine is unpacking and registering the layers/);
    // Without a TTY each image ends two phases, and each line names its phase: staged once, then
    // loaded once (or found already loaded, on an engine kept from an earlier run).
    const lines = r.stderr.split('\n');
    const count = (line: string) => lines.filter((l) => l === line).length;
    const manifest = JSON.parse(await readFile(join(bundles.r2, 'ferry.json'), 'utf8')) as { images: { refs: string[] }[] };
    expect(manifest.images.length).toBeGreaterThan(0);
    for (const ref of manifest.images.map((im) => im.refs[0]!)) {
      expect(count(`staging ${ref}: done`), `staging ${ref} in:\n${r.stderr}`).toBe(1);
      expect(count(`loading ${ref}: done`) + count(`image ${ref} already on the engine`), `loading ${ref} in:\n${r.stderr}`).toBe(1);
      expect(count(`${ref}: done`), `a bare "${ref}: done" in:\n${r.stderr}`).toBe(0);
    }
    expect(lines.filter((l) => /: done$/.test(l) && !/^(staging|loading) /.test(l))).toEqual([]);
  });

  it('restores release 2 when release 3 fails its health check (exit 7)', async () => {
    const r = await install(bundles.broken, ['--json']);
    expect(r.code).toBe(7);
    expect(JSON.parse(r.stdout).error.details.restored).toMatch(/^2-1\.1\.0$/);
    expect(await page()).toContain('<span id="version">1.1.0</span>');
    const status = JSON.parse((await ferry(['host', 'status', stack, '--state-dir', stateDir, '--json'], { env: target() })).stdout);
    expect(JSON.stringify(status.result)).toContain('2-1.1.0');
  });

  it('rolls back to release 1 on request', async () => {
    const r = await ferry(['host', 'rollback', stack, '--state-dir', stateDir, '--wait-timeout', '60'], { env: target() });
    expect(r.code, r.stderr).toBe(0);
    expect(await page()).toContain('<span id="version">1.0.0</span>');
  });

  it('refuses a downgrade below the newest installed release (exit 5)', async () => {
    // The host installed sequence 2; rolling back did not lower that ratchet.
    const before = await engineSnapshot();
    const r = await install(bundles.r1, ['--json']);
    expect(r.code).toBe(5);
    expect(JSON.parse(r.stdout).error.code).toBe('DOWNGRADE');
    expect(await engineSnapshot()).toBe(before);
  });

  it('refuses a host the bundle has no override for (exit 5), listing them', async () => {
    const r = await ferry(['bundle', 'install', bundles.r2, '--trust', trust, '--host', 'edge-9', '--state-dir', stateDir], { env: target() });
    expect(r.code).toBe(5);
    expect(r.stderr).toMatch(/edge-9.*edge-1, edge-2/);
  });

  it('refuses an untrusted or tampered bundle with nothing loaded', async () => {
    await exec('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(work, 'stranger')]);
    const strangerTrust = join(work, 'stranger_signers');
    await writeFile(strangerTrust, `ferry ${(await readFile(join(work, 'stranger.pub'), 'utf8')).trim()}\n`);
    const fresh = await create(await definition('fresh', '1.1.2'), 'fresh.ferry', 10);
    const before = await engineSnapshot();

    const untrusted = await ferry(['bundle', 'install', fresh, '--trust', strangerTrust, '--host', 'edge-1', '--state-dir', stateDir], { env: target() });
    expect(untrusted.code).toBe(3);

    const m = JSON.parse(await readFile(join(fresh, 'ferry.json'), 'utf8'));
    const blob = m.images[0].layers.at(-1).blob.path as string;
    const buf = await readFile(join(fresh, blob));
    buf[buf.length >> 1] ^= 0xff;
    await writeFile(join(fresh, blob), buf);
    const tampered = await install(fresh);
    expect(tampered.code).toBe(4);
    expect(tampered.stderr).toContain(blob);
    expect(await engineSnapshot()).toBe(before);
    expect(await page()).toContain('<span id="version">1.0.0</span>');
  });

  it('converges when the install is killed with SIGKILL while loading', async () => {
    // An image big enough that loading takes a while, on a stack of its own.
    const tag = `${uniqueName('ferry-big')}/app:1`;
    const ctx = join(work, 'big-ctx');
    await exec('mkdir', ['-p', ctx]);
    await writeFile(join(ctx, 'Dockerfile'), 'FROM ferry-demo/base:1.0.0\nRUN head -c 150000000 /dev/urandom > /blob\nUSER 10001\nCMD ["sleep","3600"]\nHEALTHCHECK --interval=1s CMD true\n');
    const b = await buildDocker().run(['build', '-q', '-t', tag, ctx], { env: { DOCKER_BUILDKIT: '0' }, timeoutMs: 300_000 });
    expect(b.code, b.stderr).toBe(0);
    const def = join(work, 'def-big');
    await exec('mkdir', ['-p', def]);
    const bigStack = `${stack}big`;
    await writeFile(join(def, 'ferry.yaml'), `name: ${bigStack}\nversion: 1.0.0\ncompose: compose.yaml\n`);
    await writeFile(join(def, 'compose.yaml'), `services:\n  app:\n    image: ${tag}\n    restart: unless-stopped\n`);
    const big = await create(def, 'big.ferry', 1);

    const args = [join(ROOT, 'bin/ferry'), 'bundle', 'install', big, '--trust', trust, '--state-dir', stateDir, '--wait-timeout', '60'];
    const child = spawn(process.execPath, args, { env: { ...process.env, ...target() }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    const killed = new Promise<void>((resolve) => {
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (/staged/.test(stderr)) setTimeout(() => child.kill('SIGKILL'), 300);
      });
      child.on('close', () => resolve());
    });
    await killed;
    expect(child.signalCode).toBe('SIGKILL');

    const again = await ferry(args.slice(1), { env: target(), timeoutMs: 300_000 });
    expect(again.code, again.stderr).toBe(0);
    const status = JSON.parse((await ferry(['host', 'status', bigStack, '--state-dir', stateDir, '--json'], { env: target() })).stdout);
    expect(JSON.stringify(status.result)).toContain('healthy');
  });
});
