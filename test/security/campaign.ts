/**
 * Shared by the attack (test/security) and fault (test/faults) campaigns: fixtures made with the
 * real tools, before/after snapshots of what an attack or a fault must not change, and the
 * figures each campaign reports (stderr, and .bench/campaign-figures.json for quoting).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cp, lstat, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'vitest';
import { buildDocker, ferry, ROOT, run, targetDocker, type RunResult } from '../support/engines.js';

const exec = promisify(execFile);

/** FERRY_CAMPAIGN=long: the long variants (more kill points, more fuzzing, every byte position class). */
export const LONG = process.env.FERRY_CAMPAIGN === 'long';

// ---------------------------------------------------------------------------------------------
// Figures

export interface Figure {
  /** Cases generated and run. */
  cases: number;
  /** Cases that ended as the campaign requires (refused, converged, ...). */
  held: number;
  /** What "held" means for this class, e.g. "refused" or "converged". */
  verb: string;
  /** Cases that did not hold: each a finding, described. */
  findings?: string[];
  /** Anything else worth quoting (kill points reached, per-exit-code counts, ...). */
  extra?: Record<string, unknown>;
}

const FIGURES = join(ROOT, '.bench', 'campaign-figures.json');

/** One line to stderr, and the figure merged into .bench/campaign-figures.json under `name`. */
export async function recordFigure(name: string, figure: Figure): Promise<void> {
  const findings = figure.findings?.length ?? 0;
  process.stderr.write(`campaign ${name}: ${figure.cases} cases, ${figure.held} ${figure.verb}${findings ? `, ${findings} FINDINGS` : ''}${figure.extra ? ` ${JSON.stringify(figure.extra)}` : ''}\n`);
  await mkdir(join(ROOT, '.bench'), { recursive: true });
  let all: Record<string, unknown> = {};
  try {
    all = JSON.parse(await readFile(FIGURES, 'utf8')) as Record<string, unknown>;
  } catch {
    all = {};
  }
  all[name] = { ...figure, mode: LONG ? 'long' : 'default', at: new Date().toISOString() };
  const tmp = `${FIGURES}.tmp-${process.pid}`;
  await writeFile(tmp, `${JSON.stringify(all, null, 2)}\n`);
  await rename(tmp, FIGURES);
}

// ---------------------------------------------------------------------------------------------
// Keys and signatures (ssh-keygen: an independent implementation, and much faster to start)

export interface Key {
  /** Private key file. */
  path: string;
  /** "ssh-ed25519 AAAA… comment" */
  publicKeyLine: string;
}

export async function makeKey(dir: string, name: string): Promise<Key> {
  const path = join(dir, name);
  await exec('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', path]);
  return { path, publicKeyLine: (await readFile(`${path}.pub`, 'utf8')).trim() };
}

export function signerLine(key: Key, options = 'namespaces="ferry-bundle"'): string {
  return `ferry ${options ? `${options} ` : ''}${key.publicKeyLine}`;
}

/**
 * Signs `<bundle>/ferry.json` again (as the build server would), replacing the signature, and
 * re-makes the SHA256SUMS pair that lists it, as create would have: a key holder's bundle is
 * consistent, so what a case tests is the manifest, not a stale SHA256SUMS.
 */
export async function sign(bundle: string, key: Key, namespace = 'ferry-bundle'): Promise<void> {
  await rm(join(bundle, 'ferry.json.sig'), { force: true });
  await exec('ssh-keygen', ['-q', '-Y', 'sign', '-f', key.path, '-n', namespace, join(bundle, 'ferry.json')]);
  await remakeSums(bundle, key, namespace);
}

/** An unsigned bundle as create makes one without a key: no ferry.json.sig, SHA256SUMS unsigned. */
export async function unsign(bundle: string): Promise<void> {
  await rm(join(bundle, 'ferry.json.sig'), { force: true });
  await remakeSums(bundle, null);
}

const SUMS_PAIR = new Set(['SHA256SUMS', 'SHA256SUMS.sig']);

/** SHA256SUMS from the regular files on disk (what `sha256sum` would print, sorted), signed with `key` if given. */
export async function remakeSums(bundle: string, key: Key | null, namespace = 'ferry-bundle'): Promise<void> {
  if (!(await lstat(join(bundle, 'SHA256SUMS')).catch(() => null))) return; // a bundle from before SHA256SUMS
  await rm(join(bundle, 'SHA256SUMS.sig'), { force: true });
  const paths: string[] = [];
  for (const e of await readdir(bundle, { recursive: true, withFileTypes: true })) {
    const rel = join(e.parentPath ?? e.path, e.name).slice(bundle.length + 1);
    if (e.isFile() && !SUMS_PAIR.has(rel)) paths.push(rel);
  }
  paths.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const lines = await Promise.all(paths.map(async (p) => `${createHash('sha256').update(await readFile(join(bundle, p))).digest('hex')}  ${p}\n`));
  await writeFile(join(bundle, 'SHA256SUMS'), lines.join(''));
  if (key) await exec('ssh-keygen', ['-q', '-Y', 'sign', '-f', key.path, '-n', namespace, join(bundle, 'SHA256SUMS')]);
}

