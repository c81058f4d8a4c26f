/**
 * Issue 11, "stock tools first": a bundle made by the built CLI carries SHA256SUMS, its SSHSIG
 * signature and a README.txt, and the two commands README.txt gives pass with the real
 * `ssh-keygen -Y verify` and `sha256sum -c` alone. Then the stick is tampered with, and the stock
 * tools and `ferry bundle verify` must refuse it alike, ferry with its documented code.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { ferry, run, targetDocker, tmpDir, type RunResult } from '../support/engines.js';
import { createBundle, demoDefinition, makeKey, outcome, signerLine, type Key } from '../security/campaign.js';

const exec = promisify(execFile);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let work: string;
let key: Key;
let other: Key;
let trust: string;
let bundle: string;
let later: string;
let unsigned: string;
let caseNo = 0;

/** Every regular file under `dir`, relative, in byte order. */
async function filesOf(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (e.isFile()) out.push(join(e.parentPath ?? e.path, e.name).slice(dir.length + 1));
  }
  return out.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** The stock-tool command line README.txt gives, pointed at this test's trust file instead of /etc/ferry's. */
async function readmeCommand(dir: string): Promise<string> {
  const line = (await readFile(join(dir, 'README.txt'), 'utf8')).split('\n').find((l) => l.trimStart().startsWith('ssh-keygen -Y verify'));
  expect(line, 'README.txt gives the ssh-keygen command').toBeDefined();
  return line!.trim().replace('/etc/ferry/allowed_signers', trust);
}

/** Runs a shell command line in the bundle directory, as the operator would. */
const sh = (dir: string, command: string): Promise<RunResult> => run('sh', ['-c', command], { cwd: dir });
const sshKeygenVerify = (dir: string, trustFile = trust) => sh(dir, `ssh-keygen -Y verify -f ${trustFile} -I ferry -n ferry-bundle -s SHA256SUMS.sig < SHA256SUMS`);
const sha256sumCheck = (dir: string) => sh(dir, 'sha256sum -c SHA256SUMS');
const verify = async (dir: string, extra: string[] = []) => outcome(await ferry(['bundle', 'verify', dir, '--trust', trust, '--json', ...extra], { timeoutMs: 60_000 }));

async function copyOf(dir: string): Promise<string> {
  const dest = join(work, 'cases', `${++caseNo}`, 'stick.ferry');
  await cp(dir, dest, { recursive: true });
  return dest;
}

async function flip(file: string): Promise<void> {
  const buf = await readFile(file);
  buf[buf.length >> 1] = buf[buf.length >> 1]! ^ 0xff;
  await writeFile(file, buf);
}

const blobOf = async (dir: string) => {
  const m = JSON.parse(await readFile(join(dir, 'ferry.json'), 'utf8')) as { images: { layers: { blob: { path?: string } | null }[] }[] };
  return m.images.flatMap((i) => i.layers).find((l) => l.blob?.path)!.blob!.path!;
};

beforeAll(async () => {
  work = await tmpDir('ferry-stock-tools-');
  key = await makeKey(work, 'signer');
  other = await makeKey(work, 'other');
  trust = join(work, 'allowed_signers');
  await writeFile(trust, `${signerLine(key)}\n`);
  const stack = `stock${process.pid}`;
  const def = await demoDefinition(join(work, 'def'), { stack, version: '1.0.0', images: '1.0.0', port: 41000 + (process.pid % 10000) });
  bundle = await createBundle(def, join(work, 'stock-1.0.0.ferry'), key, ['--sequence', '1']);
  later = await createBundle(def, join(work, 'stock-1.0.1.ferry'), key, ['--sequence', '2', '--version', '1.0.1']);
  const r = await ferry(['bundle', 'create', def, '--out', join(work, 'unsigned.ferry'), '--sequence', '3'], { timeoutMs: 300_000 });
  expect(r.code, r.stderr).toBe(0);
  unsigned = join(work, 'unsigned.ferry');
}, 600_000);

