/**
 * Blue/green on one host: the new release starts beside the live one as its own compose project
 * (STACK-blue or STACK-green), is health-checked and smoke-tested there while the front still
 * sends every request to the live colour, and only then takes the service names on the front's
 * networks. Until that switch nothing users reach has changed, so a failure before it needs no
 * restore: the new colour is removed and the old one kept serving throughout.
 *
 *   1. stable project (front + shared) brought to this release, in place, without waiting: a
 *      front whose check goes through a colour cannot be healthy before the switch on a first install
 *   2. the new colour, fresh (down first) unless it already holds this release (a rollback);
 *      joined, without aliases, to the stable networks so it reaches the shared services
 *   3. health and smoke test against the new colour only
 *   4. switch: aliases to the new colour first, then away from the old, so a name never resolves
 *      to nothing; the front's own check, run at once, confirms it answers through the new
 *      colour, else the switch is undone while the old colour still runs
 *   5. drain, then the old colour is stopped (kept for rollback) and in-place leftovers removed
 */
import { projectContainers, type ProjectContainer } from '../adapters/engine-containers.js';
import { posix } from 'node:path';
import { confirmHealth } from '../adapters/container-health.js';
import { attach, composeWorkingDir, containerNetworks, detach, removeContainer, removeProjectNetworks, startContainer, stopContainer } from '../adapters/switch-network.js';
import { colourProject, colouredServices, COLOURS, nextColour, type Colour, type SwitchSpec } from '../core/compose-colours.js';
import type { ComposeAction } from '../core/compose-cli.js';
import type { ReleaseRecord } from '../core/state.js';
import { HostPreconditionError } from '../errors.js';
import { deploy, DeployFailure, engineDroppedContainerConfig, lastLines, runsRelease, waitHealthy, expectedImages, type DeployContext } from './deploy.js';
import { upWaits } from '../core/compose-cli.js';

/** What the engine-only steps need: no compose (a rollback by alias flip runs none). */
export type FlipContext = Omit<DeployContext, 'compose' | 'runner'>;

export function switchSpecOf(r: ReleaseRecord): SwitchSpec {
  return r.switch === 'blue-green' ? { mode: 'blue-green', front: r.front ?? [], shared: r.shared ?? [] } : { mode: 'in-place' };
}

const names = (r: ReleaseRecord) => r.services.map((s) => s.name);
export const colouredOf = (r: ReleaseRecord) => colouredServices(switchSpecOf(r), names(r), r.smoke);
export const stableOf = (r: ReleaseRecord) => [...(r.front ?? []), ...(r.shared ?? [])];
export const colourFile = (colour: Colour) => `ferry.${colour}.yaml`;

/**
 * Deploys a blue/green release; on success sets release.colour. Throws DeployFailure whose outcome
 * says what serves afterwards, or HostPreconditionError before touching anything.
 */
export async function deployBlueGreen(ctx: DeployContext, release: ReleaseRecord, releaseDir: string, current: ReleaseRecord | null, drainMs: number): Promise<void> {
  await requireComposeForBlueGreen(ctx, stableOf(release));
  const run = await nextColourRun(ctx, release, releaseDir, current);
  const { stack, stable, coloured, project, colour } = run;

  // 1. the stable project
  const expected = await warnStableInPlace(run);
  ctx.reporter.log(`starting ${stack} ${release.version} in blue/green: front and shared (${stable.join(', ')}) in ${stack}, the rest (${coloured.join(', ')}) as ${project}`);
  try {
    await composeOrFail(run, stack, release.composeFiles, { kind: 'up', services: stable, noDeps: true }, `compose up of ${stable.join(', ')}`);
    // 2. the new colour
    const deadline = await startColour(run, expected);
    // 3. health and smoke, against the new colour only
    await testColour(run, deadline);
  } catch (e) {
    return beforeSwitch(run, e);
  }

  // 4. switch
  const frontNets = await networksOf(ctx, (await projectContainers(ctx.engine, stack)).filter((c) => (release.front ?? []).includes(c.service) && c.state === 'running'));
  const fresh = await colourContainers(ctx, project, coloured);
  const old = await oldColoured(ctx, stack, colour, coloured);
  const moved: Switch = { frontNets, fresh, old };
  await switchAliases(ctx, release, colour, moved);
  await confirmSwitch(run, moved);
  release.colour = colour;

  // 5. drain, then stop the old colour (kept, for rollback) and remove in-place leftovers
  await drain(ctx, old, drainMs);
  await retireOld(run, moved);
}

