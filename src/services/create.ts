/**
 * `ferry bundle create`: one pass from the engine's save stream to a sealed, signed bundle.
 * engine save → tar entries → (sha256 diffID ‖ zstd) → sha256 + part files, with nothing of an
 * image ever held whole in memory or on disk twice.
 */
import { dirname, join, resolve } from 'node:path';
import { BlobStoreWriter, type StagedBlob, type WrittenLayer } from '../adapters/blob-store.js';
import { LayerCache, type CachedBlob, type CachedLayer } from '../adapters/layer-cache.js';
import { compressorSettings } from '../adapters/zstd.js';
import { guessDiffIds, hitRate } from '../core/layer-cache.js';
import { Engine } from '../adapters/engine.js';
import { createPartialSibling, exists, hashFile, isDirectory, listTree, partialSiblingOf, readBounded, readText, removeStalePartials, removeTree, removeTreeNow, sealDirectory, treeBytes } from '../adapters/fs.js';
import { compareListing } from '../core/verify.js';
import { versionFromGit } from '../adapters/git.js';
import { tapTarHeaders, uncompressedLayer } from '../adapters/layer-stream.js';
import { mediumOf, mediumWriteError } from '../adapters/medium.js';
import { readSaveArchive, SaveArchiveError, type SavedImage } from '../adapters/save-archive.js';
import { loadSigningKey } from '../adapters/signing.js';
import { BUNDLE_NAMESPACE, type SigningKey } from '../core/sshsig.js';
import { fieldWarnings } from '../core/compose.js';
import { baseFromBundle, baseFromInventory, executableHeldByAll, heldByAll, heldDiffIdsByAll, neededDiffIds, repositoryOf, type BundleBase } from '../core/bases.js';
import { makeDeltas, type DeltaBase, type DeltaTarget } from './delta.js';
import { chainIds, hexOf, sha256Digest } from '../core/digest.js';
import { MAX_INVENTORY_BYTES, parseInventory } from '../core/inventory.js';
import {
  EXECUTABLE_FILE,
  FAT32_MAX_FILE,
  MANIFEST_FILE,
  ManifestInvalid,
  MAX_MANIFEST_BYTES,
  parseManifest,
  MANIFEST_FORMAT,
  SIGNATURE_FILE,
  serializeManifest,
  type FerryManifest,
  type FileEntry,
  type ManifestImage,
  type LayerDelta,
  type ManifestLayer,
} from '../core/manifest.js';
import { imageIndex, imageManifest, OCI_LAYOUT } from '../core/oci.js';
import { bundleReadme, README_FILE } from '../core/bundle-readme.js';
import { formatSha256Sums, SUMS_FILE, SUMS_SIGNATURE_FILE } from '../core/sha256sums.js';
import { BuildInputError, IntegrityError, UsageError } from '../errors.js';
import { formatBytes, shortDigest } from '../core/format.js';
import { loadDefinition, SHIPPED_COMPOSE } from './project.js';
import { ferryTag } from '../core/state.js';
import type { Reporter, Warning } from './reporter.js';
import { isSetuidFile, type TarEntry } from '../core/tar-scan.js';
import { executableVersion, TOOL_VERSION } from '../adapters/tool-version.js';

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
  };
  cache: { dir: string; hits: number; misses: number; added: number; corrupt: number; hitRate: number | null; evicted: { entries: number; bytes: number } } | null;
  durationMs: number;
}