describe('bundle create writes the stock-tool files', () => {
  it('SHA256SUMS lists every other file of the bundle, sorted, with its sha256', async () => {
    const files = await filesOf(bundle);
    expect(files).toEqual(expect.arrayContaining(['ferry.json', 'ferry.json.sig', 'SHA256SUMS', 'SHA256SUMS.sig', 'README.txt']));
    const expected = await Promise.all(files.filter((f) => f !== 'SHA256SUMS' && f !== 'SHA256SUMS.sig').map(async (f) => `${sha(await readFile(join(bundle, f)))}  ${f}\n`));
    expect(await readFile(join(bundle, 'SHA256SUMS'), 'utf8')).toBe(expected.join(''));
    // README.txt is listed and signed like any file; the SHA256SUMS pair lists the manifest, so it cannot be in it.
    const m = JSON.parse(await readFile(join(bundle, 'ferry.json'), 'utf8')) as { files: { path: string }[] };
    const listed = m.files.map((f) => f.path);
    expect(listed).toContain('README.txt');
    expect(listed).not.toContain('SHA256SUMS');
    expect(listed).not.toContain('SHA256SUMS.sig');
    // Sealed in one rename: nothing partial is left beside it.
    expect((await readdir(work)).filter((f) => f.includes('.partial-'))).toEqual([]);
  });

  it('README.txt names the key and gives the two commands, then how to install', async () => {
    const text = await readFile(join(bundle, 'README.txt'), 'utf8');
    const fingerprint = (await exec('ssh-keygen', ['-l', '-f', `${key.path}.pub`])).stdout.split(' ')[1]!;
    expect(text).toContain(`signed by the key ${fingerprint}`);
    expect(text).toContain('ssh-keygen -Y verify -f /etc/ferry/allowed_signers -I ferry -n ferry-bundle -s SHA256SUMS.sig < SHA256SUMS && sha256sum -c SHA256SUMS');
    expect(text).toContain('./ferry bundle install .');
    expect(text).toContain('ferry bundle install .');
  });
});

describe('the intact stick', () => {
  it("passes README.txt's commands with the real ssh-keygen and sha256sum", async () => {
    const r = await sh(bundle, await readmeCommand(bundle));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^Good "ferry-bundle" signature for ferry with ED25519 key SHA256:/);
    const files = (await filesOf(bundle)).filter((f) => f !== 'SHA256SUMS' && f !== 'SHA256SUMS.sig');
    for (const f of files) expect(r.stdout).toContain(`${f}: OK\n`);
    // The identity README.txt tells the operator how to find.
    const principals = await sh(bundle, `ssh-keygen -Y find-principals -f ${trust} -s SHA256SUMS.sig`);
    expect(principals.stdout.trim()).toBe('ferry');
  });

  it('passes ferry bundle verify, which checked SHA256SUMS and its signature', async () => {
    const r = await ferry(['bundle', 'verify', bundle, '--trust', trust, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.result.sha256sums).toBe('signed');
    expect(doc.warnings).toEqual([]);
  });
});

