/**
 * Someone holding the USB stick: the attack campaign of issue 5, classes 1–3.
 *
 * 1. A mutation matrix generated over every file of a real signed bundle.
 * 2. Mixing and replaying validly signed material: other bundles, older releases, other host
 *    groups, expired bundles, the creation-time ratchet.
 * 3. Hostile structure: paths that escape, links and devices, lying sizes, absurd JSON, names
 *    that are not UTF-8, garbage signatures.
 *
 * Every case must be refused with its documented exit code, naming the file at fault. The full
 * matrix runs through the verify service in-process (the code `ferry bundle verify` runs, without
 * the 0.7 s of process start per case); a sample of every kind also runs through the built CLI,
 * and a representative subset through `ferry bundle install` on the air-gapped engine, with the
 * engine (images, containers) and the state directory compared before and after.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { appendFile, cp, link, mkdir, readdir, readFile, rename, rm, stat, symlink, truncate, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FerryError } from '../../src/errors.js';
import type { Reporter } from '../../src/services/reporter.js';
import { verifyBundle } from '../../src/services/verify.js';
import { ferry, inTargetNetns, ROOT, targetDocker, tmpDir, type RunResult } from '../support/engines.js';
import {
  buildDemoImages,
  copyBundle,
  crashed,
  createBundle,
  demoDefinition,
  engineSnapshot,
  LONG,
  makeKey,
  outcome,
  readManifest,
  recordFigure,
  removeBuildImages,
  removeStack,
  resignedManifest,
  sign,
  signerLine,
  treeSnapshot,
  unsign,
  type Key,
  type ManifestView,
  type Outcome,
} from './campaign.js';

const exec = promisify(execFile);

let work: string;
let stack: string;
let key: Key;
let trust: string;
let stateDir: string;
let r1: string;
let r2: string;
let expired: string;
let older: string;
let mixer: string;
let r2Label: string;
let r5: string;
let r6: string;
let m2: ManifestView;
let imageIds: string[];
const port = 40000 + (process.pid % 20000);
const target = () => ({ DOCKER_HOST: process.env.FERRY_TARGET_DOCKER_HOST! });

// ---------------------------------------------------------------------------------------------
// Running a case

const capture = (): Reporter & { warnings: { code: string; message: string }[] } => {
  const warnings: { code: string; message: string }[] = [];
  return {
    warnings,
    log() {},
    warn(w) {
      warnings.push(w);
    },
    progress: () => ({ overall: () => ({ update() {}, setTotal() {}, done() {} }), task: () => ({ update() {}, setTotal() {}, done() {} }), note() {}, stop() {} }),
  };
};

/** The verify service in-process; any error that is not a FerryError is a crash (exit 1, as the CLI maps it). */
async function verifyInProcess(bundle: string, opts: { allowUnsigned?: boolean } = {}): Promise<Outcome> {
  const reporter = capture();
  try {
    await verifyBundle(bundle, { trust, allowUnsigned: opts.allowUnsigned ?? false, revoked: null }, reporter);
    return { exit: 0, code: null, text: '', warnings: reporter.warnings };
  } catch (e) {
    if (e instanceof FerryError) return { exit: e.exitCode, code: e.code, text: `${e.message} ${JSON.stringify(e.details ?? null)}`, warnings: reporter.warnings };
    return { exit: 1, code: 'CRASH', text: String((e as Error)?.stack ?? e), warnings: reporter.warnings };
  }
}

const verifyCli = async (bundle: string, extra: string[] = []) => outcome(await ferry(['bundle', 'verify', bundle, '--trust', trust, '--json', ...extra], { timeoutMs: 60_000 }));

const install = (bundle: string, extra: string[] = [], host = 'edge-1') =>
  ferry(['bundle', 'install', bundle, '--trust', trust, '--host', host, '--state-dir', stateDir, '--wait-timeout', '60', '--json', ...extra], { env: target(), timeoutMs: 240_000 });

async function page(): Promise<string> {
  let last = '';
  // A few tries: a busy 2-core machine can make one request miss without anything being wrong.
  for (let i = 0; i < 5; i++) {
    const r = await inTargetNetns('wget', ['-qO-', `http://127.0.0.1:${port}/`]);
    if (r.code === 0) return r.stdout;
    last = `unreachable (${r.code}): ${r.stderr}`;
    await new Promise((res) => setTimeout(res, 1000));
  }
  return last;
}

interface Case {
  kind: string;
  name: string;
  /** Damages a fresh copy of the bundle (or builds a hostile one there). */
  apply: (dir: string) => Promise<void>;
  exit: number;
  /** The refusal must name one of these. */
  names: string[];
  allowUnsigned?: boolean;
}

interface Tally {
  cases: number;
  held: number;
  findings: string[];
  byExit: Record<string, number>;
}

const tally = (): Tally => ({ cases: 0, held: 0, findings: [], byExit: {} });

let caseNo = 0;
async function runCase(t: Tally, base: string, c: Case): Promise<Outcome> {
  const dir = join(work, 'cases', `${String(++caseNo).padStart(4, '0')}`, `${m2.name}.ferry`);
  await mkdir(dirname(dir), { recursive: true });
  await copyBundle(base, dir);
  await c.apply(dir);
  const o = await verifyInProcess(dir, { allowUnsigned: c.allowUnsigned ?? false });
  judge(t, c, o);
  await rm(dirname(dir), { recursive: true, force: true }).catch(() => undefined);
  return o;
}

function judge(t: Tally, c: Case, o: Outcome, how = 'verify'): boolean {
  t.cases += 1;
  t.byExit[o.exit] = (t.byExit[o.exit] ?? 0) + 1;
  const named = c.names.length === 0 || c.names.some((n) => o.text.includes(n));
  const ok = o.exit === c.exit && named && !crashed(o);
  if (ok) t.held += 1;
  else t.findings.push(`${how} ${c.kind}: ${c.name}: exit ${o.exit} (${o.code}), expected ${c.exit} naming ${c.names.join(' or ')}: ${o.text.slice(0, 300)}`);
  return ok;
}

// ---------------------------------------------------------------------------------------------
// Byte-level damage

async function flip(file: string, at: 'start' | 'middle' | 'end' | number): Promise<void> {
  const buf = await readFile(file);
  const i = at === 'start' ? 0 : at === 'end' ? buf.length - 1 : at === 'middle' ? buf.length >> 1 : Math.min(buf.length - 1, Math.floor(at * buf.length));
  buf[i] = buf[i]! ^ 0xff;
  await writeFile(file, buf);
}

async function filesOf(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const name of (await readdir(join(dir, rel))).sort()) {
    const path = rel ? `${rel}/${name}` : name;
    if ((await stat(join(dir, path))).isDirectory()) out.push(...(await filesOf(dir, path)));
    else out.push(path);
  }
  return out;
}

