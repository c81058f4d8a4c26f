/**
 * The host inventory (`ferry host inventory`): what one host's engine holds and what ferry installed
 * there, as one JSON document. It travels back across the air gap so that the next
 * `bundle create --base FILE` can leave out every layer the host already has.
 *
 * Dedup matches on chain IDs (`layers`), never on compressed digests: those differ between engines.
 * The document is written by a host and read on a build machine after a trip on a stick anyone may
 * have touched, so `parseInventory` checks every field, recomputes every chain ID and refuses
 * formats it does not know. A wrong inventory can only make a bundle too small (install then stops
 * at its base-layer preflight), never let anything unverified onto a host.
 */
import { BugError, BuildInputError } from '../errors.js';
import { chainIds, isDigest } from './digest.js';
import { JsonChecker, MAX_STRING, type Obj } from './json-checker.js';
import type { StackState } from './state.js';

export const INVENTORY_FORMAT = 'ferry.inventory/v1';
/** Refused before parsing. Thousands of images of a hundred layers each stay far below this. */
export const MAX_INVENTORY_BYTES = 128 * 1024 * 1024;

const MAX_IMAGES = 100_000;
/** Docker refuses more than 127 layers; other engines may allow some more. */
const MAX_LAYERS_PER_IMAGE = 1000;
const MAX_LAYERS = 1_000_000;
const MAX_TAGS_PER_IMAGE = 1000;
const MAX_STACKS = 10_000;
const MAX_RELEASES_PER_STACK = 10_000;

export interface InventoryEngine {
  serverVersion: string;
  apiVersion: string;
  storageDriver: string;
  /** Docker's containerd image store: image IDs there are manifest digests, not config digests. */
  containerdStore: boolean;
  os: string;
  architecture: string;
  /** Podman's Docker-compatible API rather than Docker itself. */
  podman: boolean;
}

export interface InventoryTool {
  name: string;
  version: string;
  /**
   * The single executable the inventory was taken with (absent under `node bin/ferry`): a bundle
   * built against this inventory need not carry the same executable again.
   */
  executable?: { sha256: string };
}

export interface InventoryImage {
  /** The image ID: its config digest; on a containerd image store, the manifest digest for images ferry did not load. */
  id: string;
  /** Sorted; `<none>:<none>` placeholders are left out. */
  repoTags: string[];
  /** Uncompressed layer digests, base first. */
  diffIds: string[];
  /** One per diffID, same order. */
  chainIds: string[];
  /** Bytes, as the engine reports them (informational only). */
  size: number;
}

export interface InventoryRelease {
  id: string;
  version: string;
  sequence: number;
  installedAt: string;
}

export interface InventoryStack {
  stack: string;
  current: string | null;
  /** The highest sequence the host has accepted: a new bundle for this stack needs at least this. */
  highestSequence: number;
  /** Sorted by sequence. */
  releases: InventoryRelease[];
}

export interface Inventory {
  format: typeof INVENTORY_FORMAT;
  host: string;
  created: string;
  tool: InventoryTool;
  engine: InventoryEngine;
  /** Sorted by id. */
  images: InventoryImage[];
  /** Every chain ID of every image: sorted, unique. What dedup matches on. */
  layers: string[];
  /** Sorted by stack. */
  releases: InventoryStack[];
}

/** An image as the engine describes it; chain IDs are derived here, not trusted from anywhere. */
export interface RawImage {
  id: string;
  repoTags: readonly string[];
  diffIds: readonly string[];
  size: number;
}

export interface InventoryFacts {
  host: string;
  created: Date;
  tool: InventoryTool;
  engine: InventoryEngine;
  images: readonly RawImage[];
  stacks: readonly StackState[];
}

/** A placeholder the engine reports for untagged images (Docker before API 1.40 and some others). */
const NO_TAG = '<none>:<none>';

/**
 * Why an image as the engine reported it cannot go into an inventory, or undefined when it can.
 * Callers leave such images out (their layers then simply travel again) rather than fail.
 */
