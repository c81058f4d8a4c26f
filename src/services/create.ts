/**
 * `ferry bundle create`: one pass from the engine's save stream to a sealed, signed bundle.
 * engine save → tar entries → (sha256 diffID ‖ zstd) → sha256 + part files, with nothing of an
 * image ever held whole in memory or on disk twice.
 *
 * Read → plan → write: the inputs are read and checked before anything is written (a bad key or a
 * missing image fails in seconds, not after minutes of saving), the load plan and the manifest are
 * pure (src/core/create-plan.ts), and the writing steps share one context object.
 */
import { dirname, join, resolve } from 'node:path';
import { BlobStoreWriter } from '../adapters/blob-store.js';
import type { Engine, ImageDetails } from '../adapters/engine.js';
import { localClassicStore, type LocalStore } from '../adapters/store-archive.js';
import { createPartialSibling, exists, hashFile, isDirectory, listTree, partialSiblingOf, readBounded, readText, removeStalePartials, removeTree, removeTreeNow, sealDirectory, treeBytes } from '../adapters/fs.js';
import { compareListing } from '../core/verify.js';
import { versionFromGit } from '../adapters/git.js';
import { mediumOf, mediumWriteError } from '../adapters/medium.js';
import { loadSigningKey } from '../adapters/signing.js';
import { BUNDLE_NAMESPACE, type SigningKey } from '../core/sshsig.js';
import { fieldWarnings } from '../core/compose.js';
import { baseFromBundle, baseFromInventory, executableHeldByAll, heldByAll, heldDiffIdsByAll, repositoryOf, type BundleBase } from '../core/bases.js';
import { assembleManifest, bundleTotals, imageSummaries, manifestLayers, planLoad, type LoadPlan } from '../core/create-plan.js';
import { makeDeltas, prefetchReferences, type DeltaBase, type DeltaContext, type DeltaTarget, type PrefetchedReferences } from './delta.js';
import { hexOf, sha256Digest } from '../core/digest.js';
import { MAX_INVENTORY_BYTES, parseInventory } from '../core/inventory.js';
import {
  EXECUTABLE_FILE,
  FAT32_MAX_FILE,
  MANIFEST_FILE,
  ManifestInvalid,
  MAX_MANIFEST_BYTES,
  parseManifest,
  SIGNATURE_FILE,
  serializeManifest,
  type FerryManifest,
  type FileEntry,
  type ManifestImage,
  type LayerDelta,
} from '../core/manifest.js';
import { imageIndex, imageManifest, OCI_LAYOUT } from '../core/oci.js';
import { bundleReadme, README_FILE } from '../core/bundle-readme.js';
import { formatSha256Sums, SUMS_FILE, SUMS_SIGNATURE_FILE } from '../core/sha256sums.js';
import { BuildInputError, UsageError } from '../errors.js';
import { formatBytes, shortDigest } from '../core/format.js';
import { loadDefinition, SHIPPED_COMPOSE, type LoadedDefinition } from './project.js';
import { ferryTag } from '../core/state.js';
import type { ProgressReporter, Reporter, Warning } from './reporter.js';
import type { TarEntry } from '../core/tar-scan.js';
import { executableVersion, TOOL_VERSION } from '../adapters/tool-version.js';
import { CreateCache } from './create-cache.js';
import { startEarlySave, type EarlySave } from './create-early.js';
import { savedImage, saveLayers, type SavedLayers } from './create-save.js';

export interface CreateOptions {
  /** The definition directory, or its ferry.yaml. */
  definition: string;
  out: string;
  version?: string;
  sequence?: number;
  signKey?: string;
  level: number;
  workers: number;
  maxPartSize: number;
  expires?: Date;
  /** Inventories or previous bundles: layers every one of them holds are left out. */
  bases?: string[];
  /** Compose profiles to enable besides ferry.yaml's. */
  profiles?: string[];
  /** Leave secret files out of the bundle; hosts provide them. */
  excludeSecrets?: boolean;
  /** Write even when the output medium looks too small. */
  force?: boolean;
  /** A line per layer (diffID, images, sizes, shipped or left out) besides the summary. */
  verbose?: boolean;
  /** The compose command that reads the project; default: v2 when present, else v1. */
  composeCmd?: string | undefined;
  /** Carry this ferry executable in the bundle (left out when every base is an inventory taken with it). */
  withFerry?: string | null;
  /** Changed layers may travel as deltas against layers every base holds (default true; false: --no-delta). */
  delta?: boolean;
  /** Read the images from a save even when the engine's layer store is on this machine (--from-save). */
  fromSave?: boolean;
  /** Every warning is an error (exit 10, no bundle); ferry.yaml's `strict: true` does the same. */
  strict?: boolean;
  now?: Date;
  /** The build server's layer cache; null: none (--no-cache). `max`: LRU bound in bytes after the create. */
  cache?: { dir: string; max: number | null } | null;
  /**
   * While the partial bundle directory exists, the service hands over how to remove it and takes
   * it back (by calling the returned function) when the bundle is sealed or the create failed.
   * The caller decides what an interruption is and how the process ends (the command: SIGINT or
   * SIGTERM, then exit 130); services never exit the process.
   */
  onInterrupt?: (cleanup: () => void) => () => void;
}

