/**
 * `ferry bundle install`: each step refuses, with its documented exit code, before the next runs.
 *   a. signature and policy   b. stage (copy off the stick while hashing)   c. preflight
 *   d. load (stream, decompress, re-check diffIDs; inspect after)   e. switch (compose up)
 *   f. confirm (health, smoke test)   g. restore the previous release on failure; record on success.
 * Re-running after a crash converges: loaded images are skipped, staging is redone, compose up is
 * idempotent, and state is written last and atomically.
 */
import { join, posix } from 'node:path';
import type { Engine, EngineInfo } from '../adapters/engine.js';
import { copyHashed, listTree, readBounded } from '../adapters/fs.js';
import type { HostTarget } from '../adapters/host.js';
import { listImagesWithLayers, isPodman } from '../adapters/engine-inventory.js';
import { loadArchive, type ArchiveLayer, type LoadDelta, type LoadImage, type SpliceSource } from '../adapters/load-archive.js';
import { identifyLayer, layerFromEngine, referenceSource, ReferenceNotFound } from '../adapters/reference-layer.js';
import type { LayerFanout } from '../adapters/layer-fanout.js';
import { DeltaError } from '../core/layer-delta.js';
import { dockerArchiveImportId } from '../core/oci.js';
import { sha256Digest } from '../core/digest.js';
import { findHeldLayers, layerNeeds, loadBytes, loadSpaceNeed, needsHeldLayers, spliceSaves, type HeldLayers, type LayerNeeds, type ReferenceHolder } from '../core/load-plan.js';
import { StateStore } from '../adapters/state-store.js';
import { renderImageOverride } from '../core/compose-cli.js';
import { blobPaths, MANIFEST_FILE, SIGNATURE_FILE, type FerryManifest, type LayerDelta, type ManifestImage, type ManifestLayer } from '../core/manifest.js';
import {
  currentRelease,
  ferryTag,
  imagesToRemove,
  recordInstalled,
  releaseId,
  type ReleaseRecord,
  type StackState,
  type VerificationReport,
  type VerificationSummary,
} from '../core/state.js';
import { compareListing } from '../core/verify.js';
import {
  BuildInputError,
  DeployFailedError,
  DeployRestoredError,
  HostPreconditionError,
  IntegrityError,
  PolicyError,
  type Problem,
} from '../errors.js';
import { formatBytes, shortDigest } from '../core/format.js';
import { checkFiles, integrityFailure, openBundle, readVerified, type OpenedBundle, type TrustOptions } from './bundle.js';
import { DeployFailure, isHealthy, type DeployContext } from './deploy.js';
import { colourFile, colouredOf, deployRelease } from './blue-green.js';
import { COLOURS, DEFAULT_DRAIN_SECONDS, hostOverridePorts, parseSwitch, renderColourOverride, SwitchSpecError } from '../core/compose-colours.js';
import { parseYaml } from '../core/yaml.js';
import { findPinned, type PinnedImage } from './pinned-images.js';
import type { ProgressReporter, Reporter } from './reporter.js';

export interface InstallOptions {
  bundle: string;
  trust: TrustOptions;
  host: string;
  stateDir: string;
  stage: boolean;
  allowDowngrade: boolean;
  composeCmd?: string;
  waitTimeoutMs: number;
  keep: number;
  /** false: load images and record nothing else (engines that cannot run containers, benches). */
  up: boolean;
  /**
   * How left-out layers reach the engine: `never` relies on the engine accepting an archive
   * without them (classic store), `always` copies them from the host's own images into the load
   * stream, `auto` splices where a partial load is not safe (containerd store, Podman).
   */
  splice: 'auto' | 'always' | 'never';
  /**
   * The bundle as a fleet or swarm opened it once for all its hosts: signature verified, every file
   * checked. A host uses this manifest, in memory, instead of reading and checking the files again;
   * its own policy is still checked, and every layer's digest as it streams into the engine.
   */
  checked?: OpenedBundle;
  /** Blue/green: how long the old colour keeps running after the switch (default 10 s). */
  drainMs?: number;
  /**
   * Installs running at once from one bundle (a swarm's nodes, a fleet's hosts) that read each
   * layer once between them; `load` names this one. The caller leaves the fan-out when its install
   * ends, however it ends.
   */
  fanout?: { hub: LayerFanout; load: string };
  now?: Date;
}

export interface InstallResult {
  stack: string;
  release: string;
  version: string;
  sequence: number;
  host: string;
  outcome: 'installed' | 'already-current' | 'loaded';
  previous: string | null;
  images: { id: string; tag: string; loaded: boolean }[];
  pruned: string[];
  durationMs: number;
  timings: Record<string, number>;
}

