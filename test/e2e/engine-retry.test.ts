/**
 * Retries of calls that change nothing, through the built CLI: `ferry host status` while the
 * engine's socket is not there yet and then drops a connection (as while dockerd restarts) waits,
 * says so on stderr, and succeeds; a socket that never appears fails after the bound with the
 * same ENGINE_UNREACHABLE as before. The engine behind the socket is the real air-gapped engine:
 * a small proxy in this process decides when its socket appears and which connection it drops.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ferry, tmpDir } from '../support/engines.js';

const engineSocket = () => process.env.FERRY_TARGET_DOCKER_HOST!.replace(/^unix:\/\//, '');

/** After `appearAfterMs`, a socket at `path` that resets the first `reset` connections and forwards the rest to the engine. */
function flakyEngine(path: string, appearAfterMs: number, reset: number): { stop(): Promise<void>; connections: () => number } {
  let server: Server | undefined;
  let seen = 0;
  const open = new Set<Socket>();
  const timer = setTimeout(() => {
    server = createServer((client) => {
      open.add(client);
      client.on('close', () => open.delete(client));
      client.on('error', () => undefined);
      if (seen++ < reset) {
        // A unix socket has no RST: closing before any answer is what the client sees as "socket hang up" (ECONNRESET).
        client.destroy();
        return;
      }
      const upstream = createConnection(engineSocket());
      open.add(upstream);
      upstream.on('close', () => open.delete(upstream));
      upstream.on('error', () => client.destroy());
      client.pipe(upstream).pipe(client);
    }).listen(path);
  }, appearAfterMs);
  return {
    connections: () => seen,
    stop: async () => {
      clearTimeout(timer);
      for (const s of open) s.destroy();
      await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    },
  };
}

describe('engine calls that change nothing are retried while the engine does not answer', () => {
  it('host status waits for a socket that appears after 2 s and a dropped connection, says so, and succeeds', async () => {
    const work = await tmpDir('ferry-retry-');
    const sock = join(work, 'docker.sock');
    const engine = flakyEngine(sock, 2000, 1);
    try {
      const t0 = Date.now();
      const r = await ferry(['host', 'status', '--state-dir', join(work, 'state')], { env: { DOCKER_HOST: `unix://${sock}` }, timeoutMs: 60_000 });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain('no stacks installed');
      expect(r.stdout).toMatch(/engine data root\s+\//);
      // Not there yet, then the first connection dropped: each a warning naming the engine and the cause.
      expect(r.stderr).toMatch(new RegExp(`warning: engine at unix://${sock.replace(/[.]/g, '\\.')} not answering \\(ENOENT\\), retrying in 0\\.5 s \\(attempt 2 of 5\\)`));
      // The client may still be writing its request (EPIPE) or already waiting for the answer (ECONNRESET).
      expect(r.stderr).toMatch(/not answering \((EPIPE|ECONNRESET)\), retrying in \d\.\d s \(attempt \d of 5\)/);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(2000);
      expect(engine.connections()).toBeGreaterThan(1);

      // --json: the same retries are the document's warnings.
      const again = flakyEngine(`${sock}.2`, 1500, 1);
      try {
        const j = await ferry(['host', 'status', '--state-dir', join(work, 'state'), '--json'], { env: { DOCKER_HOST: `unix://${sock}.2` }, timeoutMs: 60_000 });
        expect(j.code, j.stderr).toBe(0);
        const doc = JSON.parse(j.stdout) as { ok: boolean; warnings: { code: string; message: string }[] };
        expect(doc.ok).toBe(true);
        expect(doc.warnings.length).toBeGreaterThan(0);
        for (const w of doc.warnings) expect(w.code).toBe('ENGINE_RETRY');
        expect(j.stderr).toBe('');
      } finally {
        await again.stop();
      }
    } finally {
      await engine.stop();
    }
  }, 90_000);

  it('a socket that never appears fails after the bound (5 attempts, about 10 s) with ENGINE_UNREACHABLE', async () => {
    const work = await tmpDir('ferry-retry-');
    const sock = join(work, 'never.sock');
    const t0 = Date.now();
    const r = await ferry(['host', 'status', '--state-dir', join(work, 'state'), '--json'], { env: { DOCKER_HOST: `unix://${sock}` }, timeoutMs: 60_000 });
    const took = Date.now() - t0;
    expect(r.code, r.stderr).toBe(6);
    const doc = JSON.parse(r.stdout) as { error: { code: string; message: string }; warnings: { code: string; message: string }[] };
    expect(doc.error.code).toBe('ENGINE_UNREACHABLE');
    expect(doc.error.message).toContain(`cannot reach the Docker engine at unix://${sock}`);
    expect(doc.warnings.map((w) => w.message.replace(/^.*retrying in /, ''))).toEqual(['0.5 s (attempt 2 of 5)', '1.0 s (attempt 3 of 5)', '2.0 s (attempt 4 of 5)', '4.0 s (attempt 5 of 5)']);
    expect(took).toBeGreaterThanOrEqual(7500);
    expect(took).toBeLessThan(20_000);
  }, 60_000);

  it('FERRY_RETRY=0: one attempt, no warning', async () => {
    const work = await tmpDir('ferry-retry-');
    const r = await ferry(['host', 'inventory', '--state-dir', work, '--json'], { env: { DOCKER_HOST: `unix://${join(work, 'never.sock')}`, FERRY_RETRY: '0' }, timeoutMs: 30_000 });
    expect(r.code).toBe(6);
    const doc = JSON.parse(r.stdout) as { error: { code: string }; warnings: unknown[] };
    expect(doc.error.code).toBe('ENGINE_UNREACHABLE');
    expect(doc.warnings).toEqual([]);
  });
});
