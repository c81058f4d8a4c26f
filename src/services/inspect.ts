/**
 * `ferry bundle inspect`: what is inside and how big, from the manifest alone (fast, reads no
 * blob). The signature is described and, when a trust file is at hand, judged by the very check
 * verify and install make (same flags, same codes); inspect never replaces verify.
 */
import { exists } from '../adapters/fs.js';
import { TrustError } from '../errors.js';
import { checkSignature, readBundleUnverified, type TrustOptions } from './bundle.js';
import type { Reporter } from './reporter.js';

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

export async function inspectBundle(path: string, trust: TrustOptions, reporter: Reporter): Promise<InspectResult> {
  const { dir, manifest: m, manifestBytes, signatureBytes, signature, signatureError } = await readBundleUnverified(path);
  let trusted: boolean | null = null;
  let principals: string[] = [];
  let code: string | null = null;
  let problem = signatureError;
  // An unsigned bundle is judged without a trust file (verify refuses it whatever the file says).
  if (!signatureBytes || (await exists(trust.trust))) {
    try {
      principals = (await checkSignature(manifestBytes, signatureBytes, trust, reporter))?.principals ?? [];
      trusted = true;
    } catch (e) {
      if (!(e instanceof TrustError)) throw e;
      trusted = false;
      code = e.code;
      problem = e.message;
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
      code,
      problem,
    },
    services: m.compose.services,
    smoke: m.compose.smoke,
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
  };
}
