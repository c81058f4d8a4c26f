/**
 * `ferry host inventory`: one document saying what this host's engine holds (images and their
 * layers by chain ID) and what ferry installed here, for the next `bundle create --base` to
 * leave out what need not travel again.
 */
import { resolve } from 'node:path';
import type { HostTarget } from '../adapters/host.js';
import { mediumWriteError } from '../adapters/medium.js';
import { isPodman, listImagesWithLayers } from '../adapters/engine-inventory.js';
import { StateStore, writeFileAtomic } from '../adapters/state-store.js';
import { buildInventory, rawImageProblem, serializeInventory, type Inventory, type RawImage } from '../core/inventory.js';
import type { StackState } from '../core/state.js';
import { HostPreconditionError } from '../errors.js';
import { shortDigest } from '../core/format.js';
import type { Reporter } from './reporter.js';
import { runningExecutableDigest, TOOL_VERSION } from '../adapters/tool-version.js';

export interface InventoryOptions {
  stateDir: string;
  /** Write the document here (atomically) instead of leaving it to the caller. */
  out?: string;
  now?: Date;
  /** The name the document records for this host (what `bundle create` shows as "built for"). */
  host: string;
}

export interface InventoryResult {
  inventory: Inventory;
  /** The absolute path written, or null without `out`. */
  written: string | null;
}

export async function hostInventory(options: InventoryOptions, host: HostTarget, reporter: Reporter): Promise<InventoryResult> {
  const { engine } = host;
  // info() first: it turns an absent engine into ENGINE_UNREACHABLE before anything else is tried.
  const info = await engine.info();
  const podman = await isPodman(engine);
  reporter.log(`listing images on ${engine.host} (${podman ? 'Podman' : 'Docker'} ${info.serverVersion}, ${info.storageDriver})`);
  const listed = await listImagesWithLayers(engine);
  for (const s of listed.skipped) {
    reporter.warn({ code: 'IMAGE_SKIPPED', subject: s.id, message: `image ${shortDigest(s.id)} left out of the inventory: ${s.reason}` });
  }
  const images: RawImage[] = [];
  for (const listedImage of listed.images) {
    const im = info.containerdStore ? { ...listedImage, id: pinnedConfigId(listedImage.repoTags) ?? listedImage.id } : listedImage;
    const problem = rawImageProblem(im);
    if (problem === undefined) images.push(im);
    else reporter.warn({ code: 'IMAGE_SKIPPED', subject: im.id, message: `image ${im.id} left out of the inventory: ${problem}` });
  }

  const executable = await runningExecutableDigest();
  const inventory = buildInventory({
    host: options.host,
    created: options.now ?? new Date(),
    tool: { name: 'ferry', version: TOOL_VERSION, ...(executable ? { executable: { sha256: executable } } : {}) },
    engine: {
      serverVersion: info.serverVersion,
      apiVersion: info.apiVersion,
      storageDriver: info.storageDriver,
      containerdStore: info.containerdStore,
      os: info.os,
      architecture: info.architecture,
      podman,
    },
    images,
    stacks: await installedStacks(new StateStore(options.stateDir, host.fs), reporter),
  });

  const written = options.out !== undefined ? await writeInventory(inventory, options.out) : null;
  return { inventory, written };
}

/** Writes the document atomically; returns the absolute path. A swarm's inventory is written the same way. */
export async function writeInventory(inventory: Inventory, out: string): Promise<string> {
  const written = resolve(out);
  try {
    await writeFileAtomic(written, Buffer.from(serializeInventory(inventory), 'utf8'));
  } catch (e) {
    const medium = await mediumWriteError(e, { what: 'the inventory', output: out, file: written });
    if (medium) throw medium;
    throw new HostPreconditionError('OUTPUT_UNWRITABLE', `cannot write the inventory to ${out}: ${(e as Error).message}`, {
      hint: 'Choose an --out in a directory you can write to.',
      details: { path: written },
      cause: e,
    });
  }
  return written;
}

/**
 * The containerd image store names images by manifest digest; an image ferry loaded carries its
 * config digest in the tag ferry gave it after checking it (ferry.local/STACK:<config hex>), so an
 * inventory lists those by the same identity a classic store shows.
 */
function pinnedConfigId(tags: readonly string[]): string | undefined {
  for (const t of tags) {
    const m = /^ferry\.local\/[^:]+:([0-9a-f]{64})$/.exec(t);
    if (m) return `sha256:${m[1]}`;
  }
  return undefined;
}

/**
 * The state of every stack in the state directory. A missing directory is a host without
 * releases; a stack whose state cannot be read is left out with a warning, because the layers,
 * the inventory's main point, are still worth having.
 */
async function installedStacks(store: StateStore, reporter: Reporter): Promise<StackState[]> {
  const out: StackState[] = [];
  for (const stack of await store.stacks()) {
    try {
      out.push(await store.load(stack));
    } catch (e) {
      reporter.warn({ code: 'STATE_UNREADABLE', subject: stack, message: `releases of stack ${stack} left out: ${(e as Error).message}` });
    }
  }
  return out;
}
