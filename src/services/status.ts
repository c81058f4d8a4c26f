/**
 * `ferry host status`: per stack, what ferry installed (from the state directory) next to what
 * actually runs (from the engine), so that drift shows: a service on another image than its
 * release pinned, a container gone, one unhealthy.
 */
import type { HostTarget } from '../adapters/host.js';
import { projectContainers, type ContainerHealth, type ProjectContainer } from '../adapters/engine-containers.js';
import { mapBounded } from '../adapters/engine-inventory.js';
import { StateStore } from '../adapters/state-store.js';
import { formatBytes } from '../core/format.js';
import { currentRelease, imagesToRemove, type ReleaseRecord, type StackState } from '../core/state.js';
import { ExitCode, FerryError, HostPreconditionError, UsageError } from '../errors.js';
import { engineIds } from './pinned-images.js';
import type { Reporter } from './reporter.js';

export interface StatusOptions {
  stateDir: string;
  /** One stack; all stacks of the state directory when absent. */
  stack?: string;
}

export interface ServiceStatus {
  service: string;
  /** Container name; null when the release expects the service and no container exists. */
  name: string | null;
  /** The engine's container state, or "missing" when there is no container. */
  state: string;
  health: ContainerHealth;
  imageId: string | null;
  /** What the current release pinned for this service; null when it names no such service. */
  expectedImageId: string | null;
  /** null when there is nothing to compare (no current release, the service not in it, or no container). */
  imageMatches: boolean | null;
  exitCode: number | null;
  oneOff: boolean;
}

export interface StackReleaseStatus {
  id: string;
  version: string;
  sequence: number;
  installedAt: string;
  result: ReleaseRecord['result'];
  current: boolean;
}

export interface StackStatus {
  stack: string;
  current: {
    id: string;
    version: string;
    sequence: number;
    installedAt: string;
    signer: ReleaseRecord['signer'];
    /** What admitted the current release (the full report is in its release directory). */
    verification: ReleaseRecord['verification'] | null;
    /** Blue/green: the live colour; null in place. */
    colour: ReleaseRecord['colour'] | null;
  } | null;
  /** Kept releases, oldest first. */
  releases: StackReleaseStatus[];
  services: ServiceStatus[];
}

/** Room where the host keeps images and releases: layers with many small files run out of inodes first. */
export interface DiskStatus {
  what: 'engine data root' | 'state directory';
  path: string;
  freeBytes: number;
  totalBytes: number;
  freeInodes: number;
  totalInodes: number;
  /** Below LOW_ROOM of either: warned about, before an install refuses for want of it. */
  low: boolean;
}

/** What pruning to the current release alone (install --keep 1) would give back. */
export interface Reclaimable {
  releases: number;
  images: number;
  /** As the engine reports the images' sizes (layers shared with kept images count too). */
  bytes: number;
}

export interface StatusResult {
  stateDir: string;
  stacks: (StackStatus & { reclaimable: Reclaimable })[];
  disks: DiskStatus[];
}

/** Free space or inodes below this share of the filesystem is warned about. */
export const LOW_ROOM = 0.1;

