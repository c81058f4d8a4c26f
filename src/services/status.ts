/**
 * `ferry host status`: per stack, what ferry installed (from the state directory) next to what
 * actually runs (from the engine), so that drift shows: a service on another image than its
 * release pinned, a container gone, one unhealthy.
 */
import type { HostTarget } from '../adapters/host.js';
import { projectContainers, type ContainerHealth, type ProjectContainer } from '../adapters/engine-containers.js';
import { StateStore } from '../adapters/state-store.js';
import { currentRelease, type ReleaseRecord, type StackState } from '../core/state.js';
import { HostPreconditionError, UsageError } from '../errors.js';
import { engineIds } from './pinned-images.js';

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
  } | null;
  /** Kept releases, oldest first. */
  releases: StackReleaseStatus[];
  services: ServiceStatus[];
}

export interface StatusResult {
  stateDir: string;
  stacks: StackStatus[];
}

export async function hostStatus(options: StatusOptions, host: HostTarget): Promise<StatusResult> {
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
  await engine.info();
  const stacks: StackStatus[] = [];
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
    stacks.push(stackStatus(state, await projectContainers(engine, stack), ids));
  }
  return { stateDir: options.stateDir, stacks };
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
      ? { id: current.id, version: current.version, sequence: current.sequence, installedAt: current.installedAt, signer: current.signer, verification: current.verification ?? null }
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
