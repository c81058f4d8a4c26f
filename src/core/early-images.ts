/**
 * A guess, from the compose files as written, at the images Compose will resolve: what lets create
 * start the engine's save while Compose is still reading the project (Docker ≤ 24 on the classic
 * store sends nothing until it has exported everything, so the earlier it is asked the better).
 *
 * Only a guess: create compares it with what Compose resolved, by image ID, and uses the early save
 * only when they are the same images. So this answers null wherever the files alone cannot say
 * (interpolation, extends, include, a service that only builds) rather than guess loosely: a wrong
 * guess costs the engine an export it then throws away.
 */

type Doc = Record<string, unknown>;

interface ServiceGuess {
  image?: unknown;
  profiles?: unknown;
}

const isObject = (v: unknown): v is Doc => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The image references of the services a bundle carries with `profiles` enabled (those of no
 * profile, of an enabled one, and x-ferry's smoke service whatever its profiles: what
 * core/compose-project.ts keeps), from the compose documents in the order Compose merges them (a
 * later file's `image:` wins), or null when the documents leave that to Compose.
 */
export function literalImageRefs(docs: unknown[], profiles: string[]): string[] | null {
  const services = new Map<string, ServiceGuess>();
  let smoke: unknown;
  for (const doc of docs) {
    if (doc === null || doc === undefined) continue;
    if (!isObject(doc) || doc.include !== undefined) return null;
    if (isObject(doc['x-ferry']) && doc['x-ferry'].smoke !== undefined) smoke = doc['x-ferry'].smoke;
    if (doc.services === undefined || doc.services === null) continue;
    if (!isObject(doc.services)) return null;
    for (const [name, svc] of Object.entries(doc.services)) {
      if (!isObject(svc) || svc.extends !== undefined) return null;
      const merged = { ...services.get(name) };
      if (svc.image !== undefined) merged.image = svc.image;
      if (svc.profiles !== undefined) merged.profiles = svc.profiles;
      services.set(name, merged);
    }
  }
  const enabled = new Set(profiles);
  if (enabled.has('*')) return null;
  const refs = new Set<string>();
  for (const [name, svc] of services) {
    if (svc.profiles !== undefined && name !== smoke) {
      if (!Array.isArray(svc.profiles) || !svc.profiles.every((p) => typeof p === 'string')) return null;
      if (svc.profiles.length > 0 && !svc.profiles.some((p: string) => enabled.has(p))) continue;
    }
    if (typeof svc.image !== 'string' || svc.image.length === 0 || svc.image.includes('$')) return null;
    refs.add(svc.image);
  }
  return refs.size > 0 ? [...refs] : null;
}
