/**
 * Switching a host's stack to a release and confirming it came up: shared by install and rollback.
 * Confirm = every service with a health check healthy, the others running, then the smoke test
 * (if the release has one) exits 0.
 */
import type { Engine } from '../adapters/engine.js';
import type { ComposeRunner } from '../adapters/host.js';
import { checkRoundMs } from '../adapters/container-health.js';
import { projectContainers } from '../adapters/engine-containers.js';
import { upWaits, type ComposeCommand } from '../core/compose-cli.js';
import type { ReleaseRecord } from '../core/state.js';
import { engineIds } from './pinned-images.js';
import type { Reporter } from './reporter.js';

export interface DeployContext {
  engine: Engine;
  runner: ComposeRunner;
  compose: ComposeCommand;
  project: string;
  waitTimeoutMs: number;
  reporter: Reporter;
  /** Restoring: wait to the deadline for health, never give up earlier because it looks settled. */
  patient?: boolean;
  /** Where phases that users notice record how long they took (blue/green: `switch`, ms). */
  timings?: Record<string, number>;
}

/**
 * What a failed deploy left serving. `failed`: the new release may have replaced the old one (in
 * place): the caller restores. The others come from blue/green, which never touched the old
 * colour before the switch: `kept` (it kept serving), `flipped-back` (the switch was undone),
 * `not-serving` (the previous release does not answer either), `nothing` (there was none).
 */
export type DeployOutcome = 'failed' | 'kept' | 'flipped-back' | 'not-serving' | 'nothing';

export class DeployFailure extends Error {
  constructor(
    message: string,
    readonly output = '',
    readonly outcome: DeployOutcome = 'failed',
  ) {
    super(message);
  }
}

/** Brings the release's services up and waits for them; throws DeployFailure saying what failed. */
export async function deploy(ctx: DeployContext, release: ReleaseRecord, releaseDir: string, hooks: { beforeSmoke?: () => Promise<void> } = {}): Promise<void> {
  const services = release.services.map((s) => s.name).filter((s) => s !== release.smoke);
  if (ctx.compose.version === 1 && (await composeV1CannotRecreate(ctx))) {
    ctx.reporter.warn({
      code: 'COMPOSE_V1_RECREATE',
      message: `Compose v1 cannot recreate containers on Docker 25 and later (it reads the image field ContainerConfig, which those engines no longer have): removing ${ctx.project}'s containers before starting ${release.version}, so the stack is down until they start. Compose v2 (docker compose) has no such gap.`,
    });
    const down = await ctx.runner.run(ctx.compose, ctx.project, release.composeFiles, { kind: 'down' }, { cwd: releaseDir, timeoutMs: ctx.waitTimeoutMs + 120_000 });
    if (down.code !== 0) throw new DeployFailure(`compose down failed (exit ${down.code}): ${lastLines(down.output)}`, down.output);
  }
  ctx.reporter.log(`starting ${ctx.project} ${release.version}: ${services.join(', ')}`);
  // One deadline for both waits: `up --wait` spends part of it.
  const deadline = Date.now() + ctx.waitTimeoutMs;
  const up = await ctx.runner.run(ctx.compose, ctx.project, release.composeFiles, { kind: 'up', services, waitSeconds: ctx.waitTimeoutMs / 1000 }, {
    cwd: releaseDir,
    timeoutMs: ctx.waitTimeoutMs + 120_000,
  });
  if (up.code !== 0) {
    // `up --wait` (2.26) stops at the first unhealthy service naming only its container
    // ("container shop-web-1 is unhealthy"), or at its deadline naming none: say which service.
    // Before the deadline with nothing failed, compose stopped for its own reasons (a port taken...):
    // its words then.
    // 2.26 also stops at an "unhealthy" that is only transient (a check that goes through a
    // service being recreated): when every container runs its release's image, health is still
    // settling, and the wait goes on to the deadline.
    const settling = upWaits(ctx.compose) && (await runsRelease(ctx, release, services));
    if (!settling) {
      if (upWaits(ctx.compose)) {
        await waitHealthy(ctx, release, services, deadline, true).catch((e: unknown) => {
          throw e instanceof DeployFailure ? new DeployFailure(e.message, up.output) : e;
        });
      }
      throw new DeployFailure(`compose up failed (exit ${up.code}): ${lastLines(up.output)}`, up.output);
    }
  }
  // Also after a successful `up --wait`: 2.26 was seen to exit 0 at its --wait-timeout with a
  // service still starting, and it counts a running container without a health check as up even
  // when it exits a second later.
  await waitHealthy(ctx, release, services, deadline);
  await hooks.beforeSmoke?.();
  if (release.smoke) {
    ctx.reporter.log(`running smoke test ${release.smoke}`);
    const smoke = await ctx.runner.run(ctx.compose, ctx.project, release.composeFiles, { kind: 'run-once', service: release.smoke }, {
      cwd: releaseDir,
      timeoutMs: ctx.waitTimeoutMs,
    });
    if (smoke.code !== 0) throw new DeployFailure(`smoke test ${release.smoke} exited ${smoke.code}: ${lastLines(smoke.output)}`, smoke.output);
  }
}

/**
 * once: a single look after a failed `up --wait`, which returns (not waits) while services are pending.
 * project: where the services run when not in the stack's own project (a blue/green colour).
 */
