/**
 * `bundle create | verify | inspect` through the built CLI against the real build engine, with
 * ssh-keygen and skopeo as independent checkers of what ferry writes.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFile, cp, mkdir, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { buildDocker, ferry, ROOT, tmpDir, uniqueName } from '../support/engines.js';

const exec = promisify(execFile);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface Manifest {
  name: string;
  images: { refs: string[]; id: string; ociManifest: { digest: string }; layers: { diffId: string; blob: { path?: string; parts?: { path: string }[] } }[] }[];
  files: { path: string; size: number }[];
  compose: { file: string; services: { name: string; imageId: string }[] };
  hosts: Record<string, { files: string[] }>;
}

let work: string;
let def: string;
let key: string;
let trust: string;
let otherTrust: string;
let refs: { base: string; web: string; worker: string };
let bundle: string;
let manifest: Manifest;

async function buildImage(tag: string, dockerfile: string, files: Record<string, string | Buffer> = {}) {
  const ctx = join(work, `ctx-${tag.replace(/[^a-z0-9]/g, '_')}`);
  await mkdir(ctx, { recursive: true });
  await writeFile(join(ctx, 'Dockerfile'), dockerfile);
  for (const [name, data] of Object.entries(files)) await writeFile(join(ctx, name), data, { mode: 0o755 });
  const r = await buildDocker().run(['build', '-q', '-t', tag, ctx], { env: { DOCKER_BUILDKIT: '0' } });
  expect(r.code, r.stderr).toBe(0);
}

async function copyBundle(name: string): Promise<string> {
  const dest = join(work, name);
  await cp(bundle, dest, { recursive: true });
  return dest;
}

async function flipByte(file: string, at: 'start' | 'middle' | 'end' = 'middle') {
  const buf = await readFile(file);
  const i = at === 'start' ? 0 : at === 'end' ? buf.length - 1 : Math.floor(buf.length / 2);
  buf[i] = buf[i]! ^ 0xff;
  await writeFile(file, buf);
}

function json(stdout: string) {
  return JSON.parse(stdout) as { ok: boolean; result: any; error: { code: string; exitCode: number; message: string; details: any }; warnings: { code: string; subject?: string }[] };
}

beforeAll(async () => {
  work = await tmpDir();
  const tag = uniqueName('ferry-it');
  refs = { base: `${tag}/base:1`, web: `${tag}/web:1`, worker: `${tag}/worker:1` };
  const busybox = await readFile('/bin/busybox');
  await buildImage(refs.base, 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox","--install","-s","/bin"]\n', { busybox });
  // A layer larger than 1 MiB even compressed, so that a small --max-part-size must split it.
  await buildImage(refs.web, `FROM ${refs.base}\nRUN head -c 2500000 /dev/urandom > /payload\nUSER 65534\nHEALTHCHECK CMD true\n`);
  await buildImage(refs.worker, `FROM ${refs.base}\nRUN echo worker > /worker\n`);

  def = join(work, 'def');
  await mkdir(join(def, 'hosts'), { recursive: true });
  await writeFile(join(def, 'ferry.yaml'), 'name: itstack\nversion: 2.0.1\ncompose: compose.yaml\nhosts:\n  edge-1: hosts/edge-1.yaml\n  edge-2:\n    compose: hosts/edge-2.yaml\n    env: [hosts/edge-2.env]\n');
  await writeFile(
    join(def, 'compose.yaml'),
    `x-ferry:\n  smoke: smoke\nservices:\n  web:\n    image: ${refs.web}\n    restart: unless-stopped\n    mem_limit: 64m\n    env_file: app.env\n  worker:\n    image: ${refs.worker}\n    volumes: ["/var/log/worker:/logs"]\n  smoke:\n    image: ${refs.worker}\n    restart: "no"\n`,
  );
  await writeFile(join(def, 'app.env'), 'A=1\n');
  await writeFile(join(def, 'hosts/edge-1.yaml'), 'services:\n  web:\n    ports: ["8081:8080"]\n');
  await writeFile(join(def, 'hosts/edge-2.yaml'), 'services:\n  web:\n    ports: ["8082:8080"]\n');
  await writeFile(join(def, 'hosts/edge-2.env'), 'LABEL=edge-2\n');

  key = join(work, 'signer');
  const gen = await ferry(['keys', 'generate', '--out', key, '--json']);
  expect(gen.code, gen.stderr).toBe(0);
  trust = join(work, 'allowed_signers');
  await writeFile(trust, `${json(gen.stdout).result.allowedSignersLine}\n`);
  await exec('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(work, 'other')]);
  const otherPub = (await readFile(join(work, 'other.pub'), 'utf8')).trim();
  otherTrust = join(work, 'other_signers');
  await writeFile(otherTrust, `ferry namespaces="ferry-bundle" ${otherPub}\n`);

  bundle = join(work, 'out', 'itstack-2.0.1.ferry');
  const r = await ferry(['bundle', 'create', def, '--out', bundle, '--sign-key', key, '--max-part-size', '1M', '--json']);
  expect(r.code, r.stderr).toBe(0);
  manifest = JSON.parse(await readFile(join(bundle, 'ferry.json'), 'utf8'));
}, 300_000);

describe('bundle create', () => {
  it('pins every service image by the ID the engine has for it', async () => {
    for (const [service, ref] of [['web', refs.web], ['worker', refs.worker], ['smoke', refs.worker]] as const) {
      const id = (await buildDocker().run(['image', 'inspect', '--format', '{{.Id}}', ref])).stdout.trim();
      expect(manifest.compose.services.find((s) => s.name === service)?.imageId).toBe(id);
    }
    expect(manifest.images.map((i) => i.refs).sort()).toEqual([[refs.web], [refs.worker]]);
  });

  it('stores a layer shared by two images once, and splits large blobs into parts under the limit', async () => {
    const layers = manifest.images.flatMap((i) => i.layers);
    expect(layers.length).toBe(6);
    const unique = new Set(layers.map((l) => l.diffId));
    expect(unique.size).toBe(4);
    const parts = [...new Set(layers.flatMap((l) => (l.blob.parts ?? []).map((p) => p.path)))];
    expect(parts.length).toBeGreaterThanOrEqual(3); // the 2.5 MB random payload alone needs 3
    for (const p of parts) expect((await stat(join(bundle, p))).size).toBeLessThanOrEqual(1024 * 1024);
    const layerFiles = new Set(layers.flatMap((l) => (l.blob.path ? [l.blob.path] : (l.blob.parts ?? []).map((p) => p.path))));
    const onDisk = (await readdir(join(bundle, 'blobs/sha256'))).map((f) => `blobs/sha256/${f}`);
    // every layer file once, plus one config and one OCI manifest per image, nothing else
    expect(onDisk.length).toBe(layerFiles.size + 2 * manifest.images.length);
    for (const f of layerFiles) expect(onDisk).toContain(f);
  });

  it('carries the resolved compose model (env files folded in by Compose) and each host override', async () => {
    expect(manifest.compose.file).toBe('compose/compose.yaml');
    expect(manifest.hosts['edge-1']!.files).toEqual(['compose/hosts/edge-1.yaml']);
    expect(manifest.hosts['edge-2']!.files).toEqual(['compose/hosts/edge-2.yaml', 'compose/hosts/edge-2.env']);
    // app.env's A=1 reaches the service through the model Compose resolved, not as a file.
    const model = parse(await readFile(join(bundle, 'compose/compose.yaml'), 'utf8'));
    expect(Object.values(model.services).some((s: any) => s.environment?.A === '1')).toBe(true);
    const listed = new Set(manifest.files.map((f) => f.path));
    for (const f of ['compose/compose.yaml', 'compose/hosts/edge-1.yaml', 'oci-layout', 'index.json']) expect(listed).toContain(f);
    expect(listed.has('compose/app.env')).toBe(false);
  });

  it('warns about the lessons from the field, in text and JSON', async () => {
    const out = join(work, 'warn.ferry');
    const r = await ferry(['bundle', 'create', def, '--out', out, '--sign-key', key, '--json']);
    const codes = json(r.stdout).warnings.map((w) => `${w.code}:${w.subject}`);
    expect(codes).toEqual(expect.arrayContaining(['NO_HEALTHCHECK:worker', 'NO_RESTART_POLICY:worker', 'NO_MEMORY_LIMIT:worker', 'RUNS_AS_ROOT:worker', 'MOUNTS_LOG_DIR:worker']));
    expect(codes.filter((c) => c.endsWith(':web'))).toEqual([]);
    // The smoke test needs neither a health check nor a restart policy; it does run as root.
    expect(codes.filter((c) => c.endsWith(':smoke'))).toEqual(['RUNS_AS_ROOT:smoke']);
    const text = await ferry(['bundle', 'create', def, '--out', join(work, 'warn2.ferry'), '--sign-key', key]);
    expect(text.stderr).toMatch(/warning: service "worker" has no health check/);
    expect(text.stdout).not.toMatch(/warning/);
  });

  it('says per layer only with --verbose, naming it by diffID and image, never by archive path', async () => {
    const quiet = await ferry(['bundle', 'create', def, '--out', join(work, 'quiet.ferry'), '--sign-key', key]);
    expect(quiet.code, quiet.stderr).toBe(0);
    expect(quiet.stderr).not.toMatch(/^layer /m);
    expect(quiet.stderr).not.toContain('layer.tar');
    const loud = await ferry(['bundle', 'create', def, '--out', join(work, 'verbose.ferry'), '--sign-key', key, '--verbose']);
    expect(loud.code, loud.stderr).toBe(0);
    const lines = loud.stderr.split('\n').filter((l) => l.startsWith('layer '));
    expect(lines.length).toBe(4); // the four distinct layers of the two images
    for (const l of lines) expect(l).toMatch(new RegExp(`^layer [0-9a-f]{12} of (${refs.web}|${refs.worker})(, (${refs.web}|${refs.worker}))*: [\\d.]+ [kM]?B → [\\d.]+ [kM]?B shipped( from the cache)?( \\((hashed only|skipped unread)\\))?$`));
    expect(loud.stderr).not.toContain('layer.tar');
  });

  it('writes a signature that ssh-keygen -Y verify accepts, and only for our namespace', async () => {
    const input = await readFile(join(bundle, 'ferry.json'));
    const verify = (ns: string) =>
      new Promise<number>((resolve) => {
        const p = execFile('ssh-keygen', ['-Y', 'verify', '-f', trust, '-I', 'ferry', '-n', ns, '-s', join(bundle, 'ferry.json.sig')], (err) =>
          resolve(err ? ((err as { code?: number }).code ?? 1) : 0),
        );
        p.stdin!.end(input);
      });
    expect(await verify('ferry-bundle')).toBe(0);
    expect(await verify('file')).not.toBe(0);
  });

  it('is an OCI image layout that skopeo reads, with layers that decompress to the diffIDs', async () => {
    const whole = join(work, 'whole.ferry');
    const r = await ferry(['bundle', 'create', def, '--out', whole, '--sign-key', key]);
    expect(r.code, r.stderr).toBe(0);
    const wholeManifest: Manifest = JSON.parse(await readFile(join(whole, 'ferry.json'), 'utf8'));
    const image = wholeManifest.images.find((i) => i.refs.includes(refs.web))!;
    const { stdout } = await exec('skopeo', ['inspect', `oci:${whole}:${refs.web}`]);
    expect(JSON.parse(stdout).Digest).toBe(image.ociManifest.digest);
    const dir = join(work, 'skopeo-dir');
    await exec('skopeo', ['copy', '--dest-decompress', `oci:${whole}:${refs.web}`, `dir:${dir}`]);
    for (const l of image.layers) {
      const data = await readFile(join(dir, l.diffId.slice(7)));
      expect(`sha256:${sha(data)}`).toBe(l.diffId);
    }
  });

  it('refuses bad input with exit 10 or 2, naming the thing', async () => {
    const missing = await ferry(['bundle', 'create', def, '--out', bundle]);
    expect(missing.code).toBe(10);
    expect(missing.stderr).toMatch(/already exists/);

    const badDef = join(work, 'baddef');
    await mkdir(badDef);
    await writeFile(join(badDef, 'ferry.yaml'), 'name: Bad Name\ncompose: compose.yaml\n');
    const r1 = json((await ferry(['bundle', 'create', badDef, '--out', join(work, 'x.ferry'), '--json'])).stdout);
    expect(r1.ok).toBe(false);
    expect(r1.error.exitCode).toBe(10);
    expect(r1.error.message).toMatch(/ferry\.yaml.*\n.*name:/s);

    const noImage = join(work, 'noimage');
    await mkdir(noImage);
    await writeFile(join(noImage, 'ferry.yaml'), 'name: ni\ncompose: c.yaml\n');
    await writeFile(join(noImage, 'c.yaml'), `services:\n  a:\n    image: ${refs.base}-does-not-exist\n`);
    const r2 = await ferry(['bundle', 'create', noImage, '--out', join(work, 'y.ferry')]);
    expect(r2.code).toBe(10);
    expect(r2.stderr).toMatch(/image .*does-not-exist is not in the engine .*service a/);
    await expect(stat(join(work, 'y.ferry'))).rejects.toThrow();

    const badKey = await ferry(['bundle', 'create', def, '--out', join(work, 'z.ferry'), '--sign-key', join(work, 'nokey')]);
    expect(badKey.code).toBe(10);

    const usage = await ferry(['bundle', 'create', def]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/missing required flag --out/i);
  });

  it('leaves no bundle behind when interrupted', async () => {
    const out = join(work, 'interrupted.ferry');
    // Spawned directly: the test needs the process handle to signal it.
    const child = spawn(process.execPath, [join(ROOT, 'bin', 'ferry'), 'bundle', 'create', def, '--out', out, '--sign-key', key, '--level', '19', '--workers', '1'], { stdio: 'ignore' });
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    // Kill as soon as the partial directory appears, i.e. in the middle of saving.
    for (let i = 0; i < 400; i++) {
      if ((await readdir(work)).some((f) => f.startsWith('interrupted.ferry.partial-'))) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    child.kill('SIGTERM');
    expect(await exited).not.toBe(0);
    await expect(stat(out)).rejects.toThrow();
    expect((await readdir(work)).filter((f) => f.startsWith('interrupted.ferry'))).toEqual([]);
  });
});

describe('bundle verify', () => {
  it('accepts the intact bundle, naming the signer', async () => {
    const r = await ferry(['bundle', 'verify', bundle, '--trust', trust, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const doc = json(r.stdout);
    expect(doc.ok).toBe(true);
    expect(doc.result.signer.principals).toContain('ferry');
    expect(doc.result.files).toBe(manifest.files.length);
  });

  it('accepts a manifest signature made by ssh-keygen -Y sign', async () => {
    const copy = await copyBundle('resigned.ferry');
    await rm(join(copy, 'ferry.json.sig'));
    await exec('ssh-keygen', ['-Y', 'sign', '-f', key, '-n', 'ferry-bundle', join(copy, 'ferry.json')]);
    const r = await ferry(['bundle', 'verify', copy, '--trust', trust]);
    expect(r.code, r.stderr).toBe(0);
  });

  const blobOf = () => manifest.images.flatMap((i) => i.layers).find((l) => l.blob.path)!.blob.path!;
  const partOf = () => manifest.images.flatMap((i) => i.layers).find((l) => l.blob.parts)!.blob.parts!;

  const cases: { name: string; damage: (dir: string) => Promise<void>; exit: number; file: () => string; extraArgs?: string[] }[] = [
    { name: 'a flipped byte in the manifest', damage: (d) => flipByte(join(d, 'ferry.json')), exit: 3, file: () => 'ferry.json.sig' },
    { name: 'a flipped byte in the signature', damage: (d) => flipByte(join(d, 'ferry.json.sig'), 'middle'), exit: 3, file: () => 'ferry.json.sig' },
    { name: 'a deleted signature', damage: (d) => rm(join(d, 'ferry.json.sig')), exit: 3, file: () => 'ferry.json.sig' },
    { name: 'a flipped byte in a blob', damage: (d) => flipByte(join(d, blobOf()), 'start'), exit: 4, file: blobOf },
    { name: 'a flipped byte in a part', damage: (d) => flipByte(join(d, partOf()[1]!.path), 'end'), exit: 4, file: () => partOf()[1]!.path },
    { name: 'a flipped byte in the compose file', damage: (d) => flipByte(join(d, 'compose/compose.yaml')), exit: 4, file: () => 'compose/compose.yaml' },
    { name: 'a flipped byte in a host override', damage: (d) => flipByte(join(d, 'compose/hosts/edge-2.env')), exit: 4, file: () => 'compose/hosts/edge-2.env' },
    { name: 'a truncated blob', damage: (d) => truncate(join(d, blobOf()), 10), exit: 4, file: blobOf },
    { name: 'an appended byte', damage: (d) => appendFile(join(d, 'index.json'), 'x'), exit: 4, file: () => 'index.json' },
    { name: 'an extra file', damage: (d) => writeFile(join(d, 'blobs/sha256/evil'), 'x'), exit: 4, file: () => 'blobs/sha256/evil' },
    { name: 'a missing part', damage: (d) => rm(join(d, partOf()[0]!.path)), exit: 4, file: () => partOf()[0]!.path },
  ];
  for (const c of cases) {
    it(`refuses ${c.name} with exit ${c.exit}, naming the file`, async () => {
      const copy = await copyBundle(`damaged-${c.name.replace(/\W+/g, '-')}.ferry`);
      await c.damage(copy);
      const r = await ferry(['bundle', 'verify', copy, '--trust', trust, '--json']);
      expect(r.code).toBe(c.exit);
      const doc = json(r.stdout);
      expect(doc.ok).toBe(false);
      expect(doc.error.exitCode).toBe(c.exit);
      expect(`${doc.error.message} ${JSON.stringify(doc.error.details)}`).toContain(c.file());
    });
  }

  it('reports every problem, not just the first', async () => {
    const copy = await copyBundle('many-problems.ferry');
    await flipByte(join(copy, 'compose/compose.yaml'));
    await rm(join(copy, partOf()[0]!.path));
    await writeFile(join(copy, 'stray'), 'x');
    const r = await ferry(['bundle', 'verify', copy, '--trust', trust, '--json']);
    const problems = json(r.stdout).error.details.problems as { file: string; kind: string }[];
    expect(problems.map((p) => `${p.kind}:${p.file}`).sort()).toEqual(['digest:compose/compose.yaml', `missing:${partOf()[0]!.path}`, 'extra:stray'].sort());
  });

  it('refuses a key the trust file does not list, and a signature for another namespace', async () => {
    const r = await ferry(['bundle', 'verify', bundle, '--trust', otherTrust, '--json']);
    expect(r.code).toBe(3);
    expect(json(r.stdout).error.code).toBe('TRUST_UNTRUSTED_KEY');

    const copy = await copyBundle('other-namespace.ferry');
    await rm(join(copy, 'ferry.json.sig'));
    await exec('ssh-keygen', ['-Y', 'sign', '-f', key, '-n', 'file', join(copy, 'ferry.json')]);
    const ns = await ferry(['bundle', 'verify', copy, '--trust', trust, '--json']);
    expect(ns.code).toBe(3);
    expect(json(ns.stdout).error.code).toBe('TRUST_WRONG_NAMESPACE');
  });

  it('refuses an unsigned bundle unless --allow-unsigned, which warns loudly', async () => {
    const copy = await copyBundle('unsigned.ferry');
    // As create makes it without a key: no signatures, and SHA256SUMS without ferry.json.sig's line.
    await rm(join(copy, 'ferry.json.sig'));
    await rm(join(copy, 'SHA256SUMS.sig'));
    const sums = await readFile(join(copy, 'SHA256SUMS'), 'utf8');
    await writeFile(join(copy, 'SHA256SUMS'), sums.split('\n').filter((l) => !l.endsWith('  ferry.json.sig')).join('\n'));
    expect((await ferry(['bundle', 'verify', copy, '--trust', trust])).code).toBe(3);
    const ok = await ferry(['bundle', 'verify', copy, '--allow-unsigned']);
    expect(ok.code).toBe(0);
    expect(ok.stderr).toMatch(/UNSIGNED/);
  });

  it('refuses when the trust file is missing, saying how to name one', async () => {
    const r = await ferry(['bundle', 'verify', bundle, '--trust', join(work, 'nope')]);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/nope/);
  });
});

describe('bundle inspect', () => {
  it('shows stack, signer, images with sizes, hosts and totals', async () => {
    const r = await ferry(['bundle', 'inspect', bundle, '--trust', trust, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const res = json(r.stdout).result;
    expect(res).toMatchObject({ name: 'itstack', version: '2.0.1', hosts: ['edge-1', 'edge-2'], smoke: 'smoke' });
    expect(res.signature).toMatchObject({ present: true, trusted: true, principals: ['ferry'] });
    expect(res.images).toHaveLength(2);
    for (const im of res.images) {
      expect(im.size).toBeGreaterThan(im.compressedSize);
      for (const l of im.layers) expect(l.compressedSize).toBeGreaterThan(0);
    }
    const onDisk = (await Promise.all(manifest.files.map((f) => stat(join(bundle, f.path))))).reduce((n, s) => n + s.size, 0);
    const sigAndManifest = (await stat(join(bundle, 'ferry.json'))).size + (await stat(join(bundle, 'ferry.json.sig'))).size;
    expect(res.totals.bundleBytes).toBe(onDisk + sigAndManifest);
    const text = await ferry(['bundle', 'inspect', bundle, '--trust', trust]);
    expect(text.stdout).toContain(refs.web);
    expect(text.stdout).toMatch(/trusted: ferry/);
  });
});