/** One blue/green deploy from step to step: the release, the colour it goes to, how compose reaches it. */
interface ColourRun {
  ctx: DeployContext;
  release: ReleaseRecord;
  releaseDir: string;
  current: ReleaseRecord | null;
  stack: string;
  coloured: string[];
  stable: string[];
  colour: Colour;
  project: string;
  colourFiles: string[];
  opts: { cwd: string; timeoutMs: number };
}

/** A switch of the service names on the front's networks: to `fresh`, away from `old`. */
interface Switch {
  frontNets: string[];
  fresh: Placed[];
  old: Placed[];
}

async function requireComposeForBlueGreen(ctx: DeployContext, stable: string[]): Promise<void> {
  if (ctx.compose.version === 1 && (await engineDroppedContainerConfig(ctx.engine))) {
    throw new HostPreconditionError('BLUE_GREEN_UNSUPPORTED', `blue/green with Compose v1 on Docker 25 and later is not possible: Compose v1 crashes updating the front (${stable.join(', ')}) in place there (KeyError 'ContainerConfig'), which would drop every request. Nothing was switched.`, {
      hint: 'Use Compose v2 on this host (--compose-cmd "docker compose"), or "switch: in-place" in x-ferry.',
    });
  }
}

async function nextColourRun(ctx: DeployContext, release: ReleaseRecord, releaseDir: string, current: ReleaseRecord | null): Promise<ColourRun> {
  const stack = ctx.project;
  const coloured = colouredOf(release);
  // The engine says which colour is live (a restore may have moved it without a record saved);
  // the record decides only when both or neither run.
  const running: Colour[] = [];
  for (const c of COLOURS) if ((await colourContainers(ctx, colourProject(stack, c), coloured)).length > 0) running.push(c);
  const liveColour = running.length === 1 ? running[0] : current?.switch === 'blue-green' ? (current.colour ?? null) : null;
  const colour = nextColour(liveColour);
  return {
    ctx,
    release,
    releaseDir,
    current,
    stack,
    coloured,
    stable: stableOf(release),
    colour,
    project: colourProject(stack, colour),
    colourFiles: [...release.composeFiles, colourFile(colour)],
    opts: { cwd: releaseDir, timeoutMs: ctx.waitTimeoutMs + 120_000 },
  };
}

async function composeOrFail(run: ColourRun, proj: string, files: string[], action: ComposeAction, what: string) {
  const r = await run.ctx.runner.run(run.ctx.compose, proj, files, action, run.opts);
  if (r.code !== 0) throw new DeployFailure(`${what} failed (exit ${r.code}): ${lastLines(r.output)}`, r.output);
  return r;
}

/** Front and shared services with a new image are updated in place: said before it happens. Returns the release's images by service. */
async function warnStableInPlace(run: ColourRun): Promise<Map<string, string>> {
  const { ctx, stack, stable, release } = run;
  const stableBefore = (await projectContainers(ctx.engine, stack)).filter((c) => !c.oneOff && stable.includes(c.service));
  const expected = await expectedImages(ctx.engine, stack, release);
  const changed = stable.filter((s) => stableBefore.some((c) => c.service === s && c.imageId !== expected.get(s)));
  if (changed.length > 0) {
    ctx.reporter.warn({
      code: 'BLUE_GREEN_IN_PLACE',
      subject: changed.join(', '),
      message: `${changed.join(', ')} ${changed.length > 1 ? 'are front or shared services' : 'is a front or shared service'} with a new image: updated in place, before the new colour is tested (only the other services run twice)`,
    });
  }
  return expected;
}