export async function hostStatus(options: StatusOptions, host: HostTarget, reporter: Reporter): Promise<StatusResult> {
  const { engine } = host;
  const store = new StateStore(options.stateDir, host.fs);
  const known = await store.stacks();
  if (options.stack !== undefined && !known.includes(options.stack)) {
    // Checked against the directory listing before the name is used in any path.
    throw new UsageError('STACK_UNKNOWN', `no stack ${JSON.stringify(options.stack)} is installed on this host (state directory ${options.stateDir})`, {
      details: { stack: options.stack, known, stateDir: options.stateDir },
      hint: known.length > 0 ? `Known stacks: ${known.join(', ')}.` : 'No stack is installed here yet; check --state-dir (env FERRY_STATE_DIR).',
    });
  }
  const names = options.stack !== undefined ? [options.stack] : known;
  // Reach the engine once up front, so an absent one is ENGINE_UNREACHABLE even on a host with no stacks.
  const info = await engine.info();
  const disks = await diskStatus(host, [
    ['engine data root', info.dataRoot],
    ['state directory', options.stateDir],
  ]);
  for (const d of disks.filter((x) => x.low)) {
    reporter.warn({
      code: 'LOW_ROOM',
      subject: d.path,
      message: `the ${d.what} ${d.path} has ${formatBytes(d.freeBytes)} (${percent(d.freeBytes, d.totalBytes)}) and ${d.freeInodes} inodes (${percent(d.freeInodes, d.totalInodes)}) free: an install may soon refuse for want of room; pruning old releases (install --keep) frees what the table shows`,
    });
  }
  const stacks: StatusResult['stacks'] = [];
  for (const stack of names) {
    let state: StackState;
    try {
      state = await store.load(stack);
    } catch (e) {
      throw new HostPreconditionError('STATE_UNREADABLE', `cannot read the state of stack ${stack} in ${options.stateDir}: ${(e as Error).message}`, {
        hint: `Look at ${store.stackDir(stack)}/state.json; ferry writes it atomically, so damage there came from elsewhere.`,
        details: { stack, stateDir: options.stateDir },
        cause: e,
      });
    }
    const current = currentRelease(state);
    const ids = await engineIds(engine, stack, (current?.services ?? []).map((s) => s.imageId));
    // Blue/green: the live colour's services run in their own project.
    const colour = current?.switch === 'blue-green' && current.colour ? await projectContainers(engine, `${stack}-${current.colour}`) : [];
    stacks.push({ ...stackStatus(state, [...(await projectContainers(engine, stack)), ...colour], ids), reclaimable: await reclaimable(host, state) });
  }
  return { stateDir: options.stateDir, stacks, disks };
}

const percent = (part: number, whole: number) => (whole > 0 ? `${((part / whole) * 100).toFixed(1)}%` : '?');

async function diskStatus(host: HostTarget, places: [DiskStatus['what'], string][]): Promise<DiskStatus[]> {
  const out: DiskStatus[] = [];
  for (const [what, path] of places) {
    // A state directory not made yet sits on its parent's filesystem; a place that cannot be seen from here is left out.
    let s = null;
    for (let p = path; p && !s; p = p === '/' ? '' : p.replace(/\/[^/]*$/, '') || '/') s = await host.fs.statfs(p).catch(() => null);
    if (!s || s.totalBytes === 0) continue;
    const low = s.bytes < s.totalBytes * LOW_ROOM || (s.totalInodes > 0 && s.inodes < s.totalInodes * LOW_ROOM);
    out.push({ what, path, freeBytes: s.bytes, totalBytes: s.totalBytes, freeInodes: s.inodes, totalInodes: s.totalInodes, low });
  }
  return out;
}

async function reclaimable(host: HostTarget, state: StackState): Promise<Reclaimable> {
  const older = state.releases.filter((r) => r.id !== state.current);
  const images = imagesToRemove({ ...state, releases: state.releases.filter((r) => r.id === state.current) }, older);
  let bytes = 0;
  for (const im of images) bytes += (await host.engine.inspectImage(im.tag).catch(() => null))?.size ?? 0;
  return { releases: older.length, images: images.length, bytes };
}

