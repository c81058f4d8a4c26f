import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { HostFs } from '../../src/adapters/host.js';
import { localFs } from '../../src/adapters/local-host.js';
import { StateStore } from '../../src/adapters/state-store.js';

/** The local filesystem, except that removing the lock fails the way a dropped SSH link does. */
function linkDropsOnUnlock(): HostFs {
  return {
    ...localFs,
    rmrf: async (path) => {
      if (path.endsWith('/lock')) throw new Error('SSH_CONNECTION_LOST: the connection to deploy@edge-1 was lost');
      return localFs.rmrf(path);
    },
  };
}

describe('StateStore.withLock', () => {
  let root: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'ferry-lock-'));
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('holds the lock while the work runs and releases it after', async () => {
    const store = new StateStore(root, localFs);
    await store.ensure();
    const seen = await store.withLock('install demo 1', async () => (await readFile(join(root, 'lock'), 'utf8')).trim());
    expect(seen).toBe(`${process.pid} install demo 1`);
    await expect(readFile(join(root, 'lock'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('keeps the work\'s own error when releasing the lock fails too', async () => {
    const store = new StateStore(root, linkDropsOnUnlock());
    await store.ensure();
    const loadFailed = new Error('LOAD_FAILED: loading images into the engine failed');
    await expect(store.withLock('install demo 1', async () => Promise.reject(loadFailed))).rejects.toBe(loadFailed);
  });

  it('reports a failed release when the work itself succeeded', async () => {
    const store = new StateStore(root, linkDropsOnUnlock());
    await store.ensure();
    await expect(store.withLock('install demo 1', async () => 'done')).rejects.toThrow(/SSH_CONNECTION_LOST/);
  });

  it('refuses a second holder while the first is alive', async () => {
    const store = new StateStore(root, localFs);
    await store.ensure();
    await store.withLock('install demo 1', async () => {
      await expect(store.withLock('rollback demo', async () => 'never')).rejects.toMatchObject({ code: 'HOST_BUSY' });
    });
  });
});