/** Step 2: the new colour up, without the service names. Returns the deadline for its health. */
async function startColour(run: ColourRun, expected: ReadonlyMap<string, string>): Promise<number> {
  const { ctx, release, stack, stable, coloured, project, colourFiles } = run;
  // A colour that holds this release (stopped after an earlier switch) is started as it is: a
  // rollback then costs a start, not a create.
  const stale = (await projectContainers(ctx.engine, project)).filter((c) => !c.oneOff);
  if (stale.length > 0 && !stale.every((c) => coloured.includes(c.service) && c.imageId === expected.get(c.service))) {
    await composeOrFail(run, project, colourFiles, { kind: 'down' }, `removing the old ${project}`);
  }
  const deadline = Date.now() + ctx.waitTimeoutMs;
  const up = await ctx.runner.run(ctx.compose, project, colourFiles, { kind: 'up', services: coloured, noDeps: true, waitSeconds: ctx.waitTimeoutMs / 1000 }, run.opts);
  if (up.code !== 0 && !(upWaits(ctx.compose) && (await runsRelease(ctx, release, coloured, project)))) {
    throw new DeployFailure(`compose up of ${project} failed (exit ${up.code}): ${lastLines(up.output)}`, up.output);
  }
  const stableNets = await networksOf(ctx, (await projectContainers(ctx.engine, stack)).filter((c) => stable.includes(c.service) && c.state === 'running'));
  const fresh = await colourContainers(ctx, project, coloured);
  if ((release.shared ?? []).length > 0) {
    // Reachable by container name only: the service names stay with the live colour.
    for (const net of stableNets) for (const c of fresh) if (!(await containerNetworks(ctx.engine, c.id)).has(net)) await attach(ctx.engine, net, c.id, []);
  }
  return deadline;
}

async function testColour(run: ColourRun, deadline: number): Promise<void> {
  const { ctx, release, project } = run;
  await waitHealthy(ctx, release, run.coloured, deadline, false, project);
  if (release.smoke) {
    ctx.reporter.log(`running smoke test ${release.smoke} against ${project}`);
    const smoke = await ctx.runner.run(ctx.compose, project, run.colourFiles, { kind: 'run-once', service: release.smoke }, { cwd: run.releaseDir, timeoutMs: ctx.waitTimeoutMs });
    if (smoke.code !== 0) throw new DeployFailure(`smoke test ${release.smoke} exited ${smoke.code}: ${lastLines(smoke.output)}`, smoke.output);
  }
}

/** What serves when a step before the switch fails: the old colour, untouched, or nothing. */
async function beforeSwitch(run: ColourRun, e: unknown): Promise<never> {
  const { ctx, current, release, opts } = run;
  if (!(e instanceof DeployFailure)) throw e;
  ctx.reporter.log(`${run.colour} failed before the switch: removing it; the live release keeps serving`);
  await ctx.runner.run(ctx.compose, run.project, run.colourFiles, { kind: 'down' }, opts).catch(() => undefined);
  await removeProjectNetworks(ctx.engine, run.project).catch(() => undefined);
  if (!current) {
    await ctx.runner.run(ctx.compose, run.stack, release.composeFiles, { kind: 'down' }, opts).catch(() => undefined);
    throw new DeployFailure(e.message, e.output, 'nothing');
  }
  throw new DeployFailure(e.message, e.output, (await serves(ctx, current, release)) ? 'kept' : 'not-serving');
}

/** The front's own check through the new colour, then the stable services; else the switch is undone. */
async function confirmSwitch(run: ColourRun, { frontNets, fresh, old }: Switch): Promise<void> {
  const { ctx, release, colour, current } = run;
  try {
    const deadline = Date.now() + ctx.waitTimeoutMs;
    // With no old colour to go back to (a first install) there is nothing to gain from judging early.
    await confirmFront(ctx, release, colour, deadline, old.length === 0);
    await waitHealthy(ctx, release, run.stable, deadline);
  } catch (e) {
    if (!(e instanceof DeployFailure)) throw e;
    ctx.reporter.log(`the front is not healthy on ${colour}: switching back`);
    await moveAliases(ctx, frontNets, old, fresh, false);
    await ctx.runner.run(ctx.compose, run.project, run.colourFiles, { kind: 'down' }, run.opts).catch(() => undefined);
    throw new DeployFailure(e.message, e.output, current && (await serves(ctx, current, release)) ? 'flipped-back' : 'not-serving');
  }
}

