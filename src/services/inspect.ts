/**
 * `ferry bundle inspect`: what is inside and how big, from the manifest alone (fast, reads no
 * blob). The signature is described and, when a trust file is at hand, judged by the very check
 * verify and install make (same flags, same codes); inspect never replaces verify.
 */
import { shortDigest } from '../core/format.js';
import { layerHistory, type ImageLayerHistory } from '../core/layer-history.js';
import { jsonShapeProblem, MAX_SMALL_FILE, type FerryManifest, type LayerBlob, type ManifestImage, type ManifestLayer } from '../core/manifest.js';
import { judgeSignature, readBundleUnverified, readVerified, type TrustOptions } from './bundle.js';
import type { Reporter } from './reporter.js';

export interface InspectOptions {
  /** Also read each image's config for the build history: which instruction made each layer. */
  layers: boolean;
}

/** One layer of the bundle (a layer several images share is one row), for `--layers`. */
export interface InspectLayer {
  diffId: string;
  /** Uncompressed. */
  size: number;
  /** In the bundle; null when the layer is assumed on the host. */
  compressedSize: number | null;
  /** Shipped in this bundle, or assumed present on the host (left out by --base). */
  shipped: boolean;
  /** How: the whole layer, a delta against a layer the host holds, or assumed (not shipped). */
  shipping: Shipping;
  /** For a delta: the reference it is rebuilt from and what the whole layer would have cost. */
  delta: InspectDelta | null;
  parts: number;
  /** The images holding it, by their first reference (or short ID). */
  images: string[];
  /** The full history `created_by` of the first image holding it; null when its config has none for it. */
  createdBy: string | null;
  comment: string | null;
  /** Why createdBy is null: no history in the config, no entry for this layer, or the config unreadable. */
  history: 'ok' | 'none' | 'unmatched' | 'unreadable';
}

export type Shipping = 'whole' | 'delta' | 'assumed';

export interface InspectDelta {
  reference: string;
  referenceSize: number;
  /** The delta file (compressed). */
  size: number;
  /** The whole layer's zstd blob, when the manifest records it. */
  wholeSize: number | null;
}

const shippingOf = (l: ManifestLayer): Shipping => (l.delta ? 'delta' : l.included ? 'whole' : 'assumed');
const deltaOf = (l: ManifestLayer): InspectDelta | null => (l.delta ? { reference: l.delta.reference, referenceSize: l.delta.referenceSize, size: l.delta.size, wholeSize: l.delta.wholeSize ?? null } : null);
const inBundle = (l: ManifestLayer): number => (l.included ? (l.blob?.size ?? l.delta?.size ?? 0) : 0);

export interface InspectResult {
  bundle: string;
  name: string;
  version: string;
  sequence: number;
  created: string;
  expires: string | null;
  tool: string;
  signature: {
    present: boolean;
    fingerprint: string | null;
    publicKey: string | null;
    /**
     * Whether verify and install, given the same trust flags, would accept the signature: null when
     * not judged (a signed bundle and no trust file at hand).
     */
    trusted: boolean | null;
    principals: string[];
    /** Why it would be refused: the error code verify and install would exit with. */
    code: string | null;
    problem: string | null;
  };
  services: { name: string; image: string; imageId: string }[];
  smoke: string | null;
  /** Project files the stack reads, carried in the bundle (bind sources, secrets, configs). */
  projectFiles: { path: string; kind: string; services: string[]; size: number }[];
  /** Paths the stack reads on the host itself; install checks they exist. */
  hostPaths: { path: string; kind: string; services: string[]; excludedSecret: boolean }[];
  /** What the bundle was built against: layers every base holds are assumed on the host. */
  bases: { kind: string; name: string; digest: string; layers: number }[];
  hosts: string[];
  /** The ferry executable the bundle carries (--with-ferry), run from the stick; null when none. */
  ferry: { path: string; version: string; sha256: string; size: number } | null;
  images: {
    refs: string[];
    id: string;
    platform: string;
    size: number;
    compressedSize: number;
    layers: { diffId: string; chainId: string; size: number; compressedSize: number; included: boolean; shipping: Shipping; delta: InspectDelta | null; parts: number }[];
  }[];
  totals: { files: number; bundleBytes: number; imageBytes: number; uniqueLayerBytes: number; compressedBytes: number };
  /** With --layers: every layer once, biggest first (uncompressed size), with the instruction that made it. */
  layers?: InspectLayer[];
}