describe('a tampered stick: the stock tools and ferry refuse it alike', () => {
  it('a changed blob byte: sha256sum -c fails on that file, ferry exits 4 naming it', async () => {
    const dir = await copyOf(bundle);
    const blob = await blobOf(dir);
    await flip(join(dir, blob));
    expect((await sshKeygenVerify(dir)).code).toBe(0); // SHA256SUMS itself is intact
    const sums = await sha256sumCheck(dir);
    expect(sums.code).not.toBe(0);
    expect(sums.stdout).toContain(`${blob}: FAILED`);
    expect((await sh(dir, await readmeCommand(dir))).code).not.toBe(0);
    const o = await verify(dir);
    expect([o.exit, o.code]).toEqual([4, 'BUNDLE_INTEGRITY']);
    expect(o.text).toContain(blob);
  });

  it("a SHA256SUMS line changed to match a changed blob: ssh-keygen fails, ferry exits 3 (SHA256SUMS_SIGNATURE_INVALID), install too", async () => {
    const dir = await copyOf(bundle);
    const blob = await blobOf(dir);
    await flip(join(dir, blob));
    const text = await readFile(join(dir, 'SHA256SUMS'), 'utf8');
    const changed = sha(await readFile(join(dir, blob)));
    await writeFile(join(dir, 'SHA256SUMS'), text.split('\n').map((l) => (l.endsWith(`  ${blob}`) ? `${changed}  ${blob}` : l)).join('\n'));
    expect(await readFile(join(dir, 'SHA256SUMS'), 'utf8')).not.toBe(text);
    // Alone, sha256sum now agrees with the stick: only the signature shows the change.
    expect((await sha256sumCheck(dir)).code).toBe(0);
    const sig = await sshKeygenVerify(dir);
    expect(sig.code).not.toBe(0);
    expect(sig.stderr).toMatch(/verification failed/i);
    expect((await sh(dir, await readmeCommand(dir))).code).not.toBe(0);
    const o = await verify(dir);
    expect([o.exit, o.code]).toEqual([3, 'SHA256SUMS_SIGNATURE_INVALID']);
    expect(o.text).toContain('SHA256SUMS');
    // install opens the bundle through the same code: refused before the engine or the state sees anything.
    const state = join(work, `state-${caseNo}`);
    const inst = outcome(await ferry(['bundle', 'install', dir, '--trust', trust, '--host', 'edge-1', '--state-dir', state, '--no-up', '--json'], { env: { DOCKER_HOST: targetDocker().host }, timeoutMs: 120_000 }));
    expect([inst.exit, inst.code]).toEqual([3, 'SHA256SUMS_SIGNATURE_INVALID']);
  });

  it('SHA256SUMS.sig removed: ssh-keygen fails, ferry exits 3', async () => {
    const dir = await copyOf(bundle);
    await rm(join(dir, 'SHA256SUMS.sig'));
    expect((await sshKeygenVerify(dir)).code).not.toBe(0);
    const o = await verify(dir);
    expect([o.exit, o.code]).toEqual([3, 'SHA256SUMS_SIGNATURE_INVALID']);
    expect(o.text).toContain('SHA256SUMS.sig');
  });

  it("another release's SHA256SUMS pair, signed by the same key: ssh-keygen passes, sha256sum -c and ferry (exit 4, SHA256SUMS_INVALID) do not", async () => {
    const dir = await copyOf(bundle);
    await cp(join(later, 'SHA256SUMS'), join(dir, 'SHA256SUMS'));
    await cp(join(later, 'SHA256SUMS.sig'), join(dir, 'SHA256SUMS.sig'));
    expect((await sshKeygenVerify(dir)).code).toBe(0);
    const sums = await sha256sumCheck(dir);
    expect(sums.code).not.toBe(0);
    expect(sums.stdout).toContain('ferry.json: FAILED');
    const o = await verify(dir);
    expect([o.exit, o.code]).toEqual([4, 'SHA256SUMS_INVALID']);
    expect(o.text).toContain('ferry.json');
  });

  it('SHA256SUMS signed by another key, even a trusted one: ferry exits 3; with that key revoked it says so', async () => {
    const dir = await copyOf(bundle);
    await rm(join(dir, 'SHA256SUMS.sig'));
    await exec('ssh-keygen', ['-q', '-Y', 'sign', '-f', other.path, '-n', 'ferry-bundle', join(dir, 'SHA256SUMS')]);
    const both = join(work, 'allowed_signers.both');
    await writeFile(both, `${signerLine(key)}\n${signerLine(other)}\n`);
    expect((await sshKeygenVerify(dir, both)).code).toBe(0);
    const o = outcome(await ferry(['bundle', 'verify', dir, '--trust', both, '--json']));
    expect([o.exit, o.code]).toEqual([3, 'SHA256SUMS_SIGNATURE_INVALID']);
    expect(o.text).toMatch(/both must come from the key that made the bundle/);
    const revoked = join(work, 'revoked');
    await writeFile(revoked, `${other.publicKeyLine}\n`);
    const r = await ferry(['bundle', 'verify', dir, '--trust', both, '--revoked', revoked, '--json']);
    const doc = JSON.parse(r.stdout);
    expect([r.code, doc.error.code, doc.error.details.reason]).toEqual([3, 'SHA256SUMS_SIGNATURE_INVALID', 'TRUST_KEY_REVOKED']);
  });

  it('SHA256SUMS removed from a bundle that was made with it: ferry exits 4 (SHA256SUMS_INVALID)', async () => {
    const dir = await copyOf(bundle);
    await rm(join(dir, 'SHA256SUMS'));
    await rm(join(dir, 'SHA256SUMS.sig'));
    const o = await verify(dir);
    expect([o.exit, o.code]).toEqual([4, 'SHA256SUMS_INVALID']);
    expect(o.text).toContain('README.txt');
  });

  it('a bundle from an older ferry (no SHA256SUMS, no README.txt): accepted with the warning SHA256SUMS_MISSING', async () => {
    const dir = await copyOf(bundle);
    await rm(join(dir, 'SHA256SUMS'));
    await rm(join(dir, 'SHA256SUMS.sig'));
    await rm(join(dir, 'README.txt'));
    const m = JSON.parse(await readFile(join(dir, 'ferry.json'), 'utf8')) as { files: { path: string }[] };
    m.files = m.files.filter((f) => f.path !== 'README.txt');
    await writeFile(join(dir, 'ferry.json'), `${JSON.stringify(m, null, 2)}\n`);
    await rm(join(dir, 'ferry.json.sig'));
    await exec('ssh-keygen', ['-q', '-Y', 'sign', '-f', key.path, '-n', 'ferry-bundle', join(dir, 'ferry.json')]);
    const r = await ferry(['bundle', 'verify', dir, '--trust', trust, '--json']);
    expect(r.code, r.stdout).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.result.sha256sums).toBe('absent');
    expect(doc.warnings.map((w: { code: string }) => w.code)).toEqual(['SHA256SUMS_MISSING']);
    const text = await ferry(['bundle', 'verify', dir, '--trust', trust]);
    expect(text.code).toBe(0);
    expect(text.stderr).toMatch(/warning: .*no SHA256SUMS/);
  });
});