export async function installBundle(options: InstallOptions, host: HostTarget, reporter: Reporter): Promise<InstallResult> {
  const started = Date.now();
  const timings: Record<string, number> = {};
  const step = timed(timings);

  // a. signature, then policy — before anything is copied, loaded or started.
  const opened = options.checked ?? (await step('verify-signature', () => openBundle(options.bundle, options.trust, reporter)));
  const manifest = opened.manifest;
  const id = releaseId(manifest.sequence, manifest.version);
  const store = new StateStore(options.stateDir, host.fs);
  await store.ensure();
  return store.withLock(`install ${manifest.name} ${id}`, async () => {
    try {
      const state = await store.load(manifest.name);
      checkPolicy(manifest, state, options);
      const previous = currentRelease(state) ?? null;
      const result = (outcome: InstallResult['outcome'], images: InstallResult['images'], pruned: string[] = []): InstallResult => ({
        stack: manifest.name,
        release: id,
        version: manifest.version,
        sequence: manifest.sequence,
        host: options.host,
        outcome,
        previous: previous?.id ?? null,
        images,
        pruned,
        durationMs: Date.now() - started,
        timings,
      });

      if (previous?.id === id && options.up && (await isHealthy(host.engine, manifest.name, previous))) {
        reporter.log(`${manifest.name} ${manifest.version} is already the current release and healthy: nothing to do`);
        return result('already-current', previous.images.map((i) => ({ ...i, loaded: false })));
      }

      // b. stage (or check in place); c. preflight; d. load what the engine lacks and tag it.
      const { root, staged } = await bundleRoot(opened, store, id, host, options, step, reporter);
      const plan = await step('preflight', () => preflight(manifest, host, options.splice, reporter));
      const images = await step('load', () => loadImages(manifest, root, plan, host.engine, reporter, options.fanout));
      const release = releaseRecordOf(manifest, id, opened, images, options);
      release.composeFiles = await writeRelease(store, manifest, release, root, opened, options.host);
      release.verification = await writeVerificationReport(store, manifest, release, opened, options, staged);
      if (!options.up) return result('loaded', images);

      // e + f. switch and confirm; g. restore on failure; then record.
      await switchOrRestore(host, store, state, previous, release, options, timings, step, reporter);
      const pruned = await recordAndPrune(host.engine, store, state, release, options.keep);
      reporter.log(`${manifest.name} ${manifest.version} installed and healthy${previous ? ` (was ${previous.version})` : ''}`);
      return result('installed', images, pruned);
    } finally {
      // Whatever failed after staging, the staged copy (possibly gigabytes) does not stay behind.
      await store.fs.rmrf(store.stagingDir(manifest.name, id)).catch(() => undefined);
    }
  });
}

type Step = <T>(name: string, fn: () => Promise<T>) => Promise<T>;

/** Runs a step and records how long it took under its name (install --json's timings). */
function timed(timings: Record<string, number>): Step {
  return async (name, fn) => {
    const t = Date.now();
    try {
      return await fn();
    } finally {
      timings[name] = Date.now() - t;
    }
  };
}

/**
 * Where the bundle is read from after this: the staged copy (the stick can change or vanish), or,
 * for a remote host fed from this machine, the checked bundle itself.
 */
async function bundleRoot(opened: OpenedBundle, store: StateStore, id: string, host: HostTarget, options: InstallOptions, step: Step, reporter: Reporter): Promise<{ root: string; staged: boolean }> {
  // Staging copies onto the host's own disk; a remote host is fed from the local, checked copy.
  if (options.stage && host.local) {
    const staging = store.stagingDir(opened.manifest.name, id);
    return { root: await step('stage', () => stageBundle(opened, staging, store, reporter)), staged: true };
  }
  if (options.checked === opened) {
    reporter.log('bundle files: checked once for every host of this run');
  } else {
    const { problems } = await step('verify-files', () => checkFiles(opened, reporter));
    if (problems.length > 0) throw integrityFailure(problems);
  }
  return { root: opened.dir, staged: false };
}

function releaseRecordOf(manifest: FerryManifest, id: string, opened: OpenedBundle, images: { id: string; tag: string }[], options: InstallOptions): ReleaseRecord {
  return {
    id,
    version: manifest.version,
    sequence: manifest.sequence,
    created: manifest.created,
    installedAt: (options.now ?? new Date()).toISOString(),
    host: options.host,
    images: images.map(({ id: imageId, tag }) => ({ id: imageId, tag })),
    services: manifest.compose.services.map((s) => ({ name: s.name, imageId: s.imageId })),
    composeFiles: [],
    smoke: manifest.compose.smoke,
    signer: opened.signer ? { fingerprint: opened.signer.fingerprint, principals: opened.signer.principals } : null,
    result: 'installed',
  };
}

/** e + f: brings the release up and confirms it; g: on failure brings the previous one back and throws. */
async function switchOrRestore(
  host: HostTarget,
  store: StateStore,
  state: StackState,
  previous: ReleaseRecord | null,
  release: ReleaseRecord,
  options: InstallOptions,
  timings: Record<string, number>,
  step: Step,
  reporter: Reporter,
): Promise<void> {
  const stack = state.stack;
  const ctx: DeployContext = { engine: host.engine, runner: host.compose, compose: await host.compose.detect(options.composeCmd), project: stack, waitTimeoutMs: options.waitTimeoutMs, reporter, timings };
  const drainMs = options.drainMs ?? DEFAULT_DRAIN_SECONDS * 1000;
  try {
    await step('deploy', () => deployRelease(ctx, release, store.releaseDir(stack, release.id), previous, drainMs));
  } catch (e) {
    if (!(e instanceof DeployFailure)) throw e;
    const err = await deployFailed(ctx, store, previous, release, e, `${stack} ${release.version} failed: ${e.message}`, drainMs);
    // A blue/green restore ran the previous release as another colour: its record says which.
    if (previous?.switch === 'blue-green') await store.save({ ...state, releases: state.releases.map((r) => (r.id === previous.id ? previous : r)) });
    throw err;
  }
}

