/**
 * Real compose projects travel whole: every case of test/fixtures/compose-corpus (shapes taken from
 * Compose's own e2e fixtures and the Compose Specification) is bundled with Compose v2 and v1 as
 * the build server's Compose, installed on the air-gapped engine with the same Compose, and each
 * container reads its carried files there — or the case is refused naming the one reason.
 * Stand-in images (a shell that sleeps) carry the names each case uses.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDocker, ferry, ROOT, run, targetDocker, tmpDir, type RunResult } from '../support/engines.js';

const CORPUS = join(ROOT, 'test/fixtures/compose-corpus');

interface Expect {
  about: string;
  v1?: boolean;
  images: string[];
  built: Record<string, string>;
  carried: string[];
  hostPaths: string[];
  secrets: string[];
  reads: { service: string; path: string; contains: string }[];
  refused: { code: string; mentions: string } | null;
}

const cases = readdirSync(CORPUS, { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => ({ name: d.name, dir: join(CORPUS, d.name), expect: JSON.parse(readFileSync(join(CORPUS, d.name, 'expect.json'), 'utf8')) as Expect }));

const COMPOSE = {
  v2: { cmd: 'docker compose', env: () => ({ DOCKER_CONFIG: process.env.FERRY_COMPOSE_V2_CONFIG! }) },
  v1: { cmd: 'docker-compose', env: () => ({}) },
} as const;

let work: string;
const json = (r: RunResult) => JSON.parse(r.stdout) as { ok: boolean; result: any; error: { code: string; message: string }; warnings: { code: string; subject?: string; message: string }[] };
const tally = { bundled: 0, refused: 0, carriedFiles: 0, reads: 0 };

async function removeProject(project: string): Promise<void> {
  const ids = (await targetDocker().run(['ps', '-aq', '--filter', `label=com.docker.compose.project=${project}`])).stdout.split('\n').filter(Boolean);
  if (ids.length) await targetDocker().run(['rm', '-f', ...ids]);
}

beforeAll(async () => {
  work = await tmpDir('ferry-corpus-');
  // One stand-in image under every name the corpus uses: it sleeps and ignores its command.
  const ctx = join(work, 'standin');
  await run('mkdir', ['-p', ctx]);
  await writeFile(join(ctx, 'Dockerfile'), `FROM ferry-demo/base:1.0.0\nENTRYPOINT ["/bin/sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done", "stand-in"]\n`);
  const b = await buildDocker().run(['build', '-q', '-t', 'ferry-corpus/standin:1', ctx], { env: { DOCKER_BUILDKIT: '0' }, timeoutMs: 300_000 });
  expect(b.code, b.stderr).toBe(0);
  for (const ref of new Set(cases.flatMap((c) => c.expect.images))) expect((await buildDocker().run(['tag', 'ferry-corpus/standin:1', ref])).code).toBe(0);
  // Services Compose builds: built once with v2, tagged under v1's name too (as each Compose names them).
  for (const c of cases.filter((x) => Object.keys(x.expect.built).length > 0)) {
    const r = await run('docker', ['compose', 'build'], { cwd: c.dir, env: { ...COMPOSE.v2.env(), DOCKER_HOST: buildDocker().host, DOCKER_BUILDKIT: '0' }, timeoutMs: 300_000 });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    for (const svc of Object.keys(c.expect.built)) {
      const v1name = `${c.name.toLowerCase().replace(/[^a-z0-9]/g, '')}_${svc}`;
      expect((await buildDocker().run(['tag', `${c.name}-${svc}`, v1name])).code).toBe(0);
    }
  }
}, 900_000);

afterAll(async () => {
  for (const c of cases) await removeProject(c.name);
  process.stderr.write(`compose corpus: ${cases.length} cases; ${tally.bundled} bundles installed, ${tally.refused} refusals as expected, ${tally.carriedFiles} carried files checked, ${tally.reads} reads inside containers\n`);
}, 300_000);

describe.each(['v2', 'v1'] as const)('compose corpus, Compose %s on the build server and the host', (version) => {
  const compose = COMPOSE[version];
  for (const c of cases.filter((x) => version === 'v2' || x.expect.v1 !== false)) {
    it(`${c.name}: ${c.expect.refused ? `refused (${c.expect.refused.code})` : 'bundles, installs, reads its files'}`, async () => {
      const out = join(work, `${c.name}-${version}.ferry`);
      const created = await ferry(['bundle', 'create', c.dir, '--out', out, '--compose-cmd', compose.cmd, '--json'], { env: compose.env(), timeoutMs: 300_000 });
      if (c.expect.refused) {
        expect(created.code, created.stdout + created.stderr).toBe(10);
        expect(json(created).error.code).toBe(c.expect.refused.code);
        expect(json(created).error.message).toContain(c.expect.refused.mentions);
        expect(existsSync(out)).toBe(false);
        tally.refused += 1;
        return;
      }
      expect(created.code, created.stdout + created.stderr).toBe(0);
      const m = JSON.parse(readFileSync(join(out, 'ferry.json'), 'utf8'));
      // Every file the stack reads inside the project travels; env files are folded into the
      // model's environment by Compose itself, so they travel as values.
      const carried = (m.compose.projectFiles ?? []).map((f: { path: string }) => f.path.replace(/^compose\/project\//, ''));
      const envFiles = new Set(c.expect.carried.filter((f) => /(^|\/)[^/]*\.env$|(^|\/)env\//.test(f)));
      for (const f of c.expect.carried.filter((x) => !envFiles.has(x))) expect(carried, `${f} carried`).toContain(f);
      tally.carriedFiles += carried.length;
      expect((m.compose.hostPaths ?? []).map((h: { path: string }) => h.path).sort()).toEqual([...c.expect.hostPaths].sort());
      const warned = json(created).warnings.filter((w) => w.code === 'SECRET_IN_BUNDLE').map((w) => w.subject);
      expect(warned.sort()).toEqual([...c.expect.secrets].sort());
      for (const [svc] of Object.entries(c.expect.built)) expect(m.compose.services.find((s: { name: string }) => s.name === svc)?.image).toBe(version === 'v2' ? `${c.name}-${svc}` : `${c.name.toLowerCase().replace(/[^a-z0-9]/g, '')}_${svc}`);

      await removeProject(c.name);
      const state = join(work, `state-${c.name}-${version}`);
      const installed = await ferry(['bundle', 'install', out, '--allow-unsigned', '--state-dir', state, '--compose-cmd', compose.cmd, '--wait-timeout', '60'], {
        env: { ...compose.env(), DOCKER_HOST: targetDocker().host },
        timeoutMs: 300_000,
      });
      expect(installed.code, installed.stdout + installed.stderr).toBe(0);
      for (const r of c.expect.reads) {
        const ps = await targetDocker().run(['ps', '-q', '--filter', `label=com.docker.compose.project=${c.name}`, '--filter', `label=com.docker.compose.service=${r.service}`]);
        const id = ps.stdout.trim().split('\n')[0];
        expect(id, `a running container of ${r.service}`).toBeTruthy();
        const got = await targetDocker().run(['exec', id!, 'cat', r.path]);
        expect(got.stdout + got.stderr, `${r.service} reads ${r.path}`).toContain(r.contains);
        tally.reads += 1;
      }
      tally.bundled += 1;
      await removeProject(c.name);
    });
  }
});

describe('paths the host itself must provide', () => {
  const snapshot = async () => (await targetDocker().run(['images', '-q', '--no-trunc'])).stdout.split('\n').filter(Boolean).sort().join(' ');

  it('--exclude-secrets: no secret in the bundle; install refuses (exit 6) until the host holds them, then reads them', async () => {
    const c = cases.find((x) => x.name === 'secrets-file')!;
    const out = join(work, 'no-secrets.ferry');
    const created = await ferry(['bundle', 'create', c.dir, '--out', out, '--exclude-secrets', '--json'], { env: COMPOSE.v2.env(), timeoutMs: 300_000 });
    expect(created.code, created.stdout + created.stderr).toBe(0);
    expect(json(created).warnings.filter((w) => w.code === 'SECRET_IN_BUNDLE')).toEqual([]);
    const m = JSON.parse(readFileSync(join(out, 'ferry.json'), 'utf8'));
    expect(m.files.map((f: { path: string }) => f.path).filter((p: string) => /password|api\.key/.test(p))).toEqual([]);
    const where = '/etc/ferry/secrets/secrets-file';
    expect(m.compose.hostPaths.map((h: { path: string }) => h.path).sort()).toEqual([`${where}/db/password.txt`, `${where}/secrets/api.key`]);
    expect(readFileSync(join(out, 'compose/compose.yaml'), 'utf8')).toContain(`${where}/db/password.txt`);

    await run('rm', ['-rf', where]);
    await removeProject(c.name);
    const before = await snapshot();
    const state = join(work, 'state-no-secrets');
    const install = () => ferry(['bundle', 'install', out, '--allow-unsigned', '--state-dir', state, '--compose-cmd', 'docker compose', '--wait-timeout', '60', '--json'], { env: { ...COMPOSE.v2.env(), DOCKER_HOST: targetDocker().host }, timeoutMs: 300_000 });
    const refused = await install();
    expect(refused.code, refused.stdout + refused.stderr).toBe(6);
    expect(json(refused).error.code).toBe('HOST_PATHS_MISSING');
    expect(json(refused).error.message).toContain(`${where}/db/password.txt`);
    expect(await snapshot()).toBe(before);
    expect(existsSync(join(state, 'stacks', c.name))).toBe(false);

    try {
      await run('mkdir', ['-p', `${where}/db`, `${where}/secrets`]);
      await writeFile(`${where}/db/password.txt`, 'provided-by-the-host\n', { mode: 0o644 });
      await writeFile(`${where}/secrets/api.key`, 'host-api-key\n', { mode: 0o644 });
      const ok = await install();
      expect(ok.code, ok.stdout + ok.stderr).toBe(0);
      const id = (await targetDocker().run(['ps', '-q', '--filter', `label=com.docker.compose.project=${c.name}`, '--filter', 'label=com.docker.compose.service=api'])).stdout.trim();
      expect((await targetDocker().run(['exec', id, 'cat', '/run/secrets/db_password'])).stdout).toContain('provided-by-the-host');
    } finally {
      await removeProject(c.name);
      await run('rm', ['-rf', where]);
    }
  });

  it('an absolute bind source missing on the host: exit 6 naming it, nothing loaded', async () => {
    const dir = join(work, 'hostpath');
    const missing = `/var/lib/ferry-test-missing-${process.pid}/conf`;
    await run('mkdir', ['-p', dir]);
    await writeFile(join(dir, 'ferry.yaml'), 'name: hostpath\nversion: 1.0.0\ncompose: compose.yaml\n');
    await writeFile(join(dir, 'compose.yaml'), `services:\n  app:\n    image: shop/web:1.0.0\n    volumes:\n      - ${missing}:/conf:ro\n`);
    const out = join(work, 'hostpath.ferry');
    const created = await ferry(['bundle', 'create', dir, '--out', out], { env: COMPOSE.v2.env(), timeoutMs: 300_000 });
    expect(created.code, created.stderr).toBe(0);
    const shown = await ferry(['bundle', 'inspect', out]);
    expect(shown.stdout).toContain(`${missing} (bind of app)`);
    const before = await snapshot();
    const r = await ferry(['bundle', 'install', out, '--allow-unsigned', '--state-dir', join(work, 'state-hostpath')], { env: { DOCKER_HOST: targetDocker().host }, timeoutMs: 300_000 });
    expect(r.code, r.stdout + r.stderr).toBe(6);
    expect(r.stderr).toContain(`${missing} (bind of app)`);
    expect(await snapshot()).toBe(before);
  });
});