/** Pure: the state and the containers of one stack, joined per service. */
export function stackStatus(state: StackState, containers: readonly ProjectContainer[], engineIds: ReadonlyMap<string, string> = new Map()): StackStatus {
  const current = currentRelease(state);
  const expected = new Map((current?.services ?? []).map((s) => [s.name, s.imageId]));
  const services: ServiceStatus[] = containers.map((c) => {
    const expectedImageId = expected.get(c.service) ?? null;
    return {
      service: c.service,
      name: c.name,
      state: c.state,
      health: c.health,
      imageId: c.imageId,
      expectedImageId,
      // The containerd image store shows a container's image by manifest digest, not by config digest.
      imageMatches: expectedImageId === null ? null : c.imageId === expectedImageId || c.imageId === engineIds.get(expectedImageId),
      exitCode: c.exitCode,
      oneOff: c.oneOff,
    };
  });
  const present = new Set(containers.map((c) => c.service));
  for (const [service, imageId] of expected) {
    // The smoke test runs once with `run --rm` during install: no container is its normal state.
    if (present.has(service) || service === current?.smoke) continue;
    services.push({ service, name: null, state: 'missing', health: 'none', imageId: null, expectedImageId: imageId, imageMatches: null, exitCode: null, oneOff: false });
  }
  services.sort((a, b) => cmp(a.service, b.service) || cmp(a.name ?? '', b.name ?? ''));
  return {
    stack: state.stack,
    current: current
      ? { id: current.id, version: current.version, sequence: current.sequence, installedAt: current.installedAt, signer: current.signer, verification: current.verification ?? null, colour: current.colour ?? null }
      : null,
    releases: [...state.releases]
      .sort((a, b) => a.sequence - b.sequence)
      .map((r) => ({ id: r.id, version: r.version, sequence: r.sequence, installedAt: r.installedAt, result: r.result, current: r.id === state.current })),
    services,
  };
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------
// Several hosts: `host status --ssh a,b,c`

export interface FleetStatusHost {
  /** The --ssh target as given. */
  target: string;
  ok: boolean;
  outcome: 'read' | 'failed';
  /** 0, or the exit code this host alone would have given. */
  exitCode: number;
  error?: { code: string; message: string; hint?: string };
  /** What the host runs; absent when it could not be read. */
  status?: StatusResult;
  /** STACK was asked for and this host has none of it: a state, not a failure. */
  stackMissing?: boolean;
  durationMs: number;
}

export interface FleetStatusResult {
  ok: boolean;
  /** 0, or the exit code of the first failed host in the order given. */
  exitCode: number;
  hosts: FleetStatusHost[];
  durationMs: number;
}

export interface FleetStatusDeps {
  /** Opens a host; `warn` receives that host's warnings (SSH_RETRY, ENGINE_RETRY, HOST_KEY_ADDED). */
  open(target: string, warn: Reporter['warn']): Promise<HostTarget>;
  /** Hosts read at the same time. */
  parallel?: number;
}

/**
 * The status of every host, each on its own connection: a host that cannot be reached or read is
 * one failed entry, and every other host is still shown. Hosts' warnings name their host.
 */
export async function fleetStatus(options: StatusOptions, targets: string[], deps: FleetStatusDeps, reporter: Reporter): Promise<FleetStatusResult> {
  const started = Date.now();
  const hosts = await mapBounded(targets, deps.parallel ?? 8, async (target): Promise<FleetStatusHost> => {
    const t0 = Date.now();
    const hostReporter: Reporter = {
      log: (m) => reporter.log(`[${target}] ${m}`),
      warn: (w) => reporter.warn({ ...w, subject: w.subject ?? target, message: `[${target}] ${w.message}` }),
      progress: () => reporter.progress(),
    };
    let host: HostTarget | undefined;
    try {
      host = await deps.open(target, hostReporter.warn);
      try {
        const status = await hostStatus(options, host, hostReporter);
        return { target, ok: true, outcome: 'read', exitCode: 0, status, durationMs: Date.now() - t0 };
      } catch (e) {
        if (!(e instanceof UsageError && e.code === 'STACK_UNKNOWN')) throw e;
        return { target, ok: true, outcome: 'read', exitCode: 0, status: { stateDir: options.stateDir, stacks: [], disks: [] }, stackMissing: true, durationMs: Date.now() - t0 };
      }
    } catch (e) {
      const error = e instanceof FerryError ? { code: e.code, message: e.message, ...(e.hint ? { hint: e.hint } : {}) } : { code: 'UNEXPECTED', message: `unexpected error: ${e instanceof Error ? e.message : String(e)}` };
      return { target, ok: false, outcome: 'failed', exitCode: e instanceof FerryError ? e.exitCode : ExitCode.bug, error, durationMs: Date.now() - t0 };
    } finally {
      await host?.close().catch(() => undefined);
    }
  });
  const failed = hosts.find((h) => !h.ok);
  return { ok: !failed, exitCode: failed?.exitCode ?? 0, hosts, durationMs: Date.now() - started };
}