/** Rewrites the manifest with `edit` and signs it with `key`: a hostile manifest from a trusted signer. */
export async function resignedManifest(bundle: string, key: Key, edit: (text: string) => string | Buffer): Promise<void> {
  const text = await readFile(join(bundle, 'ferry.json'), 'utf8');
  await writeFile(join(bundle, 'ferry.json'), edit(text));
  await sign(bundle, key);
}

// ---------------------------------------------------------------------------------------------
// Definitions and bundles from the demo stack

/** Builds the demo images under a version of our own, so their image IDs exist nowhere else. */
export async function buildDemoImages(version: string): Promise<Record<string, string>> {
  const r = await run('bash', [join(ROOT, 'scripts/build-demo-images.sh'), '--version', version], {
    env: { DOCKER_HOST: process.env.FERRY_BUILD_DOCKER_HOST },
    timeoutMs: 300_000,
    check: true,
  });
  const ids: Record<string, string> = {};
  for (const line of r.stdout.split('\n')) {
    const [ref, id] = line.trim().split(/\s+/);
    if (ref && id) ids[ref] = id;
  }
  return ids;
}

/** A random 150 MB layer on the demo base: loading it takes long enough to be interrupted. */
export async function buildBigImage(work: string, tag: string, megabytes = 150): Promise<string> {
  const ctx = join(work, `big-${tag.replace(/[^a-z0-9]/g, '_')}`);
  await mkdir(ctx, { recursive: true });
  // The unique line keeps the build cache (and other tests' big images) from giving us a layer
  // that the target engine may already hold.
  await writeFile(join(ctx, 'Dockerfile'), `FROM ferry-demo/base:1.0.0\nRUN head -c ${megabytes * 1_000_000} /dev/urandom > /blob && echo ${tag} >> /blob\n`);
  const r = await buildDocker().run(['build', '-q', '-t', tag, ctx], { env: { DOCKER_BUILDKIT: '0' }, timeoutMs: 300_000 });
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim();
}

export interface DemoDefinition {
  stack: string;
  version: string;
  /** Tag of the demo images to use (a buildDemoImages version, or 1.0.0). */
  images: string;
  /** Port web publishes on edge-1. */
  port: number;
  /** Extra images carried by the bundle (ferry.yaml `images:`). */
  extraImages?: string[];
  /** Appended to compose.yaml's text, e.g. to make two definitions differ. */
  composeSuffix?: string;
  /**
   * The demo's shell entrypoints ignore SIGTERM, so every container switch waits out Docker's
   * 10 s stop timeout; a 1 s grace period keeps campaigns that switch often within budget.
   */
  fastStop?: boolean;
}

export async function demoDefinition(dir: string, d: DemoDefinition): Promise<string> {
  await cp(join(ROOT, 'bundles/demo'), dir, { recursive: true, filter: (src) => !src.includes('/images') });
  const edge1 = join(dir, 'hosts/edge-1.yaml');
  await writeFile(edge1, (await readFile(edge1, 'utf8')).replace('"8081:8080"', `"${d.port}:8080"`));
  const f = join(dir, 'ferry.yaml');
  let y = (await readFile(f, 'utf8')).replace(/^name: .*$/m, `name: ${d.stack}`).replace(/^version: .*$/m, `version: ${d.version}`);
  if (d.extraImages) y = y.replace(/^images: .*$/m, `images: [${d.extraImages.join(', ')}]`);
  await writeFile(f, y);
  const compose = join(dir, 'compose.yaml');
  let text = (await readFile(compose, 'utf8')).replace(/ferry-demo\/(web|worker|smoke):1\.0\.0/g, (_m, svc: string) => `ferry-demo/${svc}:${d.images}`);
  if (d.fastStop) text = text.replace(/^( +)restart: unless-stopped$/gm, '$1restart: unless-stopped\n$1stop_grace_period: 1s');
  await writeFile(compose, text + (d.composeSuffix ?? ''));
  return dir;
}

export async function createBundle(def: string, out: string, key: Key, args: string[] = []): Promise<string> {
  const r = await ferry(['bundle', 'create', def, '--out', out, '--sign-key', key.path, ...args], { timeoutMs: 300_000 });
  expect(r.code, r.stderr).toBe(0);
  return out;
}

export interface BundleFile {
  path: string;
  size: number;
  sha256: string;
}

export interface ManifestView {
  name: string;
  version: string;
  sequence: number;
  files: BundleFile[];
  images: { id: string; refs: string[]; layers: { blob: { path?: string; parts?: BundleFile[] } | null }[] }[];
  compose: { file: string; services: { name: string; imageId: string }[] };
}

