/**
 * `ferry host rollback`: switch a stack back to a release the host kept, with the same confirm step
 * as install. The downgrade ratchet does not move: rollback is to releases this host already ran.
 */
import type { HostTarget } from '../adapters/host.js';
import { StateStore } from '../adapters/state-store.js';
import { currentRelease, type ReleaseRecord } from '../core/state.js';
import { UsageError } from '../errors.js';
import { posix } from 'node:path';
import { DEFAULT_DRAIN_SECONDS, sameStableDefinitions } from '../core/compose-colours.js';
import { parseYaml } from '../core/yaml.js';
import { deployRelease, flipToKeptColour, stableOf } from './blue-green.js';
import { DeployFailure, type DeployContext } from './deploy.js';
import { deployFailed } from './install.js';
import type { Reporter } from './reporter.js';

export interface RollbackOptions {
  stack: string;
  /** A kept release's version or id; default: the newest kept release older than the current one. */
  to?: string;
  stateDir: string;
  composeCmd?: string;
  waitTimeoutMs: number;
  /** Blue/green: how long the old colour keeps running after the switch. */
  drainMs?: number;
}

export interface RollbackResult {
  stack: string;
  from: string | null;
  to: string;
  version: string;
  durationMs: number;
  /**
   * Blue/green: how long moving the service names took (`switch`, ms) and, when the kept colour
   * was flipped to, how long from the start of the rollback until the names had moved (`flipped`, ms).
   */
  timings: Record<string, number>;
}

export async function rollbackStack(options: RollbackOptions, host: HostTarget, reporter: Reporter): Promise<RollbackResult> {
  const started = Date.now();
  const store = new StateStore(options.stateDir, host.fs);
  await store.ensure();
  return store.withLock(`rollback ${options.stack}`, async () => {
    const state = await store.load(options.stack);
    if (state.releases.length === 0) {
      const known = await store.stacks();
      throw new UsageError('STACK_UNKNOWN', `no releases of stack "${options.stack}" are recorded in ${options.stateDir}`, {
        details: { stacks: known },
        hint: known.length ? `Known stacks: ${known.join(', ')}` : 'Nothing has been installed with this --state-dir.',
      });
    }
    const current = currentRelease(state) ?? null;
    const target = pickTarget(state.releases, current, options.to);
    const releaseDir = store.releaseDir(options.stack, target.id);
    const drainMs = options.drainMs ?? DEFAULT_DRAIN_SECONDS * 1000;
    const timings: Record<string, number> = {};
    const flip = { engine: host.engine, project: options.stack, waitTimeoutMs: options.waitTimeoutMs, reporter, timings };
    // Compose is asked for (its detection alone costs a second or more) only when the flip cannot do.
    let ctx: DeployContext | undefined;
    const full = async (): Promise<DeployContext> => (ctx ??= { ...flip, runner: host.compose, compose: await host.compose.detect(options.composeCmd) });
    try {
      const stableUnchanged = target.switch === 'blue-green' && current?.switch === 'blue-green' && (await sameStable(store, options.stack, current, target));
      const flipped = await flipToKeptColour(flip, target, releaseDir, current, drainMs, stableUnchanged, () => (timings.flipped = Date.now() - started));
      if (!flipped) await deployRelease(await full(), target, releaseDir, current, drainMs);
    } catch (e) {
      if (!(e instanceof DeployFailure)) throw e;
      throw await deployFailed(await full(), store, current, target, e, `rollback to ${target.version} failed: ${e.message}`, drainMs);
    }
    // The colour a blue/green release now runs as is part of its record.
    await store.save({ ...state, current: target.id, releases: state.releases.map((r) => (r.id === target.id ? target : r)) });
    reporter.log(`${options.stack} rolled back to ${target.version}`);
    return { stack: options.stack, from: current?.id ?? null, to: target.id, version: target.version, durationMs: Date.now() - started, timings };
  });
}

/** Whether the two releases' compose files define the front and shared services alike (see sameStableDefinitions). */
async function sameStable(store: StateStore, stack: string, a: ReleaseRecord, b: ReleaseRecord): Promise<boolean> {
  const models = async (r: ReleaseRecord) =>
    Promise.all(r.composeFiles.map(async (f) => parseYaml(((await store.fs.readFile(posix.join(store.releaseDir(stack, r.id), f))) ?? Buffer.from('')).toString('utf8'), f)));
  try {
    return sameStableDefinitions(await models(a), await models(b), stableOf(b));
  } catch {
    // A file that no longer reads: let compose decide, as an install would.
    return false;
  }
}

export function pickTarget(releases: ReleaseRecord[], current: ReleaseRecord | null, to: string | undefined): ReleaseRecord {
  const list = releases.map((r) => `${r.version} (${r.id})${r.id === current?.id ? ' current' : ''}`).join(', ');
  if (to) {
    const hit = releases.find((r) => r.version === to || r.id === to);
    if (!hit) throw new UsageError('RELEASE_UNKNOWN', `no kept release ${to}; kept: ${list}`, { details: { releases: releases.map((r) => r.id) } });
    return hit;
  }
  const older = releases.filter((r) => !current || r.sequence < current.sequence).sort((a, b) => b.sequence - a.sequence)[0];
  if (!older) {
    throw new UsageError('NO_OLDER_RELEASE', `there is no kept release older than the current one; kept: ${list}`, {
      hint: 'Name one with --to.',
    });
  }
  return older;
}