export interface CreateResult {
  bundle: string;
  name: string;
  version: string;
  sequence: number;
  created: string;
  signed: boolean;
  signer: string | null;
  images: { refs: string[]; id: string; layers: number; shipped: number; deltas: number; size: number; compressedSize: number }[];
  bases: { kind: string; name: string }[];
  totals: { imageBytes: number; bundleBytes: number; files: number; ratio: number; leftOutLayers: number; leftOutBytes: number };
  /** What the layer cache and the guesses saved: layers compressed, only hashed, skipped unread. */
  layerWork: {
    compressed: number;
    /** Held by every base, yet compressed before the hash showed it (no guess was possible). */
    compressedHeld: number;
    hashedOnly: number;
    skippedUnread: number;
    /** Guesses the hash or the image config contradicted; each one's layer came from a second save. */
    wrongGuesses: number;
    secondSave: boolean;
    /** Changed layers shipped as deltas against layers every base holds. */
    deltas: number;
    /**
     * The save asked for from the compose files as written, while Compose resolved the project:
     * used, discarded (not the images Compose resolved; saved again), or none (the files left the
     * images to Compose: variables, extends, include, build-only services).
     */
    earlySave: 'used' | 'discarded' | 'none';
    /** Where the images were read: the engine's layer store on this machine, or a docker save. */
    read: 'layer store' | 'save';
  };
  cache: { dir: string; hits: number; misses: number; added: number; corrupt: number; hitRate: number | null; evicted: { entries: number; bytes: number } } | null;
  durationMs: number;
}

/** A ferry executable the bundle carries (--with-ferry), checked to run, and hashed. */
type Carry = Awaited<ReturnType<typeof ferryToCarry>>;

/** What a create reads and checks before it writes a byte. */
interface CreateInputs {
  loaded: LoadedDefinition;
  /** --strict, or ferry.yaml's `strict: true`. */
  strict: boolean;
  key: SigningKey | undefined;
  bases: BundleBase[];
  baseSizes: Map<string, number>;
  deltaBases: DeltaBase[];
  carry: Carry | null;
  /** Every image the stack uses, by reference, pinned by ID. */
  details: Map<string, ImageDetails>;
  now: Date;
  version: string;
  sequence: number;
}

/** What the steps of one create share. */
interface CreateRun extends CreateInputs {
  options: CreateOptions;
  engine: Engine;
  /** Collects every warning into `warned`, so --strict can refuse the bundle over any of them. */
  reporter: Reporter;
  warned: Warning[];
  out: string;
  plan: LoadPlan;
  /** The partial directory the bundle is written into and renamed from once sealed. */
  partial: string;
  progress: ProgressReporter;
  started: number;
  early: Promise<EarlySave | null>;
  layerStore: Promise<LocalStore | null>;
}

/** The writing steps' context: the run, and the store, cache and counters the writing fills. */
interface Writing extends CreateRun {
  store: BlobStoreWriter;
  cache: CreateCache;
  /** A layer's tar size where known before reading it (the layer cache, a previous bundle). */
  sizes: Map<string, number>;
  work: CreateResult['layerWork'];
}

/**
 * Everything that can be refused cheaply is, before the partial directory exists; from then on a
 * failure or an interruption removes it, so a bundle is either sealed in place or absent.
 */
