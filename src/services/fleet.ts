/**
 * `ferry bundle install --ssh a,b,c`: the one install service, run on several hosts at once.
 * Each host has its own connection, its own reporter and its own outcome; one host's failure never
 * stops or changes another's install (with --fail-fast, hosts not yet started are not started).
 *
 * Exit code: 0 when every host succeeded; otherwise the exit code of the first failed host in the
 * order the targets were given, so a script sees the same code for the same failure whether it
 * ran one host or many. The per-host codes are all in the result (and in --json).
 */
import type { NamedHost } from '../adapters/host-factory.js';
import type { LayerFanout } from '../adapters/layer-fanout.js';
import { ExitCode, FerryError } from '../errors.js';
import { openChecked } from './bundle.js';
import { installBundle, type InstallOptions, type InstallResult } from './install.js';
import { silentReporter, type Reporter } from './reporter.js';
import { prepareSharedLayers, sharedLayers, sharedLayersReport, type SharedLayersStats } from './shared-layers.js';

export interface FleetHost {
  /** The --ssh target as given. */
  target: string;
  /** Host override to use; default: the host's own name. */
  hostName?: string;
}

export interface FleetOptions {
  install: Omit<InstallOptions, 'host'>;
  hosts: FleetHost[];
  /** Hosts worked on at the same time. */
  parallel: number;
  /** Start no further host once one has failed (those already running finish). */
  failFast: boolean;
}

export interface FleetReporter extends Reporter {
  /** The host's final line: its outcome. */
  finish(outcome: FleetHostResult): void;
}

export interface FleetDeps {
  open(target: string): Promise<NamedHost>;
  reporterFor(target: string): FleetReporter;
  /** For what concerns every host: the bundle's check before any host is contacted. */
  overall?: Reporter;
  install?: typeof installBundle;
  /** Checks the bundle once for all hosts; returns what each host's install may then skip. */
  checkOnce?: (install: FleetOptions['install'], reporter: Reporter, shareLoads?: number) => Promise<CheckedOnce>;
}

/**
 * Every host would read and hash the whole bundle before its load; the files are the same for
 * all of them, so they are checked once here. A bundle that fails fails the run before any host
 * is contacted, with its own exit code (3 trust, 4 integrity). Each host installs from this
 * verified manifest (never from a second read of the files), checks its own policy, and re-checks
 * every layer as it streams.
 */
export async function checkBundleOnce(install: FleetOptions['install'], reporter: Reporter, shareLoads?: number): Promise<CheckedOnce> {
  // Hosts that will load at once share one read of the layers, on a thread of its own: it starts
  // now, while this one checks the bundle (the second core idles through the check otherwise).
  if (shareLoads) prepareSharedLayers();
  const opened = await openChecked(install.bundle, install.trust, reporter);
  return { checked: opened, shareLayers: (loads) => sharedLayers(opened.dir, opened.manifest, loads) };
}

/** The bundle checked once for every host; and, for hosts loading at once, one read of each layer between them. */
export interface CheckedOnce extends Pick<InstallOptions, 'checked'> {
  shareLayers?: (loads: number) => LayerFanout;
}

export interface FleetHostError {
  code: string;
  message: string;
  hint?: string;
  details?: unknown;
}

export interface FleetHostResult {
  target: string;
  /** The host override used; null when the host was never reached. */
  host: string | null;
  ok: boolean;
  outcome: InstallResult['outcome'] | 'failed' | 'skipped';
  /** The exit code this host alone would have given; null when it was skipped. */
  exitCode: number | null;
  error?: FleetHostError;
  result?: InstallResult;
  durationMs: number;
}

export interface FleetResult {
  ok: boolean;
  exitCode: number;
  parallel: number;
  hosts: FleetHostResult[];
  /** Hosts loading at once read each bundle layer once between them: how many, fed to how many loads. */
  sharedLayers: SharedLayersStats | null;
  durationMs: number;
}

export async function installFleet(options: FleetOptions, deps: FleetDeps): Promise<FleetResult> {
  const started = Date.now();
  const install = deps.install ?? installBundle;
  const n = Math.max(1, Math.min(options.parallel, options.hosts.length));
  // Only when every host loads at once: a host waiting for a free slot would hold the others.
  const share = options.hosts.length > 1 && n === options.hosts.length;
  // Hosts over SSH read the bundle in place, so one check serves them all.
  const { shareLayers, ...checked }: CheckedOnce = options.hosts.length > 1 && deps.checkOnce ? await deps.checkOnce(options.install, deps.overall ?? silentReporter, share ? n : undefined) : {};
  const hub = shareLayers && share ? shareLayers(n) : undefined;
  const results: (FleetHostResult | undefined)[] = options.hosts.map(() => undefined);
  let next = 0;
  let failed = false;

  const one = async (spec: FleetHost, load: string, reporter: FleetReporter): Promise<FleetHostResult> => {
    const t0 = Date.now();
    let hostName: string | null = spec.hostName ?? null;
    let host: NamedHost | undefined;
    try {
      reporter.log('connecting');
      host = await deps.open(spec.target);
      hostName ??= await host.hostname();
      reporter.log(`connected; host override ${hostName}`);
      const result = await install({ ...options.install, ...checked, host: hostName, ...(hub ? { fanout: { hub, load } } : {}) }, host, reporter);
      return { target: spec.target, host: hostName, ok: true, outcome: result.outcome, exitCode: 0, result, durationMs: Date.now() - t0 };
    } catch (e) {
      const err = hostFailure(e);
      return { target: spec.target, host: hostName, ok: false, outcome: 'failed', exitCode: err.exitCode, error: err.error, durationMs: Date.now() - t0 };
    } finally {
      hub?.leave(load);
      await host?.close().catch(() => undefined);
    }
  };

  const worker = async (): Promise<void> => {
    for (;;) {
      const i = next++;
      const spec = options.hosts[i];
      if (!spec) return;
      const reporter = deps.reporterFor(spec.target);
      let r: FleetHostResult;
      if (failed && options.failFast) {
        hub?.leave(String(i));
        r = { target: spec.target, host: spec.hostName ?? null, ok: false, outcome: 'skipped', exitCode: null, durationMs: 0 };
      } else {
        r = await one(spec, String(i), reporter);
        if (!r.ok) failed = true;
      }
      results[i] = r;
      try {
        reporter.finish(r);
      } catch {
        // A display problem must not turn a host's outcome into something else.
      }
    }
  };

  await Promise.all(Array.from({ length: n }, () => worker()));
  const hosts = results.map((r) => r!);
  const firstFailed = hosts.find((h) => !h.ok && h.exitCode !== null);
  const sharedLayers = sharedLayersReport(hub, deps.overall ?? silentReporter);
  return { ok: !firstFailed, exitCode: firstFailed?.exitCode ?? 0, parallel: n, hosts, sharedLayers, durationMs: Date.now() - started };
}

/** What one host's failure becomes in a many-host result (fleets, swarm nodes): its exit code and a plain error. */
export function hostFailure(e: unknown): { exitCode: number; error: FleetHostError } {
  if (e instanceof FerryError) {
    return { exitCode: e.exitCode, error: { code: e.code, message: e.message, ...(e.hint ? { hint: e.hint } : {}), ...(e.details !== undefined ? { details: e.details } : {}) } };
  }
  return { exitCode: ExitCode.bug, error: { code: 'UNEXPECTED', message: `unexpected error: ${e instanceof Error ? e.message : String(e)}` } };
}
