/**
 * What images an engine holds, layer by layer, and whether it is Podman. The image list endpoint
 * has no diffIDs, so each image is inspected as well, a few at a time: enough to hide the round
 * trips, few enough not to crowd an engine that is also serving production containers.
 */
import type { Engine } from './engine.js';
import { HostPreconditionError } from '../errors.js';

export interface EngineImage {
  id: string;
  repoTags: string[];
  diffIds: string[];
  size: number;
}

export interface EngineImages {
  images: EngineImage[];
  /** Images listed but not inspectable (removed meanwhile, or content missing on the engine). */
  skipped: { id: string; reason: string }[];
}

export const DEFAULT_INSPECT_CONCURRENCY = 4;

export async function listImagesWithLayers(engine: Engine, concurrency = DEFAULT_INSPECT_CONCURRENCY): Promise<EngineImages> {
  let listed: { Id: string; RepoTags?: string[] | null; Size?: number }[];
  try {
    // all=false: intermediate images of the classic builder are parents of listed ones, so their
    // chain IDs are prefixes of the listed images' chains and add nothing.
    listed = await engine.idempotent(() => engine.api.listImages({ all: false }));
  } catch (e) {
    throw engineError(engine, e);
  }
  const skipped: EngineImages['skipped'] = [];
  const results = await mapBounded(listed, concurrency, async (entry): Promise<EngineImage | undefined> => {
    const id = normalizeId(entry.Id);
    let raw: { Id?: string; RepoTags?: string[] | null; RootFS?: { Layers?: string[] | null }; Size?: number };
    try {
      raw = await engine.idempotent(() => engine.api.getImage(id).inspect());
    } catch (e) {
      const status = (e as { statusCode?: number }).statusCode;
      if (status === undefined) throw engineError(engine, e);
      skipped.push({ id, reason: status === 404 ? 'removed while the inventory was taken' : `inspect failed (${status}): ${(e as Error).message}` });
      return undefined;
    }
    return {
      id,
      repoTags: entry.RepoTags ?? raw.RepoTags ?? [],
      diffIds: (raw.RootFS?.Layers ?? []).map(normalizeId),
      size: entry.Size ?? raw.Size ?? 0,
    };
  });
  return { images: results.filter((r): r is EngineImage => r !== undefined), skipped };
}

export async function isPodman(engine: Engine): Promise<boolean> {
  try {
    return podmanFromVersion(await engine.idempotent(() => engine.api.version()));
  } catch (e) {
    throw engineError(engine, e);
  }
}

/**
 * Podman's compat `/version` names its server component "Podman Engine" (and says so in
 * Platform.Name); Docker's says "Engine" and a Docker platform name.
 */
export function podmanFromVersion(version: unknown): boolean {
  const v = (version ?? {}) as { Components?: { Name?: unknown }[] | null; Platform?: { Name?: unknown } | null };
  const names = [...(Array.isArray(v.Components) ? v.Components.map((c) => c?.Name) : []), v.Platform?.Name];
  return names.some((n) => typeof n === 'string' && /podman/i.test(n));
}

/** Some engines (Podman) give bare hex where Docker gives "sha256:<hex>". */
export function normalizeId(id: string): string {
  return /^[0-9a-f]{64}$/.test(id) ? `sha256:${id}` : id;
}

/** Maps with at most `limit` calls in flight, keeping the input order; the first rejection wins. */
export async function mapBounded<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return out;
}

/**
 * Engine failures as ferry errors: no HTTP status means the engine is gone; a status means it
 * answered but refused (e.g. 500 on a broken store). Both are about the host, not about ferry.
 */
export function engineError(engine: Engine, e: unknown): HostPreconditionError {
  const status = (e as { statusCode?: number }).statusCode;
  if (status !== undefined) {
    return new HostPreconditionError('ENGINE_ERROR', `the Docker engine at ${engine.host} answered ${status}: ${(e as Error).message}`, {
      details: { host: engine.host, status },
      cause: e,
    });
  }
  return new HostPreconditionError('ENGINE_UNREACHABLE', `cannot reach the Docker engine at ${engine.host}: ${(e as Error).message}`, {
    hint: 'Start the engine, or point DOCKER_HOST at it (e.g. DOCKER_HOST=unix:///var/run/docker.sock).',
    details: { host: engine.host },
    cause: e,
  });
}
