// Runs once per `vitest run`, in the main process, before any test file is loaded.
// Engines are real (Docker 20.10 here): if they cannot be started the run must fail, never skip.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';
// Type-only: engines.ts registers vitest hooks when it runs, which must not happen here.
import type { FerryEngines } from './engines.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** Runs a repo script; stderr goes straight to the terminal so a failing engine start is visible. */
function script(args: string[], env: NodeJS.ProcessEnv = process.env): string {
  const result = spawnSync('bash', args, {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
    encoding: 'utf8',
    maxBuffer: 16 * 1024 * 1024,
  });
  if (result.error) throw result.error;
  if (result.status !== 0) {
    throw new Error(`bash ${args.join(' ')} exited with ${result.status ?? result.signal}`);
  }
  return result.stdout;
}

function parseExports(text: string): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const match = /^export ([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (match) vars[match[1]!] = match[2]!;
  }
  return vars;
}

export default function setup(project: TestProject): () => void {
  // The names of the engines THIS run started: only those are stopped at the end, so a developer's
  // engines (or ones left up on purpose by `engines.sh up`) survive `npm test`.
  const started = script(['scripts/engines.sh', 'up'])
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line === 'build' || line === 'airgap');

  // Today's engines beside it: Docker 26 on the classic store (d26) and on the containerd image
  // store (d26c), each in its own network namespace; also where Compose v2 comes from.
  let started26: string[] = [];
  let removeCache = (): void => {};
  const teardown = (): void => {
    try {
      removeCache();
    } catch {
      // A leftover temp directory must not fail the run.
    }
    try {
      if (started26.length > 0) script(['scripts/engines26.sh', 'down', ...started26]);
    } finally {
      if (started.length > 0) script(['scripts/engines.sh', 'down', ...started]);
    }
  };

  try {
    // Each run starts from an empty air-gapped host, as CI does: stacks, ports and images that an
    // earlier run (or the demo) left on a reused engine would otherwise change what tests see.
    // FERRY_TEST_KEEP_TARGET=1 keeps the engine's contents, e.g. to look at them after a run.
    if (!started.includes('airgap') && process.env.FERRY_TEST_KEEP_TARGET !== '1') {
      script(['scripts/engines.sh', 'reset', 'airgap']);
    }
    started26 = script(['scripts/engines26.sh', 'up'])
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line === 'd26' || line === 'd26c');
    const reused26 = ['d26', 'd26c'].filter((e) => !started26.includes(e));
    if (reused26.length > 0 && process.env.FERRY_TEST_KEEP_TARGET !== '1') script(['scripts/engines26.sh', 'reset', ...reused26]);
    const vars = { ...parseExports(script(['scripts/engines.sh', 'env'])), ...parseExports(script(['scripts/engines26.sh', 'env'])) };
    for (const name of ['FERRY_D26_DOCKER_HOST', 'FERRY_D26_NETNS', 'FERRY_D26C_DOCKER_HOST', 'FERRY_D26C_NETNS', 'FERRY_COMPOSE_V2_CONFIG']) {
      if (!vars[name]) throw new Error(`engines26.sh env printed no ${name}`);
      process.env[name] = vars[name];
    }
    const engines: FerryEngines = {
      build: vars.FERRY_BUILD_DOCKER_HOST ?? '',
      target: vars.FERRY_TARGET_DOCKER_HOST ?? '',
      targetNetns: vars.FERRY_TARGET_NETNS ?? '',
    };
    if (!engines.build || !engines.target) throw new Error('engines.sh env printed no DOCKER_HOSTs');
    // Forks are spawned after this returns and inherit process.env, so plain env vars reach the
    // tests (and any CLI they spawn) without vitest's inject().
    process.env.FERRY_BUILD_DOCKER_HOST = engines.build;
    process.env.FERRY_TARGET_DOCKER_HOST = engines.target;
    process.env.FERRY_TARGET_NETNS = engines.targetNetns;
    // bundle create uses a layer cache by default: one per run, so that no test depends on what an
    // earlier run (or the developer's ~/.cache/ferry) left there, and the user's cache stays untouched.
    const cacheHome = mkdtempSync(resolve(tmpdir(), 'ferry-test-cache-'));
    process.env.XDG_CACHE_HOME = cacheHome;
    removeCache = () => rmSync(cacheHome, { recursive: true, force: true });
    project.provide('ferryEngines', engines);

    const built = script(['scripts/build-demo-images.sh'], { ...process.env, DOCKER_HOST: engines.build });
    const demoImages: Record<string, string> = {};
    for (const line of built.split('\n')) {
      const [ref, id] = line.trim().split(/\s+/);
      if (ref && id) demoImages[ref] = id;
    }
    project.provide('demoImages', demoImages);
  } catch (error) {
    teardown();
    throw error;
  }
  return teardown;
}