const sha = async (file: string) => createHash('sha256').update(await readFile(file)).digest('hex');

/** What a damaged file must be refused with: trust (3) for the signed pairs, integrity (4) for the rest. */
function expectation(file: string, kind: string): { exit: number; names: string[] } {
  if (file === 'ferry.json' || file === 'SHA256SUMS') return kind === 'delete' ? { exit: 4, names: [file] } : { exit: 3, names: [file] };
  if (file === 'ferry.json.sig' || file === 'SHA256SUMS.sig') return { exit: 3, names: [file] };
  return { exit: 4, names: [file] };
}

// ---------------------------------------------------------------------------------------------

beforeAll(async () => {
  work = await tmpDir('ferry-sec-');
  const rand = randomBytes(3).toString('hex');
  stack = `sec${process.pid}${rand}`;
  stateDir = join(work, 'state');
  key = await makeKey(work, 'signer');
  trust = join(work, 'allowed_signers');
  await writeFile(trust, `${signerLine(key)}\n`);

  r2Label = `sec-${rand}`;
  const r2images = await buildDemoImages(r2Label);
  // Created before r2 but with a higher sequence: the creation-time ratchet case.
  older = await createBundle(await demoDefinition(join(work, 'def-older'), { stack, version: '0.9.0', images: '1.0.0', port }), join(work, 'older.ferry'), key, ['--sequence', '50']);
  await new Promise((r) => setTimeout(r, 1100));
  r1 = await createBundle(await demoDefinition(join(work, 'def-r1'), { stack, version: '1.0.0', images: '1.0.0', port, fastStop: true }), join(work, 'r1.ferry'), key, ['--sequence', '1', '--max-part-size', '1M']);
  r2 = await createBundle(
    await demoDefinition(join(work, 'def-r2'), { stack, version: '2.0.0', images: `sec-${rand}`, port, fastStop: true }),
    join(work, 'r2.ferry'),
    key,
    ['--sequence', '2', '--max-part-size', '1M'],
  );
  expired = await createBundle(await demoDefinition(join(work, 'def-r3'), { stack, version: '3.0.0', images: `sec-${rand}`, port }), join(work, 'r3-expired.ferry'), key, ['--sequence', '3', '--expires', '2020-01-01']);
  // Valid, signed, never installed: its manifest is what a mix-and-match attack would bring.
  mixer = await createBundle(await demoDefinition(join(work, 'def-mixer'), { stack, version: '1.5.0', images: '1.0.0', port }), join(work, 'mixer.ferry'), key, ['--sequence', '5']);
  // Release 2's images again, later: for the medium that changes under a running install.
  r5 = await createBundle(await demoDefinition(join(work, 'def-r5'), { stack, version: '2.1.0', images: `sec-${rand}`, port, fastStop: true }), join(work, 'r5.ferry'), key, ['--sequence', '60']);
  r6 = await createBundle(await demoDefinition(join(work, 'def-r6'), { stack, version: '2.2.0', images: `sec-${rand}`, port, fastStop: true }), join(work, 'r6.ferry'), key, ['--sequence', '61']);
  m2 = await readManifest(r2);
  const m1 = await readManifest(r1);
  imageIds = [...new Set([...m1.images, ...m2.images].map((i) => i.id)), ...Object.values(r2images)];
  expect(m2.files.some((f) => f.path.includes('.part-'))).toBe(true);

  // The host: release 1 installed and serving; every refusal below must leave it exactly so.
  const r = await install(r1);
  expect(r.code, r.stderr).toBe(0);
  expect(await page()).toContain('<span id="version">1.0.0</span>');
}, 600_000);

afterAll(async () => {
  if (stack) await removeStack(stack);
  if (r2Label) await removeBuildImages(['web', 'worker', 'smoke'].map((s) => `ferry-demo/${s}:${r2Label}`));
});

// ---------------------------------------------------------------------------------------------
// 1. Mutation matrix