export async function createBundle(options: CreateOptions, engine: Engine, outer: Reporter): Promise<CreateResult> {
  const started = Date.now();
  // Every warning create gives passes here, so --strict can refuse the bundle over any of them.
  const warned: Warning[] = [];
  const reporter: Reporter = {
    log: (m) => outer.log(m),
    warn: (w) => {
      warned.push(w);
      outer.warn(w);
    },
    progress: () => outer.progress(),
  };
  const out = await checkOutput(options);
  // The images come from the engine's store when it is on this machine, else from a save asked
  // for at once, while Compose reads the project.
  const layerStore = options.fromSave ? Promise.resolve(null) : localClassicStore(engine);
  const early = layerStore.then((s) => (s ? null : startEarlySave(engine, options.definition, options.profiles ?? [])));
  try {
    return await createWith(early, layerStore, { options, engine, reporter, warned, out, started });
  } finally {
    // Aborts the early save unless the save pass took it (a refusal or failure before that).
    void early.then((e) => e?.cancel());
  }
}

async function createWith(early: Promise<EarlySave | null>, layerStore: Promise<LocalStore | null>, { options, engine, reporter, warned, out, started }: Pick<CreateRun, 'options' | 'engine' | 'reporter' | 'warned' | 'out' | 'started'>): Promise<CreateResult> {
  const inputs = await readInputs(options, engine, reporter, warned);
  const plan = planLoad(inputs.details, heldByAll(inputs.bases));
  if (inputs.bases.length > 0) reporter.log(`bases: ${inputs.bases.map((b) => `${b.kind} ${b.name}`).join(', ')}; ${plan.heldLayers} of ${plan.allDiffIds.size} layers are held by every base`);
  await checkRoom(out, [...inputs.details.values()], plan.needed, inputs.carry?.size ?? 0, options.force ?? false, reporter);
  // A create killed outright (SIGKILL, power) could not clean up after itself: the next one does.
  for (const stale of await removeStalePartials(dirname(out))) {
    reporter.log(`removed ${stale.path}: a partial bundle left by create process ${stale.pid}, which is gone`);
  }
  const partial = partialSiblingOf(out);
  // Armed before the directory exists, so that SIGINT or SIGTERM at any moment from here on leaves
  // no partial bundle behind (removing a path not yet made is a no-op).
  const releaseInterrupt = options.onInterrupt?.(() => removeTreeNow(partial));
  const progress = reporter.progress();
  try {
    return await writeBundle({ ...inputs, options, engine, reporter, warned, out, plan, partial, progress, started, early, layerStore });
  } catch (e) {
    throw await failedCreate(e, partial, options.out, progress);
  } finally {
    releaseInterrupt?.();
  }
}

/** The output path, resolved; a bad part size or an existing output is refused before anything is read. */
async function checkOutput(options: CreateOptions): Promise<string> {
  if (options.maxPartSize < 1024 * 1024 || options.maxPartSize > FAT32_MAX_FILE) {
    throw new UsageError('BAD_PART_SIZE', `--max-part-size must be between 1 MiB and ${FAT32_MAX_FILE} bytes (FAT32's limit)`);
  }
  const out = resolve(options.out);
  if (await exists(out)) {
    throw new BuildInputError('OUTPUT_EXISTS', `${options.out} already exists`, {
      hint: 'Choose another --out, or remove the old bundle first. ferry never overwrites a bundle.',
      details: { out },
    });
  }
  return out;
}

async function readInputs(options: CreateOptions, engine: Engine, reporter: Reporter, warned: Warning[]): Promise<CreateInputs> {
  const loaded = await loadDefinition(options.definition, engine, reporter, { profiles: options.profiles ?? [], excludeSecrets: options.excludeSecrets ?? false, ...(options.composeCmd ? { composeCmd: options.composeCmd } : {}) });
  const { def } = loaded;
  const strict = options.strict === true || def.strict;
  // Fail on an unreadable key now, not after minutes of saving images.
  const key: SigningKey | undefined = options.signKey ? await loadSigningKey(options.signKey) : undefined;
  if (!key) {
    reporter.warn({ code: 'UNSIGNED', message: 'no --sign-key: the bundle is UNSIGNED; hosts refuse it unless installed with --allow-unsigned' });
  }
  const { bases, executables, baseSizes, deltaBases } = await loadBases(options.bases ?? []);
  const carry = await carryFerry(options.withFerry, bases, executables, reporter);
  const details = await pinImages(loaded, engine);
  for (const w of fieldWarnings(loaded.compose, (svc) => details.get(svc.image)!, loaded.extraBinds)) reporter.warn(w);
  // Under --strict, what is known before saving fails before minutes of saving.
  if (strict) refuseWarnings(warned, options.strict === true);
  const now = options.now ?? new Date();
  const version = options.version ?? def.version ?? (await versionFromGit(loaded.dir)) ?? timestampVersion(now);
  const sequence = options.sequence ?? Math.floor(now.getTime() / 1000);
  return { loaded, strict, key, bases, baseSizes, deltaBases, carry, details, now, version, sequence };
}

