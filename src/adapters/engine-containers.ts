/**
 * The containers of a compose project as the engine sees them. Compose v1 and v2 both label every
 * container they create with the project and service, so the labels, not container names (whose
 * pattern differs between the two), say what belongs to a stack.
 *
 * Each container is inspected: the list endpoint's Status is prose ("Up 3 minutes (healthy)") and
 * its Image is whatever reference the container was created from, whereas inspect gives the
 * health status and the image ID exactly.
 */
import type Docker from 'dockerode';
import type { Engine } from './engine.js';
import { engineError, mapBounded, normalizeId } from './engine-inventory.js';

export const COMPOSE_PROJECT_LABEL = 'com.docker.compose.project';
export const COMPOSE_SERVICE_LABEL = 'com.docker.compose.service';
export const COMPOSE_ONEOFF_LABEL = 'com.docker.compose.oneoff';

/** Docker's container states; another engine may report others, passed through as they come. */
export type ContainerState = 'created' | 'running' | 'paused' | 'restarting' | 'removing' | 'exited' | 'dead' | (string & {});
/** `none`: the container has no health check. */
export type ContainerHealth = 'healthy' | 'unhealthy' | 'starting' | 'none';

export interface ProjectContainer {
  id: string;
  /** The compose service; "" when the label is missing (a container labelled by hand). */
  service: string;
  /** Without the leading "/". */
  name: string;
  state: ContainerState;
  health: ContainerHealth;
  /** The image ID the container runs ("sha256:…"), whatever reference it was created from. */
  imageId: string;
  /** The last exit code; null while the container is created, running or paused. */
  exitCode: number | null;
  /** Started by `compose run` (label com.docker.compose.oneoff=True), not by `up`. */
  oneOff: boolean;
}

/**
 * Every container of the compose project, stopped ones and one-off `run` containers included,
 * sorted by service then name. A container removed between the list and its inspect is left out.
 */
export async function projectContainers(engine: Engine, project: string): Promise<ProjectContainer[]> {
  let listed: Docker.ContainerInfo[];
  try {
    listed = await engine.idempotent(() => engine.api.listContainers({ all: true, filters: { label: [`${COMPOSE_PROJECT_LABEL}=${project}`] } }));
  } catch (e) {
    throw engineError(engine, e);
  }
  const inspected = await mapBounded(listed, 4, async (c) => {
    try {
      return await engine.idempotent(() => engine.api.getContainer(c.Id).inspect());
    } catch (e) {
      if ((e as { statusCode?: number }).statusCode === 404) return undefined;
      throw engineError(engine, e);
    }
  });
  const out: ProjectContainer[] = [];
  for (const info of inspected) {
    if (!info) continue;
    const labels = info.Config?.Labels ?? {};
    // The filter ran on the engine; checking again costs nothing and guards against an engine
    // that ignores filters it does not support.
    if (labels[COMPOSE_PROJECT_LABEL] !== project) continue;
    out.push(toProjectContainer(info));
  }
  return out.sort((a, b) => cmp(a.service, b.service) || cmp(a.name, b.name));
}

export function toProjectContainer(info: Docker.ContainerInspectInfo): ProjectContainer {
  const labels = info.Config?.Labels ?? {};
  const state = (info.State?.Status ?? 'unknown') as ContainerState;
  return {
    id: info.Id,
    service: labels[COMPOSE_SERVICE_LABEL] ?? '',
    name: (info.Name ?? '').replace(/^\//, ''),
    state,
    health: healthOf(info.State?.Health?.Status),
    imageId: normalizeId(info.Image ?? ''),
    exitCode: state === 'created' || state === 'running' || state === 'paused' ? null : (info.State?.ExitCode ?? null),
    oneOff: (labels[COMPOSE_ONEOFF_LABEL] ?? '').toLowerCase() === 'true',
  };
}

function healthOf(status: string | undefined): ContainerHealth {
  return status === 'healthy' || status === 'unhealthy' || status === 'starting' ? status : 'none';
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