export function rawImageProblem(raw: RawImage): string | undefined {
  if (!isDigest(raw.id)) return `its ID ${JSON.stringify(raw.id)} is not a sha256 digest`;
  if (raw.diffIds.length > MAX_LAYERS_PER_IMAGE) return `it has ${raw.diffIds.length} layers, more than ${MAX_LAYERS_PER_IMAGE}`;
  const bad = raw.diffIds.find((d) => !isDigest(d));
  if (bad !== undefined) return `its layer ${JSON.stringify(bad)} is not a sha256 diffID`;
  const tag = raw.repoTags.find((t) => t.length > MAX_STRING);
  if (tag !== undefined) return `a tag is longer than ${MAX_STRING} characters`;
  return undefined;
}

/** Builds the document from what the engine and the state directory say. Images failing rawImageProblem must be left out first. */
export function buildInventory(facts: InventoryFacts): Inventory {
  const byId = new Map<string, InventoryImage>();
  for (const raw of facts.images) {
    if (byId.has(raw.id)) continue;
    byId.set(raw.id, {
      id: raw.id,
      repoTags: [...new Set(raw.repoTags.filter((t) => t !== NO_TAG && t.length > 0))].sort(),
      diffIds: [...raw.diffIds],
      chainIds: chainIds(raw.diffIds),
      size: Number.isSafeInteger(raw.size) && raw.size > 0 ? raw.size : 0,
    });
  }
  const images = [...byId.values()].sort((a, b) => compare(a.id, b.id));
  const releases = [...facts.stacks]
    .sort((a, b) => compare(a.stack, b.stack))
    .map((s) => ({
      stack: s.stack,
      current: s.current,
      highestSequence: s.highestSequence,
      releases: [...s.releases].sort((a, b) => a.sequence - b.sequence).map((r) => ({ id: r.id, version: r.version, sequence: r.sequence, installedAt: r.installedAt })),
    }));
  const inventory: Inventory = {
    format: INVENTORY_FORMAT,
    host: facts.host,
    created: facts.created.toISOString(),
    tool: { name: facts.tool.name, version: facts.tool.version, ...(facts.tool.executable ? { executable: { sha256: facts.tool.executable.sha256 } } : {}) },
    engine: { ...facts.engine },
    images,
    layers: unionOfChainIds(images),
    releases,
  };
  // What this host writes must be what another ferry reads: a document that would be refused
  // there is a bug to report here, not a surprise on the build machine days later.
  const problems = inventoryProblems(inventory);
  if (problems.length > 0) {
    throw new BugError('INVENTORY_SELF_CHECK', `the inventory built from this engine would not be readable: ${problems.slice(0, 3).join('; ')}`, { details: { problems } });
  }
  return inventory;
}

export function serializeInventory(inventory: Inventory): string {
  return `${JSON.stringify(inventory, null, 2)}\n`;
}

/** Chain IDs of an inventory as a set, for dedup. */
export function layerSet(inventory: Inventory): Set<string> {
  return new Set(inventory.layers);
}

/** An inventory that fails validation; `details.problems` lists every field at fault. */
export class InventoryInvalid extends BuildInputError {
  constructor(
    readonly problems: string[],
    source = 'the inventory',
  ) {
    super('INVENTORY_INVALID', `${source} is not a valid ${INVENTORY_FORMAT} document: ${problems.slice(0, 5).join('; ')}${problems.length > 5 ? ` (+${problems.length - 5} more)` : ''}`, {
      details: { problems },
      hint: 'Write a fresh one on the host with `ferry host inventory --out FILE` and bring that file.',
    });
  }
}

/**
 * Reads an inventory document (the bytes or text of the file). `source` names it in the error,
 * e.g. the path given to --base. Throws InventoryInvalid (exit 10) listing every problem.
 */
export function parseInventory(input: string | Uint8Array, source?: string): Inventory {
  const size = typeof input === 'string' ? Buffer.byteLength(input, 'utf8') : input.byteLength;
  if (size > MAX_INVENTORY_BYTES) throw new InventoryInvalid([`it is ${size} bytes, more than the ${MAX_INVENTORY_BYTES} allowed`], source);
  const text = typeof input === 'string' ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength).toString('utf8');
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new InventoryInvalid([`not JSON: ${(e as Error).message}`], source);
  }
  return validateInventory(doc, source);
}