/** The executable --with-ferry names, unless every base is an inventory whose hosts have it already. */
async function carryFerry(withFerry: string | null | undefined, bases: BundleBase[], executables: (string | null)[], reporter: Reporter): Promise<Carry | null> {
  const carry = withFerry ? await ferryToCarry(withFerry) : null;
  if (carry && executableHeldByAll(executables, carry.sha256)) {
    reporter.log(`ferry executable left out: ${bases.map((b) => b.name).join(', ')} has it (ferry ${carry.version}, ${shortDigest(carry.sha256)}), as the inventory says`);
    return null;
  }
  return carry;
}

/** Every image pinned by ID now: a tag that moves while we save cannot change the bundle. */
async function pinImages(loaded: LoadedDefinition, engine: Engine): Promise<Map<string, ImageDetails>> {
  const refs = [...new Set([...loaded.compose.services.map((s) => s.image), ...loaded.def.images])];
  const details = new Map<string, ImageDetails>();
  for (const ref of refs) {
    const d = await engine.inspectImage(ref);
    if (!d) {
      const users = loaded.compose.services.filter((s) => s.image === ref).map((s) => s.name);
      throw new BuildInputError('IMAGE_NOT_FOUND', `image ${ref} is not in the engine at ${engine.host}${users.length ? ` (used by service ${users.join(', ')})` : ' (listed in images:)'}`, {
        hint: 'Build or load the tested image on this engine first, or fix the reference in the compose file.',
        details: { ref, services: users },
      });
    }
    details.set(ref, d);
  }
  return details;
}

/** The error a failed create ends with, once the partial bundle is gone (or named as left behind). */
async function failedCreate(e: unknown, partial: string, output: string, progress: ProgressReporter): Promise<unknown> {
  progress.stop();
  const bytesWritten = await treeBytes(partial).catch(() => undefined);
  const removed = await removeTree(partial).then(
    () => true,
    () => false,
  );
  return (await mediumWriteError(e, { what: 'the bundle', output, ...(bytesWritten !== undefined ? { bytesWritten } : {}), ...(removed ? {} : { leftBehind: partial }) })) ?? e;
}

/** The write: save pass, deltas, images, project files, manifest, seal. On failure the caller removes the partial directory. */
async function writeBundle(run: CreateRun): Promise<CreateResult> {
  const { options, reporter } = run;
  await createPartialSibling(run.partial).catch(async (e: unknown) => {
    throw (await mediumWriteError(e, { what: 'the bundle', output: options.out })) ?? e;
  });
  const store = new BlobStoreWriter(run.partial, { level: options.level, workers: options.workers, maxPartSize: options.maxPartSize });
  await store.init();
  const cache = await CreateCache.open(options, store, reporter);
  const sizes = new Map<string, number>([...run.baseSizes, ...[...cache.known].map(([d, l]) => [d, l.size] as const)]);
  const work: CreateResult['layerWork'] = { compressed: 0, compressedHeld: 0, hashedOnly: 0, skippedUnread: 0, wrongGuesses: 0, secondSave: false, deltas: 0, earlySave: 'none', read: 'save' };
  const w: Writing = { ...run, store, cache, sizes, work };
  const prefetched = prefetchFor(w);
  const pass = await saveLayers({ engine: w.engine, store, cache, reporter, progress: w.progress, verbose: options.verbose ?? false, details: w.details, plan: w.plan, sizes, work, early: w.early, layerStore: w.layerStore });
  for (const [diffId, files] of pass.setuid) reporter.warn({ code: 'SETUID_FILES', subject: pass.imagesOf(diffId), message: setuidMessage(diffId, pass.imagesOf(diffId), files) });
  if (w.strict) refuseWarnings(w.warned, options.strict === true);
  // Changed layers with a held predecessor may travel as deltas against it (--no-delta: whole).
  const deltas = options.delta !== false && w.bases.length > 0 ? await shipDeltas(w, pass, prefetched) : new Map<string, LayerDelta>();
  const images = await writeImages(w, pass, deltas);
  await writeProject(w);
  const manifest = assembleManifest({
    name: w.loaded.def.name,
    version: w.version,
    sequence: w.sequence,
    created: w.now,
    expires: options.expires,
    toolVersion: TOOL_VERSION,
    composeFile: SHIPPED_COMPOSE,
    project: w.loaded,
    imageIdOf: (ref) => w.details.get(ref)!.id,
    images,
    bases: w.bases,
    files: store.files(),
    ferry: w.carry ? { path: EXECUTABLE_FILE, version: w.carry.version, sha256: w.carry.sha256, size: w.carry.size } : null,
  });
  const files = await seal(w, manifest);
  const evicted = await cache.finish(options, w.now, w.plan.allDiffIds.size);
  return {
    bundle: w.out,
    name: manifest.name,
    version: w.version,
    sequence: w.sequence,
    created: manifest.created,
    signed: !!w.key,
    signer: w.key?.fingerprint ?? null,
    images: imageSummaries(images),
    bases: w.bases.map((b) => ({ kind: b.kind, name: b.name })),
    totals: bundleTotals(images, files),
    layerWork: work,
    cache: cache.summary(options, evicted),
    durationMs: Date.now() - w.started,
  };
}