export async function readManifest(bundle: string): Promise<ManifestView> {
  return JSON.parse(await readFile(join(bundle, 'ferry.json'), 'utf8')) as ManifestView;
}

export async function copyBundle(bundle: string, dest: string): Promise<string> {
  await cp(bundle, dest, { recursive: true });
  return dest;
}

// ---------------------------------------------------------------------------------------------
// Results of the CLI

export interface Outcome {
  exit: number;
  code: string | null;
  /** Message and details: where the offending file must be named. */
  text: string;
  warnings: { code: string; subject?: string; message: string }[];
}

/** Reads a `--json` run: exit code, error code, and the text that must name the file at fault. */
export function outcome(r: RunResult): Outcome {
  let doc: { ok?: boolean; error?: { code: string; message: string; details: unknown }; warnings?: Outcome['warnings'] } = {};
  try {
    doc = JSON.parse(r.stdout) as typeof doc;
  } catch {
    doc = {};
  }
  return {
    exit: r.code,
    code: doc.error?.code ?? null,
    text: doc.error ? `${doc.error.message} ${JSON.stringify(doc.error.details)}` : r.stderr,
    warnings: doc.warnings ?? [],
  };
}

/** A crash is exit 1 (a bug) or a kill; a refusal is one of the documented codes. */
export function crashed(o: { exit: number }): boolean {
  return o.exit === 1 || o.exit < 0;
}

// ---------------------------------------------------------------------------------------------
// What an attack or a fault must not change

/**
 * The part of an engine a test owns: images tagged for its stack or with its image IDs, and its
 * compose project's containers with when they started (a restart would show). Other tests'
 * images and containers are left out, so a shared engine does not make the comparison flaky.
 */
export async function engineSnapshot(stack: string, imageIds: readonly string[], docker: { run(args: readonly string[]): Promise<RunResult> } = targetDocker()): Promise<string> {
  const images = await docker.run(['images', '--no-trunc', '--format', '{{.ID}} {{.Repository}}:{{.Tag}}']);
  expect(images.code, images.stderr).toBe(0);
  const ids = new Set(imageIds);
  const mine = images.stdout
    .split('\n')
    .filter((l) => l.trim() !== '')
    .filter((l) => ids.has(l.split(' ')[0]!) || l.includes(`ferry.local/${stack}:`))
    .sort();
  const ps = await docker.run(['ps', '-aq', '--no-trunc', '--filter', `label=com.docker.compose.project=${stack}`]);
  const containerIds = ps.stdout.split('\n').filter(Boolean);
  let containers: string[] = [];
  if (containerIds.length > 0) {
    const inspect = await docker.run(['inspect', '--format', '{{.Id}} {{.Image}} {{.State.Status}} {{.State.StartedAt}} {{.RestartCount}}', ...containerIds]);
    containers = inspect.stdout.split('\n').filter(Boolean).sort();
  }
  return `images:\n${mine.join('\n')}\ncontainers:\n${containers.join('\n')}`;
}

/** Every entry of a directory tree with its type, size and, for files, sha256 (the lock excluded: it comes and goes). */
export async function treeSnapshot(root: string): Promise<string> {
  const out: string[] = [];
  const walk = async (dir: string, rel: string): Promise<void> => {
    let names: string[];
    try {
      names = (await readdir(dir)).sort();
    } catch {
      return;
    }
    for (const name of names) {
      const path = rel ? `${rel}/${name}` : name;
      const full = join(dir, name);
      const st = await lstat(full);
      if (st.isDirectory()) {
        out.push(`d ${path}`);
        await walk(full, path);
      } else if (st.isFile()) {
        out.push(`f ${path} ${st.size} ${createHash('sha256').update(await readFile(full)).digest('hex').slice(0, 16)}`);
      } else {
        out.push(`? ${path}`);
      }
    }
  };
  await walk(root, '');
  return out.join('\n');
}

/** Containers and images a stack left on the target engine, removed by label and tag. */
export async function removeStack(stack: string): Promise<void> {
  const docker = targetDocker();
  const ids = (await docker.run(['ps', '-aq', '--filter', `label=com.docker.compose.project=${stack}`])).stdout.split('\n').filter(Boolean);
  if (ids.length) await docker.run(['rm', '-f', ...ids]);
  const nets = (await docker.run(['network', 'ls', '-q', '--filter', `label=com.docker.compose.project=${stack}`])).stdout.split('\n').filter(Boolean);
  if (nets.length) await docker.run(['network', 'rm', ...nets]);
  const images = (await docker.run(['images', '-q', `ferry.local/${stack}`])).stdout.split('\n').filter(Boolean);
  if (images.length) await docker.run(['rmi', '-f', ...new Set(images)]);
}

/** Tags a campaign built on the build engine, removed afterwards: a 150 MB layer per run adds up. */
export async function removeBuildImages(refs: readonly string[]): Promise<void> {
  if (refs.length) await buildDocker().run(['rmi', ...refs]);
}