/** Records the release as current, then removes what --keep no longer keeps: images and release directories. */
async function recordAndPrune(engine: Engine, store: StateStore, state: StackState, release: ReleaseRecord, keep: number): Promise<string[]> {
  const { state: next, pruned } = recordInstalled(state, release, keep);
  await store.save(next);
  for (const img of imagesToRemove(next, pruned)) await engine.removeImage(img.tag);
  for (const r of pruned) await store.fs.rmrf(store.releaseDir(state.stack, r.id));
  return pruned.map((r) => r.id);
}

function checkPolicy(manifest: FerryManifest, state: StackState, options: InstallOptions): void {
  const now = options.now ?? new Date();
  if (manifest.expires && Date.parse(manifest.expires) < now.getTime()) {
    throw new PolicyError('BUNDLE_EXPIRED', `the bundle expired on ${manifest.expires}`, { details: { expires: manifest.expires }, hint: 'Ask the build server for a fresh bundle.' });
  }
  const hosts = Object.keys(manifest.hosts);
  if (hosts.length > 0 && !hosts.includes(options.host)) {
    throw new PolicyError('WRONG_HOST', `the bundle has no configuration for host "${options.host}"; it defines: ${hosts.join(', ')}`, {
      details: { host: options.host, hosts },
      hint: 'Pass --host with one of those names (without it, ferry uses the target host\'s own hostname).',
    });
  }
  if (!options.allowDowngrade) {
    if (manifest.sequence < state.highestSequence) {
      throw new PolicyError('DOWNGRADE', `${manifest.name} ${manifest.version} has sequence ${manifest.sequence}, lower than ${state.highestSequence} which this host already installed`, {
        details: { sequence: manifest.sequence, highestSequence: state.highestSequence },
        hint: ['To go back to an installed release: ferry host rollback.', 'To install an older bundle anyway: --allow-downgrade.'],
      });
    }
    // The creation-time ratchet holds whatever the sequence says: an old bundle re-signed with a
    // high sequence is still old.
    if (state.newestCreated && manifest.created < state.newestCreated) {
      throw new PolicyError('DOWNGRADE', `${manifest.name} ${manifest.version} was created ${manifest.created}, before ${state.newestCreated} which this host already accepted`, {
        details: { created: manifest.created, newestCreated: state.newestCreated },
        hint: 'To force an older bundle, --allow-downgrade.',
      });
    }
  }
}

/** Copies every listed file off the medium while hashing it; the copy is what install then uses. */
async function stageBundle(opened: OpenedBundle, staging: string, store: StateStore, reporter: Reporter): Promise<string> {
  const { problems, toHash } = compareListing(opened.manifest.files, await listTree(opened.dir));
  if (problems.length > 0) throw integrityFailure(problems);
  const total = toHash.reduce((n, f) => n + f.size, 0);
  await store.fs.rmrf(staging);
  const free = await store.free();
  if (free.bytes < total + 64 * 1024 * 1024) {
    throw new HostPreconditionError('NO_SPACE', `the state directory ${store.root} has ${formatBytes(free.bytes)} free; staging needs ${formatBytes(total)} plus 64 MB`, {
      details: { path: store.root, freeBytes: free.bytes, neededBytes: total },
      hint: 'Free space there, pass --state-dir on a larger filesystem, or --no-stage to load straight from the medium.',
    });
  }
  const progress = reporter.progress();
  const bar = progress.overall('staging', total);
  const perImage = imageBars(progress, 'staging', opened.manifest.images, (l) => (l.included ? (l.blob?.size ?? 0) : 0));
  const layerOfFile = new Map<string, string>();
  for (const im of opened.manifest.images) {
    for (const l of im.layers) for (const p of l.blob ? blobPaths(l.blob) : []) layerOfFile.set(p, l.diffId);
  }
  let done = 0;
  const bad: Problem[] = [];
  try {
    for (const f of toHash) {
      const diffId = layerOfFile.get(f.path);
      const got = await copyHashed(join(opened.dir, f.path), join(staging, f.path), f.size, (n) => {
        bar.update((done += n));
        if (diffId) perImage.advance(diffId, n);
      });
      if (got.longer || got.bytes !== f.size) bad.push({ file: f.path, kind: 'size', message: `${f.path} changed size while being staged` });
      else if (got.sha256 !== f.sha256) bad.push({ file: f.path, kind: 'digest', message: `${f.path} has sha256 ${got.sha256}, the manifest says ${f.sha256}` });
    }
  } finally {
    perImage.done();
    bar.done(`${formatBytes(done)} staged`);
    progress.stop();
  }
  if (bad.length > 0) {
    await store.fs.rmrf(staging);
    throw integrityFailure(bad);
  }
  return staging;
}

/**
 * One bar per image, advanced by the bytes of its layers (a layer two images share advances both).
 * `weight` is what a layer counts for: its uncompressed size when loading, its blob when staging.
 * Each bar is labelled with its phase: an image is staged and then loaded, and without the phase
 * the two "done" lines of one image read the same.
 */
