/**
 * Switching a host's stack to a release and confirming it came up: shared by install and rollback.
 * Confirm = every service with a health check healthy, the others running, then the smoke test
 * (if the release has one) exits 0.
 */
import type { Engine } from '../adapters/engine.js';
import type { ComposeRunner } from '../adapters/host.js';
import { projectContainers } from '../adapters/engine-containers.js';
import type { ComposeCommand } from '../core/compose-cli.js';
import type { ReleaseRecord } from '../core/state.js';
import type { Reporter } from './reporter.js';

export interface DeployContext {
  engine: Engine;
  runner: ComposeRunner;
  compose: ComposeCommand;
  project: string;
  waitTimeoutMs: number;
  reporter: Reporter;
}

export class DeployFailure extends Error {
  constructor(
    message: string,
    readonly output = '',
  ) {
    super(message);
  }
}

/** Brings the release's services up and waits for them; throws DeployFailure saying what failed. */
export async function deploy(ctx: DeployContext, release: ReleaseRecord, releaseDir: string): Promise<void> {
  const services = release.services.map((s) => s.name).filter((s) => s !== release.smoke);
  ctx.reporter.log(`starting ${ctx.project} ${release.version}: ${services.join(', ')}`);
  const up = await ctx.runner.run(ctx.compose, ctx.project, release.composeFiles, { kind: 'up', services }, {
    cwd: releaseDir,
    timeoutMs: ctx.waitTimeoutMs + 120_000,
  });
  if (up.code !== 0) throw new DeployFailure(`compose up failed (exit ${up.code}): ${lastLines(up.output)}`, up.output);
  await waitHealthy(ctx, release, services);
  if (release.smoke) {
    ctx.reporter.log(`running smoke test ${release.smoke}`);
    const smoke = await ctx.runner.run(ctx.compose, ctx.project, release.composeFiles, { kind: 'run-once', service: release.smoke }, {
      cwd: releaseDir,
      timeoutMs: ctx.waitTimeoutMs,
    });
    if (smoke.code !== 0) throw new DeployFailure(`smoke test ${release.smoke} exited ${smoke.code}: ${lastLines(smoke.output)}`, smoke.output);
  }
}

async function waitHealthy(ctx: DeployContext, release: ReleaseRecord, services: string[]): Promise<void> {
  const deadline = Date.now() + ctx.waitTimeoutMs;
  const expected = new Map(release.services.map((s) => [s.name, s.imageId]));
  const said = new Map<string, string>();
  for (;;) {
    const containers = (await projectContainers(ctx.engine, ctx.project)).filter((c) => !c.oneOff);
    const pending: string[] = [];
    for (const svc of services) {
      const mine = containers.filter((c) => c.service === svc);
      const c = mine.find((x) => x.imageId === expected.get(svc)) ?? mine[0];
      const status = !c ? 'missing' : c.imageId !== expected.get(svc) ? 'old image' : c.state !== 'running' ? c.state : c.health === 'none' ? 'running' : c.health;
      if (said.get(svc) !== status) {
        said.set(svc, status);
        ctx.reporter.log(`  ${svc}: ${status}`);
      }
      if (c && c.imageId === expected.get(svc) && (c.state === 'exited' || c.state === 'dead') && c.exitCode !== 0) {
        throw new DeployFailure(`service ${svc} exited with code ${c.exitCode}`);
      }
      if (c?.health === 'unhealthy') throw new DeployFailure(`service ${svc} is unhealthy`);
      if (status !== 'running' && status !== 'healthy') pending.push(`${svc} (${status})`);
    }
    if (pending.length === 0) return;
    if (Date.now() > deadline) throw new DeployFailure(`timed out after ${Math.round(ctx.waitTimeoutMs / 1000)} s waiting for ${pending.join(', ')}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/** True when every service of the release runs its image and is healthy (or running, without a check). */
export async function isHealthy(engine: Engine, project: string, release: ReleaseRecord): Promise<boolean> {
  const containers = (await projectContainers(engine, project)).filter((c) => !c.oneOff);
  return release.services
    .filter((s) => s.name !== release.smoke)
    .every((s) => containers.some((c) => c.service === s.name && c.imageId === s.imageId && c.state === 'running' && (c.health === 'healthy' || c.health === 'none')));
}

function lastLines(text: string, n = 6): string {
  return text.trim().split('\n').slice(-n).join(' | ');
}
