/**
 * The one retry loop for idempotent calls to an engine or an SSH host (the policy is
 * core/retry.ts). Each pause is announced as a warning, so an operator watching a status that
 * takes a few seconds longer sees why, and --json records it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { DEFAULT_RETRY_POLICY, retryDelay, type RetryPolicy } from '../core/retry.js';

export interface RetryWarning {
  code: string;
  message: string;
  subject?: string;
}

export interface RetryOptions {
  /** What did not answer, for the message: "engine at unix:///var/run/docker.sock". */
  subject: string;
  /** The transient code of a failure worth another attempt (ECONNREFUSED, …), else null: fail now. */
  transient: (e: unknown) => string | null;
  /** Told before each pause, with the message to show (the caller warns with its own code). */
  onRetry?: ((message: string) => void) | undefined;
  policy?: RetryPolicy;
}

export async function withRetry<T>(options: RetryOptions, call: () => Promise<T>): Promise<T> {
  const policy = options.policy ?? retryPolicyFromEnv() ?? DEFAULT_RETRY_POLICY;
  const started = Date.now();
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (e) {
      const code = options.transient(e);
      const delay = code === null ? null : retryDelay(policy, attempt, Date.now() - started);
      if (delay === null) throw e;
      options.onRetry?.(`${options.subject} not answering (${code}), retrying in ${(delay / 1000).toFixed(1)} s (attempt ${attempt + 1} of ${policy.attempts})`);
      await sleep(delay);
    }
  }
}

/**
 * FERRY_RETRY=0 turns retries off (one attempt): for scripts that would rather fail at once and
 * retry on their own terms.
 */
function retryPolicyFromEnv(): RetryPolicy | null {
  return process.env.FERRY_RETRY === '0' ? { ...DEFAULT_RETRY_POLICY, attempts: 1 } : null;
}
