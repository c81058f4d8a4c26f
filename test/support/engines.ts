// Helpers for tests that drive the real engines started by global-setup.ts, and the built CLI.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, onTestFinished } from 'vitest';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export interface FerryEngines {
  /** DOCKER_HOST of the build-side engine (bundle create). */
  build: string;
  /** DOCKER_HOST of the air-gapped target engine (bundle install). */
  target: string;
  /** Network namespace file of the target engine, for `nsenter --net=...`. */
  targetNetns: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    ferryEngines: FerryEngines;
    /** Demo image references (ferry-demo/web:1.0.0 ...) on the build engine, with their image IDs. */
    demoImages: Record<string, string>;
  }
}

export interface RunResult {
  stdout: string;
  stderr: string;
  /** Exit code; -1 when killed (timeout or signal). */
  code: number;
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  /** Written to stdin, which is then closed. Without it stdin is empty, as under CI. */
  input?: string | Buffer;
  cwd?: string;
  /** Kill the command after this long; below the test timeout so the test reports why. */
  timeoutMs?: number;
  /** Throw (with stderr) on a non-zero exit instead of returning it. */
  check?: boolean;
}

export function run(command: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const { env, input, cwd = ROOT, timeoutMs = 110_000, check = false } = opts;
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { cwd, env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    // A command that exits without reading its stdin makes our write fail with EPIPE; that is
    // the command's business, not a test error.
    child.stdin.on('error', () => {});
    child.stdin.end(input ?? '');
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      let stderr = Buffer.concat(err).toString('utf8');
      if (timedOut) stderr += `\n[killed after ${timeoutMs} ms]`;
      else if (signal) stderr += `\n[killed by ${signal}]`;
      const result: RunResult = { stdout: Buffer.concat(out).toString('utf8'), stderr, code: code ?? -1 };
      if (check && result.code !== 0) {
        reject(new Error(`${command} ${args.join(' ')} exited with ${result.code}:\n${result.stderr}`));
        return;
      }
      resolvePromise(result);
    });
  });
}

function engineHost(variable: 'FERRY_BUILD_DOCKER_HOST' | 'FERRY_TARGET_DOCKER_HOST'): string {
  const host = process.env[variable];
  if (!host) {
    throw new Error(
      `${variable} is not set: run tests through vitest (test/support/global-setup.ts) or ` +
        '`eval "$(bash scripts/engines.sh env)"`',
    );
  }
  return host;
}

export interface DockerClient {
  /** DOCKER_HOST value, e.g. unix:///var/run/docker.sock */
  host: string;
  run(args: readonly string[], opts?: RunOptions): Promise<RunResult>;
}

function dockerClient(host: string): DockerClient {
  return {
    host,
    run: (args, opts = {}) =>
      // DOCKER_CONTEXT unset: a context chosen in the user's config would win over DOCKER_HOST.
      run('docker', args, { ...opts, env: { ...opts.env, DOCKER_HOST: host, DOCKER_CONTEXT: '' } }),
  };
}

/** The build-side engine (where bundles are created). */
export function buildDocker(): DockerClient {
  return dockerClient(engineHost('FERRY_BUILD_DOCKER_HOST'));
}

/** The air-gapped target engine: its own network namespace with only loopback. */
export function targetDocker(): DockerClient {
  return dockerClient(engineHost('FERRY_TARGET_DOCKER_HOST'));
}

/**
 * Runs a command inside the target engine's network namespace, e.g. to reach a port that a
 * container published there: `inTargetNetns('wget', ['-qO-', 'http://127.0.0.1:8081/'])`.
 */
export function inTargetNetns(command: string, args: readonly string[], opts?: RunOptions): Promise<RunResult> {
  const netns = process.env.FERRY_TARGET_NETNS ?? '/var/run/netns/ferry-airgap';
  return run('nsenter', [`--net=${netns}`, command, ...args], opts);
}

let counter = 0;
/**
 * A name no other test (or earlier run) uses, valid as an image repository, tag, compose project
 * and container name: lower case, digits and dashes.
 */
export function uniqueName(prefix: string): string {
  counter += 1;
  const clean = prefix.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '') || 't';
  return `${clean}-${process.pid}-${counter}-${randomBytes(3).toString('hex')}`;
}

/**
 * Runs the BUILT CLI (`node bin/ferry ...`, from dist/ that `npm test`'s pretest builds), from the
 * repository root. NO_COLOR keeps output assertions free of escape codes.
 */
export function ferry(args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return run(process.execPath, [join(ROOT, 'bin', 'ferry'), ...args], {
    ...opts,
    env: { NO_COLOR: '1', ...opts.env },
  });
}

export interface TmpDir {
  path: string;
  cleanup(): Promise<void>;
}

/** A temporary directory with an explicit cleanup, for beforeAll/afterAll. */
export async function makeTmpDir(prefix = 'ferry-test-'): Promise<TmpDir> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return {
    path,
    // FERRY_KEEP_TMP=1 keeps the files of a failing test for a look afterwards.
    cleanup: async () => {
      if (process.env.FERRY_KEEP_TMP !== '1') await rm(path, { recursive: true, force: true });
    },
  };
}

// Directories made outside a test (in beforeAll): removed after the whole file.
const fileScopedDirs: TmpDir[] = [];
try {
  // Registered at import, i.e. while the importing test file is being collected: a file-level hook.
  afterAll(async () => {
    await Promise.all(fileScopedDirs.splice(0).map((dir) => dir.cleanup()));
  });
} catch {
  // Imported outside a vitest run (a script): nothing to hook into.
}

/**
 * A temporary directory removed when the current test finishes, or, when called from
 * beforeAll/describe, when the test file finishes.
 */
export async function tmpDir(prefix = 'ferry-test-'): Promise<string> {
  let dir: TmpDir | undefined;
  let inTest = true;
  try {
    // Registered before the first await, while vitest still knows which test is running.
    onTestFinished(async () => {
      await dir?.cleanup();
    });
  } catch {
    inTest = false;
  }
  dir = await makeTmpDir(prefix);
  if (!inTest) fileScopedDirs.push(dir);
  return dir.path;
}
