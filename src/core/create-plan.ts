/**
 * The pure part of `bundle create`: which layers the save must ship (the load plan), how each
 * image's layers enter the manifest, the manifest itself and the totals the result reports. The
 * service reads the engine and writes the bundle around these; nothing here touches either.
 */
import { neededDiffIds, type BundleBase } from './bases.js';
import type { ComposeAnalysis } from './compose.js';
import type { HostPath, ProjectFileKind } from './compose-project.js';
import { chainIds } from './digest.js';
import { MANIFEST_FORMAT, type FerryManifest, type FileEntry, type LayerBlob, type LayerDelta, type ManifestExecutable, type ManifestImage, type ManifestLayer } from './manifest.js';
import { IntegrityError } from '../errors.js';

/** What the save must deliver, decided from the pinned images before a byte is read. */
export interface LoadPlan {
  /** Distinct image IDs, in the order the references were first named: what the save asks for. */
  ids: string[];
  /** Layers not held by every base: the ones the bundle ships. */
  needed: Set<string>;
  allDiffIds: Set<string>;
  /** How many of allDiffIds every base holds (for the log line). */
  heldLayers: number;
  /** The references that name each image ID, as the bundle's image list gives them. */
  refsById: Map<string, string[]>;
}

/**
 * The order create asks the engine to save images in: a function of the set alone, so that a save
 * asked for early (from the compose files) and one asked for after Compose resolved the project
 * produce the same archive, and the same bundle.
 */
export function saveOrder(ids: string[]): string[] {
  return [...new Set(ids)].sort();
}

export function planLoad(details: Map<string, { id: string; diffIds: string[] }>, held: Set<string>): LoadPlan {
  const images = [...details.values()];
  const ids = [...new Set(images.map((d) => d.id))];
  const needed = neededDiffIds(images.map((d) => ({ diffIds: d.diffIds, chainIds: chainIds(d.diffIds) })), held);
  const allDiffIds = new Set(images.flatMap((d) => d.diffIds));
  const heldLayers = allDiffIds.size - [...allDiffIds].filter((d) => needed.has(d)).length;
  const refsById = new Map<string, string[]>();
  for (const [ref, d] of details) refsById.set(d.id, [...(refsById.get(d.id) ?? []), ref]);
  return { ids, needed, allDiffIds, heldLayers, refsById };
}

/**
 * An image's layers as the manifest lists them, checked against its config: a layer the engine
 * sent that is not the one the config names fails the create. A layer with a delta ships as that.
 */
export function manifestLayers(
  id: string,
  diffIds: string[],
  layerPaths: string[],
  layers: Map<string, { diffId: string; size: number; blob: LayerBlob | null }>,
  deltas: Map<string, LayerDelta>,
): ManifestLayer[] {
  if (diffIds.length !== layerPaths.length) {
    throw new IntegrityError('ENGINE_LAYER_MISMATCH', `image ${id}: its config lists ${diffIds.length} layers, the archive ${layerPaths.length}`);
  }
  const chain = chainIds(diffIds);
  return layerPaths.map((path, i) => {
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
}

/** The project as the manifest describes it (a loaded definition has this shape). */
export interface ManifestProject {
  compose: ComposeAnalysis;
  projectFiles: { path: string; kind: ProjectFileKind; services: string[] }[];
  hostPaths: HostPath[];
  /** Definition-relative paths of each host's files, carried under compose/. */
  hostFiles: Record<string, string[]>;
}

export interface ManifestInput {
  name: string;
  version: string;
  sequence: number;
  created: Date;
  expires: Date | undefined;
  toolVersion: string;
  /** Where the shipped compose model sits in the bundle. */
  composeFile: string;
  project: ManifestProject;
  /** The pinned image ID of each reference a service names. */
  imageIdOf: (ref: string) => string;
  images: ManifestImage[];
  bases: BundleBase[];
  files: FileEntry[];
  ferry: ManifestExecutable | null;
}

export function assembleManifest(m: ManifestInput): FerryManifest {
  const { project } = m;
  return {
    format: MANIFEST_FORMAT,
    name: m.name,
    version: m.version,
    sequence: m.sequence,
    created: m.created.toISOString(),
    expires: m.expires ? m.expires.toISOString() : null,
    tool: { name: 'ferry', version: m.toolVersion },
    compose: {
      file: m.composeFile,
      smoke: project.compose.smoke,
      services: project.compose.services.map((s) => ({ name: s.name, image: s.image, imageId: m.imageIdOf(s.image) })),
      projectFiles: project.projectFiles.map((f) => ({ path: f.path, kind: f.kind, services: f.services })),
      hostPaths: project.hostPaths.map((h) => ({ path: h.path, kind: h.kind, services: h.services, ...(h.excludedSecret ? { excludedSecret: true } : {}) })),
    },
    hosts: Object.fromEntries(Object.entries(project.hostFiles).map(([h, files]) => [h, { files: files.map((f) => `compose/${f}`) }])),
    images: m.images,
    bases: m.bases,
    files: m.files,
    ...(m.ferry ? { ferry: m.ferry } : {}),
  };
}

/** Per image: its layers, how many ship (whole or as deltas) and their sizes before and after zstd. */
export function imageSummaries(images: ManifestImage[]) {
  return images.map((im) => ({
    refs: im.refs,
    id: im.id,
    layers: im.layers.length,
    shipped: im.layers.filter((l) => l.included).length,
    size: im.layers.reduce((n, l) => n + l.size, 0),
    compressedSize: im.layers.reduce((n, l) => n + (l.blob?.size ?? l.delta?.size ?? 0), 0),
    deltas: im.layers.filter((l) => l.delta).length,
  }));
}

/** The bundle against its images: every file it holds (`files`, sealed ones included) and what it left out. */
export function bundleTotals(images: ManifestImage[], files: FileEntry[]) {
  const imageBytes = images.reduce((n, im) => n + im.layers.reduce((m, l) => m + l.size, 0), 0);
  const leftOut = new Map(images.flatMap((im) => im.layers.filter((l) => !l.included).map((l) => [l.diffId, l.size] as const)));
  const bundleBytes = files.reduce((n, f) => n + f.size, 0);
  return {
    imageBytes,
    bundleBytes,
    files: files.length,
    ratio: imageBytes > 0 ? bundleBytes / imageBytes : 0,
    leftOutLayers: leftOut.size,
    leftOutBytes: [...leftOut.values()].reduce((n, x) => n + x, 0),
  };
}
