/**
 * The command lines of core/compose-cli run by the real programs against a real engine, for both
 * dialects: Compose v1 (Debian 12's docker-compose 1.29.2) and Compose v2 (the `docker compose`
 * plugin under FERRY_COMPOSE_V2_CONFIG, 2.26.1). Unit tests can only check that the argv is what we
 * meant; this checks that each program accepts it and does what deploy relies on. The command comes
 * from detectCompose, the real adapter, so detection from `--help` is exercised as well.
 *
 * A missing program fails these tests: skipping would hide exactly the breakage they exist for.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { detectAndResolve, detectCompose, runCompose } from '../../src/adapters/compose.js';
import { Engine } from '../../src/adapters/engine.js';
import { localHost } from '../../src/adapters/local-host.js';
import { composeArgs, renderImageOverride, upWaits, type ComposeAction, type ComposeCommand } from '../../src/core/compose-cli.js';
import type { ReleaseRecord } from '../../src/core/state.js';
import { deploy } from '../../src/services/deploy.js';
import { silentReporter } from '../../src/services/reporter.js';
import { buildDocker, tmpDir, uniqueName } from '../support/engines.js';

// The global setup exports it; until every checkout's setup does, the place scripts/docker26.sh installs to.
const COMPOSE_V2_CONFIG = process.env.FERRY_COMPOSE_V2_CONFIG || '/opt/docker26/docker-config';
const IMAGE = 'ferry-demo/base:1.0.0';

const COMPOSE_YAML = `services:
  app:
    image: ${IMAGE}
    command: ["sh", "-c", "touch /tmp/ready; exec sleep 600"]
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 1s
      timeout: 3s
      retries: 3
    # sh as PID 1 ignores SIGTERM: without this every down waits out Docker's 10 s.
    stop_grace_period: 1s
  sick:
    image: ${IMAGE}
    command: ["sleep", "600"]
    healthcheck:
      test: ["CMD", "false"]
      interval: 1s
      timeout: 3s
      retries: 2
    stop_grace_period: 1s
  smoke-ok:
    image: ${IMAGE}
    profiles: ["smoke"]
    # The pause: docker-compose v1's run attaches after the start, and output of a process that
    # prints and exits at once is sometimes lost (seen in CI); the exit code is never.
    command: ["sh", "-c", "sleep 0.5; echo smoke-ok-ran"]
  smoke-fails:
    image: ${IMAGE}
    profiles: ["smoke"]
    command: ["sh", "-c", "sleep 0.5; echo smoke-fails-ran; exit 3"]
`;
const FILES = ['compose.yaml', 'ferry.override.yaml'];

interface Dialect {
  name: string;
  override: string;
  version: 1 | 2;
  dockerConfig?: string;
}

const dialects: Dialect[] = [
  { name: 'Compose v1 (docker-compose)', override: 'docker-compose', version: 1 },
  { name: 'Compose v2 (docker compose)', override: 'docker compose', version: 2, dockerConfig: COMPOSE_V2_CONFIG },
];

describe.each(dialects)('$name runs what composeArgs produces', (dialect) => {
  const docker = buildDocker();
  let dir: string;
  let project: string;
  let sickProject: string;
  let deployProject: string;
  let cmd: ComposeCommand;
  const savedConfig = process.env.DOCKER_CONFIG;

  const compose = (action: ComposeAction, p = project) => runCompose(cmd, p, FILES, action, { cwd: dir, dockerHost: docker.host, timeoutMs: 110_000 });
  const health = async (service: string, p = project) => {
    const r = await docker.run(['ps', '-a', '--filter', `label=com.docker.compose.project=${p}`, '--filter', `label=com.docker.compose.service=${service}`, '--format', '{{.ID}}']);
    const id = r.stdout.trim().split('\n')[0];
    if (!id) return 'missing';
    return (await docker.run(['inspect', '--format', '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}', id])).stdout.trim();
  };

  beforeAll(async () => {
    // runCompose and detectCompose hand process.env to the child: the v2 plugin is found through it.
    if (dialect.dockerConfig) process.env.DOCKER_CONFIG = dialect.dockerConfig;
    else delete process.env.DOCKER_CONFIG;
    dir = await tmpDir('ferry-compose-cli-');
    project = uniqueName(`ferry-cc-v${dialect.version}`);
    sickProject = `${project}-sick`;
    deployProject = `${project}-deploy`;
    await writeFile(join(dir, 'compose.yaml'), COMPOSE_YAML);
    await writeFile(join(dir, 'ferry.override.yaml'), renderImageOverride(['app', 'sick', 'smoke-ok', 'smoke-fails'].map((name) => ({ name, tag: IMAGE }))));
    cmd = await detectCompose(dialect.override);
  });

  afterAll(async () => {
    if (cmd) for (const p of [project, sickProject, deployProject]) await compose({ kind: 'down' }, p).catch(() => undefined);
    if (savedConfig === undefined) delete process.env.DOCKER_CONFIG;
    else process.env.DOCKER_CONFIG = savedConfig;
  });

  it('is found and asked for the project at once by detectAndResolve (what bundle create uses)', async () => {
    const { cmd: found, resolved } = await detectAndResolve(dialect.override, { dir, files: [join(dir, 'compose.yaml')], envFiles: [], profiles: ['smoke'], project });
    expect([found.argv, found.version]).toEqual([cmd.argv, dialect.version]);
    expect(Object.keys((resolved.model as { services: object }).services)).toEqual(expect.arrayContaining(['app', 'sick', 'smoke-ok']));
  });

  it('is detected with the flags that version declares', () => {
    expect(cmd.version).toBe(dialect.version);
    if (dialect.version === 1) {
      expect(cmd.features).toEqual({ upPull: false, upWait: false, upWaitTimeout: false, runPull: false });
    } else {
      // 2.26.1 and later: without these the `up --wait` path below would go untested.
      expect(cmd.features).toMatchObject({ upPull: true, upWait: true, upWaitTimeout: true });
      expect(upWaits(cmd)).toBe(true);
    }
  });

  it('up: starts the service and, where Compose waits, returns only once it is healthy', async () => {
    const action: ComposeAction = { kind: 'up', services: ['app'], waitSeconds: 60 };
    const args = composeArgs(cmd, project, FILES, action);
    if (dialect.version === 2) expect(args).toEqual(expect.arrayContaining(['--pull', 'never', '--wait', '--wait-timeout', '60']));
    else expect(args).not.toContain('--pull');
    const up = await compose(action);
    expect(up.code, `${args.join(' ')}\n${up.output}`).toBe(0);
    if (upWaits(cmd)) {
      expect(await health('app')).toBe('running healthy');
    } else {
      const until = Date.now() + 30_000;
      while ((await health('app')) !== 'running healthy' && Date.now() < until) await new Promise((r) => setTimeout(r, 500));
      expect(await health('app')).toBe('running healthy');
    }
    // Only the named service: the others are neither started nor waited for.
    expect(await health('sick')).toBe('missing');
  });

  it('ps: lists the running service', async () => {
    const ps = await compose({ kind: 'ps' });
    expect(ps.code, ps.output).toBe(0);
    expect(ps.output).toMatch(new RegExp(`${project}[-_]app[-_]1`));
  });

  it('run-once: a smoke test that exits 0 passes, without a TTY, and leaves no container', async () => {
    const args = composeArgs(cmd, project, FILES, { kind: 'run-once', service: 'smoke-ok' });
    const r = await compose({ kind: 'run-once', service: 'smoke-ok' });
    expect(r.code, `${args.join(' ')}\n${r.output}`).toBe(0);
    expect(r.output).toContain('smoke-ok-ran');
    expect(await health('smoke-ok')).toBe('missing');
  });

  it("run-once: a smoke test's exit code comes back", async () => {
    const r = await compose({ kind: 'run-once', service: 'smoke-fails' });
    expect(r.code, r.output).toBe(3);
    expect(r.output).toContain('smoke-fails-ran');
  });

  it('up of an unhealthy service: `up --wait` fails and names the container (deploy names the service); without --wait, up succeeds', async () => {
    const r = await compose({ kind: 'up', services: ['sick'], waitSeconds: 60 }, sickProject);
    if (upWaits(cmd)) {
      expect(r.code).not.toBe(0);
      expect(r.output).toMatch(new RegExp(`container ${sickProject}-sick-1 is unhealthy`));
      expect(await health('sick', sickProject)).toBe('running unhealthy');
    } else {
      expect(r.code, r.output).toBe(0);
    }
  });

  it("deploy still names the failing service when `up --wait` stops at it", async () => {
    const imageId = (await docker.run(['image', 'inspect', '--format', '{{.Id}}', IMAGE])).stdout.trim();
    const release = { version: '1', services: ['app', 'sick'].map((name) => ({ name, imageId })), composeFiles: FILES, smoke: null } as unknown as ReleaseRecord;
    const engine = new Engine(docker.host);
    const ctx = { engine, runner: localHost(engine).compose, compose: cmd, project: deployProject, waitTimeoutMs: 60_000, reporter: silentReporter };
    // Named, with why ferry stopped waiting (health settled, or the deadline).
    await expect(deploy(ctx, release, dir)).rejects.toThrow(/^service sick is unhealthy( \(settled: [^)]*\))?$/);
  });

  it('down: removes the stack', async () => {
    for (const p of [project, sickProject, deployProject]) {
      const r = await compose({ kind: 'down' }, p);
      expect(r.code, r.output).toBe(0);
    }
    expect(await health('app')).toBe('missing');
    expect(await health('sick', sickProject)).toBe('missing');
  });
});

describe('a standalone docker-compose that is v2', () => {
  it('detectAndResolve guesses v1 for a docker-compose binary, finds v2, and asks again with v2 arguments', async () => {
    const dir = await tmpDir('ferry-compose-cli-');
    await writeFile(join(dir, 'compose.yaml'), COMPOSE_YAML);
    const binary = join(COMPOSE_V2_CONFIG, 'cli-plugins', 'docker-compose');
    const { cmd, resolved } = await detectAndResolve(binary, { dir, files: [join(dir, 'compose.yaml')], envFiles: [], profiles: [], project: uniqueName('ferry-cc-standalone') });
    expect([cmd.argv, cmd.version]).toEqual([[binary], 2]);
    // v2's arguments (--profile '*'): the services of every profile are in the model.
    expect(Object.keys((resolved.model as { services: object }).services).sort()).toEqual(['app', 'sick', 'smoke-fails', 'smoke-ok']);
  });
});