/** Where each layer sits in the new images: the repositories it is named by, and its position. */
function layerUses(w: Writing): Map<string, DeltaTarget['uses']> {
  const uses = new Map<string, DeltaTarget['uses']>();
  for (const [ref, d] of w.details) {
    // A host names the images ferry installed for this stack by ferry's tag: an inventory's
    // previous release of the stack is found by it, ahead of other images on the same base.
    const repos = [...new Set([ref, ...d.repoTags, ferryTag(w.loaded.def.name, d.id)].map(repositoryOf))];
    d.diffIds.forEach((diffId, position) => uses.set(diffId, [...(uses.get(diffId) ?? []), { repos, position, diffIds: d.diffIds }]));
  }
  return uses;
}

function deltaContext(w: Writing): DeltaContext {
  return { engine: w.engine, store: w.store, root: w.partial, cache: w.cache.cache, reporter: w.reporter, verbose: w.options.verbose ?? false, sizeOf: (d: string) => w.sizes.get(d) };
}

/** With deltas on, the likely references of the layers no base holds are read during the save (services/delta.ts). */
function prefetchFor(w: Writing): PrefetchedReferences | undefined {
  if (w.options.delta === false || w.bases.length === 0) return undefined;
  const uses = layerUses(w);
  const prospects = [...w.plan.needed].map((diffId) => ({ diffId, uses: uses.get(diffId) ?? [] }));
  return prefetchReferences(deltaContext(w), prospects, w.deltaBases, heldDiffIdsByAll(w.deltaBases.map((b) => b.images)));
}

/** Changed layers shipped as deltas against layers every base holds, where one pays; the rest stay whole. */
async function shipDeltas(w: Writing, pass: SavedLayers, prefetched: PrefetchedReferences | undefined): Promise<Map<string, LayerDelta>> {
  const { layers, imagesOf } = pass;
  const deltas = new Map<string, LayerDelta>();
  const uses = layerUses(w);
  const targets = new Map<string, DeltaTarget>();
  for (const l of layers.values()) if (l.blob && !l.pending && !targets.has(l.diffId)) targets.set(l.diffId, { diffId: l.diffId, size: l.size, blob: l.blob, uses: uses.get(l.diffId) ?? [] });
  const outcome = await makeDeltas(deltaContext(w), [...targets.values()], w.deltaBases, heldDiffIdsByAll(w.deltaBases.map((b) => b.images)), prefetched);
  for (const [diffId, delta] of outcome.deltas) deltas.set(diffId, delta);
  w.work.deltas = deltas.size;
  for (const x of outcome.whole) {
    // A delta that was possible but for bytes this machine lacks is worth knowing without -v.
    if (w.options.verbose || x.noBytes) w.progress.note(`layer ${shortDigest(x.diffId)} of ${imagesOf(x.diffId)}: shipped whole, ${x.reason}`);
  }
  if (deltas.size > 0) {
    const saved = [...deltas].reduce((n, [diffId, d]) => n + (targets.get(diffId)!.blob.size - d.size), 0);
    w.reporter.log(`${deltas.size} changed layer${deltas.size === 1 ? '' : 's'} travel${deltas.size === 1 ? 's' : ''} as ${deltas.size === 1 ? 'a delta' : 'deltas'} against layers the targets hold, ${formatBytes(saved)} less than whole`);
    for (const l of layers.values()) if (l.blob && deltas.has(l.diffId)) l.blob = null;
  }
  // The whole blobs deltas replaced, and deltas written but not used (too big, unverified), go.
  await w.store.keepOnly(new Set([...[...layers.values()].flatMap((l) => (l.blob && !l.pending ? [l.blob.digest] : [])), ...[...deltas.values()].map((d) => d.digest)]));
  return deltas;
}

