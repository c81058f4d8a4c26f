/**
 * The network side of a blue/green switch, through the engine API: which networks a container is
 * on with which aliases, and moving a service-name alias from one container to another. Docker
 * cannot change the aliases of an attached container, so taking or losing one is a disconnect
 * followed by a connect.
 */
import type { Engine } from './engine.js';
import { engineError } from './engine-inventory.js';

/** Network name → the aliases the container has there. */
export async function containerNetworks(engine: Engine, id: string): Promise<Map<string, string[]>> {
  try {
    const info = await engine.api.getContainer(id).inspect();
    const nets = info.NetworkSettings?.Networks ?? {};
    return new Map(Object.entries(nets).map(([name, n]) => [name, (n as { Aliases?: string[] | null }).Aliases ?? []]));
  } catch (e) {
    throw engineError(engine, e);
  }
}

/** Attaches the container to the network with exactly these aliases (none: reachable by name only). */
export async function attach(engine: Engine, network: string, id: string, aliases: string[]): Promise<void> {
  try {
    await engine.api.getNetwork(network).connect({ Container: id, EndpointConfig: { Aliases: aliases } });
  } catch (e) {
    throw engineError(engine, e);
  }
}

/** Detaches the container; one that is not attached (or gone) is left as it is. */
export async function detach(engine: Engine, network: string, id: string): Promise<void> {
  try {
    await engine.api.getNetwork(network).disconnect({ Container: id, Force: true });
  } catch (e) {
    const status = (e as { statusCode?: number }).statusCode;
    if (status === 404 || (status === 500 && /is not connected/.test(String((e as Error).message)))) return;
    throw engineError(engine, e);
  }
}

/** Networks a compose project created (by label), removed once its containers are gone. */
export async function removeProjectNetworks(engine: Engine, project: string): Promise<void> {
  try {
    const nets = await engine.api.listNetworks({ filters: { label: [`com.docker.compose.project=${project}`] } });
    for (const n of nets) await engine.api.getNetwork(n.Id).remove().catch(() => undefined);
  } catch (e) {
    throw engineError(engine, e);
  }
}

/** Stops (SIGTERM, then SIGKILL after the grace period) and removes a container; one already gone is fine. */
export async function removeContainer(engine: Engine, id: string, graceSeconds = 10): Promise<void> {
  try {
    const c = engine.api.getContainer(id);
    await c.stop({ t: graceSeconds }).catch((e: { statusCode?: number }) => {
      if (e.statusCode !== 304 && e.statusCode !== 404) throw e;
    });
    await c.remove({ force: true, v: false });
  } catch (e) {
    if ((e as { statusCode?: number }).statusCode === 404) return;
    throw engineError(engine, e);
  }
}

/** Starts a stopped container as it is (its networks, aliases and configuration unchanged); one already running is fine. */
export async function startContainer(engine: Engine, id: string): Promise<void> {
  try {
    await engine.api.getContainer(id).start();
  } catch (e) {
    if ((e as { statusCode?: number }).statusCode === 304) return;
    throw engineError(engine, e);
  }
}

/** Stops a container with its own grace period (compose's stop_grace_period); one already stopped or gone is fine. */
export async function stopContainer(engine: Engine, id: string): Promise<void> {
  try {
    await engine.api.getContainer(id).stop();
  } catch (e) {
    const status = (e as { statusCode?: number }).statusCode;
    if (status === 304 || status === 404) return;
    throw engineError(engine, e);
  }
}

/** The directory compose created the container from (its project working_dir label), if any. */
export async function composeWorkingDir(engine: Engine, id: string): Promise<string | undefined> {
  try {
    return (await engine.api.getContainer(id).inspect()).Config?.Labels?.['com.docker.compose.project.working_dir'];
  } catch (e) {
    if ((e as { statusCode?: number }).statusCode === 404) return undefined;
    throw engineError(engine, e);
  }
}