/** A layer as the first pass left it: `unverified` when taken unread from a remembered name; `pending` when only a second save can give its blob. */
type PassLayer = WrittenLayer & { unverified?: boolean; pending?: boolean };

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
  const loaded = await loadDefinition(options.definition, engine, reporter, { profiles: options.profiles ?? [], excludeSecrets: options.excludeSecrets ?? false, ...(options.composeCmd ? { composeCmd: options.composeCmd } : {}) });
  const { def } = loaded;
  const strict = options.strict === true || def.strict;
  // Fail on an unreadable key now, not after minutes of saving images.
  const key: SigningKey | undefined = options.signKey ? await loadSigningKey(options.signKey) : undefined;
  if (!key) {
    reporter.warn({ code: 'UNSIGNED', message: 'no --sign-key: the bundle is UNSIGNED; hosts refuse it unless installed with --allow-unsigned' });
  }

  const { bases, executables, baseSizes, deltaBases } = await loadBases(options.bases ?? []);
  const held = heldByAll(bases);
  let carry = options.withFerry ? await ferryToCarry(options.withFerry) : null;
  if (carry && executableHeldByAll(executables, carry.sha256)) {
    reporter.log(`ferry executable left out: ${bases.map((b) => b.name).join(', ')} has it (ferry ${carry.version}, ${shortDigest(carry.sha256)}), as the inventory says`);
    carry = null;
  }

  // Pin every image by ID now: a tag that moves while we save cannot change the bundle.
  const refs = [...new Set([...loaded.compose.services.map((s) => s.image), ...def.images])];
  const details = new Map<string, NonNullable<Awaited<ReturnType<Engine['inspectImage']>>>>();
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
  for (const w of fieldWarnings(loaded.compose, (svc) => details.get(svc.image)!, loaded.extraBinds)) reporter.warn(w);
  // Under --strict, what is known before saving fails before minutes of saving.
  if (strict) refuseWarnings(warned, options.strict === true);

  const now = options.now ?? new Date();
  const version = options.version ?? def.version ?? (await versionFromGit(loaded.dir)) ?? timestampVersion(now);
  const sequence = options.sequence ?? Math.floor(now.getTime() / 1000);

  const ids = [...new Set([...details.values()].map((d) => d.id))];
  const needed = neededDiffIds([...details.values()].map((d) => ({ diffIds: d.diffIds, chainIds: chainIds(d.diffIds) })), held);
  const allDiffIds = new Set([...details.values()].flatMap((d) => d.diffIds));
  if (bases.length > 0) reporter.log(`bases: ${bases.map((b) => `${b.kind} ${b.name}`).join(', ')}; ${allDiffIds.size - [...allDiffIds].filter((d) => needed.has(d)).length} of ${allDiffIds.size} layers are held by every base`);
  const refsById = new Map<string, string[]>();
  for (const [ref, d] of details) refsById.set(d.id, [...(refsById.get(d.id) ?? []), ref]);

  await checkRoom(out, [...details.values()], needed, carry?.size ?? 0, options.force ?? false, reporter);
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
    await createPartialSibling(partial).catch(async (e: unknown) => {
      throw (await mediumWriteError(e, { what: 'the bundle', output: options.out })) ?? e;
    });
    const store = new BlobStoreWriter(partial, { level: options.level, workers: options.workers, maxPartSize: options.maxPartSize });
    await store.init();
    let cache = await openCache(options, reporter);
    const known: Map<string, CachedLayer> = cache ? await cache.layers() : new Map();
    const sizes = new Map<string, number>([...baseSizes, ...[...known].map(([d, l]) => [d, l.size] as const)]);
    const work = { compressed: 0, compressedHeld: 0, hashedOnly: 0, skippedUnread: 0, wrongGuesses: 0, secondSave: false, deltas: 0 };
    const cacheCounts = { hits: 0, misses: 0, added: 0, corrupt: 0 };
    // Layers of this save not yet seen in the archive: what a size can still be guessed among.
    const remaining = new Set(allDiffIds);
    // Archive path → the layer only a second save can give (a guess the hash contradicted).
    const pending = new Map<string, { diffId: string; size: number | null }>();
    // The cache must never fail a create: a cache that cannot be written is left alone from then on.
    const cacheFailed = (e: unknown) => {
      if (!cache) return;
      reporter.warn({ code: 'CACHE_UNUSABLE', subject: cache.dir, message: `the layer cache at ${cache.dir} failed (${(e as Error).message}); this create goes on without it` });
      cache = null;
    };
    const learn = async (path: string, entrySize: number, layer: CachedLayer) => {
      if (!cache) return;
      const c = cache;
      const same = known.get(layer.diffId)?.size === layer.size && known.get(layer.diffId)?.setuid.length === layer.setuid.length;
      await c.remember(path, entrySize, layer.diffId).then(() => (same ? undefined : c.recordLayer(layer))).catch(cacheFailed);
    };
    // A cached blob is checked by its digest as it is copied in; a damaged one is dropped, never shipped.
    const fromCache = async (diffId: string, meta: CachedBlob): Promise<StagedBlob | null> => {
      if (!cache) return null;
      const c = cache;
      const staged = await c.read(diffId).then((src) => store.stageBlob(src, meta.digest)).catch(() => null);
      if (!staged) {
        cacheCounts.corrupt++;
        reporter.warn({ code: 'CACHE_ENTRY_CORRUPT', subject: diffId, message: `the layer cache's blob of ${shortDigest(diffId)} does not match its digest ${shortDigest(meta.digest)}: dropped, the layer is compressed again` });
        await c.drop(diffId).catch(cacheFailed);
      }
      return staged;
    };
    const lookup = async (diffId: string) => (cache ? await cache.lookup(diffId).catch(() => null) : null);

    // The overall total is an estimate (shared layers counted per image) until the stream ends.
    const estimate = ids.reduce((n, id) => n + ([...details.values()].find((d) => d.id === id)?.size ?? 0), 0);
    const overall = progress.overall('saving images', estimate);
    const imageBars = new Map(ids.map((id) => {
      const d = [...details.values()].find((x) => x.id === id)!;
      return [id, { task: progress.task(refsById.get(id)![0]!, d.size), done: 0, diffIds: new Set(d.diffIds) }];
    }));
    // --verbose names each layer by diffID and the images that hold it (not by the archive's paths).
    const imagesOf = (diffId: string) => [...details.entries()].filter(([, d]) => d.diffIds.includes(diffId)).map(([ref]) => ref).join(', ') || 'no image';
    let streamed = 0;
    // Setuid and setgid files of shipped layers, by diffID: a lesson from the field is to defang them.
    const setuid = new Map<string, TarEntry[]>();
    const archive = await engine.save(ids);
    const { images: saved, layers } = await readSaveArchive<PassLayer>(
      archive,
      async (entry, info) => {
        const before = streamed;
        const onBytes = (n: number) => {
          streamed = before + n;
          overall.update(streamed);
        };
        const named = /^blobs\/sha256\/([0-9a-f]{64})$/.exec(info.path) ?? /^([0-9a-f]{64})\.tar$/.exec(info.path);
        const exact = named && allDiffIds.has(`sha256:${named[1]}`) ? `sha256:${named[1]}` : null;
        const drained = async () => {
          entry.resume();
          await new Promise((r) => entry.on('end', r));
          onBytes(info.size);
        };
        if (exact && !needed.has(exact)) {
          // OCI-style and Podman archives name uncompressed layers by their diffID: a held one is not even compressed.
          await drained();
          remaining.delete(exact);
          work.skippedUnread++;
          if (options.verbose) progress.note(`layer ${shortDigest(exact)} of ${imagesOf(exact)}: held by every base, left out (skipped unread)`);
          return { diffId: exact, size: info.size, blob: null };
        }
        const remembered = cache ? await cache.remembered(info.path, info.size).catch(() => null) : null;
        if (!exact && named && remembered && remaining.has(remembered) && known.has(remembered)) {
          // The containerd image store names a layer by its compressed digest: what that blob
          // unpacked to last time is what it unpacks to now, unless the memory lies, which the
          // image config's diffIDs catch below (and a second save repairs).
          const layer = known.get(remembered)!;
          const meta = needed.has(remembered) ? await lookup(remembered) : null;
          const staged = meta ? await fromCache(remembered, meta) : null;
          if (!needed.has(remembered) || staged) {
            await drained();
            remaining.delete(remembered);
            work.skippedUnread++;
            const blob = staged ? await store.commitStaged(staged) : null;
            if (staged) cacheCounts.hits++;
            if (blob && layer.setuid.length > 0) setuid.set(remembered, layer.setuid);
            for (const bar of imageBars.values()) if (bar.diffIds.has(remembered)) bar.task.update((bar.done += layer.size));
            if (options.verbose) progress.note(`layer ${shortDigest(remembered)} of ${imagesOf(remembered)}: ${formatBytes(layer.size)}, ${blob ? `→ ${formatBytes(blob.size)} shipped from the cache` : 'held by every base, left out'} (skipped unread)`);
            return { diffId: remembered, size: layer.size, blob, unverified: true };
          }
        }
        const special: TarEntry[] = [];
        const tar = async () => tapTarHeaders((await uncompressedLayer(entry)).stream, (e) => isSetuidFile(e) && special.push(e));
        const guesses = exact ? [exact] : guessDiffIds({ path: info.path, size: info.size, remembered, candidates: remaining, sizes });
        const metas = new Map<string, CachedBlob>();
        for (const g of guesses) {
          const meta = needed.has(g) ? await lookup(g) : null;
          if (meta) metas.set(g, meta);
        }
        // A single cached guess: its blob is copied in (and checked) while the layer is hashed, so
        // the copy costs no wall time; should the copy fail its check, a second save gives the layer.
        const only = guesses.length === 1 ? guesses[0]! : null;
        const skippable = guesses.length > 0 && guesses.every((g) => !needed.has(g) || metas.has(g));
        let layer: PassLayer | undefined;
        let how = '';
        if (skippable) {
          // Known before a byte of it is read: only hashed on its way through, the hash confirming the guess.
          const [{ diffId, size }, staged] = await Promise.all([
            store.hashLayer(await tar(), onBytes),
            only && metas.has(only) ? fromCache(only, metas.get(only)!) : Promise.resolve(null),
          ]);
          if (staged && diffId !== only) await store.discardStaged(staged);
          if (guesses.includes(diffId) && !needed.has(diffId)) {
            layer = { diffId, size, blob: null };
            work.hashedOnly++;
            how = ' (hashed only)';
          } else if (guesses.includes(diffId) && staged && diffId === only) {
            layer = { diffId, size, blob: await store.commitStaged(staged) };
            cacheCounts.hits++;
            how = ' from the cache (hashed only)';
          } else {
            const guessed = guesses.includes(diffId);
            if (!guessed) work.wrongGuesses++;
            // The single guess's blob already failed its check (and is dropped): not tried twice.
            const tried = guessed && diffId === only;
            const meta = needed.has(diffId) && !tried ? (metas.get(diffId) ?? (await lookup(diffId))) : null;
            const again = meta ? await fromCache(diffId, meta) : null;
            if (!guessed) {
              reporter.warn({
                code: 'LAYER_GUESS_WRONG',
                subject: info.path,
                message: `${info.path} was taken for layer ${guesses.map(shortDigest).join(' or ')} but hashes to ${shortDigest(diffId)}: ${!needed.has(diffId) ? 'it is held by every base, left out' : again ? 'its blob comes from the cache' : 'it is compressed from a second save'}`,
              });
            }
            if (!needed.has(diffId)) layer = { diffId, size, blob: null };
            else if (again) {
              layer = { diffId, size, blob: await store.commitStaged(again) };
              cacheCounts.hits++;
              how = ' from the cache (hashed only)';
            } else {
              pending.set(info.path, { diffId, size });
              layer = { diffId, size, blob: null, pending: true };
            }
          }
        } else {
          const tmp = cache ? cache.tmpFile() : undefined;
          const written = await store.writeLayer(await tar(), onBytes, (diffId) => needed.has(diffId), tmp);
          layer = written;
          if (written.blob) {
            work.compressed++;
            if (cache) cacheCounts.misses++;
          } else work.compressedHeld++;
          if (cache && tmp) {
            if (written.blob) {
              await cache.add(written.diffId, tmp, { digest: written.blob.digest, size: written.blob.size }).then(() => void cacheCounts.added++, cacheFailed);
            } else await cache.discardTmp(tmp).catch(() => undefined);
          }
        }
        remaining.delete(layer.diffId);
        await learn(info.path, info.size, { diffId: layer.diffId, size: layer.size, setuid: special });
        for (const bar of imageBars.values()) {
          if (bar.diffIds.has(layer.diffId)) bar.task.update((bar.done += layer.size));
        }
        if (layer.blob && special.length > 0) setuid.set(layer.diffId, special);
        if (options.verbose && !layer.pending) {
          progress.note(
            layer.blob
              ? `layer ${shortDigest(layer.diffId)} of ${imagesOf(layer.diffId)}: ${formatBytes(layer.size)} → ${formatBytes(layer.blob.size)} shipped${how}`
              : `layer ${shortDigest(layer.diffId)} of ${imagesOf(layer.diffId)}: ${formatBytes(layer.size)}, held by every base, left out${how || ' (compressed before the hash told)'}`,
          );
        }
        return layer;
      },
    ).catch((e) => {
      if (e instanceof SaveArchiveError) throw new IntegrityError('ENGINE_ARCHIVE_INVALID', `the engine's save archive could not be read: ${e.message}`, { cause: e });
      throw e;
    });
    // Layers taken unread by a remembered name are confirmed by the image configs' diffIDs.
    for (const engineId of ids) {
      const image = savedImage(saved, engineId, [...details.values()].find((d) => d.id === engineId)!);
      const diffIds = (JSON.parse(image.config.toString('utf8')) as { rootfs?: { diff_ids?: string[] } }).rootfs?.diff_ids ?? [];
      image.layerPaths.forEach((path, i) => {
        const l = layers.get(path);
        if (!l?.unverified || diffIds[i] === undefined || l.diffId === diffIds[i]) return;
        work.wrongGuesses++;
        reporter.warn({ code: 'LAYER_GUESS_WRONG', subject: path, message: `${path} was remembered as layer ${shortDigest(l.diffId)}, but its image's config says ${shortDigest(diffIds[i]!)}: it is read from a second save` });
        pending.set(path, { diffId: diffIds[i]!, size: null });
        layers.set(path, { diffId: diffIds[i]!, size: 0, blob: null, pending: true });
      });
    }
    // A blob taken for a layer that turned out to be another is in no layer any more: not shipped.
    await store.keepOnly(new Set([...layers.values()].flatMap((l) => (l.blob && !l.pending ? [l.blob.digest] : []))));
    if (pending.size > 0) {
      work.secondSave = true;
      const again = await secondSave(engine, [...details.values()], pending, layers, needed, store, reporter, cache);
      for (const l of again) {
        await learn(l.path, l.entrySize, { diffId: l.diffId, size: l.size, setuid: l.setuid });
        if (l.blob) {
          work.compressed++;
          if (cache) {
            cacheCounts.misses++;
            cacheCounts.added++;
          }
          if (l.setuid.length > 0) setuid.set(l.diffId, l.setuid);
        }
      }
    }
    overall.setTotal(streamed);
    overall.done(`${formatBytes(streamed)} saved`);
    for (const bar of imageBars.values()) bar.task.done();
    for (const [diffId, files] of setuid) reporter.warn({ code: 'SETUID_FILES', subject: imagesOf(diffId), message: setuidMessage(diffId, imagesOf(diffId), files) });
    if (strict) refuseWarnings(warned, options.strict === true);

    // Changed layers with a held predecessor may travel as deltas against it (--no-delta: whole).
    const deltas = new Map<string, LayerDelta>();
    if (options.delta !== false && bases.length > 0) {
      const targets = new Map<string, DeltaTarget>();
      for (const l of layers.values()) if (l.blob && !l.pending && !targets.has(l.diffId)) targets.set(l.diffId, { diffId: l.diffId, size: l.size, blob: l.blob, uses: [] });
      for (const [ref, d] of details) {
        // A host names the images ferry installed for this stack by ferry's tag: an inventory's
        // previous release of the stack is found by it, ahead of other images on the same base.
        const repos = [...new Set([ref, ...d.repoTags, ferryTag(def.name, d.id)].map(repositoryOf))];
        d.diffIds.forEach((diffId, position) => targets.get(diffId)?.uses.push({ repos, position, diffIds: d.diffIds }));
      }
      const outcome = await makeDeltas({ engine, store, root: partial, cache, reporter, verbose: options.verbose ?? false, sizeOf: (d) => sizes.get(d) }, [...targets.values()], deltaBases, heldDiffIdsByAll(deltaBases.map((b) => b.images)));
      for (const [diffId, delta] of outcome.deltas) deltas.set(diffId, delta);
      work.deltas = deltas.size;
      for (const w of outcome.whole) {
        // A delta that was possible but for bytes this machine lacks is worth knowing without -v.
        if (options.verbose || w.noBytes) progress.note(`layer ${shortDigest(w.diffId)} of ${imagesOf(w.diffId)}: shipped whole, ${w.reason}`);
      }
      if (deltas.size > 0) {
        const saved = [...deltas].reduce((n, [diffId, d]) => n + (targets.get(diffId)!.blob.size - d.size), 0);
        reporter.log(`${deltas.size} changed layer${deltas.size === 1 ? '' : 's'} travel${deltas.size === 1 ? 's' : ''} as ${deltas.size === 1 ? 'a delta' : 'deltas'} against layers the targets hold, ${formatBytes(saved)} less than whole`);
        for (const l of layers.values()) if (l.blob && deltas.has(l.diffId)) l.blob = null;
      }
      // The whole blobs deltas replaced, and deltas written but not used (too big, unverified), go.
      await store.keepOnly(new Set([...[...layers.values()].flatMap((l) => (l.blob && !l.pending ? [l.blob.digest] : [])), ...[...deltas.values()].map((d) => d.digest)]));
    }

    const images: ManifestImage[] = [];
    for (const engineId of ids) {
      const image = savedImage(saved, engineId, [...details.values()].find((d) => d.id === engineId)!);
      // What the bundle pins is the config digest, whatever the engine calls the image.
      const id = image.id;
      const config = JSON.parse(image.config.toString('utf8')) as { rootfs?: { diff_ids?: string[] }; os?: string; architecture?: string };
      const diffIds = config.rootfs?.diff_ids ?? [];
      if (diffIds.length !== image.layerPaths.length) {
        throw new IntegrityError('ENGINE_LAYER_MISMATCH', `image ${id}: its config lists ${diffIds.length} layers, the archive ${image.layerPaths.length}`);
      }
      const chain = chainIds(diffIds);
      const manifestLayers: ManifestLayer[] = image.layerPaths.map((path, i) => {
        const written = layers.get(path)!;
        if (written.diffId !== diffIds[i]) {
          throw new IntegrityError('ENGINE_LAYER_MISMATCH', `image ${id}: layer ${i} hashes to ${written.diffId}, its config says ${diffIds[i]}`, {
            hint: 'The engine sent a layer that does not match the image config. Check the engine\'s storage (docker system df, dockerd logs).',
          });
        }
        const delta = deltas.get(written.diffId);
        if (delta) return { diffId: written.diffId, chainId: chain[i]!, size: written.size, included: true, blob: null, delta };
        return { diffId: written.diffId, chainId: chain[i]!, size: written.size, included: written.blob !== null, blob: written.blob };
      });
      const configPath = `blobs/sha256/${hexOf(id)}`;
      await store.writeFile(configPath, image.config);
      const ociManifest = imageManifest(
        { digest: id, size: image.config.length },
        manifestLayers.map((l) => (l.blob ? { digest: l.blob.digest, size: l.blob.size } : { digest: l.diffId, size: l.size, absent: true })),
      );
      const ociEntry = await store.writeFile(`blobs/sha256/${hexOf(sha256Digest(ociManifest))}`, ociManifest);
      images.push({
        refs: refsById.get(engineId) ?? [],
        id,
        os: config.os ?? 'linux',
        architecture: config.architecture ?? 'amd64',
        config: { path: configPath, size: image.config.length },
        ociManifest: { digest: `sha256:${ociEntry.sha256}`, size: ociEntry.size, path: ociEntry.path },
        layers: manifestLayers,
      });
    }
    await store.writeFile('oci-layout', OCI_LAYOUT);
    await store.writeFile(
      'index.json',
      imageIndex(images.map((im) => ({ manifest: im.ociManifest, refs: im.refs, os: im.os, architecture: im.architecture }))),
    );
    await store.writeFile(SHIPPED_COMPOSE, Buffer.from(loaded.shipped, 'utf8'));
    for (const f of loaded.projectFiles) await store.writeFile(f.path, f.data);
    for (const rel of loaded.files) await store.writeFile(`compose/${rel}`, Buffer.from(await readText(join(loaded.dir, rel)), 'utf8'));
    if (carry) {
      const entry = await store.copyExecutable(carry.path, EXECUTABLE_FILE);
      // The copy's own digest: an executable replaced since it was checked is caught here.
      if (`sha256:${entry.sha256}` !== carry.sha256) throw new BuildInputError('FERRY_EXECUTABLE_UNUSABLE', `${carry.path} changed while it was copied into the bundle`, { details: { path: carry.path } });
      reporter.log(`carrying the ferry executable ${carry.version} (${formatBytes(carry.size)})`);
    }
    // Listed in the manifest like any file, so the stock-tool check and ferry's cover it alike.
    await store.writeFile(README_FILE, Buffer.from(bundleReadme({ name: def.name, version, signer: key?.fingerprint ?? null, namespace: BUNDLE_NAMESPACE, carriesFerry: carry !== null }), 'utf8'));
    await store.finishScratch();

    const manifest: FerryManifest = {
      format: MANIFEST_FORMAT,
      name: def.name,
      version,
      sequence,
      created: now.toISOString(),
      expires: options.expires ? options.expires.toISOString() : null,
      tool: { name: 'ferry', version: TOOL_VERSION },
      compose: {
        file: SHIPPED_COMPOSE,
        smoke: loaded.compose.smoke,
        services: loaded.compose.services.map((s) => ({ name: s.name, image: s.image, imageId: details.get(s.image)!.id })),
        projectFiles: loaded.projectFiles.map((f) => ({ path: f.path, kind: f.kind, services: f.services })),
        hostPaths: loaded.hostPaths.map((h) => ({ path: h.path, kind: h.kind, services: h.services, ...(h.excludedSecret ? { excludedSecret: true } : {}) })),
      },
      hosts: Object.fromEntries(Object.entries(loaded.hostFiles).map(([h, files]) => [h, { files: files.map((f) => `compose/${f}`) }])),
      images,
      bases,
      files: store.files(),
      ...(carry ? { ferry: { path: EXECUTABLE_FILE, version: carry.version, sha256: carry.sha256, size: carry.size } } : {}),
    };
    const manifestBytes = serializeManifest(manifest);
    const sealed = new BlobStoreWriter(partial, { level: options.level, workers: options.workers, maxPartSize: options.maxPartSize });
    await sealed.writeFile(MANIFEST_FILE, manifestBytes);
    if (key) await sealed.writeFile(SIGNATURE_FILE, Buffer.from(key.sign(manifestBytes, BUNDLE_NAMESPACE), 'utf8'));
    // Last, as they list everything else (the manifest and its signature too), and still inside
    // the partial directory: a bundle is sealed with both or not at all.
    const sums = formatSha256Sums([...manifest.files, ...sealed.files()]);
    await sealed.writeFile(SUMS_FILE, sums);
    if (key) await sealed.writeFile(SUMS_SIGNATURE_FILE, Buffer.from(key.sign(sums, BUNDLE_NAMESPACE), 'utf8'));
    progress.stop();
    await sealDirectory(partial, out);
    await checkSealed(out, [...manifest.files, ...sealed.files()], options.out);
    let evicted = { entries: 0, bytes: 0 };
    if (cache) {
      const c = cache;
      await c.recordRun({ at: now.toISOString(), hits: cacheCounts.hits, misses: cacheCounts.misses, layers: allDiffIds.size }).catch(cacheFailed);
      if (options.cache?.max != null) evicted = await c.evict(options.cache.max).catch((e: unknown) => (cacheFailed(e), evicted));
      if (evicted.entries > 0) reporter.log(`the layer cache evicted ${evicted.entries} least recently used entr${evicted.entries === 1 ? 'y' : 'ies'} (${formatBytes(evicted.bytes)}) to stay under ${formatBytes(options.cache!.max!)}`);
    }
    if (options.cache && (cacheCounts.hits + cacheCounts.misses > 0)) {
      reporter.log(`cache: ${cacheCounts.hits} layer${cacheCounts.hits === 1 ? '' : 's'} from the layer cache, ${cacheCounts.misses} compressed${cacheCounts.corrupt ? `, ${cacheCounts.corrupt} damaged entr${cacheCounts.corrupt === 1 ? 'y' : 'ies'} dropped` : ''}`);
    }

    const imageBytes = images.reduce((n, im) => n + im.layers.reduce((m, l) => m + l.size, 0), 0);
    const leftOut = new Map(images.flatMap((im) => im.layers.filter((l) => !l.included).map((l) => [l.diffId, l.size] as const)));
    const bundleBytes = [...manifest.files, ...sealed.files()].reduce((n, f) => n + f.size, 0);
    return {
      bundle: out,
      name: def.name,
      version,
      sequence,
      created: manifest.created,
      signed: !!key,
      signer: key?.fingerprint ?? null,
      images: images.map((im) => ({
        refs: im.refs,
        id: im.id,
        layers: im.layers.length,
        shipped: im.layers.filter((l) => l.included).length,
        size: im.layers.reduce((n, l) => n + l.size, 0),
        compressedSize: im.layers.reduce((n, l) => n + (l.blob?.size ?? l.delta?.size ?? 0), 0),
        deltas: im.layers.filter((l) => l.delta).length,
      })),
      bases: bases.map((b) => ({ kind: b.kind, name: b.name })),
      totals: {
        imageBytes,
        bundleBytes,
        files: manifest.files.length + sealed.files().length,
        ratio: imageBytes > 0 ? bundleBytes / imageBytes : 0,
        leftOutLayers: leftOut.size,
        leftOutBytes: [...leftOut.values()].reduce((n, x) => n + x, 0),
      },
      layerWork: work,
      cache: options.cache
        ? { dir: options.cache.dir, ...cacheCounts, hitRate: hitRate([{ at: '', hits: cacheCounts.hits, misses: cacheCounts.misses }]), evicted }
        : null,
      durationMs: Date.now() - started,
    };
  } catch (e) {
    progress.stop();
    const bytesWritten = await treeBytes(partial).catch(() => undefined);
    const removed = await removeTree(partial).then(
      () => true,
      () => false,
    );
    throw (await mediumWriteError(e, { what: 'the bundle', output: options.out, ...(bytesWritten !== undefined ? { bytesWritten } : {}), ...(removed ? {} : { leftBehind: partial }) })) ?? e;
  } finally {
    releaseInterrupt?.();
  }
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