/** As parseInventory, for a document already parsed from JSON. Returns a fresh copy holding only the known fields. */
export function validateInventory(doc: unknown, source?: string): Inventory {
  const problems = inventoryProblems(doc);
  if (problems.length > 0) throw new InventoryInvalid(problems, source);
  const d = doc as Inventory;
  return {
    format: INVENTORY_FORMAT,
    host: d.host,
    created: d.created,
    tool: { name: d.tool.name, version: d.tool.version, ...(d.tool.executable ? { executable: { sha256: d.tool.executable.sha256 } } : {}) },
    engine: {
      serverVersion: d.engine.serverVersion,
      apiVersion: d.engine.apiVersion,
      storageDriver: d.engine.storageDriver,
      containerdStore: d.engine.containerdStore,
      os: d.engine.os,
      architecture: d.engine.architecture,
      podman: d.engine.podman,
    },
    images: d.images.map((im) => ({ id: im.id, repoTags: [...im.repoTags], diffIds: [...im.diffIds], chainIds: [...im.chainIds], size: im.size })),
    layers: [...d.layers],
    releases: d.releases.map((s) => ({
      stack: s.stack,
      current: s.current,
      highestSequence: s.highestSequence,
      releases: s.releases.map((r) => ({ id: r.id, version: r.version, sequence: r.sequence, installedAt: r.installedAt })),
    })),
  };
}