/** Step 5 after the drain: the old colour stopped (kept, for rollback), in-place leftovers removed. */
async function retireOld(run: ColourRun, { frontNets, old }: Switch): Promise<void> {
  const { ctx, release, stack, colour, opts } = run;
  // Stopped colours keep only their own networks, as Compose made them: a rollback starts them as they are.
  const stableNets = await networksOf(ctx, (await projectContainers(ctx.engine, stack)).filter((c) => run.stable.includes(c.service)));
  for (const c of old.filter((x) => x.project !== stack)) for (const net of new Set([...frontNets, ...stableNets])) await detach(ctx.engine, net, c.id);
  const other = COLOURS.find((x) => x !== colour)!;
  const otherProject = colourProject(stack, other);
  if (old.some((c) => c.project === otherProject)) {
    const r = await ctx.runner.run(ctx.compose, otherProject, [...release.composeFiles, colourFile(other)], { kind: 'stop', services: [] }, opts);
    if (r.code !== 0) ctx.reporter.log(`stopping ${otherProject} failed (exit ${r.code}): ${lastLines(r.output)}`);
  }
  const leftovers = [...new Set(old.filter((c) => c.project === stack).map((c) => c.service))];
  if (leftovers.length > 0) {
    const r = await ctx.runner.run(ctx.compose, stack, release.composeFiles, { kind: 'rm', services: leftovers }, opts);
    if (r.code !== 0) ctx.reporter.log(`removing the in-place ${leftovers.join(', ')} of ${stack} failed (exit ${r.code}): ${lastLines(r.output)}`);
  }
}

/** Step 4's move of the names, timed: the switch is what users notice. */
async function switchAliases(ctx: FlipContext, release: ReleaseRecord, colour: Colour, { frontNets, fresh, old }: Switch, onSwitched?: () => void): Promise<void> {
  const started = Date.now();
  await moveAliases(ctx, frontNets, fresh, old, (release.shared ?? []).length > 0);
  const switchMs = Date.now() - started;
  if (ctx.timings) ctx.timings.switch = switchMs;
  onSwitched?.();
  ctx.reporter.log(`switched ${ctx.project} to ${colour} (${release.version}) in ${switchMs} ms on ${frontNets.join(', ') || 'no network'}`);
}

async function drain(ctx: FlipContext, old: Placed[], drainMs: number): Promise<void> {
  if (old.length > 0) {
    ctx.reporter.log(`draining ${Math.round(drainMs / 1000)} s before stopping the old release`);
    await new Promise((r) => setTimeout(r, drainMs));
  }
}

/**
 * `host rollback` to a blue/green release whose colour is still there (stopped after the switch
 * away from it, or still draining): its containers are started as they are through the engine,
 * confirmed by running their own health checks at once, and the service names flipped to them;
 * no compose run, no recreate. The smoke test is not run again: these very containers passed it
 * before they first took the names. Returns false, having changed nothing, when the colour is not
 * exactly that release (other images, created from another release's files, a service missing)
 * or the stable project would have to change (`stableUnchanged`); the rollback then deploys the
 * release as an install does. Throws DeployFailure (`kept`, `flipped-back`, `not-serving`).
 */
export async function flipToKeptColour(
  ctx: FlipContext,
  release: ReleaseRecord,
  releaseDir: string,
  current: ReleaseRecord | null,
  drainMs: number,
  stableUnchanged: boolean,
  onSwitched?: () => void,
): Promise<boolean> {
  if (release.switch !== 'blue-green' || current?.switch !== 'blue-green' || !stableUnchanged) return false;
  if (stableOf(release).join() !== stableOf(current).join()) return false;
  const found = await findKeptColour(ctx, release, releaseDir, current);
  if (!found) return false;
  const { project, toStart, colour } = found;

  ctx.reporter.log(`${project} still holds ${release.version}: ${toStart.length > 0 ? `starting ${toStart.map((c) => c.service).join(', ')} as ${toStart.length > 1 ? 'they are' : 'it is'}, then ` : ''}moving the service names to it`);
  const running = found.stableNow.filter((c) => c.state === 'running');
  const stableNets = await networksOf(ctx, running.filter((c) => found.stable.includes(c.service)));
  const frontNets = await networksOf(ctx, running.filter((c) => (release.front ?? []).includes(c.service)));
  const flip: Flip = { ...found, stableNets, frontNets };
  await startKept(flip);

  const fresh: Placed[] = found.kept.map((c) => ({ ...c, project }));
  const old = await oldColoured(ctx, ctx.project, colour, found.coloured);
  const moved: Switch = { frontNets, fresh, old };
  await switchAliases(ctx, release, colour, moved, onSwitched);
  await confirmFlip(flip, moved);
  release.colour = colour;

  await drain(ctx, old, drainMs);
  await Promise.all(
    old.map(async (c) => {
      for (const net of new Set([...frontNets, ...stableNets])) await detach(ctx.engine, net, c.id);
      await stopContainer(ctx.engine, c.id);
    }),
  );
  return true;
}