export async function waitHealthy(ctx: DeployContext, release: ReleaseRecord, services: string[], deadline: number, once = false, project = ctx.project): Promise<void> {
  const expected = await expectedImages(ctx.engine, ctx.project, release);
  const said = new Map<string, string>();
  let lastChange = Date.now();
  for (;;) {
    const containers = (await projectContainers(ctx.engine, project)).filter((c) => !c.oneOff);
    const pending: string[] = [];
    const unhealthyIds: string[] = [];
    for (const svc of services) {
      const mine = containers.filter((c) => c.service === svc);
      const c = mine.find((x) => x.imageId === expected.get(svc)) ?? mine[0];
      const status = !c ? 'missing' : c.imageId !== expected.get(svc) ? 'old image' : c.state !== 'running' ? c.state : c.health === 'none' ? 'running' : c.health;
      if (said.get(svc) !== status) {
        said.set(svc, status);
        lastChange = Date.now();
        ctx.reporter.log(`  ${svc}: ${status}`);
      }
      if (c && status === 'unhealthy') unhealthyIds.push(c.id);
      if (c && c.imageId === expected.get(svc) && (c.state === 'exited' || c.state === 'dead') && c.exitCode !== 0) {
        throw new DeployFailure(`service ${svc} exited with code ${c.exitCode}`);
      }
      if (status !== 'running' && status !== 'healthy') pending.push(`${svc} (${status})`);
    }
    if (pending.length === 0) return;
    // "unhealthy" is not final before the deadline: a check that goes through another service
    // (a proxy's check through web) fails while that one is recreated and passes again once it is
    // up. Giving up at the first one made a restore report exit 8 for a release that was serving.
    // A new release need not wait out the deadline, though, once health has settled: everything
    // pending is unhealthy and nothing changed for two rounds of the slowest of those checks (one
    // round would let a check through a service that just came back pass). A restore waits to
    // the deadline: exit 8 must mean the previous release really is not serving.
    const unhealthy = pending.filter((p) => p.endsWith('(unhealthy)'));
    const names = () => unhealthy.map((p) => `service ${p.replace(/ \(unhealthy\)$/, '')}`).join(', ');
    if (!ctx.patient && !once && unhealthy.length > 0 && unhealthy.length === pending.length) {
      let round = 0;
      for (const id of unhealthyIds) round = Math.max(round, await checkRoundMs(ctx.engine, id));
      const quiet = Date.now() - lastChange;
      if (quiet > 2 * round) throw new DeployFailure(`${names()} ${unhealthy.length > 1 ? 'are' : 'is'} unhealthy (settled: no change for ${Math.round(quiet / 1000)} s)`);
    }
    if (Date.now() > deadline || (once && unhealthy.length > 0)) {
      if (unhealthy.length > 0) throw new DeployFailure(`${names()} ${unhealthy.length > 1 ? 'are' : 'is'} unhealthy (still after ${Math.round(ctx.waitTimeoutMs / 1000)} s)`);
      throw new DeployFailure(`timed out after ${Math.round(ctx.waitTimeoutMs / 1000)} s waiting for ${pending.join(', ')}`);
    }
    if (once) return;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/** Whether every service has a running container on the release's image (healthy or not yet). */
export async function runsRelease(ctx: DeployContext, release: ReleaseRecord, services: string[], project = ctx.project): Promise<boolean> {
  const expected = await expectedImages(ctx.engine, ctx.project, release);
  const containers = (await projectContainers(ctx.engine, project)).filter((c) => !c.oneOff);
  return services.every((svc) => containers.some((c) => c.service === svc && c.imageId === expected.get(svc) && c.state === 'running'));
}

/** True when every service of the release runs its image and is healthy (or running, without a check). */
export async function isHealthy(engine: Engine, project: string, release: ReleaseRecord): Promise<boolean> {
  // Blue/green: the front and shared services in the stack's project, the others in the colour's.
  const colour = release.switch === 'blue-green' && release.colour ? [`${project}-${release.colour}`] : [];
  const containers = (await Promise.all([project, ...colour].map((p) => projectContainers(engine, p)))).flat().filter((c) => !c.oneOff);
  const expected = await expectedImages(engine, project, release);
  return release.services
    .filter((s) => s.name !== release.smoke)
    .every((s) => containers.some((c) => c.service === s.name && c.imageId === expected.get(s.name) && c.state === 'running' && (c.health === 'healthy' || c.health === 'none')));
}

/** Service → the image ID its containers must show: the pinned config digest, as this engine names it. */
export async function expectedImages(engine: Engine, project: string, release: ReleaseRecord): Promise<Map<string, string>> {
  const ids = await engineIds(engine, project, [...new Set(release.services.map((s) => s.imageId))]);
  return new Map(release.services.map((s) => [s.name, ids.get(s.imageId) ?? s.imageId]));
}

/** Docker 25 (API 1.44) dropped ContainerConfig from image inspect; Compose v1 crashes recreating without it. */
async function composeV1CannotRecreate(ctx: DeployContext): Promise<boolean> {
  if ((await projectContainers(ctx.engine, ctx.project)).filter((c) => !c.oneOff).length === 0) return false;
  return engineDroppedContainerConfig(ctx.engine);
}

export async function engineDroppedContainerConfig(engine: Engine): Promise<boolean> {
  const [major = 0, minor = 0] = (await engine.info()).apiVersion.split('.').map(Number);
  return major > 1 || (major === 1 && minor >= 44);
}

export function lastLines(text: string, n = 6): string {
  return text.trim().split('\n').slice(-n).join(' | ');
}
