/**
 * `bundle diff` through the built CLI, on bundles made from small images on the real build engine:
 * a release that changes one file layer, the compose file, a host override and a project file,
 * compared with the previous bundle (the new one built --base it), with a host inventory,
 * untrusted, and tampered with.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, cp, lutimes, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildInventory, serializeInventory } from '../../src/core/inventory.js';
import { buildDocker, ferry, tmpDir, uniqueName } from '../support/engines.js';

let work: string;
let trust: string;
let otherTrust: string;
let key: string;
let tag: string;
const exec = promisify(execFile);
const EPOCH = new Date('2026-01-01T00:00:00Z');
const b: Record<string, string> = {};

interface Manifest {
  images: { refs: string[]; id: string; layers: { diffId: string; size: number; included: boolean; blob: { path?: string } | null; delta?: { path?: string; reference: string } }[] }[];
}
const manifestOf = async (bundle: string): Promise<Manifest> => JSON.parse(await readFile(join(bundle, 'ferry.json'), 'utf8'));

/** Images made by COPY alone (no container runs): quick to build on a busy engine. */
async function buildImage(ref: string, dockerfile: string, files: Record<string, { data?: string | Buffer; mode?: number; link?: string }> = {}) {
  const ctx = join(work, `ctx-${ref.replace(/[^a-z0-9]/g, '_')}`);
  await mkdir(ctx, { recursive: true });
  await writeFile(join(ctx, 'Dockerfile'), dockerfile);
  for (const [name, f] of Object.entries(files)) {
    await mkdir(dirname(join(ctx, name)), { recursive: true });
    if (f.link) await symlink(f.link, join(ctx, name));
    else {
      await writeFile(join(ctx, name), f.data ?? '');
      await chmod(join(ctx, name), f.mode ?? 0o644);
    }
  }
  // One mtime for every file and directory: the two releases' tar headers then differ only where the files do.
  for (const name of Object.keys(files)) {
    for (let p = name; p !== '.'; p = dirname(p)) await lutimes(join(ctx, p), EPOCH, EPOCH);
  }
  const r = await buildDocker().run(['build', '-q', '-t', ref, ctx], { env: { DOCKER_BUILDKIT: '0' } });
  expect(r.code, r.stderr).toBe(0);
}

async function definition(name: string, web: string, port: number, conf: string): Promise<string> {
  const def = join(work, name);
  await mkdir(join(def, 'hosts'), { recursive: true });
  await mkdir(join(def, 'conf'), { recursive: true });
  await writeFile(join(def, 'ferry.yaml'), 'name: diffstack\nversion: 1.0.0\ncompose: compose.yaml\nhosts:\n  edge-1: hosts/edge-1.yaml\n');
  await writeFile(
    join(def, 'compose.yaml'),
    `services:\n  web:\n    image: ${web}\n    restart: unless-stopped\n    volumes: ["./conf/app.conf:/etc/app.conf:ro"]\n  worker:\n    image: ${tag}/worker:1\n`,
  );
  await writeFile(join(def, 'conf/app.conf'), conf);
  await writeFile(join(def, 'hosts/edge-1.yaml'), `services:\n  web:\n    ports: ["${port}:8080"]\n`);
  return def;
}

async function create(name: string, def: string, version: string, extra: string[] = []): Promise<string> {
  const f = join(def, 'ferry.yaml');
  await writeFile(f, (await readFile(f, 'utf8')).replace(/^version: .*$/m, `version: ${version}`));
  const out = join(work, `${name}.ferry`);
  const r = await ferry(['bundle', 'create', def, '--out', out, '--sign-key', key, '--no-cache', ...extra]);
  expect(r.code, r.stderr).toBe(0);
  return out;
}

const diff = (args: string[], trustFile = trust) => ferry(['bundle', 'diff', ...args, '--trust', trustFile]);
const json = (stdout: string) => JSON.parse(stdout) as { ok: boolean; result: any; error: { code: string; exitCode: number; message: string } };