function imageBars(progress: ProgressReporter, phase: 'staging' | 'loading', images: ManifestImage[], weight: (l: ManifestLayer) => number) {
  const bars = images
    .map((im) => {
      const total = im.layers.reduce((n, l) => n + weight(l), 0);
      return { task: total > 0 ? progress.task(`${phase} ${im.refs[0] ?? shortDigest(im.id)}`, total) : null, done: 0, layers: new Set(im.layers.map((l) => l.diffId)) };
    })
    .filter((b) => b.task !== null);
  return {
    advance(diffId: string, n: number) {
      for (const b of bars) if (b.layers.has(diffId)) b.task!.update((b.done += n));
    },
    done() {
      for (const b of bars) b.task!.done();
    },
  };
}

interface LoadPlan {
  /** Image IDs the engine lacks. */
  missing: Set<string>;
  /** Whether the engine names images by manifest digest (containerd image store). */
  containerdStore: boolean;
  /** Where the left-out layers come from when they are spliced; empty for a partial load. */
  splice: SpliceSource[];
  /** Reference layers of the bundle's deltas: the host image a save gives each from. */
  references: Map<string, ReferenceHolder>;
}

/** What preflight's steps share: the host and what its engine said about itself. */
interface PreflightContext {
  manifest: FerryManifest;
  host: HostTarget;
  engine: Engine;
  info: EngineInfo;
  reporter: Reporter;
}

/**
 * Images this engine lacks, after checking it is reachable, has room for them, and holds every
 * layer the bundle assumes (by chain ID). Decides how assumed layers reach the load.
 */
async function preflight(manifest: FerryManifest, host: HostTarget, spliceMode: InstallOptions['splice'], reporter: Reporter): Promise<LoadPlan> {
  const { engine } = host;
  const ctx: PreflightContext = { manifest, host, engine, info: await engine.info(), reporter };
  // Each read below is a round trip to the host (over SSH, a channel of its own): the independent
  // ones go at once.
  const free = host.fs.statfs(ctx.info.dataRoot).catch(() => null);
  const [, missing] = await Promise.all([requireHostPaths(manifest, host), missingImages(ctx)]);
  const toLoad = manifest.images.filter((im) => missing.has(im.id));
  // Read what the engine holds, then the plan in core decides (and refuses what is missing).
  const needs = layerNeeds(toLoad);
  const held = await heldLayers(engine, needs);
  await requireLoadSpace(ctx, loadBytes(toLoad), await free);
  const splice = await spliceSources(ctx, needs, held, spliceMode);
  if (held.references.size > 0) reportDeltas(ctx, needs, held);
  return { missing, splice, references: held.references, containerdStore: ctx.info.containerdStore };
}

/** Where the needed layers are on the engine; listed only when some are needed (listing inspects every image). */
async function heldLayers(engine: Engine, needs: LayerNeeds): Promise<HeldLayers> {
  if (!needsHeldLayers(needs)) return { sources: new Map(), references: new Map() };
  return findHeldLayers(needs, (await listImagesWithLayers(engine)).images);
}

/** The bundle's images the engine does not hold yet (by pinned ID, or ferry's own tag with the layers compared). */
async function missingImages({ manifest, engine, info }: PreflightContext): Promise<Set<string>> {
  const found = await Promise.all(manifest.images.map((im) => findPinned(engine, info.containerdStore, manifest.name, pinned(im))));
  return new Set(manifest.images.filter((_, i) => !found[i]).map((im) => im.id));
}

/** Refuses a load the engine's data root has no room for; says so when that cannot be seen. */
async function requireLoadSpace({ info, reporter }: PreflightContext, need: number, free: Awaited<ReturnType<HostTarget['fs']['statfs']>> | null): Promise<void> {
  if (free && need > 0) {
    const { bytes: needBytes, inodes: needInodes } = loadSpaceNeed(need);
    if (free.bytes < needBytes || free.inodes < needInodes) {
      throw new HostPreconditionError('NO_SPACE', `the engine's data root ${info.dataRoot} has ${formatBytes(free.bytes)} and ${free.inodes} inodes free; loading needs about ${formatBytes(needBytes)} and ${needInodes} inodes`, {
        details: { path: info.dataRoot, freeBytes: free.bytes, freeInodes: free.inodes, neededBytes: needBytes, neededInodes: needInodes },
        hint: 'Free space on the engine (docker image prune, old releases) and run install again.',
      });
    }
  } else if (!free) {
    reporter.log(`(cannot see the engine's data root ${info.dataRoot} from here: free space not checked)`);
  }
}

/** How assumed layers reach the load: spliced in from saves of host images, or left to the engine (partial load). */
async function spliceSources({ engine, info, reporter }: PreflightContext, { assumed }: LayerNeeds, held: HeldLayers, spliceMode: InstallOptions['splice']): Promise<SpliceSource[]> {
  if (assumed.size === 0) return [];
  const partialUnsafe = info.containerdStore || (await isPodman(engine));
  const useSplice = spliceMode === 'always' || (spliceMode === 'auto' && partialUnsafe);
  if (spliceMode === 'never' && partialUnsafe) {
    reporter.warn({ code: 'PARTIAL_LOAD_UNSAFE', message: `--splice never on an engine that may refuse a partial archive (${info.containerdStore ? 'containerd image store' : 'Podman'})` });
  }
  const s = assumed.size > 1 ? 's' : '';
  if (!useSplice) {
    reporter.log(`${assumed.size} assumed layer${s} already on this engine: partial load`);
    return [];
  }
  const byImage = spliceSaves(assumed, held.sources);
  reporter.log(`supplying ${assumed.size} assumed layer${s} from ${byImage.size} image${byImage.size > 1 ? 's' : ''} on this engine (splice)`);
  return [...byImage].map(([id, wanted]) => ({ save: () => engine.save([id]), wanted }));
}