describe('1. mutation matrix over every file of a real signed bundle', () => {
  const cliSample: { c: Case; o: Outcome }[] = [];

  it('refuses every mutation with the documented exit code, naming the file', async () => {
    const t = tally();
    const files = await filesOf(r2);
    const other = await filesOf(r1);
    const otherSha = new Map(await Promise.all(other.map(async (f) => [f, await sha(join(r1, f))] as const)));
    const otherSize = new Map(await Promise.all(other.map(async (f) => [f, (await stat(join(r1, f))).size] as const)));
    const cases: Case[] = [];

    for (const f of files) {
      const abs = (d: string) => join(d, f);
      const size = (await stat(abs(r2))).size;
      const own = await sha(abs(r2));
      const positions: ('start' | 'middle' | 'end' | number)[] = LONG ? ['start', 0.125, 0.25, 0.375, 'middle', 0.625, 0.75, 0.875, 'end'] : ['start', 'middle', 'end'];
      for (const at of positions) cases.push({ kind: `flip-${typeof at === 'number' ? 'at' : at}`, name: `${f} byte ${at}`, apply: (d) => flip(abs(d), at), ...expectation(f, 'flip') });
      cases.push({ kind: 'truncate', name: `${f} cut to ${size >> 1}`, apply: (d) => truncate(abs(d), size >> 1), ...expectation(f, 'truncate') });
      if (LONG) cases.push({ kind: 'truncate', name: `${f} cut by 1`, apply: (d) => truncate(abs(d), size - 1), ...expectation(f, 'truncate') });
      cases.push({ kind: 'append', name: `${f} + 1 byte`, apply: (d) => appendFile(abs(d), 'x'), ...expectation(f, 'append') });
      cases.push({ kind: 'zero-length', name: `${f} emptied`, apply: (d) => truncate(abs(d), 0), ...expectation(f, 'zero') });
      // The same-named file of another valid bundle; where that has the same bytes (content-
      // addressed blobs) or none exists, another of its files of the nearest size.
      const same = otherSha.has(f) && otherSha.get(f) !== own ? f : undefined;
      const nearest = other.filter((o) => otherSha.get(o) !== own).sort((a, b) => Math.abs(otherSize.get(a)! - size) - Math.abs(otherSize.get(b)! - size))[0]!;
      const from = same ?? nearest;
      cases.push({ kind: 'replace-other', name: `${f} ← other bundle's ${from}`, apply: (d) => cp(join(r1, from), abs(d)), ...expectation(f, 'replace') });
      cases.push({ kind: 'delete', name: `${f} deleted`, apply: (d) => rm(abs(d)), ...expectation(f, 'delete') });
    }

    const blob = m2.files.find((f) => f.path.startsWith('blobs/sha256/') && !f.path.includes('.part-'))!.path;
    const parts = m2.images.flatMap((i) => i.layers).flatMap((l) => l.blob?.parts ?? []).map((p) => p.path);
    const unlisted = ['extra', 'blobs/sha256/' + 'e'.repeat(64), `${parts[0]!.replace(/\.part-\d+$/, '')}.part-0009`, 'compose/extra.yaml', 'compose/hosts/edge-3.yaml', 'newdir/x', '.hidden', 'ferry.json.sig.bak'];
    for (const u of unlisted) cases.push({ kind: 'add-unlisted', name: u, apply: (d) => mkdir(dirname(join(d, u)), { recursive: true }).then(() => writeFile(join(d, u), 'x')), exit: 4, names: [u] });
    cases.push({ kind: 'add-unlisted', name: 'empty directory', apply: (d) => mkdir(join(d, 'emptydir')), exit: 4, names: ['emptydir'] });
    cases.push({ kind: 'add-unlisted', name: 'copy of a listed blob under another name', apply: (d) => cp(join(d, blob), join(d, `${blob}.copy`)), exit: 4, names: [`${blob}.copy`] });
    for (const p of parts) {
      const renamed = p.replace(/part-(\d+)$/, (_m, n: string) => `part-${String(Number(n) + 7).padStart(4, '0')}`);
      cases.push({ kind: 'rename-part', name: `${p} → ${renamed}`, apply: (d) => rename(join(d, p), join(d, renamed)), exit: 4, names: [p] });
    }
    for (let i = 0; i + 1 < parts.length; i++) {
      const [a, b] = [parts[i]!, parts[i + 1]!];
      cases.push({
        kind: 'swap-parts',
        name: `${a} ⇄ ${b}`,
        apply: async (d) => {
          await rename(join(d, a), join(d, `${a}.tmp`));
          await rename(join(d, b), join(d, a));
          await rename(join(d, `${a}.tmp`), join(d, b));
        },
        exit: 4,
        names: [a, b],
      });
    }

    const sampled = new Set<string>();
    for (const c of cases) {
      const o = await runCase(t, r2, c);
      // One of each kind, and flips and deletions of the signed pair, also through the CLI.
      const signedPair = (c.names[0] === 'ferry.json' || c.names[0] === 'ferry.json.sig') && /^(flip-middle|delete)$/.test(c.kind);
      const key = `${c.kind}:${signedPair ? c.names[0] : ''}`;
      if (LONG || !sampled.has(key)) {
        sampled.add(key);
        cliSample.push({ c, o });
      }
    }
    await recordFigure('mutation', { cases: t.cases, held: t.held, verb: 'refused', findings: t.findings, extra: { files: files.length, byExit: t.byExit } });
    expect(t.findings).toEqual([]);
    expect(t.held).toBe(t.cases);
  });

  it('gives the same refusal through the built CLI (a sample of every kind)', async () => {
    const t = tally();
    for (const { c, o: inProcess } of cliSample) {
      const dir = join(work, 'cli', `${++caseNo}`, `${m2.name}.ferry`);
      await mkdir(dirname(dir), { recursive: true });
      await copyBundle(r2, dir);
      await c.apply(dir);
      const o = await verifyCli(dir);
      if (judge(t, c, o, 'cli') && (o.exit !== inProcess.exit || o.code !== inProcess.code)) t.findings.push(`${c.name}: CLI ${o.code} vs in-process ${inProcess.code}`);
      await rm(dirname(dir), { recursive: true, force: true });
    }
    await recordFigure('mutation-cli', { cases: t.cases, held: t.held, verb: 'refused', findings: t.findings, extra: { byExit: t.byExit } });
    expect(t.findings).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// 3. Hostile structure (before 2: class 2 moves the host on to release 2)

/** Edits the parsed manifest, keeping its formatting style. */
const editJson = (fn: (m: any) => void) => (text: string) => {
  const m = JSON.parse(text);
  fn(m);
  return `${JSON.stringify(m, null, 2)}\n`;
};

function hostileManifests(): { name: string; edit: (text: string) => string | Buffer; names?: string[] }[] {
  const blobPath = () => m2.files.find((f) => f.path.startsWith('blobs/sha256/') && !f.path.includes('.part-'))!.path;
  const list: { name: string; edit: (text: string) => string | Buffer; names?: string[] }[] = [
    { name: 'files[].path with ..', edit: editJson((m) => (m.files[0].path = `../outside/${m.files[0].path}`)) },
    { name: 'files[].path deep ..', edit: editJson((m) => (m.files[0].path = 'compose/../../../../etc/passwd')) },
    { name: 'files[].path absolute', edit: editJson((m) => (m.files[0].path = '/etc/passwd')) },
    { name: 'files[].path with backslashes', edit: editJson((m) => (m.files[0].path = m.files[0].path.replace(/\//g, '\\'))) },
    { name: 'files[].path with a newline', edit: editJson((m) => (m.files[0].path = 'compose/x\n  - all files verified')) },
    { name: 'files[].path with a look-alike dot', edit: editJson((m) => { const f = m.files.find((x: any) => x.path.includes('.')); f.path = f.path.replace('.', '\u2024'); }) },
    { name: 'files[].path naming the manifest', edit: editJson((m) => m.files.push({ path: 'ferry.json', size: 1, sha256: '0'.repeat(64) })) },
    { name: 'files[].path listed twice', edit: editJson((m) => m.files.push({ ...m.files[0] })) },
    { name: 'compose.file escaping', edit: editJson((m) => (m.compose.file = '../../etc/compose.yaml')) },
    { name: 'host override escaping', edit: editJson((m) => (m.hosts['edge-1'].files = ['compose/../../../root/.ssh/authorized_keys'])) },
    { name: 'config path absolute', edit: editJson((m) => (m.images[0].config.path = '/etc/shadow')) },
    { name: 'layer blob path escaping', edit: editJson((m) => { const l = m.images[0].layers.find((x: any) => x.blob?.path); l.blob.path = `../${l.blob.path}`; }) },
    { name: 'part path escaping', edit: editJson((m) => { const l = m.images.flatMap((i: any) => i.layers).find((x: any) => x.blob?.parts); l.blob.parts[0].path = `/tmp/${l.blob.parts[0].path}`; }) },
    { name: 'declared size 2^52', edit: editJson((m) => (m.files.find((f: any) => f.path === blobPath()).size = 2 ** 52)), names: [blobPath()] },
    { name: 'declared size beyond safe integers', edit: editJson((m) => (m.files[0].size = 2 ** 60)) },
    { name: 'declared size negative', edit: editJson((m) => (m.files[0].size = -1)) },
    { name: 'declared config size 2 GiB', edit: editJson((m) => (m.images[0].config.size = 2 ** 31)) },
    { name: 'parts sizes disagreeing with the blob', edit: editJson((m) => { const l = m.images.flatMap((i: any) => i.layers).find((x: any) => x.blob?.parts); l.blob.size += 1; }) },
    { name: 'stack name with a slash', edit: editJson((m) => (m.name = '../../etc')) },
    { name: 'version with a slash', edit: editJson((m) => (m.version = '1.0/../../x')) },
    { name: 'lenient date', edit: editJson((m) => (m.created = 'Tue, 01 Jan 2999 00:00:00 GMT')) },
    { name: '__proto__ keys', edit: editJson((m) => { m.hosts = JSON.parse('{"__proto__": {"files": ["compose/compose.yaml"]}}'); }) },
    { name: 'format as a deep array', edit: (t) => t.replace('"ferry.bundle/v1"', `${'['.repeat(100_000)}${']'.repeat(100_000)}`) },
    { name: 'nested 1 000 000 deep', edit: () => `${'['.repeat(1_000_000)}${']'.repeat(1_000_000)}` },
    { name: 'nested objects 10 000 deep', edit: () => `${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}` },
    { name: 'three million empty objects (9 MB)', edit: () => `[${'{},'.repeat(3_000_000)}{}]` },
    { name: 'larger than the 32 MiB limit', edit: () => Buffer.alloc(33 * 1024 * 1024, 0x20) },
    { name: 'not UTF-8', edit: (t) => Buffer.concat([Buffer.from(t.slice(0, 20)), Buffer.from([0xff, 0xfe]), Buffer.from(t.slice(20))]) },
    { name: 'a byte order mark', edit: (t) => `\uFEFF${t}` },
    { name: 'thousands of bogus hosts', edit: editJson((m) => { for (let i = 0; i < 5000; i++) m.hosts[`h${i}`] = 1; }) },
    { name: 'a million bogus files', edit: editJson((m) => (m.files = Array.from({ length: 300_000 }, () => 0))) },
    { name: 'empty document', edit: () => '' },
    { name: 'null document', edit: () => 'null' },
  ];
  return list;
}

describe('3. hostile structure', () => {
  it('refuses hostile manifests, signed by a trusted key and unsigned (--allow-unsigned), with exit 4 naming ferry.json', async () => {
    const t = tally();
    for (const h of hostileManifests()) {
      for (const signed of [true, false]) {
        await runCase(t, r2, {
          kind: signed ? 'hostile-manifest-signed' : 'hostile-manifest-unsigned',
          name: h.name,
          apply: async (d) => {
            // The file an escaping path points at exists and is intact: it must still not be read.
            await mkdir(join(dirname(d), 'outside', 'blobs', 'sha256'), { recursive: true });
            await cp(join(d, m2.files[0]!.path), join(dirname(d), 'outside', m2.files[0]!.path));
            if (signed) await resignedManifest(d, key, h.edit);
            else {
              const text = await readFile(join(d, 'ferry.json'), 'utf8');
              await writeFile(join(d, 'ferry.json'), h.edit(text));
              await unsign(d);
            }
          },
          exit: 4,
          names: h.names ?? ['ferry.json'],
          allowUnsigned: !signed,
        });
      }
    }
    await recordFigure('hostile-manifest', { cases: t.cases, held: t.held, verb: 'refused', findings: t.findings, extra: { byExit: t.byExit } });
    expect(t.findings).toEqual([]);
  }, 300_000);

  const blob = () => m2.files.find((f) => f.path.startsWith('blobs/sha256/') && !f.path.includes('.part-'))!.path;
  const part = () => m2.files.find((f) => f.path.includes('.part-'))!.path;

  function structureCases(): Case[] {
    const outsideCopy = async (d: string, f: string) => {
      const copy = join(dirname(d), 'outside-copy');
      await cp(join(d, f), copy);
      return copy;
    };
    return [
      { kind: 'symlink', name: 'a blob replaced by a symlink to an identical copy', apply: async (d) => { const c = await outsideCopy(d, blob()); await rm(join(d, blob())); await symlink(c, join(d, blob())); }, exit: 4, names: [blob()] },
      { kind: 'symlink', name: 'the compose directory replaced by a symlink to an identical copy', apply: async (d) => { const c = join(dirname(d), 'compose-copy'); await cp(join(d, 'compose'), c, { recursive: true }); await rm(join(d, 'compose'), { recursive: true }); await symlink(c, join(d, 'compose')); }, exit: 4, names: ['compose'] },
      { kind: 'symlink', name: 'ferry.json a symlink to an identical copy', apply: async (d) => { const c = await outsideCopy(d, 'ferry.json'); await rm(join(d, 'ferry.json')); await symlink(c, join(d, 'ferry.json')); }, exit: 4, names: ['ferry.json'] },
      { kind: 'symlink', name: 'ferry.json.sig a symlink to an identical copy', apply: async (d) => { const c = await outsideCopy(d, 'ferry.json.sig'); await rm(join(d, 'ferry.json.sig')); await symlink(c, join(d, 'ferry.json.sig')); }, exit: 3, names: ['ferry.json.sig'] },
      { kind: 'symlink', name: 'a dangling symlink added', apply: (d) => symlink('/nonexistent/x', join(d, 'dangling')), exit: 4, names: ['dangling'] },
      { kind: 'hardlink', name: 'a part hard-linked to an identical copy outside', apply: async (d) => { const c = await outsideCopy(d, part()); await rm(join(d, part())); await link(c, join(d, part())); }, exit: 4, names: [part()] },
      { kind: 'hardlink', name: 'ferry.json hard-linked to an identical copy outside', apply: async (d) => { const c = await outsideCopy(d, 'ferry.json'); await rm(join(d, 'ferry.json')); await link(c, join(d, 'ferry.json')); }, exit: 4, names: ['ferry.json'] },
      { kind: 'device', name: 'a blob replaced by /dev/zero (char 1:5)', apply: async (d) => { await rm(join(d, blob())); await exec('mknod', [join(d, blob()), 'c', '1', '5']); }, exit: 4, names: [blob()] },
      { kind: 'device', name: 'an extra block device', apply: (d) => exec('mknod', [join(d, 'blk'), 'b', '7', '200']).then(() => undefined), exit: 4, names: ['blk'] },
      { kind: 'fifo', name: 'a part replaced by a FIFO', apply: async (d) => { await rm(join(d, part())); await exec('mkfifo', [join(d, part())]); }, exit: 4, names: [part()] },
      { kind: 'fifo', name: 'ferry.json a FIFO (no writer: must not hang)', apply: async (d) => { await rm(join(d, 'ferry.json')); await exec('mkfifo', [join(d, 'ferry.json')]); }, exit: 4, names: ['ferry.json'] },
      { kind: 'fifo', name: 'ferry.json.sig a FIFO (no writer: must not hang)', apply: async (d) => { await rm(join(d, 'ferry.json.sig')); await exec('mkfifo', [join(d, 'ferry.json.sig')]); }, exit: 3, names: ['ferry.json.sig'] },
      { kind: 'directory', name: 'ferry.json a directory', apply: async (d) => { await rm(join(d, 'ferry.json')); await mkdir(join(d, 'ferry.json')); }, exit: 4, names: ['ferry.json'] },
      { kind: 'directory', name: 'a blob a directory', apply: async (d) => { await rm(join(d, blob())); await mkdir(join(d, blob())); }, exit: 4, names: [blob()] },
      { kind: 'sparse', name: 'a blob replaced by a 64 GiB sparse file', apply: (d) => truncate(join(d, blob()), 64 * 1024 ** 3), exit: 4, names: [blob()] },
      { kind: 'sparse', name: 'ferry.json a 64 GiB sparse file', apply: (d) => truncate(join(d, 'ferry.json'), 64 * 1024 ** 3), exit: 4, names: ['ferry.json'] },
      { kind: 'sparse', name: 'ferry.json.sig a 64 GiB sparse file', apply: (d) => truncate(join(d, 'ferry.json.sig'), 64 * 1024 ** 3), exit: 3, names: ['ferry.json.sig'] },
      { kind: 'non-utf8-name', name: 'an extra file named with bytes that are not UTF-8', apply: (d) => writeFile(Buffer.from(`${d}/evil\xff\xfe`, 'latin1'), 'x'), exit: 4, names: ['evil\\xff\\xfe'] },
      { kind: 'non-utf8-name', name: 'an extra directory named with bytes that are not UTF-8', apply: async (d) => { await mkdir(Buffer.from(`${d}/blobs/d\xc3\x28`, 'latin1')); await writeFile(Buffer.from(`${d}/blobs/d\xc3\x28/x`, 'latin1'), 'x'); }, exit: 4, names: ['d\\xc3(' ] },
      { kind: 'control-name', name: 'an extra file whose name forges a report line', apply: (d) => writeFile(join(d, 'x\n  - all files verified'), 'x'), exit: 4, names: ['x\\x0a'] },
      { kind: 'deep-tree', name: 'an extra directory 60 levels deep', apply: (d) => mkdir(join(d, ...Array.from({ length: 60 }, () => 'd')), { recursive: true }).then(() => undefined), exit: 4, names: ['d'] },
      { kind: 'many-files', name: '20 000 extra files', apply: async (d) => { await mkdir(join(d, 'junk')); for (let i = 0; i < 20_000; i += 500) await Promise.all(Array.from({ length: 500 }, (_v, j) => writeFile(join(d, 'junk', `f${i + j}`), ''))); }, exit: 4, names: ['junk'] },
    ];
  }

  it('refuses links, devices, FIFOs, lying sizes and odd names, without following or hanging', async () => {
    const t = tally();
    for (const c of structureCases()) {
      const started = Date.now();
      await runCase(t, r2, c);
      if (Date.now() - started > 20_000) t.findings.push(`${c.name}: took ${Date.now() - started} ms`);
    }
    await recordFigure('hostile-structure', { cases: t.cases, held: t.held, verb: 'refused', findings: t.findings, extra: { byExit: t.byExit } });
    expect(t.findings).toEqual([]);
  }, 300_000);

  function signatureCases(): Case[] {
    const garbage = (bytes: Buffer | string) => async (d: string) => writeFile(join(d, 'ferry.json.sig'), bytes);
    const armor = (body: Buffer) => `-----BEGIN SSH SIGNATURE-----\n${body.toString('base64').replace(/.{70}/g, '$&\n')}\n-----END SSH SIGNATURE-----\n`;
    const u32 = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32BE(n >>> 0); return b; };
    const str = (s: string | Buffer) => Buffer.concat([u32(Buffer.byteLength(s)), Buffer.from(s)]);
    const cases: Case[] = [
      { kind: 'signature', name: '300 random bytes', apply: garbage(randomBytes(300)), exit: 3, names: ['ferry.json.sig'] },
      { kind: 'signature', name: 'random base64 in armor', apply: garbage(armor(randomBytes(200))), exit: 3, names: ['ferry.json.sig'] },
      { kind: 'signature', name: 'SSHSIG magic with a 4 GiB length field', apply: garbage(armor(Buffer.concat([Buffer.from('SSHSIG'), u32(1), u32(0xffffffff), randomBytes(40)]))), exit: 3, names: ['ferry.json.sig'] },
      { kind: 'signature', name: 'SSHSIG with an ed25519 key of 4 billion bytes', apply: garbage(armor(Buffer.concat([Buffer.from('SSHSIG'), u32(1), str(Buffer.concat([str('ssh-ed25519'), u32(0xfffffff0)]))]))), exit: 3, names: ['ferry.json.sig'] },
      { kind: 'signature', name: 'SSHSIG version 2', apply: garbage(armor(Buffer.concat([Buffer.from('SSHSIG'), u32(2), randomBytes(100)]))), exit: 3, names: ['ferry.json.sig'] },
      { kind: 'signature', name: 'a 1 MiB signature file', apply: garbage(randomBytes(1024 * 1024)), exit: 3, names: ['ferry.json.sig'] },
      { kind: 'signature', name: 'an empty signature file', apply: garbage(''), exit: 3, names: ['ferry.json.sig'] },
      { kind: 'signature', name: 'NUL bytes', apply: garbage(Buffer.alloc(4096)), exit: 3, names: ['ferry.json.sig'] },
      { kind: 'signature', name: 'a PGP signature', apply: garbage('-----BEGIN PGP SIGNATURE-----\n\niQEzBAABCAAdFiEE\n-----END PGP SIGNATURE-----\n'), exit: 3, names: ['ferry.json.sig'] },
      { kind: 'signature', name: 'two signatures concatenated', apply: async (d) => appendFile(join(d, 'ferry.json.sig'), await readFile(join(d, 'ferry.json.sig'))), exit: 3, names: ['ferry.json.sig'] },
      { kind: 'signature', name: 'text before the armor', apply: async (d) => writeFile(join(d, 'ferry.json.sig'), `trust me\n${await readFile(join(d, 'ferry.json.sig'), 'utf8')}`), exit: 3, names: ['ferry.json.sig'] },
      {
        kind: 'signature',
        name: 'signed by an RSA key',
        apply: async (d) => {
          const rsa = join(dirname(d), 'rsa');
          await exec('ssh-keygen', ['-q', '-t', 'rsa', '-b', '2048', '-N', '', '-f', rsa]);
          await rm(join(d, 'ferry.json.sig'));
          await exec('ssh-keygen', ['-q', '-Y', 'sign', '-f', rsa, '-n', 'ferry-bundle', join(d, 'ferry.json')]);
        },
        exit: 3,
        names: ['ferry.json.sig'],
      },
      { kind: 'signature', name: 'signed for namespace "file"', apply: (d) => sign(d, key, 'file'), exit: 3, names: ['ferry.json.sig'] },
    ];
    return cases;
  }

  it('refuses garbage signatures with exit 3, never a crash', async () => {
    const t = tally();
    for (const c of signatureCases()) await runCase(t, r2, c);
    await recordFigure('hostile-signature', { cases: t.cases, held: t.held, verb: 'refused', findings: t.findings, extra: { byExit: t.byExit } });
    expect(t.findings).toEqual([]);
  }, 120_000);

  it('the CLI refuses the worst of them quickly, in bounded memory, never hanging (verify and inspect)', async () => {
    const t = tally();
    const worst: { name: string; apply: (d: string) => Promise<void>; exit: number; inspectExit: number | null }[] = [
      { name: 'nested 1 000 000 deep, unsigned', apply: async (d) => { await writeFile(join(d, 'ferry.json'), `${'['.repeat(1_000_000)}${']'.repeat(1_000_000)}`); await rm(join(d, 'ferry.json.sig')); }, exit: 4, inspectExit: 4 },
      { name: 'format a 100 000 deep array, signed', apply: (d) => resignedManifest(d, key, (x) => x.replace('"ferry.bundle/v1"', `${'['.repeat(100_000)}${']'.repeat(100_000)}`)), exit: 4, inspectExit: 4 },
      { name: '10 million empty objects (30 MB), unsigned', apply: async (d) => { await writeFile(join(d, 'ferry.json'), `[${'{},'.repeat(10_000_000)}{}]`); await rm(join(d, 'ferry.json.sig')); }, exit: 4, inspectExit: 4 },
      { name: 'ferry.json a FIFO', apply: async (d) => { await rm(join(d, 'ferry.json')); await exec('mkfifo', [join(d, 'ferry.json')]); }, exit: 4, inspectExit: 4 },
      { name: 'ferry.json.sig a FIFO', apply: async (d) => { await rm(join(d, 'ferry.json.sig')); await exec('mkfifo', [join(d, 'ferry.json.sig')]); }, exit: 3, inspectExit: null },
      { name: 'a part a FIFO', apply: async (d) => { await rm(join(d, part())); await exec('mkfifo', [join(d, part())]); }, exit: 4, inspectExit: null },
      { name: 'an extra file not named in UTF-8', apply: (d) => writeFile(Buffer.from(`${d}/evil\xff`, 'latin1'), 'x'), exit: 4, inspectExit: null },
    ];
    for (const w of worst) {
      const dir = join(work, 'worst', `${++caseNo}`, `${m2.name}.ferry`);
      await mkdir(dirname(dir), { recursive: true });
      await copyBundle(r2, dir);
      await w.apply(dir);
      for (const cmd of ['verify', 'inspect'] as const) {
        const expected = cmd === 'verify' ? w.exit : w.inspectExit;
        if (expected === null) continue;
        const r = await timed(['bundle', cmd, dir, '--trust', trust, ...(cmd === 'verify' ? ['--allow-unsigned'] : []), '--json']);
        const c: Case = { kind: `cli-${cmd}`, name: w.name, apply: async () => {}, exit: expected, names: [] };
        judge(t, c, { ...outcome(r), exit: r.code }, cmd);
        if (r.maxRssKb > 600 * 1024) t.findings.push(`${cmd} ${w.name}: peak RSS ${Math.round(r.maxRssKb / 1024)} MB`);
        if (r.seconds > 15) t.findings.push(`${cmd} ${w.name}: took ${r.seconds} s`);
      }
    }
    await recordFigure('hostile-cli', { cases: t.cases, held: t.held, verb: 'refused in bounded time and memory', findings: t.findings, extra: { byExit: t.byExit } });
    expect(t.findings).toEqual([]);
  }, 300_000);
});

/** The built CLI under GNU time: exit code, output, peak RSS and wall time. */
async function timed(args: string[]): Promise<{ code: number; stdout: string; stderr: string; maxRssKb: number; seconds: number }> {
  const report = join(work, `time-${++caseNo}`);
  const started = Date.now();
  const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    const child = spawn('/usr/bin/time', ['-f', '%M', '-o', report, process.execPath, join(ROOT, 'bin/ferry'), ...args], { env: { ...process.env, NO_COLOR: '1' } });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
  const rss = Number((await readFile(report, 'utf8').catch(() => '0')).trim().split('\n').at(-1));
  return { ...r, maxRssKb: rss, seconds: (Date.now() - started) / 1000 };
}

// ---------------------------------------------------------------------------------------------
// The same refusals through install: nothing reaches the engine, the project or the state

describe('attacks against install on the air-gapped engine', () => {
  it('refuses a representative subset with nothing loaded, started or recorded', async () => {
    const t = tally();
    const blob = m2.files.find((f) => f.path.startsWith('blobs/sha256/') && !f.path.includes('.part-'))!.path;
    const parts = m2.files.filter((f) => f.path.includes('.part-')).map((f) => f.path);
    const cases: (Case & { args?: string[] })[] = [
      { kind: 'flip', name: 'ferry.json byte flipped', apply: (d) => flip(join(d, 'ferry.json'), 'middle'), exit: 3, names: ['ferry.json'] },
      { kind: 'flip', name: 'ferry.json.sig byte flipped', apply: (d) => flip(join(d, 'ferry.json.sig'), 'middle'), exit: 3, names: ['ferry.json.sig'] },
      { kind: 'flip', name: 'compose file byte flipped', apply: (d) => flip(join(d, 'compose/compose.yaml'), 'end'), exit: 4, names: ['compose/compose.yaml'] },
      { kind: 'flip', name: 'host override byte flipped', apply: (d) => flip(join(d, 'compose/hosts/edge-1.yaml'), 'start'), exit: 4, names: ['compose/hosts/edge-1.yaml'] },
      { kind: 'flip', name: 'index.json byte flipped', apply: (d) => flip(join(d, 'index.json'), 'middle'), exit: 4, names: ['index.json'] },
      { kind: 'flip', name: 'layer blob byte flipped', apply: (d) => flip(join(d, blob), 'middle'), exit: 4, names: [blob] },
      { kind: 'flip', name: 'last part byte flipped (--no-stage)', apply: (d) => flip(join(d, parts.at(-1)!), 'end'), exit: 4, names: [parts.at(-1)!], args: ['--no-stage'] },
      { kind: 'truncate', name: 'first part truncated', apply: (d) => truncate(join(d, parts[0]!), 1000), exit: 4, names: [parts[0]!] },
      { kind: 'delete', name: 'a part deleted (--no-stage)', apply: (d) => rm(join(d, parts[0]!)), exit: 4, names: [parts[0]!], args: ['--no-stage'] },
      { kind: 'swap-parts', name: 'parts swapped', apply: async (d) => { await rename(join(d, parts[0]!), join(d, 'tmp')); await rename(join(d, parts[1]!), join(d, parts[0]!)); await rename(join(d, 'tmp'), join(d, parts[1]!)); }, exit: 4, names: [parts[0]!] },
      { kind: 'add-unlisted', name: 'an unlisted compose override', apply: (d) => writeFile(join(d, 'compose/override.yaml'), 'services:\n  web:\n    privileged: true\n'), exit: 4, names: ['compose/override.yaml'] },
      { kind: 'mix', name: 'the signed manifest of another release in release 2', apply: async (d) => { await cp(join(mixer, 'ferry.json'), join(d, 'ferry.json')); await cp(join(mixer, 'ferry.json.sig'), join(d, 'ferry.json.sig')); }, exit: 4, names: ['blobs/sha256/'] },
      { kind: 'symlink', name: 'a blob a symlink to an identical copy', apply: async (d) => { await cp(join(d, blob), join(dirname(d), 'copy')); await rm(join(d, blob)); await symlink(join(dirname(d), 'copy'), join(d, blob)); }, exit: 4, names: [blob] },
      { kind: 'hostile-manifest', name: 'a signed manifest with a path escaping the bundle', apply: (d) => resignedManifest(d, key, editJson((m) => (m.hosts['edge-1'].files = ['../../../../etc/passwd']))), exit: 4, names: ['ferry.json'] },
      { kind: 'hostile-manifest', name: 'a signed manifest nested 100 000 deep', apply: (d) => resignedManifest(d, key, (x) => x.replace('"ferry.bundle/v1"', `${'['.repeat(100_000)}${']'.repeat(100_000)}`)), exit: 4, names: ['ferry.json'] },
      { kind: 'fifo', name: 'ferry.json a FIFO', apply: async (d) => { await rm(join(d, 'ferry.json')); await exec('mkfifo', [join(d, 'ferry.json')]); }, exit: 4, names: ['ferry.json'] },
      { kind: 'non-utf8-name', name: 'an extra file not named in UTF-8', apply: (d) => writeFile(Buffer.from(`${d}/evil\xff`, 'latin1'), 'x'), exit: 4, names: ['evil'] },
    ];
    const engineBefore = await engineSnapshot(stack, imageIds);
    const stateBefore = await treeSnapshot(stateDir);
    for (const c of cases) {
      const dir = join(work, 'install-cases', `${++caseNo}`, `${m2.name}.ferry`);
      await mkdir(dirname(dir), { recursive: true });
      await copyBundle(r2, dir);
      await c.apply(dir);
      const o = outcome(await install(dir, c.args ?? []));
      judge(t, c, o, 'install');
      const engineAfter = await engineSnapshot(stack, imageIds);
      const stateAfter = await treeSnapshot(stateDir);
      if (engineAfter !== engineBefore) t.findings.push(`install ${c.name}: the engine changed:\n${engineBefore}\n→\n${engineAfter}`);
      if (stateAfter !== stateBefore) t.findings.push(`install ${c.name}: the state directory changed:\n${stateBefore}\n→\n${stateAfter}`);
      if (t.findings.length > 0) break;
    }
    expect(await page()).toContain('<span id="version">1.0.0</span>');
    await recordFigure('install-attacks', { cases: t.cases, held: t.held, verb: 'refused with engine and state unchanged', findings: t.findings, extra: { byExit: t.byExit } });
    expect(t.findings).toEqual([]);
  }, 300_000);
});

// ---------------------------------------------------------------------------------------------
// 2. Mix and replay

describe('2. mix and replay', () => {
  const t = tally();
  let engineBefore = '';
  let stateBefore = '';

  const refusedUnchanged = async (c: Case, r: Promise<RunResult>) => {
    const o = outcome(await r);
    judge(t, c, o, 'install');
    const e = await engineSnapshot(stack, imageIds);
    const s = await treeSnapshot(stateDir);
    if (e !== engineBefore) t.findings.push(`${c.name}: the engine changed`);
    if (s !== stateBefore) t.findings.push(`${c.name}: the state directory changed`);
    return o;
  };

  it('refuses a manifest signed for another bundle (exit 4) or a signature of another manifest (exit 3)', async () => {
    for (const [name, manifestFrom, sigFrom, exit, names] of [
      ['release 1 manifest + signature in the release 2 bundle', r1, r1, 4, ['blobs/sha256/']],
      ['release 1 manifest with the release 2 signature', r1, r2, 3, ['ferry.json']],
      ['the expired bundle\'s manifest + signature in release 2', expired, expired, 4, ['blobs/sha256/']],
    ] as const) {
      const dir = await copyBundle(r2, join(work, 'mix', `${++caseNo}`, 'x.ferry'));
      await cp(join(manifestFrom, 'ferry.json'), join(dir, 'ferry.json'));
      await cp(join(sigFrom, 'ferry.json.sig'), join(dir, 'ferry.json.sig'));
      judge(t, { kind: 'mix', name, apply: async () => {}, exit, names: [...names] }, await verifyCli(dir));
    }
  });

  it('refuses an expired bundle (bundle create --expires in the past): verify and install exit 5', async () => {
    engineBefore = await engineSnapshot(stack, imageIds);
    stateBefore = await treeSnapshot(stateDir);
    const c: Case = { kind: 'expired', name: 'expired 2020-01-01', apply: async () => {}, exit: 5, names: ['expired'] };
    judge(t, c, await verifyCli(expired));
    await refusedUnchanged(c, install(expired));
  });

  it('refuses a bundle for another host group: a host it has no override for (5), a key another group trusts (3)', async () => {
    await refusedUnchanged({ kind: 'host-group', name: 'installed as edge-9', apply: async () => {}, exit: 5, names: ['edge-9'] }, install(r2, [], 'edge-9'));
    const groupB = await makeKey(work, 'group-b');
    const groupTrust = join(work, 'group_b_signers');
    await writeFile(groupTrust, `${signerLine(groupB)}\n`);
    const r = ferry(['bundle', 'install', r2, '--trust', groupTrust, '--host', 'edge-1', '--state-dir', stateDir, '--json'], { env: target() });
    await refusedUnchanged({ kind: 'host-group', name: 'signed by group A, host trusts group B', apply: async () => {}, exit: 3, names: ['ferry.json.sig'] }, r);
  });

  it('installs release 2, then refuses release 1 as a rollback (exit 5) unless --allow-downgrade', async () => {
    const ok = await install(r2);
    expect(ok.code, ok.stderr).toBe(0);
    expect(await page()).toContain(`<span id="version">${r2Label}</span>`);
    engineBefore = await engineSnapshot(stack, imageIds);
    stateBefore = await treeSnapshot(stateDir);
    await refusedUnchanged({ kind: 'rollback', name: 'release 1 after release 2', apply: async () => {}, exit: 5, names: ['sequence 1'] }, install(r1));
    // verify knows no host: the bundle itself is fine.
    expect((await verifyCli(r1)).exit).toBe(0);
    const forced = await install(r1, ['--allow-downgrade', '--no-up']);
    expect(forced.code, forced.stderr).toBe(0);
    expect(await page()).toContain(`<span id="version">${r2Label}</span>`);
  });

  it('refuses a bundle created before the newest accepted one, whatever its sequence (the creation-time ratchet)', async () => {
    // FINDING F1 (src/services/install.ts checkPolicy): created < newestCreated is only refused
    // when the sequence is not higher too, so an old bundle carrying a high sequence replays.
    engineBefore = await engineSnapshot(stack, imageIds);
    stateBefore = await treeSnapshot(stateDir);
    const o = await refusedUnchanged({ kind: 'ratchet', name: 'created before release 2, sequence 50', apply: async () => {}, exit: 5, names: ['created'] }, install(older, ['--no-up']));
    await recordFigure('replay', { cases: t.cases, held: t.held, verb: 'refused', findings: t.findings, extra: { byExit: t.byExit } });
    expect(o.exit).toBe(5);
    const forced = await install(older, ['--allow-downgrade', '--no-up']);
    expect(forced.code, forced.stderr).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------
// 7. Evidence

describe('7. evidence of what was verified', () => {
  it('keeps the verification report of each install in the state directory, and host status --json shows it', async () => {
    const m = await readManifest(r2);
    const release = `${m.sequence}-${m.version}`;
    const report = JSON.parse(await readFile(join(stateDir, 'stacks', stack, 'releases', release, 'verification.json'), 'utf8').catch(() => 'null'));
    const status = JSON.parse((await ferry(['host', 'status', stack, '--state-dir', stateDir, '--json'], { env: target() })).stdout);
    const current = status.result?.stacks?.[0]?.current ?? null;
    const checks = [
      ['report file with the signer', /^SHA256:/.test(report?.signature?.fingerprint ?? '')],
      ['every file with its digest', JSON.stringify((report?.files ?? []).map((f: { path: string; sha256: string }) => `${f.path} ${f.sha256}`).sort()) === JSON.stringify(m.files.map((f) => `${f.path} ${f.sha256}`).sort())],
      ['when', Date.parse(report?.at ?? '') > 0],
      ['the manifest digest', report?.manifestSha256 === `sha256:${createHash('sha256').update(await readFile(join(r2, 'ferry.json'))).digest('hex')}`],
      ['status --json shows it', current?.id === release && current?.verification?.manifestSha256 === report?.manifestSha256 && current?.signer?.fingerprint === report?.signature?.fingerprint],
    ] as const;
    const failed = checks.filter(([, ok]) => !ok).map(([what]) => what);
    await recordFigure('evidence', { cases: checks.length, held: checks.length - failed.length, verb: 'present', findings: failed });
    expect(failed).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// A medium that answers a second read differently (a failing stick, or one built to do so)

describe('a medium that changes after verification', () => {
  /** Installs a bundle and, the moment install says it found the images on the engine (after every file was verified), swaps the host override. */
  async function installSwapping(bundle: string, extra: string[]): Promise<{ code: number | null; stderr: string; swapped: boolean }> {
    const dir = await copyBundle(bundle, join(work, 'toctou', `${++caseNo}`, 'x.ferry'));
    const override = join(dir, 'compose/hosts/edge-1.yaml');
    // Same length: nothing but the digest can tell the two apart.
    const evil = (await readFile(override, 'utf8')).replace('WORKER_INTERVAL: "3"', 'WORKER_INTERVAL: "9"');
    expect(evil).toContain('WORKER_INTERVAL: "9"');
    // Beside the bundle, not in it: an extra file would be refused before anything else.
    const evilFile = join(dirname(dir), 'edge-1.yaml.evil');
    await writeFile(evilFile, evil);
    const child = spawn(process.execPath, [join(ROOT, 'bin/ferry'), 'bundle', 'install', dir, '--trust', trust, '--host', 'edge-1', '--state-dir', stateDir, '--wait-timeout', '60', ...extra], {
      env: { ...process.env, ...target(), NO_COLOR: '1' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    let swapped = false;
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      // Both lines come after every file was verified (staged, or hashed in place) and before the
      // compose files are written into the release.
      if (!swapped && /already on the engine|^loading: .* loaded/m.test(stderr)) {
        swapped = true;
        void rename(evilFile, override);
      }
    });
    const code = await new Promise<number | null>((res) => child.on('close', (c) => res(c)));
    return { code, stderr, swapped };
  }
  /** What the running worker got: the verified override says 3. */
  const workerInterval = async () => {
    const id = (await targetDocker().run(['ps', '-q', '--filter', `label=com.docker.compose.project=${stack}`, '--filter', 'label=com.docker.compose.service=worker'])).stdout.trim().split('\n')[0] ?? '';
    const env = (await targetDocker().run(['inspect', '--format', '{{range .Config.Env}}{{println .}}{{end}}', id])).stdout;
    return /^WORKER_INTERVAL=(.*)$/m.exec(env)?.[1] ?? 'none';
  };

  it('staged (the default): the verified copy is used, the swap has no effect', async () => {
    const r = await installSwapping(r5, []);
    expect(r.swapped, r.stderr).toBe(true);
    expect(r.code, r.stderr).toBe(0);
    expect(await workerInterval()).toBe('3');
  });

  it('--no-stage: bytes read again from the medium are checked again, so the swap is refused (exit 4)', async () => {
    // FINDING F4 (src/services/install.ts writeRelease/readConfig): files are re-read from the
    // medium after verification without their digest, so with --no-stage unverified compose bytes
    // reach the compose project. Expected: readVerified (services/bundle.ts) for every such read.
    const r = await installSwapping(r6, ['--no-stage']);
    const shown = await workerInterval();
    await recordFigure('medium-changes', {
      cases: 2,
      held: 1 + (r.code === 4 && shown === '3' ? 1 : 0),
      verb: 'used only verified bytes',
      findings: r.code === 4 ? [] : [`--no-stage: exit ${r.code}, the worker runs with WORKER_INTERVAL=${shown} from the swapped, unverified override`],
    });
    expect(r.swapped, r.stderr).toBe(true);
    expect(shown).toBe('3');
    expect(r.code, r.stderr).toBe(4);
  });
});