/** The colour a rollback would flip to, when it holds exactly `release` and the stable project runs it. */
interface KeptColour {
  ctx: FlipContext;
  release: ReleaseRecord;
  current: ReleaseRecord;
  coloured: string[];
  stable: string[];
  /** The colour holding the names now, as the engine or else the record says. */
  live: Colour | null | undefined;
  colour: Colour;
  project: string;
  kept: ProjectContainer[];
  /** The kept containers that are stopped. */
  toStart: ProjectContainer[];
  /** The stack's own project's containers. */
  stableNow: ProjectContainer[];
}

type Flip = KeptColour & { stableNets: string[]; frontNets: string[] };

async function findKeptColour(ctx: FlipContext, release: ReleaseRecord, releaseDir: string, current: ReleaseRecord): Promise<KeptColour | null> {
  const stack = ctx.project;
  const coloured = colouredOf(release);
  const stable = stableOf(release);
  const byColour = await Promise.all(COLOURS.map(async (c) => (await projectContainers(ctx.engine, colourProject(stack, c))).filter((x) => !x.oneOff)));
  const runs = COLOURS.filter((c, i) => byColour[i]!.some((x) => x.state === 'running' && coloured.includes(x.service)));
  const live = runs.length === 1 ? runs[0] : (current.colour ?? null);
  const colour = nextColour(live);
  const kept = byColour[COLOURS.indexOf(colour)]!;
  const expected = await expectedImages(ctx.engine, stack, release);
  const dirs = await Promise.all(kept.map((c) => composeWorkingDir(ctx.engine, c.id)));
  const fits =
    coloured.every((svc) => kept.filter((c) => c.service === svc).length === 1) &&
    kept.every((c, i) => coloured.includes(c.service) && c.imageId === expected.get(c.service) && createdIn(dirs[i], releaseDir));
  const stableNow = (await projectContainers(ctx.engine, stack)).filter((c) => !c.oneOff);
  const stableRuns = stable.every((svc) => stableNow.some((c) => c.service === svc && c.state === 'running' && c.imageId === expected.get(svc)));
  // Coloured services running in the stack's own project (an in-place leftover) need compose to remove.
  const inPlace = stableNow.some((c) => coloured.includes(c.service));
  if (!fits || !stableRuns || inPlace) return null;
  return { ctx, release, current, coloured, stable, live, colour, project: colourProject(stack, colour), kept, toStart: kept.filter((c) => c.state !== 'running'), stableNow };
}

/** The stopped containers of the kept colour started and, by their own health checks run at once, confirmed; else put back (`kept`). */
async function startKept(flip: Flip): Promise<void> {
  const { ctx, kept, toStart, project, stableNets } = flip;
  const keepReach = (flip.release.shared ?? []).length > 0;
  const deadline = Date.now() + ctx.waitTimeoutMs;
  try {
    await Promise.all(
      toStart.map(async (c) => {
        await startContainer(ctx.engine, c.id);
        // Reachable by container name only: the service names stay with the live colour.
        if (keepReach) {
          const on = await containerNetworks(ctx.engine, c.id);
          for (const net of stableNets) if (!on.has(net)) await attach(ctx.engine, net, c.id, []);
        }
      }),
    );
    const verdicts = await Promise.all(kept.map((c) => confirmHealth(ctx.engine, c.id, deadline, toStart.includes(c))));
    const failed = kept.filter((_, i) => verdicts[i] === 'fail').map((c) => c.service);
    for (const c of kept) ctx.reporter.log(`  ${c.service}: ${failed.includes(c.service) ? 'unhealthy' : 'healthy'}`);
    if (failed.length > 0) throw new DeployFailure(`${failed.map((f) => `service ${f}`).join(', ')} of ${project} ${failed.length > 1 ? 'do' : 'does'} not pass ${failed.length > 1 ? 'their' : 'its'} health check`);
  } catch (e) {
    if (!(e instanceof DeployFailure)) throw e;
    ctx.reporter.log(`${project} failed before the switch: stopping it again; the live release keeps serving`);
    await putBack(flip);
    throw new DeployFailure(e.message, e.output, 'kept');
  }
}

