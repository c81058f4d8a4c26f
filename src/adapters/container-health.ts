/** A container's own health-check timing, to tell a settled "unhealthy" from one about to pass, and the check run on demand. */
import type { Engine } from './engine.js';
import { engineError } from './engine-inventory.js';

/** Docker's defaults when the image and the compose file set none. */
const DEFAULT_INTERVAL_NS = 30e9;
const DEFAULT_TIMEOUT_NS = 30e9;
const DEFAULT_RETRIES = 3;

type HealthConfig = { Test?: string[]; Interval?: number; Timeout?: number; Retries?: number };

/** How long one more round of the check can take: its interval plus its timeout, in ms. */
export async function checkRoundMs(engine: Engine, id: string): Promise<number> {
  try {
    const hc = (await engine.api.getContainer(id).inspect()).Config?.Healthcheck as { Interval?: number; Timeout?: number } | undefined;
    return ((hc?.Interval || DEFAULT_INTERVAL_NS) + (hc?.Timeout || DEFAULT_TIMEOUT_NS)) / 1e6;
  } catch (e) {
    if ((e as { statusCode?: number }).statusCode === 404) return 0;
    throw engineError(engine, e);
  }
}

/**
 * Runs the container's own health check once, now, through exec: `none` when it has no check.
 * A container just started is "starting" until the engine's first round, an interval later (30 s
 * by default); the same command run at once tells a rollback within a fraction of a second
 * whether the container answers.
 */
export async function probeHealth(engine: Engine, id: string): Promise<'pass' | 'fail' | 'none' | 'down'> {
  try {
    const c = engine.api.getContainer(id);
    const info = await c.inspect();
    const hc = info.Config?.Healthcheck as HealthConfig | undefined;
    const test = hc?.Test ?? [];
    const cmd = test[0] === 'CMD' ? test.slice(1) : test[0] === 'CMD-SHELL' ? ['/bin/sh', '-c', test.slice(1).join(' ')] : null;
    if (!info.State?.Running) return 'down';
    if (!cmd || cmd.length === 0) return 'none';
    const exec = await c.exec({ Cmd: cmd, AttachStdout: false, AttachStderr: false });
    await exec.start({ Detach: true });
    const deadline = Date.now() + (hc?.Timeout || DEFAULT_TIMEOUT_NS) / 1e6;
    for (;;) {
      const state = await exec.inspect();
      if (!state.Running) return state.ExitCode === 0 ? 'pass' : 'fail';
      if (Date.now() > deadline) return 'fail';
      await new Promise((r) => setTimeout(r, 50));
    }
  } catch (e) {
    const status = (e as { statusCode?: number }).statusCode;
    // Gone, or stopped between the inspect and the exec.
    if (status === 404 || status === 409) return 'down';
    throw engineError(engine, e);
  }
}

/**
 * The check run on demand until it passes, fails as many times in a row as the engine would
 * before calling the container unhealthy (its retries), or the deadline passes: the engine's
 * verdict, without waiting for its rounds. `starting`: the container was just started, and as in
 * the engine's start period failures do not count; only the deadline or the container stopping
 * end the wait. `none`: it has no check (and runs).
 */
export async function confirmHealth(engine: Engine, id: string, deadline: number, starting = false, pauseMs = 250): Promise<'pass' | 'fail' | 'none'> {
  let retries = DEFAULT_RETRIES;
  try {
    retries = ((await engine.api.getContainer(id).inspect()).Config?.Healthcheck as HealthConfig | undefined)?.Retries || DEFAULT_RETRIES;
  } catch (e) {
    if ((e as { statusCode?: number }).statusCode === 404) return 'fail';
    throw engineError(engine, e);
  }
  for (let failed = 0; ; ) {
    const r = await probeHealth(engine, id);
    if (r === 'down') return 'fail';
    if (r !== 'fail') return r;
    failed += 1;
    if ((!starting && failed >= retries) || Date.now() > deadline) return 'fail';
    await new Promise((res) => setTimeout(res, pauseMs));
  }
}
