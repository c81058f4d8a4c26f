import { describe, expect, it } from 'vitest';
import type { NamedHost } from '../../src/adapters/host-factory.js';
import { FleetFailedError, HostPreconditionError, IntegrityError, PolicyError } from '../../src/errors.js';
import { installFleet, type FleetHostResult, type FleetOptions, type FleetReporter } from '../../src/services/fleet.js';
import type { OpenedBundle } from '../../src/services/bundle.js';
import type { InstallOptions, InstallResult } from '../../src/services/install.js';
import { silentReporter } from '../../src/services/reporter.js';

const base: FleetOptions['install'] = {
  bundle: '/b.ferry',
  trust: { trust: '/t', allowUnsigned: false, revoked: null },
  stateDir: '/var/lib/ferry',
  stage: true,
  allowDowngrade: false,
  waitTimeoutMs: 1000,
  keep: 3,
  up: true,
  splice: 'auto',
};

function fakeHost(name: string, closed: string[]): NamedHost {
  return { label: name, hostname: async () => `${name}-hostname`, close: async () => void closed.push(name), local: false } as unknown as NamedHost;
}

function result(options: InstallOptions): InstallResult {
  return { stack: 's', release: '1-1.0', version: '1.0', sequence: 1, host: options.host, outcome: 'installed', previous: null, images: [], pruned: [], durationMs: 1, timings: {} };
}

function harness(behaviour: Record<string, { failOpen?: Error; failInstall?: Error; ms?: number }>) {
  const closed: string[] = [];
  const finished: FleetHostResult[] = [];
  const installedWith: InstallOptions[] = [];
  let running = 0;
  let maxRunning = 0;
  const reporter = (): FleetReporter => ({ ...silentReporter, finish: (r) => void finished.push(r) });
  const deps = {
    open: async (t: string) => {
      const b = behaviour[t] ?? {};
      if (b.failOpen) throw b.failOpen;
      return fakeHost(t, closed);
    },
    reporterFor: reporter,
    install: async (options: InstallOptions) => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      try {
        await new Promise((r) => setTimeout(r, behaviour[options.host.replace(/-hostname$/, '')]?.ms ?? 20));
        const b = Object.entries(behaviour).find(([t]) => options.host.startsWith(t))?.[1];
        if (b?.failInstall) throw b.failInstall;
        installedWith.push(options);
        return result(options);
      } finally {
        running--;
      }
    },
  };
  return { deps, closed, finished, installedWith, maxRunning: () => maxRunning };
}

const hosts = (...targets: string[]) => targets.map((target) => ({ target }));

describe('fleet install', () => {
  it('installs every host, at most --parallel at a time, each with its own override', async () => {
    const h = harness({});
    const r = await installFleet({ install: base, hosts: [{ target: 'a', hostName: 'edge-a' }, ...hosts('b', 'c', 'd')], parallel: 2, failFast: false }, h.deps);
    expect(r.ok).toBe(true);
    expect(r.exitCode).toBe(0);
    expect(h.maxRunning()).toBe(2);
    expect(r.hosts.map((x) => [x.target, x.host, x.outcome])).toEqual([
      ['a', 'edge-a', 'installed'],
      ['b', 'b-hostname', 'installed'],
      ['c', 'c-hostname', 'installed'],
      ['d', 'd-hostname', 'installed'],
    ]);
    expect(h.closed.sort()).toEqual(['a', 'b', 'c', 'd']);
  });

  it('one host failing leaves the others alone; the exit code is the first failed host in argument order', async () => {
    const h = harness({
      a: { ms: 50 },
      b: { failInstall: new PolicyError('WRONG_HOST', 'no override'), ms: 40 },
      c: { failOpen: new HostPreconditionError('SSH_UNREACHABLE', 'refused') },
    });
    const r = await installFleet({ install: base, hosts: hosts('a', 'b', 'c', 'd'), parallel: 4, failFast: false }, h.deps);
    expect(r.ok).toBe(false);
    // c fails first in time (on connect), but b comes first in the arguments.
    expect(r.exitCode).toBe(5);
    expect(r.hosts.map((x) => [x.target, x.ok, x.exitCode, x.error?.code])).toEqual([
      ['a', true, 0, undefined],
      ['b', false, 5, 'WRONG_HOST'],
      ['c', false, 6, 'SSH_UNREACHABLE'],
      ['d', true, 0, undefined],
    ]);
    expect(r.hosts[2]!.host).toBeNull();
    expect(h.finished).toHaveLength(4);
    const err = new FleetFailedError(r);
    expect(err.exitCode).toBe(5);
    expect(err.message).toMatch(/2 of 4 hosts failed: b \(WRONG_HOST, exit 5\), c \(SSH_UNREACHABLE, exit 6\)/);
  });

  it('--fail-fast starts no host after a failure; the ones running finish', async () => {
    const h = harness({ a: { failOpen: new HostPreconditionError('SSH_UNREACHABLE', 'x') }, b: { ms: 30 } });
    const r = await installFleet({ install: base, hosts: hosts('a', 'b', 'c', 'd'), parallel: 2, failFast: true }, h.deps);
    expect(r.hosts.map((x) => x.outcome)).toEqual(['failed', 'installed', 'skipped', 'skipped']);
    expect(r.hosts[2]!.exitCode).toBeNull();
    expect(r.exitCode).toBe(6);
  });

  it('an unexpected error is exit 1 for that host only', async () => {
    const h = harness({ b: { failInstall: new TypeError('boom') } });
    const r = await installFleet({ install: base, hosts: hosts('a', 'b'), parallel: 1, failFast: false }, h.deps);
    expect(r.hosts.map((x) => x.exitCode)).toEqual([0, 1]);
    expect(r.hosts[1]!.error).toMatchObject({ code: 'UNEXPECTED' });
  });

  it('checks the bundle once for all hosts, and every host gets the result', async () => {
    const h = harness({});
    const checks: string[] = [];
    const opened = { dir: '/b.ferry' } as OpenedBundle;
    const shareHints: (number | undefined)[] = [];
    const checkOnce = async (install: FleetOptions['install'], _r: unknown, shareLoads?: number) => {
      checks.push(install.bundle);
      shareHints.push(shareLoads);
      return { checked: opened };
    };
    const r = await installFleet({ install: base, hosts: hosts('a', 'b', 'c'), parallel: 3, failFast: false }, { ...h.deps, checkOnce });
    expect(r.ok).toBe(true);
    expect(checks).toEqual(['/b.ferry']);
    // The very bundle that was checked, not a second opening of its files.
    expect(h.installedWith.map((o) => o.checked)).toEqual([opened, opened, opened]);
    for (const o of h.installedWith) expect(o.checked).toBe(opened);
    // Told, before it checks, that three loads will share the layers (so their reader can start).
    await installFleet({ install: base, hosts: hosts('a', 'b', 'c'), parallel: 2, failFast: false }, { ...h.deps, checkOnce });
    expect(shareHints).toEqual([3, undefined]);
  });

  it('a bundle that fails its check fails the run before any host is contacted', async () => {
    const h = harness({});
    let opened = 0;
    const deps = { ...h.deps, open: async (t: string) => (opened++, h.deps.open(t)), checkOnce: async () => Promise.reject(new IntegrityError('BUNDLE_INTEGRITY', 'blobs/sha256/x has the wrong digest')) };
    await expect(installFleet({ install: base, hosts: hosts('a', 'b'), parallel: 2, failFast: false }, deps)).rejects.toMatchObject({ code: 'BUNDLE_INTEGRITY', exitCode: 4 });
    expect(opened).toBe(0);
  });
});