/** Each image's config and OCI manifest, then the OCI layout and index that name them all. */
async function writeImages(w: Writing, pass: SavedLayers, deltas: Map<string, LayerDelta>): Promise<ManifestImage[]> {
  const images: ManifestImage[] = [];
  for (const engineId of w.plan.ids) images.push(await writeImage(w, pass, deltas, engineId));
  await w.store.writeFile('oci-layout', OCI_LAYOUT);
  await w.store.writeFile(
    'index.json',
    imageIndex(images.map((im) => ({ manifest: im.ociManifest, refs: im.refs, os: im.os, architecture: im.architecture }))),
  );
  return images;
}

async function writeImage(w: Writing, pass: SavedLayers, deltas: Map<string, LayerDelta>, engineId: string): Promise<ManifestImage> {
  const image = savedImage(pass.saved, engineId, [...w.details.values()].find((d) => d.id === engineId)!);
  // What the bundle pins is the config digest, whatever the engine calls the image.
  const id = image.id;
  const config = JSON.parse(image.config.toString('utf8')) as { rootfs?: { diff_ids?: string[] }; os?: string; architecture?: string };
  const layers = manifestLayers(id, config.rootfs?.diff_ids ?? [], image.layerPaths, pass.layers, deltas);
  const configPath = `blobs/sha256/${hexOf(id)}`;
  await w.store.writeFile(configPath, image.config);
  const ociManifest = imageManifest(
    { digest: id, size: image.config.length },
    layers.map((l) => (l.blob ? { digest: l.blob.digest, size: l.blob.size } : { digest: l.diffId, size: l.size, absent: true })),
  );
  const ociEntry = await w.store.writeFile(`blobs/sha256/${hexOf(sha256Digest(ociManifest))}`, ociManifest);
  return {
    refs: w.plan.refsById.get(engineId) ?? [],
    id,
    os: config.os ?? 'linux',
    architecture: config.architecture ?? 'amd64',
    config: { path: configPath, size: image.config.length },
    ociManifest: { digest: `sha256:${ociEntry.sha256}`, size: ociEntry.size, path: ociEntry.path },
    layers,
  };
}

/** The compose model, project and host files, the carried executable and the README. */
async function writeProject(w: Writing): Promise<void> {
  const { loaded, store, carry } = w;
  await store.writeFile(SHIPPED_COMPOSE, Buffer.from(loaded.shipped, 'utf8'));
  for (const f of loaded.projectFiles) await store.writeFile(f.path, f.data);
  for (const rel of loaded.files) await store.writeFile(`compose/${rel}`, Buffer.from(await readText(join(loaded.dir, rel)), 'utf8'));
  if (carry) {
    const entry = await store.copyExecutable(carry.path, EXECUTABLE_FILE);
    // The copy's own digest: an executable replaced since it was checked is caught here.
    if (`sha256:${entry.sha256}` !== carry.sha256) throw new BuildInputError('FERRY_EXECUTABLE_UNUSABLE', `${carry.path} changed while it was copied into the bundle`, { details: { path: carry.path } });
    w.reporter.log(`carrying the ferry executable ${carry.version} (${formatBytes(carry.size)})`);
  }
  // Listed in the manifest like any file, so the stock-tool check and ferry's cover it alike.
  await store.writeFile(README_FILE, Buffer.from(bundleReadme({ name: loaded.def.name, version: w.version, signer: w.key?.fingerprint ?? null, namespace: BUNDLE_NAMESPACE, carriesFerry: carry !== null }), 'utf8'));
  // Every blob on the medium before the manifest that lists them is written.
  await store.synced();
  await store.finishScratch();
}