function reportDeltas({ host, reporter }: PreflightContext, needs: LayerNeeds, held: HeldLayers): void {
  const wanted = [...needs.references.values()];
  const rebuilt = wanted.reduce((n, r) => n + r.needs.length, 0);
  reporter.log(`${rebuilt} layer${rebuilt === 1 ? '' : 's'} rebuilt from deltas against ${held.references.size} layer${held.references.size === 1 ? '' : 's'} this engine holds`);
  // The rebuild runs where ferry runs: a remote engine's reference comes back over the link.
  if (!host.local) {
    const bytes = wanted.reduce((n, r) => n + r.size, 0);
    reporter.log(`(over SSH the references, ${formatBytes(bytes)}, are read back from ${host.label} to rebuild here; running ferry on the host itself avoids that)`);
  }
}

/**
 * Paths on the host the stack reads (absolute bind sources, secrets made to stay on the host):
 * Docker would create an empty directory where one is missing and start the stack misconfigured.
 */
async function requireHostPaths(manifest: FerryManifest, host: HostTarget): Promise<void> {
  const absent = [];
  for (const h of manifest.compose.hostPaths ?? []) if (!(await host.fs.exists(h.path))) absent.push(h);
  if (absent.length === 0) return;
  const lines = absent.map((h) => `  - ${h.path} (${h.excludedSecret ? 'secret left out of the bundle' : h.kind} of ${h.services.join(', ') || 'the project'})`);
  throw new HostPreconditionError('HOST_PATHS_MISSING', `the stack reads ${absent.length} path${absent.length > 1 ? 's' : ''} on ${host.local ? 'this host' : host.label} that ${absent.length > 1 ? 'do' : 'does'} not exist:\n${lines.join('\n')}`, {
    hint: absent.some((h) => h.excludedSecret)
      ? 'Put each secret file at the path named (the bundle was made with --exclude-secrets), create the other paths, then install again. Nothing was loaded or switched.'
      : 'Create them on this host (or fix the compose file on the build server), then install again. Nothing was loaded or switched.',
    details: { missing: absent },
  });
}

const pinned = (im: ManifestImage): PinnedImage => ({ id: im.id, configSize: im.config.size, layers: im.layers });

async function loadImages(manifest: FerryManifest, root: string, plan: LoadPlan, engine: Engine, reporter: Reporter, fanout?: InstallOptions['fanout']): Promise<{ id: string; tag: string; loaded: boolean }[]> {
  const { missing } = plan;
  const result = manifest.images.map((im) => ({ id: im.id, tag: ferryTag(manifest.name, im.id), loaded: missing.has(im.id) }));
  const toLoad = manifest.images.filter((im) => missing.has(im.id));
  for (const im of manifest.images.filter((x) => !missing.has(x.id))) reporter.log(`image ${im.refs[0] ?? shortDigest(im.id)} already on the engine`);
  const run: LoadRun = { manifest, root, plan, engine, reporter, written: new Map(), ...(fanout ? { shared: { fanout: fanout.hub, load: fanout.load } } : {}) };
  // Nothing to load: the loads sharing the bundle must not wait for this one.
  if (toLoad.length === 0) fanout?.hub.leave(fanout.load);
  if (toLoad.length > 0) await streamImages(run, toLoad);
  await checkLoaded(run);
  return result;
}

/** What the load's steps share. */
interface LoadRun {
  manifest: FerryManifest;
  root: string;
  plan: LoadPlan;
  engine: Engine;
  reporter: Reporter;
  /** Each layer's archive entry as the last load attempt wrote it: what a containerd store names the image by. */
  written: Map<string, ArchiveLayer>;
  /** The fan-out this load reads the bundle's layers through, with others running at once. */
  shared?: { fanout: LayerFanout; load: string };
}

type LoadMeter = ReturnType<typeof loadMeter>;

/** Streams the images the engine lacks into one load; every failure ends as one typed error. */
async function streamImages(run: LoadRun, toLoad: ManifestImage[]): Promise<void> {
  // One per delta layer (a layer shared by images is written once): its reference's save is
  // asked for early, and ended if the load never reads it.
  const deltas = new Map<string, ReturnType<typeof loadDelta>>();
  const images = await loadList(run, toLoad, deltas);
  const meter = loadMeter(run.reporter, toLoad);
  try {
    for (const d of deltas.values()) d.prefetch();
    await loadWithRetry(run, images, meter);
  } catch (e) {
    throw loadFailure(e);
  } finally {
    for (const d of deltas.values()) d.drop();
    meter.stop();
  }
}

