/**
 * `ferry bundle inspect`: what is inside and how big, from the manifest alone (fast, reads no
 * blob). The signature is described and, when a trust file is at hand, checked; inspect never
 * replaces verify.
 */
import { exists } from '../adapters/fs.js';
import { BUNDLE_NAMESPACE, readAllowedSigners, verifySignature } from '../adapters/signing.js';
import { readBundleUnverified } from './bundle.js';

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
    /** true/false when checked against a trust file, null when no trust file was available. */
    trusted: boolean | null;
    principals: string[];
    problem: string | null;
  };
  services: { name: string; image: string; imageId: string }[];
  smoke: string | null;
  /** What the bundle was built against: layers every base holds are assumed on the host. */
  bases: { kind: string; name: string; digest: string; layers: number }[];
  hosts: string[];
  images: {
    refs: string[];
    id: string;
    platform: string;
    size: number;
    compressedSize: number;
    layers: { diffId: string; chainId: string; size: number; compressedSize: number; included: boolean; parts: number }[];
  }[];
  totals: { files: number; bundleBytes: number; imageBytes: number; uniqueLayerBytes: number; compressedBytes: number };
}

export async function inspectBundle(path: string, trustFile: string | undefined): Promise<InspectResult> {
  const { dir, manifest: m, manifestBytes, signatureBytes, signature, signatureError } = await readBundleUnverified(path);
  let trusted: boolean | null = null;
  let principals: string[] = [];
  let problem = signatureError;
  if (signature && trustFile && (await exists(trustFile))) {
    try {
      const v = verifySignature(manifestBytes, signatureBytes!, BUNDLE_NAMESPACE, await readAllowedSigners(trustFile));
      trusted = true;
      principals = v.principals;
    } catch (e) {
      trusted = false;
      problem = (e as Error).message;
    }
  }
  const unique = new Map<string, { size: number; compressed: number }>();
  const images = m.images.map((im) => {
    const layers = im.layers.map((l) => {
      const compressedSize = l.included ? (l.blob?.size ?? 0) : 0;
      unique.set(l.diffId, { size: l.size, compressed: compressedSize });
      return { diffId: l.diffId, chainId: l.chainId, size: l.size, compressedSize, included: l.included, parts: l.blob?.parts?.length ?? (l.blob ? 1 : 0) };
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
      problem,
    },
    services: m.compose.services,
    smoke: m.compose.smoke,
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
  };
}