/** Reads each --base: a directory is a previous bundle (its manifest), a file a host inventory. */
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

/** The layer cache this create uses, or null (--no-cache, or a cache that cannot be made: warned). */
async function openCache(options: CreateOptions, reporter: Reporter): Promise<LayerCache | null> {
  if (!options.cache) return null;
  const cache = new LayerCache(options.cache.dir, compressorSettings({ level: options.level, workers: options.workers }));
  try {
    await cache.init();
    return cache;
  } catch (e) {
    reporter.warn({ code: 'CACHE_UNUSABLE', subject: options.cache.dir, message: `the layer cache at ${options.cache.dir} cannot be used (${(e as Error).message}); this create compresses every layer` });
    return null;
  }
}

interface AgainLayer extends WrittenLayer {
  path: string;
  entrySize: number;
  setuid: TarEntry[];
}

/**
 * The fallback for guesses that proved wrong: the images holding those layers saved once more,
 * and just those entries read (compressed when shipped, hashed when held); every other entry is
 * skipped. A layer the second archive does not give as expected fails the create.
 */
async function secondSave(
  engine: Engine,
  details: { id: string; diffIds: string[] }[],
  pending: Map<string, { diffId: string; size: number | null }>,
  layers: Map<string, PassLayer>,
  needed: Set<string>,
  store: BlobStoreWriter,
  reporter: Reporter,
  cache: LayerCache | null,
): Promise<AgainLayer[]> {
  const wanted = new Set([...pending.values()].map((p) => p.diffId));
  const ids = [...new Set(details.filter((d) => d.diffIds.some((x) => wanted.has(x))).map((d) => d.id))];
  reporter.log(`saving ${ids.length} image${ids.length === 1 ? '' : 's'} again for ${wanted.size} layer${wanted.size === 1 ? '' : 's'} the first save passed by uncompressed (a wrong guess, or a cached blob that failed its check)`);
  const got: AgainLayer[] = [];
  await readSaveArchive(await engine.save(ids), async (entry, info) => {
    const first = layers.get(info.path);
    // An entry the first pass settled is not read again; one it never saw is read in case it is wanted.
    if (first && !first.pending) {
      entry.resume();
      await new Promise((r) => entry.on('end', r));
      return null;
    }
    const special: TarEntry[] = [];
    const tar = tapTarHeaders((await uncompressedLayer(entry)).stream, (e) => isSetuidFile(e) && special.push(e));
    const tmp = cache?.tmpFile();
    const written = await store.writeLayer(tar, undefined, (d) => wanted.has(d) && needed.has(d), tmp);
    if (tmp) {
      // The cache is a help, never a reason to fail: a blob it cannot take is simply not kept.
      if (written.blob) await cache!.add(written.diffId, tmp, { digest: written.blob.digest, size: written.blob.size }).catch(() => cache!.discardTmp(tmp));
      else await cache!.discardTmp(tmp).catch(() => undefined);
    }
    if (wanted.has(written.diffId)) got.push({ ...written, path: info.path, entrySize: info.size, setuid: special });
    return null;
  }).catch((e) => {
    if (e instanceof SaveArchiveError) throw new IntegrityError('ENGINE_ARCHIVE_INVALID', `the engine's second save archive could not be read: ${e.message}`, { cause: e });
    throw e;
  });
  for (const [path, p] of pending) {
    const l = got.find((g) => g.diffId === p.diffId);
    if (!l) throw new IntegrityError('ENGINE_ARCHIVE_INVALID', `the engine's second save did not give layer ${p.diffId} (${path})`);
    layers.set(path, { diffId: l.diffId, size: l.size, blob: l.blob });
  }
  return got;
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

/**
 * The saved image the engine meant by `engineId`: its config digest on a classic store, the digest
 * of its manifest (or of an index listing it, then the one for the image's platform) on the
 * containerd image store.
 */
function savedImage(saved: SavedImage[], engineId: string, d: { os: string; architecture: string }): SavedImage {
  const byConfig = saved.find((s) => s.id === engineId);
  if (byConfig) return byConfig;
  const candidates = saved.filter((s) => s.aliases.includes(engineId));
  const platform = (s: SavedImage) => {
    const c = JSON.parse(s.config.toString('utf8')) as { os?: string; architecture?: string };
    return c.os === d.os && c.architecture === d.architecture;
  };
  const image = candidates.length === 1 ? candidates[0] : candidates.find(platform);
  if (!image) throw new IntegrityError('ENGINE_ARCHIVE_INVALID', `the engine's save archive does not contain image ${engineId}${candidates.length ? ` for ${d.os}/${d.architecture}` : ''}`);
  return image;
}

function timestampVersion(now: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${now.getUTCFullYear()}${p(now.getUTCMonth() + 1)}${p(now.getUTCDate())}.${p(now.getUTCHours())}${p(now.getUTCMinutes())}${p(now.getUTCSeconds())}`;
}

/** Reads ferry.yaml, the compose file and every host file, validating as it goes. */