/** The archive's images: configs read (and re-checked) now, layers as blobs, deltas, or left out. */
async function loadList({ manifest, root, plan, engine, reporter }: LoadRun, toLoad: ManifestImage[], deltas: Map<string, ReturnType<typeof loadDelta>>): Promise<LoadImage[]> {
  const deltaOf = (l: ManifestLayer, d: LayerDelta) => deltas.get(l.diffId) ?? deltas.set(l.diffId, loadDelta(l, d, plan, engine, reporter)).get(l.diffId)!;
  const list: LoadImage[] = [];
  for (const im of toLoad) {
    const config = await readConfig(root, manifest, im.config.path);
    list.push({ id: im.id, config, tags: [ferryTag(manifest.name, im.id)], layers: im.layers.map((l) => ({ diffId: l.diffId, size: l.size, blob: l.included ? l.blob : null, ...(l.delta ? { delta: deltaOf(l, l.delta) } : {}) })) });
  }
  return list;
}

/** The loading bars: overall and per image, by the bytes sent. */
function loadMeter(reporter: Reporter, toLoad: ManifestImage[]) {
  const total = loadBytes(toLoad);
  const progress = reporter.progress();
  const bar = progress.overall('loading', total);
  const perImage = imageBars(progress, 'loading', toLoad, (l) => (l.included ? l.size : 0));
  let done = 0;
  return {
    sent: () => done,
    onBytes: (n: number, diffId: string) => {
      bar.update((done += n));
      perImage.advance(diffId, n);
    },
    restart: () => bar.update((done = 0)),
    stop: () => {
      perImage.done();
      bar.done(`${formatBytes(done)} loaded`);
      progress.stop();
    },
  };
}

/** One load, run a second time only when a reference taken by its size turned out to be another layer. */
async function loadWithRetry(run: LoadRun, images: LoadImage[], meter: LoadMeter): Promise<void> {
  const { root, plan, engine, reporter, written } = run;
  for (let attempt = 1; ; attempt++) {
    let failure: unknown;
    const archive = loadArchive(root, images, meter.onBytes, plan.splice, written, (e) => (failure ??= e), run.shared);
    // The engine unpacks and registers the layers only once it has them all: on a big stack that
    // is a long wait after the bytes reach 100%, which should not look like a hang.
    archive.once('end', () => reporter.log(`all ${formatBytes(meter.sent())} sent; the engine is unpacking and registering the layers`));
    try {
      await engine.load(archive);
      return;
    } catch (e) {
      const cause = failure ?? e;
      // A classic save does not name its layers: a reference taken by its size may have been
      // another layer of that size. The load was cut short before its end (nothing loaded);
      // once, every reference is found by hash and the load runs again.
      if (attempt === 1 && cause instanceof DeltaError && cause.reason === 'reference' && [...plan.references.values()].some((r) => r.path === undefined)) {
        reporter.log(`a reference layer was not where its size said in the engine's save: finding each by hash, then loading again`);
        for (const [ref, r] of plan.references) if (r.path === undefined) r.path = (await identifyLayer(engine, r.holder, ref)).path;
        meter.restart();
        written.clear();
        continue;
      }
      throw cause;
    }
  }
}

/** What a failed load ends in: the delta's or reference's own error, else LOAD_FAILED. */
function loadFailure(e: unknown): Error {
  if (e instanceof DeltaError) return deltaFailure(e);
  if (e instanceof ReferenceNotFound) {
    return new HostPreconditionError('MISSING_REFERENCE_LAYERS', `${e.message}: the delta's reference could not be read from this engine`, { hint: 'Nothing was loaded or switched. Install the release the bundle was built against, or ask for a bundle made with --no-delta.', cause: e });
  }
  return new HostPreconditionError('LOAD_FAILED', `loading images into the engine failed: ${(e as Error).message}`, {
    hint: ['Nothing was switched; the running release is untouched.', "Check the engine's log, then run install again."],
    cause: e,
  });
}

/** Every image of the bundle, loaded now or before, is checked on the engine and tagged as ferry's. */
async function checkLoaded({ manifest, plan, engine, written }: LoadRun): Promise<void> {
  for (const im of manifest.images) {
    const diffIds = im.layers.map((l) => l.diffId);
    // A loaded image must carry the ID its config and layers as sent give it: the config digest on
    // a classic store, on the containerd store the digest of the manifest its import wrote.
    const expectedId =
      plan.containerdStore && plan.missing.has(im.id)
        ? dockerArchiveImportId({ digest: im.id, size: im.config.size }, im.layers.map((l) => written.get(l.diffId) ?? { digest: l.diffId, size: l.size }))
        : null;
    const got = expectedId ? await engine.inspectImage(ferryTag(manifest.name, im.id)) : await findPinned(engine, plan.containerdStore, manifest.name, pinned(im));
    if (!got || (expectedId ? got.id !== expectedId : false) || JSON.stringify(got.diffIds) !== JSON.stringify(diffIds)) {
      throw new IntegrityError('LOADED_IMAGE_MISMATCH', `after loading, image ${im.refs[0] ?? im.id} is ${got ? `${got.id} with other layers` : 'absent'} on the engine`, {
        details: { expected: { id: im.id, engineId: expectedId, diffIds }, got },
        hint: plan.containerdStore ? 'This engine uses the containerd image store: it names images by manifest digest, and the one it made differs from what ferry expects. Report the engine version with this message.' : undefined,
      });
    }
    await engine.tag(got.id, ferryTag(manifest.name, im.id));
  }
}