/** Back to stopped, off the stable networks: as the colour was kept, for a later try. */
async function putBack({ ctx, toStart, stableNets }: Flip): Promise<void> {
  await Promise.all(
    toStart.map(async (c) => {
      for (const net of stableNets) await detach(ctx.engine, net, c.id);
      await stopContainer(ctx.engine, c.id);
    }),
  );
}

/** The front confirmed through the flipped-to colour; else the names go back and the old colour is judged. */
async function confirmFlip(flip: Flip, { frontNets, fresh, old }: Switch): Promise<void> {
  const { ctx, release, colour, current, live } = flip;
  try {
    await confirmFront(ctx, release, colour, Date.now() + ctx.waitTimeoutMs);
  } catch (e) {
    if (!(e instanceof DeployFailure)) throw e;
    ctx.reporter.log(`the front is not healthy on ${colour}: switching back`);
    await moveAliases(ctx, frontNets, old, fresh, false);
    await putBack(flip);
    const back = await Promise.all(old.map((c) => confirmHealth(ctx.engine, c.id, Date.now() + ctx.waitTimeoutMs, true)));
    const front = back.every((v) => v !== 'fail') ? await confirmFront(ctx, current, live ?? colour, Date.now() + ctx.waitTimeoutMs, true).then(() => true, () => false) : false;
    throw new DeployFailure(e.message, e.output, front ? 'flipped-back' : 'not-serving');
  }
}

/** Whether compose created a container from this release directory (its working_dir label is in it). */
function createdIn(workingDir: string | undefined, releaseDir: string): boolean {
  if (!workingDir) return false;
  const dir = posix.normalize(releaseDir).replace(/\/+$/, '');
  if (workingDir === dir || workingDir.startsWith(`${dir}/`)) return true;
  // A relative --state-dir: compose recorded the absolute path.
  return !dir.startsWith('/') && (workingDir.endsWith(`/${dir}`) || workingDir.includes(`/${dir}/`));
}

/**
 * After a switch, the front confirmed through the colour now holding the names: its own health
 * check run at once, as many failures in a row as the engine would allow. Its status from before
 * the switch says nothing (it was checked through the old colour), and the engine's next rounds
 * could come only after the old colour was stopped. A front still starting (created moments ago
 * in step 1) gets until the deadline.
 */
async function confirmFront(ctx: FlipContext, release: ReleaseRecord, colour: Colour, deadline: number, starting = false): Promise<void> {
  const front = (await projectContainers(ctx.engine, ctx.project)).filter((c) => !c.oneOff && (release.front ?? []).includes(c.service));
  const verdicts = await Promise.all(front.map((c) => confirmHealth(ctx.engine, c.id, deadline, starting || c.health === 'starting')));
  const failed = [...new Set(front.filter((_, i) => verdicts[i] === 'fail').map((c) => c.service))];
  if (failed.length > 0) {
    throw new DeployFailure(`front ${failed.map((f) => `service ${f}`).join(', ')} ${failed.length > 1 ? 'fail their' : 'fails its'} health check with ${colour} (${release.version}) holding the service names`);
  }
}

/**
 * Switches the stack to a release as that release says: in place, or blue/green. `current` is
 * what runs now (its colour decides the next one).
 */
export async function deployRelease(ctx: DeployContext, release: ReleaseRecord, releaseDir: string, current: ReleaseRecord | null, drainMs: number): Promise<void> {
  if (release.switch === 'blue-green') return deployBlueGreen(ctx, release, releaseDir, current, drainMs);
  // From blue/green: once the in-place services are healthy, the live colour gives up the service
  // names, so the smoke test (and users) reach the release being confirmed, not the colour.
  await deploy(ctx, release, releaseDir, { beforeSmoke: () => leaveFrontNetworks(ctx) });
  await removeColours(ctx);
}

