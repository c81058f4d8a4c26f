import { describe, expect, it } from 'vitest';
import { DEFAULT_RETRY_POLICY, retryDelay, transientEngineFailure, transientSshFailure } from '../../src/core/retry.js';

describe('retryDelay', () => {
  it('backs off 0.5, 1, 2, 4 s and gives up after the fifth attempt', () => {
    const delays = [1, 2, 3, 4, 5].map((n) => retryDelay(DEFAULT_RETRY_POLICY, n, 0));
    expect(delays).toEqual([500, 1000, 2000, 4000, null]);
    // In all, waiting stays within the ~10 s budget.
    expect(delays.reduce<number>((a, d) => a + (d ?? 0), 0)).toBeLessThanOrEqual(DEFAULT_RETRY_POLICY.budgetMs);
  });

  it('never pauses past the budget, counting the time the attempts took', () => {
    expect(retryDelay(DEFAULT_RETRY_POLICY, 1, 9_400)).toBe(500);
    expect(retryDelay(DEFAULT_RETRY_POLICY, 1, 9_600)).toBeNull();
    // A 20 s SSH handshake timeout has used the budget up: no second 20 s wait.
    expect(retryDelay(DEFAULT_RETRY_POLICY, 1, 20_000)).toBeNull();
  });

  it('caps each pause and takes one attempt as "no retries"', () => {
    const p = { attempts: 10, firstDelayMs: 1000, factor: 3, maxDelayMs: 5000, budgetMs: 1e9 };
    expect([1, 2, 3, 4].map((n) => retryDelay(p, n, 0))).toEqual([1000, 3000, 5000, 5000]);
    expect(retryDelay({ ...p, attempts: 1 }, 1, 0)).toBeNull();
  });
});

describe('transientEngineFailure', () => {
  it('retries refused, reset, a missing socket and a broken pipe', () => {
    for (const code of ['ECONNREFUSED', 'ECONNRESET', 'ENOENT', 'EPIPE']) expect(transientEngineFailure(Object.assign(new Error('x'), { code }))).toBe(code);
  });

  it('never an engine that answered, nor other failures', () => {
    expect(transientEngineFailure(Object.assign(new Error('x'), { statusCode: 500, code: 'ECONNRESET' }))).toBeNull();
    expect(transientEngineFailure(Object.assign(new Error('x'), { statusCode: 404 }))).toBeNull();
    expect(transientEngineFailure(Object.assign(new Error('x'), { code: 'EACCES' }))).toBeNull();
    expect(transientEngineFailure(new Error('x'))).toBeNull();
    expect(transientEngineFailure(undefined)).toBeNull();
  });
});

describe('transientSshFailure', () => {
  it('retries refused, reset and timed-out connects and a close before the handshake', () => {
    expect(transientSshFailure(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))).toBe('ECONNREFUSED');
    expect(transientSshFailure(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }))).toBe('ECONNRESET');
    expect(transientSshFailure(Object.assign(new Error('connect ETIMEDOUT'), { code: 'ETIMEDOUT' }))).toBe('ETIMEDOUT');
    expect(transientSshFailure(Object.assign(new Error('Timed out while waiting for handshake'), { level: 'client-timeout' }))).toBe('HANDSHAKE_TIMEOUT');
    expect(transientSshFailure(new Error('Connection lost before handshake'))).toBe('CLOSED_BEFORE_HANDSHAKE');
  });

  it('never authentication failures, unknown names or unreachable networks', () => {
    expect(transientSshFailure(Object.assign(new Error('All configured authentication methods failed'), { level: 'client-authentication' }))).toBeNull();
    expect(transientSshFailure(Object.assign(new Error('getaddrinfo ENOTFOUND'), { code: 'ENOTFOUND' }))).toBeNull();
    expect(transientSshFailure(Object.assign(new Error('x'), { code: 'EHOSTUNREACH' }))).toBeNull();
    expect(transientSshFailure(new Error('Host denied (verification failed)'))).toBeNull();
    expect(transientSshFailure(null)).toBeNull();
  });
});
