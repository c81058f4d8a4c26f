/**
 * When to try an idempotent call again. An engine that restarts (an upgrade, a crash, dockerd
 * reloading) refuses or drops connections for a few seconds, and sshd does the same while it
 * restarts; a status or inventory that gives up at the first refusal sends an operator chasing a
 * problem that was gone a second later. The wait is bounded, so a host that is really down still
 * fails in about ten seconds with the same error as before.
 *
 * Only calls that change nothing may be retried: a load or a `compose up` that failed half-way
 * cannot be known not to have happened, so those are never wrapped.
 */

export interface RetryPolicy {
  /** Attempts in all, the first included. */
  attempts: number;
  /** The pause after the first failure; each later pause is `factor` times the one before. */
  firstDelayMs: number;
  factor: number;
  maxDelayMs: number;
  /** No pause that would end later than this after the first attempt began. */
  budgetMs: number;
}

/** 5 attempts, pauses 0.5, 1, 2 and 4 s: 7.5 s of waiting, within 10 s. */
export const DEFAULT_RETRY_POLICY: RetryPolicy = { attempts: 5, firstDelayMs: 500, factor: 2, maxDelayMs: 4000, budgetMs: 10_000 };

/**
 * The pause before attempt `failed + 1`, or null to give up. `failed` is the number of the attempt
 * that just failed (1 for the first), `elapsedMs` the time since the first attempt began.
 */
export function retryDelay(policy: RetryPolicy, failed: number, elapsedMs: number): number | null {
  if (failed >= policy.attempts) return null;
  const delay = Math.min(policy.maxDelayMs, Math.round(policy.firstDelayMs * policy.factor ** (failed - 1)));
  if (elapsedMs + delay > policy.budgetMs) return null;
  return delay;
}

/**
 * Error codes of a connection to an engine that mean "not answering right now": refused (nothing
 * listens on the socket yet), reset or broken pipe (dockerd going down mid-call), and the socket
 * file absent (dockerd removes it on exit and creates it when it listens again).
 */
export const TRANSIENT_ENGINE_CODES: readonly string[] = ['ECONNREFUSED', 'ECONNRESET', 'ENOENT', 'EPIPE'];

/**
 * Whether an engine call's failure is worth another attempt: a transient connection code and no
 * HTTP status (an engine that answered, even with 500, is up and would answer the same again).
 */
export function transientEngineFailure(e: unknown): string | null {
  const err = (e ?? {}) as { code?: unknown; statusCode?: unknown };
  if (err.statusCode !== undefined) return null;
  return typeof err.code === 'string' && TRANSIENT_ENGINE_CODES.includes(err.code) ? err.code : null;
}

/**
 * Whether a failed SSH connect is worth another attempt, from the raw failure: the host refused or
 * reset the TCP connection, or it timed out, or closed it before the handshake (sshd restarting,
 * a host booting, MaxStartups throttling). Never an authentication failure or a host key
 * problem (those are decided before this is asked): they would fail the same way again, and
 * offering refused keys over and over can lock an account.
 */
export function transientSshFailure(raw: unknown): string | null {
  const e = (raw ?? {}) as { code?: unknown; level?: unknown; message?: unknown };
  const message = typeof e.message === 'string' ? e.message : '';
  if (e.level === 'client-authentication') return null;
  if (e.level === 'client-timeout' || /Timed out while waiting for handshake/.test(message)) return 'HANDSHAKE_TIMEOUT';
  if (/Connection lost before handshake|closed during the handshake/i.test(message)) return 'CLOSED_BEFORE_HANDSHAKE';
  return typeof e.code === 'string' && ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT'].includes(e.code) ? e.code : null;
}
