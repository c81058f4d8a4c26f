/**
 * The engine's save, asked for before Compose has resolved the project. Compose's `config` takes a
 * third of a second or more (Compose v1 starts Python), and Docker ≤ 24 on the classic store sends
 * the first byte of a save only once it has exported every image into a temporary directory: asked
 * at the same time, the two overlap instead of adding up.
 *
 * The images come from the compose files as written (core/early-images.ts). The save pass takes
 * this stream only when the images Compose resolved, pinned by ID, are exactly these, in the same
 * order; otherwise it is aborted and the save asked again. The bundle cannot tell which happened.
 */
import type { Readable } from 'node:stream';
import { join } from 'node:path';
import type { Engine } from '../adapters/engine.js';
import { readText } from '../adapters/fs.js';
import { parseDefinition } from '../core/definition.js';
import { literalImageRefs } from '../core/early-images.js';
import { saveOrder } from '../core/create-plan.js';
import { parseYaml } from '../core/yaml.js';
import { definitionPaths } from './project.js';

export interface EarlySave {
  /** The images asked for, in save order (core/create-plan.ts saveOrder). */
  readonly ids: string[];
  /** The archive when `ids` are the images the pass wants; else null, and the early save is aborted. */
  take(ids: string[]): Promise<Readable | null>;
  /** Aborts the save unless it was taken. */
  cancel(): void;
}

/** Definition file and compose files as create reads them; anything unexpected means "no guess". */
async function guessRefs(definition: string, profiles: string[]): Promise<string[] | null> {
  const { dir, file } = await definitionPaths(definition);
  const def = parseDefinition(await parseYaml(await readText(file), file), file);
  const docs = await Promise.all(def.compose.map(async (c) => parseYaml(await readText(join(dir, c)), c)));
  // The profiles create drops other services by (core/compose-project.ts), not Compose's own.
  const refs = literalImageRefs(docs, [...def.profiles, ...profiles]);
  return refs ? [...new Set([...refs, ...def.images])] : null;
}

/**
 * Starts the save of the images the compose files name, or answers null when they do not say
 * plainly (or anything fails: the ordinary path then reports it properly).
 */
export async function startEarlySave(engine: Engine, definition: string, profiles: string[]): Promise<EarlySave | null> {
  try {
    const refs = await guessRefs(definition, profiles);
    if (!refs) return null;
    const details = await Promise.all(refs.map((r) => engine.inspectImage(r)));
    if (details.some((d) => d === null)) return null;
    const ids = saveOrder(details.map((d) => d!.id));
    const abort = new AbortController();
    const archive = engine.save(ids, { signal: abort.signal });
    // Settled by take() or cancel(); a failure here only means the pass asks again.
    archive.catch(() => undefined);
    let taken = false;
    const cancel = (): void => {
      if (taken) return;
      taken = true;
      abort.abort();
      archive.then((s) => s.destroy(), () => undefined);
    };
    return {
      ids,
      async take(wanted) {
        if (wanted.length !== ids.length || wanted.some((id, i) => id !== ids[i])) {
          cancel();
          return null;
        }
        taken = true;
        return archive.catch(() => null);
      },
      cancel,
    };
  } catch {
    return null;
  }
}