export async function inspectBundle(path: string, trust: TrustOptions, reporter: Reporter, options: InspectOptions = { layers: false }): Promise<InspectResult> {
  const read = await readBundleUnverified(path);
  const { dir, manifest: m, manifestBytes, signatureBytes, signature, signatureError } = read;
  const { trusted, principals, code, problem } = await judgeSignature(read, trust, reporter);
  const unique = new Map<string, { size: number; compressed: number }>();
  const images = m.images.map((im) => {
    const layers = im.layers.map((l) => {
      const compressedSize = inBundle(l);
      unique.set(l.diffId, { size: l.size, compressed: compressedSize });
      return { diffId: l.diffId, chainId: l.chainId, size: l.size, compressedSize, included: l.included, shipping: shippingOf(l), delta: deltaOf(l), parts: partsOf(l.blob ?? l.delta ?? null) };
    });
    return {
      refs: im.refs,
      id: im.id,
      platform: `${im.os}/${im.architecture}`,
      size: layers.reduce((n, l) => n + l.size, 0),
      compressedSize: layers.reduce((n, l) => n + l.compressedSize, 0),
      layers,
    };
  });
  const layers = options.layers ? await layerRows(dir, m, reporter) : undefined;
  const manifestSize = manifestBytes.length;
  const sigSize = signatureBytes?.length ?? 0;
  return {
    bundle: dir,
    name: m.name,
    version: m.version,
    sequence: m.sequence,
    created: m.created,
    expires: m.expires,
    tool: `${m.tool.name} ${m.tool.version}`,
    signature: {
      present: signature !== null || signatureError !== null,
      fingerprint: signature?.fingerprint ?? null,
      publicKey: signature?.publicKeyLine ?? null,
      trusted,
      principals,
      code,
      problem,
    },
    services: m.compose.services,
    smoke: m.compose.smoke,
    ferry: m.ferry ?? null,
    projectFiles: (m.compose.projectFiles ?? []).map((f) => ({ ...f, size: m.files.find((x) => x.path === f.path)?.size ?? 0 })),
    hostPaths: (m.compose.hostPaths ?? []).map((h) => ({ path: h.path, kind: h.kind, services: h.services, excludedSecret: h.excludedSecret ?? false })),
    bases: m.bases.map((b) => ({ kind: b.kind, name: b.name, digest: b.digest, layers: b.held.length })),
    hosts: Object.keys(m.hosts),
    images,
    totals: {
      files: m.files.length + 1 + (sigSize > 0 ? 1 : 0),
      bundleBytes: m.files.reduce((n, f) => n + f.size, 0) + manifestSize + sigSize,
      imageBytes: images.reduce((n, im) => n + im.size, 0),
      uniqueLayerBytes: [...unique.values()].reduce((n, l) => n + l.size, 0),
      compressedBytes: [...unique.values()].reduce((n, l) => n + l.compressed, 0),
    },
    ...(layers ? { layers } : {}),
  };
}

async function layerRows(dir: string, m: FerryManifest, reporter: Reporter): Promise<InspectLayer[]> {
  const rows = new Map<string, InspectLayer & { order: number }>();
  for (const im of m.images) {
    const history = await readHistory(dir, m, im, reporter);
    const name = im.refs[0] ?? shortDigest(im.id);
    im.layers.forEach((l, i) => {
      const row = rows.get(l.diffId);
      if (row) {
        if (!row.images.includes(name)) row.images.push(name);
        // Blobs are stored once per diffID; it counts as shipped when any image ships it.
        if (l.included && !row.shipped) Object.assign(row, { shipped: true, shipping: shippingOf(l), delta: deltaOf(l), compressedSize: inBundle(l), parts: partsOf(l.blob ?? l.delta ?? null) });
        if (row.createdBy === null && history?.origins[i]) Object.assign(row, { createdBy: history.origins[i].createdBy, comment: history.origins[i].comment, history: 'ok' });
        return;
      }
      const origin = history?.origins[i] ?? null;
      rows.set(l.diffId, {
        order: rows.size,
        diffId: l.diffId,
        size: l.size,
        compressedSize: l.included ? inBundle(l) : null,
        shipped: l.included,
        shipping: shippingOf(l),
        delta: deltaOf(l),
        parts: partsOf(l.blob ?? l.delta ?? null),
        images: [name],
        createdBy: origin?.createdBy ?? null,
        comment: origin?.comment ?? null,
        history: origin ? 'ok' : history === null ? 'unreadable' : history.noHistory ? 'none' : 'unmatched',
      });
    });
  }
  return [...rows.values()].sort((a, b) => b.size - a.size || a.order - b.order).map(({ order: _order, ...row }) => row);
}

const partsOf = (blob: LayerBlob | null) => blob?.parts?.length ?? (blob ? 1 : 0);

/**
 * An image's history from the config blob the bundle carries for docker load. inspect does not
 * verify the bundle, but the config is read only as the manifest lists it (size and sha256, and
 * sha256 is the image ID): a config that fails that is named in a warning and its layers are
 * shown without instructions, so inspect still shows what it can.
 */
async function readHistory(dir: string, m: FerryManifest, im: ManifestImage, reporter: Reporter): Promise<ImageLayerHistory | null> {
  const unreadable = (why: string) => {
    reporter.warn({ code: 'CONFIG_UNREADABLE', subject: im.refs[0] ?? im.id, message: `the config of image ${im.refs[0] ?? im.id} (${im.config.path}) cannot be read, its layers are shown without build instructions: ${why}` });
    return null;
  };
  const entry = m.files.find((f) => f.path === im.config.path);
  if (!entry) return unreadable('the manifest does not list it');
  if (`sha256:${entry.sha256}` !== im.id) return unreadable(`its sha256 in the manifest is not the image ID ${im.id}`);
  if (entry.size > MAX_SMALL_FILE) return unreadable(`the manifest says ${entry.size} bytes, more than an image config may have (${MAX_SMALL_FILE})`);
  let text: string;
  try {
    text = (await readVerified(dir, entry)).toString('utf8');
  } catch (e) {
    return unreadable((e as Error).message.replace(/\s+/g, ' '));
  }
  const shape = jsonShapeProblem(text);
  if (shape) return unreadable(`the document ${shape}`);
  try {
    return layerHistory(JSON.parse(text));
  } catch (e) {
    return unreadable(`not JSON: ${(e as Error).message}`);
  }
}