function inventoryProblems(doc: unknown): string[] {
  const problems: string[] = [];
  const v = new Checker(problems);
  const d = v.object(doc, '');
  if (!d) return problems;
  if (d.format !== INVENTORY_FORMAT) {
    // Nothing else is meaningful in a format we do not know; stop at the one problem that matters.
    problems.push(`format is ${JSON.stringify(d.format)}, this ferry reads ${INVENTORY_FORMAT}`);
    return problems;
  }
  v.string(d.host, 'host');
  v.date(d.created, 'created');
  const tool = v.object(d.tool, 'tool');
  if (tool) {
    v.string(tool.name, 'tool.name');
    v.string(tool.version, 'tool.version');
    // Optional: inventories taken with `node bin/ferry`, or by ferry before the executable, have none.
    if (tool.executable !== undefined) {
      const exe = v.object(tool.executable, 'tool.executable');
      if (exe) v.digest(exe.sha256, 'tool.executable.sha256');
    }
  }
  const engine = v.object(d.engine, 'engine');
  if (engine) {
    for (const k of ['serverVersion', 'apiVersion', 'storageDriver', 'os', 'architecture'] as const) v.text(engine[k], `engine.${k}`);
    for (const k of ['containerdStore', 'podman'] as const) v.boolean(engine[k], `engine.${k}`);
  }

  const union = new Set<string>();
  const ids = new Set<string>();
  let layerCount = 0;
  (v.array(d.images, 'images', MAX_IMAGES) ?? []).forEach((item, i) => {
    const at = `images[${i}]`;
    const im = v.object(item, at);
    if (!im) return;
    if (v.digest(im.id, `${at}.id`)) {
      const id = im.id as string;
      if (ids.has(id)) problems.push(`${at}.id ${id} is listed twice`);
      ids.add(id);
    }
    (v.array(im.repoTags, `${at}.repoTags`, MAX_TAGS_PER_IMAGE) ?? []).forEach((t, j) => v.string(t, `${at}.repoTags[${j}]`));
    v.integer(im.size, `${at}.size`);
    const diffIds = v.array(im.diffIds, `${at}.diffIds`, MAX_LAYERS_PER_IMAGE);
    const chain = v.array(im.chainIds, `${at}.chainIds`, MAX_LAYERS_PER_IMAGE);
    if (!diffIds || !chain) return;
    layerCount += diffIds.length;
    const diffsOk = diffIds.every((x, j) => v.digest(x, `${at}.diffIds[${j}]`));
    const chainOk = chain.every((x, j) => v.digest(x, `${at}.chainIds[${j}]`));
    if (!diffsOk || !chainOk) return;
    if (layerCount > MAX_LAYERS) return;
    // Chain IDs are what dedup trusts; one that does not follow from its diffIDs is a forgery or corruption.
    const expected = chainIds(diffIds as string[]);
    if (chain.length !== expected.length) problems.push(`${at}.chainIds has ${chain.length} entries for ${expected.length} diffIds`);
    else {
      const j = expected.findIndex((c, k) => c !== chain[k]);
      if (j >= 0) problems.push(`${at}.chainIds[${j}] does not follow from the diffIds (expected ${expected[j]})`);
    }
    for (const c of expected) union.add(c);
  });
  if (layerCount > MAX_LAYERS) problems.push(`images hold ${layerCount} layers in all, more than ${MAX_LAYERS}`);

  const layers = v.array(d.layers, 'layers', MAX_LAYERS);
  if (layers && layers.every((x, i) => v.digest(x, `layers[${i}]`))) {
    const l = layers as string[];
    const j = l.findIndex((x, i) => i > 0 && compare(l[i - 1]!, x) >= 0);
    if (j > 0) problems.push(`layers is not sorted and unique (at layers[${j}])`);
    const listed = new Set(l);
    const missing = [...union].filter((c) => !listed.has(c));
    const extra = l.filter((c) => !union.has(c));
    if (missing.length > 0) problems.push(`layers leaves out ${missing.length} chain ID(s) of the images, e.g. ${missing[0]}`);
    if (extra.length > 0) problems.push(`layers names ${extra.length} chain ID(s) no image has, e.g. ${extra[0]}`);
  }

  const stacks = new Set<string>();
  (v.array(d.releases, 'releases', MAX_STACKS) ?? []).forEach((item, i) => {
    const at = `releases[${i}]`;
    const s = v.object(item, at);
    if (!s) return;
    if (v.string(s.stack, `${at}.stack`)) {
      if (stacks.has(s.stack as string)) problems.push(`${at}.stack ${String(s.stack)} is listed twice`);
      stacks.add(s.stack as string);
    }
    if (s.current !== null) v.string(s.current, `${at}.current`);
    // -1: a stack whose state exists but that never accepted a release.
    if (!(typeof s.highestSequence === 'number' && Number.isSafeInteger(s.highestSequence) && s.highestSequence >= -1)) {
      problems.push(`${at}.highestSequence must be a whole number ≥ -1`);
    }
    (v.array(s.releases, `${at}.releases`, MAX_RELEASES_PER_STACK) ?? []).forEach((r, j) => {
      const rat = `${at}.releases[${j}]`;
      const rel = v.object(r, rat);
      if (!rel) return;
      v.string(rel.id, `${rat}.id`);
      v.string(rel.version, `${rat}.version`);
      v.integer(rel.sequence, `${rat}.sequence`);
      v.date(rel.installedAt, `${rat}.installedAt`);
    });
  });
  return problems;
}

function unionOfChainIds(images: readonly InventoryImage[]): string[] {
  const all = new Set<string>();
  for (const im of images) for (const c of im.chainIds) all.add(c);
  return [...all].sort(compare);
}

/** Code-unit order, the same on every machine (localeCompare is not). */
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The inventory's own rules on top of the shared checks: engine strings may be empty. */
class Checker extends JsonChecker {
  /** A string the engine may leave empty. */
  text(value: unknown, where: string): boolean {
    return (typeof value === 'string' && value.length <= MAX_STRING) || this.fail(where, 'must be a string');
  }

  boolean(value: unknown, where: string): boolean {
    return typeof value === 'boolean' || this.fail(where, 'must be true or false');
  }

  date(value: unknown, where: string): boolean {
    return (typeof value === 'string' && value.length < 64 && !Number.isNaN(Date.parse(value))) || this.fail(where, 'must be an ISO date');
  }
}