describe('an unsigned bundle (create without --sign-key)', () => {
  it('has SHA256SUMS but no signatures; sha256sum -c passes and README.txt says it is unsigned', async () => {
    const files = await filesOf(unsigned);
    expect(files).toContain('SHA256SUMS');
    expect(files).not.toContain('SHA256SUMS.sig');
    expect(files).not.toContain('ferry.json.sig');
    expect((await sha256sumCheck(unsigned)).code).toBe(0);
    const text = await readFile(join(unsigned, 'README.txt'), 'utf8');
    expect(text).toContain('UNSIGNED');
    expect(text).toContain('  sha256sum -c SHA256SUMS');
    const o = await ferry(['bundle', 'verify', unsigned, '--allow-unsigned', '--json']);
    expect(o.code, o.stdout).toBe(0);
    expect(JSON.parse(o.stdout).result.sha256sums).toBe('unsigned');
  });

  it('refuses a SHA256SUMS.sig beside an unsigned manifest: a signature was removed (exit 3)', async () => {
    const dir = await copyOf(unsigned);
    await exec('ssh-keygen', ['-q', '-Y', 'sign', '-f', key.path, '-n', 'ferry-bundle', join(dir, 'SHA256SUMS')]);
    const o = outcome(await ferry(['bundle', 'verify', dir, '--allow-unsigned', '--json']));
    expect([o.exit, o.code]).toEqual([3, 'SHA256SUMS_SIGNATURE_INVALID']);
  });
});