/** Manifest, signature and checksums written, the directory renamed into place and checked; every file of the bundle. */
async function seal(w: Writing, manifest: FerryManifest): Promise<FileEntry[]> {
  const { key } = w;
  const manifestBytes = serializeManifest(manifest);
  const sealed = new BlobStoreWriter(w.partial, { level: w.options.level, workers: w.options.workers, maxPartSize: w.options.maxPartSize });
  await sealed.writeFile(MANIFEST_FILE, manifestBytes);
  if (key) await sealed.writeFile(SIGNATURE_FILE, Buffer.from(key.sign(manifestBytes, BUNDLE_NAMESPACE), 'utf8'));
  // Last, as they list everything else (the manifest and its signature too), and still inside
  // the partial directory: a bundle is sealed with both or not at all.
  const sums = formatSha256Sums([...manifest.files, ...sealed.files()]);
  await sealed.writeFile(SUMS_FILE, sums);
  if (key) await sealed.writeFile(SUMS_SIGNATURE_FILE, Buffer.from(key.sign(sums, BUNDLE_NAMESPACE), 'utf8'));
  w.progress.stop();
  await sealDirectory(w.partial, w.out);
  const files = [...manifest.files, ...sealed.files()];
  await checkSealed(w.out, files, w.options.out);
  return files;
}

/**
 * After the final rename, the medium must show every file at its size: a failing stick (or a FUSE
 * FAT driver) can lose a directory's contents in the rename, and a bundle that looks complete but
 * is not must never be left behind.
 */
async function checkSealed(out: string, files: FileEntry[], output: string): Promise<void> {
  const { problems } = compareListing(files, await listTree(out).catch(() => []));
  if (problems.length === 0) return;
  const removed = await removeTree(out).then(
    () => true,
    () => false,
  );
  throw new BuildInputError('OUTPUT_IO_ERROR', `the medium lost the bundle's files when the bundle was moved into place at ${output}: ${problems.length} problem${problems.length > 1 ? 's' : ''}, e.g. ${problems[0]!.message}`, {
    hint: `The medium is failing or its driver is: use another one, then create again.${removed ? '' : ` Delete ${out} by hand.`}`,
    details: { output, problems: problems.slice(0, 20), leftBehind: removed ? null : out },
  });
}

/**
 * Refuses up front when the output medium clearly cannot hold the bundle: what is left to write
 * (layers not held by every base) at a zstd ratio of one half, which real stacks beat (the bench
 * stack: 0.31) and only incompressible layers exceed. --force writes anyway.
 */
async function checkRoom(out: string, images: { diffIds: string[]; size: number }[], needed: Set<string>, extraBytes: number, force: boolean, reporter: Reporter): Promise<void> {
  const medium = await mediumOf(out).catch(() => null);
  if (!medium || medium.freeBytes === null) return;
  // Image sizes are whole-image sums; a layer's share is not known before the save, so an image
  // with any needed layer counts whole, once per distinct set of layers.
  const seen = new Set<string>();
  let raw = 0;
  for (const im of images) {
    const key = im.diffIds.join();
    if (seen.has(key) || !im.diffIds.some((d) => needed.has(d))) continue;
    seen.add(key);
    raw += im.size;
  }
  const estimate = Math.ceil(raw * 0.5) + extraBytes + 1024 * 1024;
  if (medium.freeBytes >= estimate) return;
  const message = `the bundle needs about ${formatBytes(estimate)} and ${medium.mountPoint} (${medium.fsType}) has ${formatBytes(medium.freeBytes)} free`;
  if (force) {
    reporter.warn({ code: 'NO_SPACE_ON_OUTPUT', subject: medium.mountPoint, message: `${message}; writing anyway (--force)` });
    return;
  }
  throw new BuildInputError('NO_SPACE_ON_OUTPUT', `${message}: refusing to start`, {
    hint: 'Use a larger medium or free space on it, or ship less (--base against what the host holds). --force writes anyway (the estimate assumes zstd halves the layers).',
    details: { output: out, mountPoint: medium.mountPoint, fsType: medium.fsType, freeBytes: medium.freeBytes, neededBytes: estimate },
  });
}

const SHOWN_SETUID = 5;

function setuidMessage(diffId: string, images: string, files: TarEntry[]): string {
  const shown = files.slice(0, SHOWN_SETUID).map((f) => `/${f.path.replace(/^\.?\//, '')} (${f.mode.toString(8)})`);
  const more = files.length > SHOWN_SETUID ? ` and ${files.length - SHOWN_SETUID} more` : '';
  return `layer ${shortDigest(diffId)} of ${images} ships ${files.length} setuid/setgid file${files.length === 1 ? '' : 's'}: ${shown.join(', ')}${more}; each runs with its owner's rights whoever starts it: remove the bit where it is not needed (RUN chmod u-s,g-s …)`;
}

