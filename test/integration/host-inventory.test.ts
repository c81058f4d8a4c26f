/**
 * `host inventory` and `host status` through the built CLI against the real build engine, with
 * the docker CLI and docker-compose as the independent witnesses of what the engine holds and runs.
 */
import { createHash } from 'node:crypto';
import { cp, mkdir, readFile, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseInventory, type Inventory } from '../../src/core/inventory.js';
import { buildDocker, ferry, run, tmpDir, uniqueName } from '../support/engines.js';

const sha = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;
/** ChainID per the OCI image spec, computed here without ferry's code. */
function chainIdsOf(diffIds: string[]): string[] {
  const out: string[] = [];
  for (const id of diffIds) out.push(out.length === 0 ? id : sha(`${out[out.length - 1]} ${id}`));
  return out;
}

function json(stdout: string) {
  return JSON.parse(stdout) as { ok: boolean; result: any; error: { code: string; exitCode: number; message: string; details: any }; warnings: unknown[] };
}

let work: string;
let tag: string;
let imageId: string;
let diffIds: string[];
const env = () => ({ DOCKER_HOST: buildDocker().host });

beforeAll(async () => {
  work = await tmpDir();
  tag = `${uniqueName('ferry-inv')}/app:1`;
  const ctx = join(work, 'ctx');
  await mkdir(ctx, { recursive: true });
  await writeFile(join(ctx, 'busybox'), await readFile('/bin/busybox'), { mode: 0o755 });
  await writeFile(join(ctx, 'marker'), `${tag}\n`);
  // Three layers, so that chain IDs are more than the first diffID.
  await writeFile(join(ctx, 'Dockerfile'), 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox","--install","-s","/bin"]\nCOPY marker /marker\n');
  const built = await buildDocker().run(['build', '-q', '-t', tag, ctx], { env: { DOCKER_BUILDKIT: '0' } });
  expect(built.code, built.stderr).toBe(0);
  const inspected = await buildDocker().run(['image', 'inspect', '--format', '{{json .Id}} {{json .RootFS.Layers}}', tag]);
  expect(inspected.code, inspected.stderr).toBe(0);
  const [id, layers] = inspected.stdout.trim().split(' ');
  imageId = JSON.parse(id!) as string;
  diffIds = JSON.parse(layers!) as string[];
  expect(diffIds).toHaveLength(3);
});

afterAll(async () => {
  if (tag) await buildDocker().run(['rmi', '-f', tag]);
});

async function stateFile(root: string, stack: string, services: { name: string; imageId: string }[]): Promise<void> {
  const release = (sequence: number, version: string) => ({
    id: `${sequence}-${version}`,
    version,
    sequence,
    created: `2026-11-0${sequence}T10:00:00.000Z`,
    installedAt: `2026-11-0${sequence}T12:00:00.000Z`,
    host: 'it-host',
    images: [{ id: imageId, tag: `ferry.local/${stack}:${imageId.slice(7)}` }],
    services,
    composeFiles: ['compose/compose.yaml'],
    smoke: 'ghost-smoke',
    signer: sequence === 2 ? { fingerprint: 'SHA256:itfingerprint', principals: ['release@example.com'] } : null,
    result: 'installed',
  });
  const state = {
    format: 'ferry.state/v1',
    stack,
    current: '2-1.1.0',
    highestSequence: 2,
    newestCreated: '2026-11-02T10:00:00.000Z',
    releases: [release(1, '1.0.0'), release(2, '1.1.0')],
  };
  await mkdir(join(root, 'stacks', stack), { recursive: true });
  await writeFile(join(root, 'stacks', stack, 'state.json'), `${JSON.stringify(state, null, 2)}\n`);
}

describe('ferry host inventory', () => {
  it('lists the image with the engine’s diffIDs and independently computed chain IDs, --out and --json agreeing', async () => {
    const out = join(work, 'sub', 'inventory.json');
    const r = await ferry(['host', 'inventory', '--out', out, '--json', '--state-dir', join(work, 'no-such-state')], { env: env() });
    expect(r.code, r.stderr).toBe(0);
    const doc = json(r.stdout);
    expect(doc.ok).toBe(true);
    const inv = doc.result as Inventory;
    // The file is the result, byte for byte the document ferry serialises.
    const fileText = await readFile(out, 'utf8');
    expect(JSON.parse(fileText)).toEqual(inv);
    expect(parseInventory(fileText, out)).toEqual(inv);

    expect(inv.format).toBe('ferry.inventory/v1');
    expect(Date.now() - Date.parse(inv.created)).toBeLessThan(120_000);
    const version = await buildDocker().run(['version', '--format', '{{.Server.Version}} {{.Server.APIVersion}}']);
    const [serverVersion, apiVersion] = version.stdout.trim().split(' ');
    expect(inv.engine).toMatchObject({ serverVersion, apiVersion, podman: false, containerdStore: false, os: 'linux' });
    expect(inv.engine.storageDriver).not.toBe('');

    const mine = inv.images.filter((im) => im.repoTags.includes(tag));
    expect(mine).toHaveLength(1);
    const im = mine[0]!;
    expect(im.id).toBe(imageId);
    expect(im.diffIds).toEqual(diffIds);
    expect(im.chainIds).toEqual(chainIdsOf(diffIds));
    expect(im.size).toBeGreaterThan(500_000); // busybox is in there
    for (const c of im.chainIds) expect(inv.layers).toContain(c);
    expect(inv.layers).toEqual([...new Set(inv.layers)].sort());
    expect(inv.releases).toEqual([]);

    // Every image the engine lists is in the inventory.
    const ids = await buildDocker().run(['images', '-q', '--no-trunc']);
    for (const id of new Set(ids.stdout.split('\n').filter(Boolean))) expect(inv.images.map((i) => i.id)).toContain(id);
  });

  it('prints the same document on stdout without --out, and a summary with it', async () => {
    const state = join(work, 'state-inv');
    await stateFile(state, 'shop', [{ name: 'app', imageId }]);
    const stdoutDoc = async () => {
      const r = await ferry(['host', 'inventory', '--state-dir', state], { env: env() });
      expect(r.code, r.stderr).toBe(0);
      const { created, ...rest } = JSON.parse(r.stdout) as Inventory;
      expect(created).toMatch(/^\d{4}-\d\d-\d\dT/);
      return rest;
    };
    const out = join(work, 'inventory-2.json');
    // Other tests may build or remove images on the same engine meanwhile: the comparison only
    // counts when two stdout runs around the --out run agree.
    let compared = false;
    for (let attempt = 0; attempt < 5 && !compared; attempt++) {
      const before = await stdoutDoc();
      const r = await ferry(['host', 'inventory', '--out', out, '--state-dir', state], { env: env() });
      expect(r.code, r.stderr).toBe(0);
      const after = await stdoutDoc();
      if (JSON.stringify(before) !== JSON.stringify(after)) continue;
      const { created: _created, ...written } = JSON.parse(await readFile(out, 'utf8')) as Inventory;
      expect(written).toEqual(before);
      expect(r.stdout).toBe(`wrote ${out}: ${before.images.length} images, ${before.layers.length} layers, engine Docker ${before.engine.serverVersion} (API ${before.engine.apiVersion}, ${before.engine.storageDriver}, linux/${before.engine.architecture}), 1 stack installed\n`);
      expect(before.releases).toEqual([
        {
          stack: 'shop',
          current: '2-1.1.0',
          highestSequence: 2,
          releases: [
            { id: '1-1.0.0', version: '1.0.0', sequence: 1, installedAt: '2026-11-01T12:00:00.000Z' },
            { id: '2-1.1.0', version: '1.1.0', sequence: 2, installedAt: '2026-11-02T12:00:00.000Z' },
          ],
        },
      ]);
      compared = true;
    }
    expect(compared, 'the engine never held still for two inventories').toBe(true);
  });

  it('records the host by --host, the name install uses, and bundle create shows it as "built for"', async () => {
    const state = join(work, 'no-such-state');
    // Without --host: the machine's own hostname, as install's default.
    const plain = await ferry(['host', 'inventory', '--state-dir', state], { env: env() });
    expect(plain.code, plain.stderr).toBe(0);
    expect((JSON.parse(plain.stdout) as Inventory).host).toBe(hostname());

    const out = join(work, 'edge-1.inventory.json');
    const named = await ferry(['host', 'inventory', '--host', 'edge-1', '--out', out, '--state-dir', state], { env: env() });
    expect(named.code, named.stderr).toBe(0);
    expect(parseInventory(await readFile(out, 'utf8'), out).host).toBe('edge-1');

    const def = join(work, 'def-built-for');
    await mkdir(def, { recursive: true });
    await writeFile(join(def, 'ferry.yaml'), 'name: builtfor\nversion: 1.0.0\ncompose: compose.yaml\n');
    await writeFile(join(def, 'compose.yaml'), `services:\n  app:\n    image: ${tag}\n`);
    const created = await ferry(['bundle', 'create', def, '--out', join(work, 'built-for.ferry'), '--base', out], { env: env(), timeoutMs: 300_000 });
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toMatch(/^ {2}built for: edge-1; 3 layers \(.*\) left out, held by every base$/m);
    expect(created.stderr).toContain('bases: inventory edge-1;');
  });

  it('refuses a --host that is no host name (exit 2)', async () => {
    const r = await ferry(['host', 'inventory', '--host', 'edge 1/x', '--json', '--state-dir', work], { env: env() });
    expect(r.code).toBe(2);
    expect(json(r.stdout).error.code).toBe('BAD_FLAG');
  });

  it('reports an unreachable engine as a host precondition (exit 6)', async () => {
    const r = await ferry(['host', 'inventory', '--json', '--state-dir', work], { env: { DOCKER_HOST: `unix://${join(work, 'no.sock')}` } });
    expect(r.code).toBe(6);
    expect(json(r.stdout).error.code).toBe('ENGINE_UNREACHABLE');
  });
});

describe('ferry host status', () => {
  let stack: string;
  let state: string;
  let composeFile: string;
  const compose = (args: string[]) => run('docker-compose', ['-p', stack, '-f', composeFile, ...args], { env: env() });

  beforeAll(async () => {
    stack = uniqueName('ferry-status');
    state = join(work, 'state-status');
    await stateFile(state, stack, [
      { name: 'app', imageId },
      { name: 'ghost', imageId },
      { name: 'ghost-smoke', imageId },
    ]);
    composeFile = join(work, 'compose.yaml');
    await writeFile(
      composeFile,
      `version: "2.4"\nservices:\n  app:\n    image: ${tag}\n    command: ["sleep", "3600"]\n    init: true\n    healthcheck:\n      test: ["CMD", "true"]\n      interval: 1s\n      retries: 3\n`,
    );
    const up = await compose(['up', '-d']);
    expect(up.code, up.stderr).toBe(0);
    const deadline = Date.now() + 60_000;
    let health = '';
    while (Date.now() < deadline) {
      const r = await buildDocker().run(['inspect', '--format', '{{.State.Health.Status}}', `${stack}_app_1`]);
      health = r.stdout.trim();
      if (health === 'healthy') break;
      await new Promise((res) => setTimeout(res, 500));
    }
    expect(health).toBe('healthy');
  });

  afterAll(async () => {
    if (stack) await compose(['down', '--remove-orphans', '--timeout', '1']);
  });

  it('reports the current release, kept releases, and each service running, healthy, on its pinned image', async () => {
    const r = await ferry(['host', 'status', stack, '--state-dir', state, '--json'], { env: env() });
    expect(r.code, r.stderr).toBe(0);
    const doc = json(r.stdout);
    expect(doc.ok).toBe(true);
    expect(doc.result.stacks).toHaveLength(1);
    const s = doc.result.stacks[0];
    expect(s.stack).toBe(stack);
    expect(s.current).toEqual({
      id: '2-1.1.0',
      version: '1.1.0',
      sequence: 2,
      installedAt: '2026-11-02T12:00:00.000Z',
      signer: { fingerprint: 'SHA256:itfingerprint', principals: ['release@example.com'] },
      // A hand-written record from before install kept evidence: none to show.
      verification: null,
      // In place: no blue/green colour.
      colour: null,
    });
    expect(s.releases.map((x: { id: string; current: boolean }) => [x.id, x.current])).toEqual([
      ['1-1.0.0', false],
      ['2-1.1.0', true],
    ]);
    const app = s.services.filter((x: { service: string }) => x.service === 'app');
    expect(app).toEqual([
      { service: 'app', name: `${stack}_app_1`, state: 'running', health: 'healthy', imageId, expectedImageId: imageId, imageMatches: true, exitCode: null, oneOff: false },
    ]);
    // The release expects it; nothing runs it.
    expect(s.services.find((x: { service: string }) => x.service === 'ghost')).toMatchObject({ name: null, state: 'missing', imageId: null, expectedImageId: imageId, imageMatches: null });
    // The smoke service runs once during install and is removed: its absence is no news.
    expect(s.services.map((x: { service: string }) => x.service)).toEqual(['app', 'ghost']);

    const text = await ferry(['host', 'status', stack, '--state-dir', state], { env: env() });
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toContain(`stack     ${stack}`);
    expect(text.stdout).toMatch(/current {3}1\.1\.0 \(release 2-1\.1\.0, sequence 2\).*release@example\.com/);
    expect(text.stdout).toMatch(new RegExp(`app +${stack}_app_1 +running +healthy +${imageId.slice(7, 19)} +yes`));
    expect(text.stdout).toMatch(/ghost +- +missing/);
  });

  it('lists one-off run containers, flags an image other than the pinned one, and covers every stack without STACK', async () => {
    const oneOff = await compose(['run', '-d', '--no-deps', 'app', 'sleep', '300']);
    expect(oneOff.code, oneOff.stderr).toBe(0);
    const other = `sha256:${'0'.repeat(64)}`;
    await stateFile(state, stack, [{ name: 'app', imageId: other }]);

    const r = await ferry(['host', 'status', '--state-dir', state, '--json'], { env: env() });
    expect(r.code, r.stderr).toBe(0);
    const s = json(r.stdout).result.stacks.find((x: { stack: string }) => x.stack === stack);
    expect(s).toBeDefined();
    const apps = s.services.filter((x: { service: string }) => x.service === 'app');
    expect(apps).toHaveLength(2);
    const [run1, up1] = [apps.find((x: { oneOff: boolean }) => x.oneOff), apps.find((x: { oneOff: boolean }) => !x.oneOff)];
    expect(up1).toMatchObject({ name: `${stack}_app_1`, imageId, expectedImageId: other, imageMatches: false });
    expect(run1).toMatchObject({ state: 'running', imageId, oneOff: true, imageMatches: false });
    expect(run1.name).toMatch(new RegExp(`^${stack}_app_run_`));
    expect(s.services.some((x: { service: string }) => x.service === 'ghost')).toBe(false);
  });

  it('shows the room left for images and releases, warns (LOW_ROOM) below 10%, and what pruning would free', async () => {
    const r = await ferry(['host', 'status', stack, '--state-dir', state, '--json'], { env: env() });
    expect(r.code, r.stderr).toBe(0);
    const doc = json(r.stdout);
    expect(doc.result.disks.map((d: { what: string }) => d.what)).toEqual(['engine data root', 'state directory']);
    for (const d of doc.result.disks) {
      expect(d.totalBytes).toBeGreaterThan(0);
      expect(d.freeBytes).toBeLessThanOrEqual(d.totalBytes);
      expect(d.totalInodes).toBeGreaterThan(0);
    }
    // Release 1 is kept besides the current one; both pin the same image, so none is prunable.
    expect(doc.result.stacks[0].reclaimable).toEqual({ releases: 1, images: 0, bytes: 0 });

    // A state directory on a filesystem with under 10% left.
    const small = join(work, 'small-state');
    await mkdir(small, { recursive: true });
    const mount = await run('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', small]);
    expect(mount.code, mount.stderr).toBe(0);
    try {
      await cp(state, join(small, 'state'), { recursive: true });
      await writeFile(join(small, 'filler'), Buffer.alloc(960 * 1024));
      const low = await ferry(['host', 'status', stack, '--state-dir', join(small, 'state'), '--json'], { env: env() });
      expect(low.code, low.stderr).toBe(0);
      const lowDoc = json(low.stdout);
      expect(lowDoc.result.disks.find((d: { what: string }) => d.what === 'state directory')).toMatchObject({ path: join(small, 'state'), low: true });
      expect(lowDoc.warnings.map((w: { code: string; subject: string }) => `${w.code}:${w.subject}`)).toContain(`LOW_ROOM:${join(small, 'state')}`);
      const text = await ferry(['host', 'status', stack, '--state-dir', join(small, 'state')], { env: env() });
      expect(text.stderr).toMatch(/warning: the state directory .* has [\d.]+ kB \([\d.]+%\) and \d+ inodes/);
      expect(text.stdout).toMatch(/state directory +.*small-state\/state +[\d.]+ kB \(\d+%\) +\d+ \(\d+%\) +LOW/);
    } finally {
      await run('umount', [small]);
    }
  });

  it('refuses a stack the host does not know (exit 2), listing the known ones', async () => {
    const r = await ferry(['host', 'status', 'nope', '--state-dir', state, '--json'], { env: env() });
    expect(r.code).toBe(2);
    const err = json(r.stdout).error;
    expect(err.code).toBe('STACK_UNKNOWN');
    expect(err.details.known).toEqual([stack]);

    const text = await ferry(['host', 'status', '../../etc', '--state-dir', state], { env: env() });
    expect(text.code).toBe(2);
    expect(text.stderr).toContain(`Known stacks: ${stack}.`);
  });
});