beforeAll(async () => {
  work = await tmpDir();
  tag = uniqueName('ferry-diff');
  const busybox = await readFile('/bin/busybox');
  await buildImage(`${tag}/base:1`, 'FROM scratch\nCOPY busybox /bin/busybox\n', { busybox: { data: await readFile('/bin/busybox'), mode: 0o755 } });
  // Large enough (and mostly unchanged) for create to ship the changed layer as a delta.
  const lib = randomBytes(200_000);
  await buildImage(`${tag}/web:1`, `FROM ${tag}/base:1\nCOPY app /app\n`, {
    'app/lib.bin': { data: lib },
    'app/main.py': { data: 'one\n' },
    'app/old.py': { data: 'old\n' },
    'app/same': { data: 'same\n' },
    'app/current': { link: 'main.py' },
  });
  await buildImage(`${tag}/web:2`, `FROM ${tag}/base:1\nCOPY app /app\n`, {
    'app/lib.bin': { data: lib },
    'app/main.py': { data: 'two\n' },
    'app/new.py': { data: 'new\n' },
    'app/same': { data: 'same\n', mode: 0o700 },
    'app/current': { link: 'new.py' },
  });
  await buildImage(`${tag}/worker:1`, `FROM ${tag}/base:1\nCOPY worker /worker\n`, { worker: { data: 'worker\n' } });
  key = join(work, 'signer');
  const gen = await ferry(['keys', 'generate', '--out', key, '--json']);
  expect(gen.code, gen.stderr).toBe(0);
  trust = join(work, 'allowed_signers');
  await writeFile(trust, `${json(gen.stdout).result.allowedSignersLine}\n`);
  await exec('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(work, 'other')]);
  otherTrust = join(work, 'other_signers');
  await writeFile(otherTrust, `ferry namespaces="ferry-bundle" ${(await readFile(join(work, 'other.pub'), 'utf8')).trim()}\n`);

  b.r1 = await create('r1', await definition('def1', `${tag}/web:1`, 8081, 'level=info\n'), '1.0.0');
  // Built --base r1, as a next release usually is: only web's changed layer ships, the rest is
  // assumed; whole (--no-delta) and as a delta against r1's layer.
  const def2 = await definition('def2', `${tag}/web:2`, 8082, 'level=debug\n');
  b.r2 = await create('r2', def2, '1.1.0', ['--base', b.r1, '--no-delta']);
  b.r2delta = await create('r2delta', def2, '1.1.0', ['--base', b.r1]);
}, 300_000);

describe('bundle diff', () => {
  it('names the files, compose lines, host override and project file the new release changes', async () => {
    const r = await diff([b.r1, b.r2, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const res = json(r.stdout).result;
    expect(res.old).toMatchObject({ kind: 'bundle', version: '1.0.0', signature: { trusted: true, principals: ['ferry'] } });
    expect(res.new).toMatchObject({ kind: 'bundle', version: '1.1.0' });
    const web = res.images.find((i: any) => i.new?.refs[0] === `${tag}/web:2`);
    expect(web).toMatchObject({ status: 'changed', old: { refs: [`${tag}/web:1`], services: ['web'] }, counts: { unchanged: 1, changed: 1, added: 0, removed: 0 } });
    const changed = web.layers[1];
    expect(web.layers.map((l: any) => [l.status, l.shipping])).toEqual([['unchanged', 'assumed'], ['changed', 'whole']]);
    expect(changed).toMatchObject({ files: { basis: 'old-layer', truncated: false } });
    expect(changed.files.added.map((f: any) => f.path)).toEqual(['app/new.py']);
    expect(changed.files.removed.map((f: any) => f.path)).toEqual(['app/old.py']);
    expect(changed.files.changed.map((f: any) => f.path)).toEqual(['app/current', 'app/main.py', 'app/same']);
    const same = changed.files.changed.find((f: any) => f.path === 'app/same');
    expect(same.old).toMatchObject({ mode: 0o644, size: 5 });
    expect(same.new).toMatchObject({ mode: 0o700, size: 5, digest: same.old.digest });
    const main = changed.files.changed.find((f: any) => f.path === 'app/main.py');
    expect(main.new.digest).toBe(`sha256:${createHash('sha256').update('two\n').digest('hex')}`);
    expect(res.images.find((i: any) => i.new?.refs[0] === `${tag}/worker:1`).status).toBe('unchanged');

    expect(res.compose.file.status).toBe('changed');
    expect(res.compose.file.hunks.flatMap((h: any) => h.lines)).toContain(`+    image: ${tag}/web:2`);
    expect(res.compose.hosts).toMatchObject([{ host: 'edge-1', status: 'changed' }]);
    expect(res.compose.hosts[0].files[0].hunks[0].lines.filter((l: string) => /^[-+]/.test(l)).join('\n')).toMatch(/^-.*8081.*\n\+.*8082/);
    expect(res.compose.projectFiles.find((p: any) => p.kind === 'bind')).toMatchObject({ path: 'compose/project/conf/app.conf', status: 'changed', old: { size: 11 }, new: { size: 12 } });
    expect(res.summary).toMatchObject({ images: { changed: 1, unchanged: 1 }, files: { added: 1, changed: 3, removed: 1 }, truncated: false });

    const text = await diff([b.r1, b.r2]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toContain(`image ${tag}/web:1 → ${tag}/web:2 (service web): changed`);
    expect(text.stdout).toMatch(/^ {4}\+ app\/new\.py {2}4 B 0644$/m);
    expect(text.stdout).toMatch(/^ {4}~ app\/same {2}5 B {2}0644 → 0700$/m);
    expect(text.stdout).toMatch(/^ {4}~ app\/current {2}main\.py → new\.py/m);
    expect(text.stdout).toMatch(/^ {4}- app\/old\.py/m);
    expect(text.stdout).toContain(`-    image: ${tag}/web:1`);
    expect(text.stdout).toMatch(/host edge-1: changed/);
    expect(text.stdout).toMatch(/~ compose\/project\/conf\/app\.conf \(bind\)/);
  });

  it('against a host inventory: what the host holds, the new files listed as added, compose unknown', async () => {
    // The inventory of a host that installed release 1 (the format ferry host inventory writes).
    const m1 = await manifestOf(b.r1);
    const inv = buildInventory({
      host: 'edge-1',
      created: new Date(),
      tool: { name: 'ferry', version: 'test' },
      engine: { serverVersion: '27', apiVersion: '1.47', storageDriver: 'overlay2', containerdStore: false, os: 'linux', architecture: 'amd64', podman: false },
      images: m1.images.map((im) => ({ id: im.id, repoTags: im.refs, diffIds: im.layers.map((l) => l.diffId), size: 1 })),
      stacks: [],
    });
    const file = join(work, 'edge-1.inventory.json');
    await writeFile(file, serializeInventory(inv));
    const r = await diff([file, b.r2, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const res = json(r.stdout).result;
    expect(res.old).toMatchObject({ kind: 'inventory', host: 'edge-1' });
    expect(res.compose).toBeNull();
    expect(res.composeUnknown).toMatch(/inventory/);
    const web = res.images.find((i: any) => i.new?.refs[0] === `${tag}/web:2`);
    expect(web.held).toBe(false);
    expect(web.layers.map((l: any) => [l.status, l.held])).toEqual([["unchanged", true], ["changed", false]]);
    expect(web.layers[1].files).toMatchObject({ basis: 'unknown', counts: { changed: 0, removed: 0 } });
    expect(web.layers[1].files.added.map((f: any) => f.path)).toEqual(expect.arrayContaining(['app/main.py', 'app/new.py', 'app/same']));
    expect(res.images.find((i: any) => i.new?.refs[0] === `${tag}/worker:1`)).toMatchObject({ status: 'unchanged', held: true });
    const text = await diff([file, b.r2]);
    expect(text.stdout).toMatch(/files: the old layer's contents are unknown \(a host inventory lists layers, not files\); its \d+ entries are listed as added/);
    expect(text.stdout).toMatch(/compose: not compared: the old side is a host inventory/);
  });

  it('a layer shipped as a delta: the changes its header records; an untrusted bundle shown, exit 0', async () => {
    const m = await manifestOf(b.r2delta);
    const web = m.images.find((i) => i.refs[0] === `${tag}/web:2`)!;
    expect(web.layers[1]).toMatchObject({ included: true, blob: null, delta: { reference: (await manifestOf(b.r1)).images.find((i) => i.refs[0] === `${tag}/web:1`)!.layers[1]!.diffId } });
    const r = await diff([b.r1, b.r2delta, '--json'], otherTrust);
    expect(r.code, r.stderr).toBe(0);
    const res = json(r.stdout).result;
    expect(res.new.signature).toMatchObject({ trusted: false, code: 'TRUST_UNTRUSTED_KEY' });
    const layer = res.images.find((i: any) => i.new?.refs[0] === `${tag}/web:2`).layers[1];
    expect(layer).toMatchObject({ status: 'changed', shipping: 'delta', reference: layer.oldDiffId, files: { basis: 'delta', truncated: false } });
    expect(layer.files.added.map((f: any) => f.path)).toEqual(['app/new.py']);
    // A delta counts an entry whose tar header alone changed (the directory's mtime) as changed too;
    // lib.bin, byte for byte the same entry, is copied and not named.
    const changed = layer.files.changed.map((f: any) => f.path);
    expect(changed).toEqual(expect.arrayContaining(['app/current', 'app/main.py', 'app/same']));
    expect(changed.filter((p: string) => !['app', 'app/current', 'app/main.py', 'app/same'].includes(p))).toEqual([]);
    expect(layer.files.changed.find((f: any) => f.path === 'app/same')).toMatchObject({ old: null, new: { mode: 0o700, size: 5 } });
    expect(layer.files.removed.map((f: any) => f.path)).toEqual(['app/old.py']);
    const text = await diff([b.r1, b.r2delta], otherTrust);
    expect(text.stdout).toMatch(/NOT TRUSTED \(TRUST_UNTRUSTED_KEY/);
    expect(text.stdout).toMatch(/shipped as a delta against [0-9a-f]{12}\)\n {4}files as the delta records them against the old layer: 1 added, [34] changed \(in content or tar header alone, e\.g\. mtime\), 1 removed/);
  });

  it('refuses bytes that are not what the manifest says (exit 4; a whole layer: test/unit/bundle-diff), and unreadable inputs (2, 10)', async () => {
    // A delta's header is read only after its files hash to what the manifest says.
    const copyDelta = join(work, 'tampered-delta.ferry');
    await cp(b.r2delta, copyDelta, { recursive: true });
    const delta = join(copyDelta, (await manifestOf(copyDelta)).images.find((i) => i.refs[0] === `${tag}/web:2`)!.layers[1]!.delta!.path!);
    const dbytes = await readFile(delta);
    dbytes[dbytes.length - 2]! ^= 0xff;
    await writeFile(delta, dbytes);
    const badDelta = await diff([b.r1, copyDelta, '--json']);
    expect(badDelta.code).toBe(4);
    expect(json(badDelta.stdout).error).toMatchObject({ code: 'BUNDLE_INTEGRITY' });
    expect(json(badDelta.stdout).error.message).toMatch(/delta of layer/);

    const missing = await diff([join(work, 'nope'), b.r2, '--json']);
    expect(missing.code).toBe(2);
    expect(json(missing.stdout).error.code).toBe('BUNDLE_NOT_FOUND');
    const junk = join(work, 'junk.json');
    await writeFile(junk, '{"format":"nope"}');
    const invalid = await diff([junk, b.r2, '--json']);
    expect(invalid.code).toBe(10);
    expect(json(invalid.stdout).error.code).toBe('INVENTORY_INVALID');
  });
});