/** --strict: the warnings given so far refuse the bundle (exit 10); the caller's cleanup removes what was written. */
function refuseWarnings(warned: Warning[], byFlag: boolean): void {
  if (warned.length === 0) return;
  const codes = [...new Set(warned.map((w) => w.code))];
  throw new BuildInputError('STRICT_WARNINGS', `${warned.length} warning${warned.length === 1 ? '' : 's'} under ${byFlag ? '--strict' : 'ferry.yaml\'s strict: true'} (${codes.join(', ')}): no bundle written`, {
    details: { warnings: warned },
    hint: 'Fix what each warning names (they are printed above), or create without --strict.',
  });
}

/** Reads each --base: a directory is a previous bundle (its manifest), a file a host inventory. */
async function loadBases(paths: string[]): Promise<{ bases: BundleBase[]; executables: (string | null)[]; baseSizes: Map<string, number>; deltaBases: DeltaBase[] }> {
  const bases: BundleBase[] = [];
  // What each base holds image by image, and a previous bundle's whole blobs: what deltas are made against.
  const deltaBases: DeltaBase[] = [];
  const executables: (string | null)[] = [];
  // A previous bundle's manifest gives each layer's tar size: what lets create know a held layer before hashing it.
  const baseSizes = new Map<string, number>();
  for (const path of paths) {
    if (await isDirectory(path)) {
      const bytes = await readBounded(join(path, MANIFEST_FILE), MAX_MANIFEST_BYTES).catch(() => null);
      if (!bytes) throw new BuildInputError('BASE_INVALID', `--base ${path} is a directory without a readable ${MANIFEST_FILE}: not a ferry bundle`);
      try {
        const parsed = parseManifest(bytes);
        bases.push(baseFromBundle(bytes, parsed));
        for (const im of parsed.images) for (const l of im.layers) baseSizes.set(l.diffId, l.size);
        const blobs = new Map(parsed.images.flatMap((im) => im.layers.flatMap((l) => (l.blob ? [[l.diffId, { blob: l.blob, size: l.size }] as const] : []))));
        deltaBases.push({
          images: parsed.images.map((im) => ({ id: im.id, repos: im.refs.map(repositoryOf), diffIds: im.layers.map((l) => l.diffId) })),
          bundle: { root: resolve(path), blobs },
        });
        // A host may never have run host setup with a previous bundle's executable: unknown.
        executables.push(null);
      } catch (e) {
        if (e instanceof ManifestInvalid) throw new BuildInputError('BASE_INVALID', `--base ${path}: ${e.message}`, { details: { problems: e.problems } });
        throw e;
      }
    } else {
      const bytes = await readBounded(path, MAX_INVENTORY_BYTES).catch((e: Error) => {
        throw new BuildInputError('BASE_INVALID', `--base ${path}: ${e.message}`);
      });
      if (!bytes) {
        throw new BuildInputError('BASE_NOT_FOUND', `--base ${path} does not exist`, {
          hint: 'Pass a host inventory (ferry host inventory --out FILE) or a previous bundle directory.',
        });
      }
      bases.push(baseFromInventory(bytes, path));
      const inventory = parseInventory(bytes, path);
      executables.push(inventory.tool.executable?.sha256 ?? null);
      deltaBases.push({ images: inventory.images.map((im) => ({ id: im.id, repos: im.repoTags.map(repositoryOf), diffIds: im.diffIds })) });
    }
  }
  return { bases, executables, baseSizes, deltaBases };
}

/** The executable --with-ferry names, checked before minutes of saving: it must be a ferry that runs. */
async function ferryToCarry(path: string): Promise<{ path: string; version: string; sha256: string; size: number }> {
  const said = await executableVersion(path);
  if (said === null) {
    throw new BuildInputError('FERRY_EXECUTABLE_UNUSABLE', `${path} is not a ferry executable that runs here (\`${path} --version\` failed)`, {
      details: { path },
      hint: 'Build it with npm run package, or name one with --ferry-executable PATH.',
    });
  }
  const { sha256, bytes } = await hashFile(path, Number.MAX_SAFE_INTEGER);
  return { path, version: said.version, sha256: `sha256:${sha256}`, size: bytes };
}

function timestampVersion(now: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${now.getUTCFullYear()}${p(now.getUTCMonth() + 1)}${p(now.getUTCDate())}.${p(now.getUTCHours())}${p(now.getUTCMinutes())}${p(now.getUTCSeconds())}`;
}

/** Reads ferry.yaml, the compose file and every host file, validating as it goes. */