/** Configs are read again after verification: re-checked, since --no-stage reads the medium twice. */
async function readConfig(root: string, manifest: FerryManifest, path: string): Promise<Buffer> {
  const entry = manifest.files.find((f) => f.path === path);
  if (!entry) throw new IntegrityError('BUNDLE_INTEGRITY', `${path} is not listed in the manifest`);
  return readVerified(root, entry);
}

/** Writes the release directory: manifest, signature, compose files, and ferry's pinning override. */
async function writeRelease(store: StateStore, manifest: FerryManifest, release: ReleaseRecord, root: string, opened: OpenedBundle, host: string): Promise<string[]> {
  // Files are replaced one by one, atomically, never by deleting the directory first: a kept
  // release killed mid-rewrite must still have every file its state record promises.
  const dir = store.releaseDir(manifest.name, release.id);
  const hostFiles = manifest.hosts[host]?.files ?? [];
  // Every compose-side file (all hosts' env files too): relative references keep working.
  // Project files are read by containers through bind mounts, often as a non-root user.
  const projectFiles = new Set((manifest.compose.projectFiles ?? []).map((f) => f.path));
  for (const entry of manifest.files.filter((x) => x.path.startsWith('compose/'))) {
    await store.fs.writeFileAtomic(posix.join(dir, entry.path), await readVerified(root, entry), projectFiles.has(entry.path) ? 0o644 : undefined);
  }
  await store.fs.writeFileAtomic(posix.join(dir, MANIFEST_FILE), opened.manifestBytes);
  if (opened.signatureBytes) await store.fs.writeFileAtomic(posix.join(dir, SIGNATURE_FILE), opened.signatureBytes);
  const override = renderImageOverride(manifest.compose.services.map((s) => ({ name: s.name, tag: ferryTag(manifest.name, s.imageId) })));
  await store.fs.writeFileAtomic(posix.join(dir, 'ferry.override.yaml'), Buffer.from(override));
  const composeYaml = (p: string) => /\.ya?ml$/.test(p);
  const files = [manifest.compose.file, ...hostFiles.filter(composeYaml), 'ferry.override.yaml'];
  await readSwitch(store, manifest, release, dir, files);
  return files;
}

/**
 * x-ferry's switch, read from the signed compose file the release runs (create refused what
 * cannot work); for blue/green, each colour's override, and the host override checked as create
 * checked the compose file.
 */
async function readSwitch(store: StateStore, manifest: FerryManifest, release: ReleaseRecord, dir: string, files: string[]): Promise<void> {
  const read = async (rel: string) => parseYaml(((await store.fs.readFile(posix.join(dir, rel))) ?? Buffer.from('')).toString('utf8'), rel);
  const model = await read(manifest.compose.file);
  let spec;
  try {
    spec = parseSwitch(model);
  } catch (e) {
    if (e instanceof SwitchSpecError) throw new BuildInputError(e.code, `${manifest.compose.file}: ${e.message}`, { details: { service: e.subject } });
    throw e;
  }
  if (spec.mode !== 'blue-green') return;
  release.switch = 'blue-green';
  release.front = spec.front;
  release.shared = spec.shared;
  for (const f of files.slice(1, -1)) {
    const service = hostOverridePorts(await read(f), colouredOf(release));
    if (service) {
      throw new BuildInputError('BLUE_GREEN_PORT', `${f} gives service "${service}" a host port, but it runs once per colour (blue/green): both colours cannot bind it. Nothing was switched.`, {
        details: { file: f, service },
        hint: 'Publish ports from a front service (x-ferry.front) in the host override.',
      });
    }
  }
  for (const colour of COLOURS) await store.fs.writeFileAtomic(posix.join(dir, colourFile(colour)), Buffer.from(renderColourOverride(model, manifest.name, colour)));
}

/**
 * The evidence of what admitted this release: which signer, which files with which digests, when.
 * Every file listed was checked (staged while hashing, or hashed in place) before this point.
 */
async function writeVerificationReport(store: StateStore, manifest: FerryManifest, release: ReleaseRecord, opened: OpenedBundle, options: InstallOptions, staged: boolean): Promise<VerificationSummary> {
  const at = (options.now ?? new Date()).toISOString();
  const report: VerificationReport = {
    format: 'ferry.verification/v1',
    at,
    bundle: opened.dir,
    stack: manifest.name,
    release: release.id,
    manifestSha256: sha256Digest(opened.manifestBytes),
    signature: opened.signer
      ? { fingerprint: opened.signer.fingerprint, principals: opened.signer.principals, publicKey: opened.signer.publicKeyLine, namespace: opened.signer.namespace }
      : null,
    trustFile: opened.signer ? options.trust.trust : null,
    unsignedAccepted: !opened.signer,
    staged,
    files: manifest.files,
  };
  const name = 'verification.json';
  await store.fs.writeFileAtomic(posix.join(store.releaseDir(manifest.name, release.id), name), Buffer.from(`${JSON.stringify(report, null, 2)}\n`));
  return { at, report: name, manifestSha256: report.manifestSha256, trustFile: report.trustFile, files: manifest.files.length, bytes: manifest.files.reduce((n, f) => n + f.size, 0), staged };
}