async function leaveFrontNetworks(ctx: DeployContext): Promise<void> {
  const nets = await networksOf(ctx, (await projectContainers(ctx.engine, ctx.project)).filter((c) => !c.oneOff && c.state === 'running'));
  for (const colour of COLOURS) {
    for (const c of await projectContainers(ctx.engine, colourProject(ctx.project, colour))) for (const net of nets) await detach(ctx.engine, net, c.id);
  }
}

/**
 * After an in-place release is confirmed: the colours of an earlier blue/green one go. Through the
 * engine, not compose: an in-place release directory has no colour override to name the project's
 * networks with.
 */
export async function removeColours(ctx: DeployContext): Promise<void> {
  for (const colour of COLOURS) {
    const project = colourProject(ctx.project, colour);
    const containers = await projectContainers(ctx.engine, project);
    if (containers.length === 0) continue;
    ctx.reporter.log(`removing ${project}: the stack runs in place now`);
    for (const c of containers) await removeContainer(ctx.engine, c.id);
    await removeProjectNetworks(ctx.engine, project).catch(() => undefined);
  }
}

type Placed = ProjectContainer & { project: string };

async function colourContainers(ctx: FlipContext, project: string, services: string[]): Promise<Placed[]> {
  return (await projectContainers(ctx.engine, project)).filter((c) => !c.oneOff && services.includes(c.service) && c.state === 'running').map((c) => ({ ...c, project }));
}

/** The running containers that serve the coloured services now: the other colour's, or the stack's own when it ran in place. */
async function oldColoured(ctx: FlipContext, stack: string, colour: Colour, services: string[]): Promise<Placed[]> {
  const other = colourProject(stack, COLOURS.find((x) => x !== colour)!);
  return [...(await colourContainers(ctx, other, services)), ...(await colourContainers(ctx, stack, services))];
}

async function networksOf(ctx: FlipContext, containers: ProjectContainer[]): Promise<string[]> {
  const nets = new Set<string>();
  for (const c of containers) for (const n of (await containerNetworks(ctx.engine, c.id)).keys()) nets.add(n);
  return [...nets].sort();
}

/**
 * The service names move to `to` first, then leave `from`: in between both answer (both were
 * tested healthy), so a lookup never finds no one. `from` keeps a nameless attachment when it
 * still needs the shared services while it drains. Containers move in parallel (a disconnect and
 * connect each costs a round trip and the engine's own work); one container's networks one after
 * the other, as the engine updates a container's sandbox one change at a time.
 */
async function moveAliases(ctx: FlipContext, networks: string[], to: Placed[], from: Placed[], keepReach: boolean): Promise<void> {
  await Promise.all(
    to.map(async (c) => {
      for (const net of networks) {
        await detach(ctx.engine, net, c.id);
        await attach(ctx.engine, net, c.id, [c.service]);
      }
    }),
  );
  await Promise.all(
    from.map(async (c) => {
      const on = await containerNetworks(ctx.engine, c.id);
      for (const net of networks) {
        if (!on.has(net)) continue;
        await detach(ctx.engine, net, c.id);
        if (keepReach) await attach(ctx.engine, net, c.id, []);
      }
    }),
  );
}

/**
 * Whether the previous release `r` still answers: its coloured services (all but the front and
 * shared ones, which `now` brought up in place: they run `now`'s images) healthy, and the front and
 * shared services healthy.
 */
async function serves(outer: DeployContext, r: ReleaseRecord, now: ReleaseRecord): Promise<boolean> {
  // Judging the previous release as not serving (exit 8) waits to the deadline, as a restore does.
  const ctx = { ...outer, patient: true };
  const deadline = Date.now() + ctx.waitTimeoutMs;
  const stable = stableOf(now);
  try {
    const project = r.switch === 'blue-green' && r.colour ? colourProject(ctx.project, r.colour) : ctx.project;
    await waitHealthy(ctx, r, names(r).filter((s) => s !== r.smoke && !stable.includes(s)), deadline, false, project);
    await waitHealthy(ctx, now, stable, deadline);
    return true;
  } catch (e) {
    if (e instanceof DeployFailure) return false;
    throw e;
  }
}