/**
 * The error a failed deploy ends in. Blue/green says itself what serves (it never touched the old
 * colour before the switch); in place, the previous release is restored first.
 */
export async function deployFailed(ctx: DeployContext, store: StateStore, previous: ReleaseRecord | null, failed: ReleaseRecord, e: DeployFailure, why: string, drainMs: number): Promise<Error> {
  switch (e.outcome) {
    case 'failed':
      return restore(ctx, store, previous, failed, why, drainMs);
    case 'nothing':
      return new DeployRestoredError('DEPLOY_FAILED_NO_PREVIOUS', `${why}. There was no previous release; the new one was removed.`, { details: { restored: null } });
    case 'kept':
      return new DeployRestoredError('DEPLOY_FAILED_KEPT', `${why}. Nothing was switched: the new colour was removed and ${previous?.version ?? 'the previous release'} kept serving throughout.`, {
        details: { restored: previous?.id ?? null, switched: false },
      });
    case 'flipped-back':
      return new DeployRestoredError('DEPLOY_FAILED_RESTORED', `${why}. The switch was undone: ${previous?.version ?? 'the previous release'} serves again and is healthy.`, {
        details: { restored: previous?.id ?? null, switched: true },
      });
    case 'not-serving':
      return new DeployFailedError('RESTORE_FAILED', `${why}. The previous release ${previous?.version ?? ''} is not healthy either.`, {
        details: { restored: null, previous: previous?.id ?? null },
        hint: `Inspect with \`ferry host status ${ctx.project}\` and the engine's logs; try \`ferry host rollback ${ctx.project}\`.`,
      });
  }
}

/** g. Bring the previous release back after a failed switch: exit 7 when it is healthy again, 8 when not. */
async function restore(ctx: DeployContext, store: StateStore, previous: ReleaseRecord | null, failed: ReleaseRecord, why: string, drainMs: number): Promise<Error> {
  if (!previous) {
    ctx.reporter.log(`${why}; there is no previous release to restore: stopping the failed stack`);
    await ctx.runner.run(ctx.compose, ctx.project, failed.composeFiles, { kind: 'down' }, { cwd: store.releaseDir(ctx.project, failed.id) }).catch(() => undefined);
    return new DeployRestoredError('DEPLOY_FAILED_NO_PREVIOUS', `${why}. There was no previous release; the failed stack was stopped.`, { details: { restored: null } });
  }
  ctx.reporter.log(`${why}; restoring ${previous.version}`);
  try {
    await deployRelease({ ...ctx, patient: true }, previous, store.releaseDir(ctx.project, previous.id), previous, drainMs);
  } catch (e) {
    return new DeployFailedError('RESTORE_FAILED', `${why}. Restoring ${previous.version} failed too: ${(e as Error).message}`, {
      details: { restored: null, previous: previous.id },
      hint: `Inspect with \`ferry host status ${ctx.project}\` and the engine's logs; try \`ferry host rollback ${ctx.project}\`.`,
    });
  }
  return new DeployRestoredError('DEPLOY_FAILED_RESTORED', `${why}. The previous release ${previous.version} was restored and is healthy.`, {
    details: { restored: previous.id },
  });
}

/**
 * A delta layer as the load archive rebuilds it. The reference's bytes come from the engine's own
 * layer store when it is on this machine, else from a save of the host image holding it, asked for
 * as the load starts so that the engine prepares every reference's save at once (a classic store
 * writes the image out before its first byte). A second attempt, after a reference did not hash
 * to its layer, reads the save at the path found by hash.
 */
function loadDelta(l: ManifestLayer, delta: LayerDelta, plan: LoadPlan, engine: Engine, reporter: Reporter): LoadDelta & { prefetch(): void; drop(): void } {
  const ref = plan.references.get(delta.reference)!;
  const want = () => ({ diffId: delta.reference, size: delta.referenceSize, ...(ref.path ? { path: ref.path } : {}) });
  const first = referenceSource(engine, ref.holder, want());
  void first.stored.then((stored) => stored && reporter.log(`reference ${shortDigest(delta.reference)} read from the engine's layer store (no save)`));
  return {
    file: delta,
    expect: { reference: delta.reference, referenceSize: delta.referenceSize, target: l.diffId, targetSize: l.size },
    prefetch: first.prefetch,
    drop: first.drop,
    reference: () => (ref.path === undefined ? first.open() : layerFromEngine(engine, ref.holder, want())),
  };
}

/**
 * A delta that does not rebuild its layer: the bundle's fault (exit 4), or the engine's when the
 * reference it gives back is not the layer byte for byte (exit 6, naming what the engine is).
 */
function deltaFailure(e: DeltaError): Error {
  if (e.reason === 'reference') {
    return new HostPreconditionError('DELTA_REFERENCE_INEXACT', `${e.message}`, {
      hint: 'This engine does not export that layer exactly as it was built, so deltas against it cannot be rebuilt here. Nothing was loaded or switched. Ask for a bundle made with --no-delta (whole layers).',
      cause: e,
    });
  }
  return new IntegrityError('DELTA_INVALID', `a layer delta in the bundle does not rebuild its layer: ${e.message}`, {
    hint: 'Nothing was loaded or switched. The bundle is damaged or was tampered with: get a fresh copy from the build server.',
    cause: e,
  });
}
