/** `ferry bundle verify`: signature, then every file, then the bundle's own policy (expiry). */
import { bundleBlobBytes } from '../adapters/load-archive.js';
import { readDelta } from '../core/layer-delta.js';
import { shortDigest } from '../core/format.js';
import type { FerryManifest } from '../core/manifest.js';
import { IntegrityError, PolicyError } from '../errors.js';
import { checkFiles, integrityFailure, openBundle, type Sha256SumsState, type TrustOptions } from './bundle.js';
import type { Reporter } from './reporter.js';

export interface VerifyResult {
  bundle: string;
  name: string;
  version: string;
  sequence: number;
  created: string;
  expires: string | null;
  signed: boolean;
  signer: { fingerprint: string; principals: string[] } | null;
  files: number;
  bytes: number;
  /** SHA256SUMS agreed with the manifest and its signature with the trust file; `absent`: an older bundle. */
  sha256sums: Sha256SumsState;
  /** Layer deltas read through and found well formed (their rebuild needs the host's engine). */
  deltas: number;
}

export async function verifyBundle(path: string, trust: TrustOptions, reporter: Reporter, now = new Date()): Promise<VerifyResult> {
  const opened = await openBundle(path, trust, reporter);
  const { problems, files, bytes } = await checkFiles(opened, reporter);
  if (problems.length > 0) throw integrityFailure(problems);
  const m = opened.manifest;
  const deltas = await checkDeltas(opened.dir, m);
  if (m.expires && Date.parse(m.expires) < now.getTime()) {
    throw new PolicyError('BUNDLE_EXPIRED', `the bundle expired on ${m.expires}`, {
      details: { expires: m.expires },
      hint: 'Ask the build server for a fresh bundle.',
    });
  }
  return {
    bundle: opened.dir,
    name: m.name,
    version: m.version,
    sequence: m.sequence,
    created: m.created,
    expires: m.expires,
    signed: opened.signer !== null,
    signer: opened.signer ? { fingerprint: opened.signer.fingerprint, principals: opened.signer.principals } : null,
    files,
    bytes,
    sha256sums: opened.sha256sums,
    deltas,
  };
}

/**
 * Every layer delta read through (without its reference, which only a host holds): its ranges
 * increase and stay inside the reference, it gives exactly the layer's size, it ends where it
 * says. Work is bounded by the layer sizes the signed manifest gives.
 */
async function checkDeltas(root: string, m: FerryManifest): Promise<number> {
  let n = 0;
  for (const im of m.images) {
    for (const l of im.layers) {
      if (!l.delta) continue;
      n++;
      try {
        const bytes = (await bundleBlobBytes(root, l.delta)) as AsyncIterable<Buffer>;
        for await (const _ of readDelta(bytes, { reference: l.delta.reference, referenceSize: l.delta.referenceSize, target: l.diffId, targetSize: l.size })) void _;
      } catch (e) {
        throw new IntegrityError('DELTA_INVALID', `the delta of layer ${shortDigest(l.diffId)} of ${im.refs[0] ?? shortDigest(im.id)} is invalid: ${(e as Error).message}`, {
          hint: 'The bundle is damaged or was tampered with: get a fresh copy from the build server.',
          details: { layer: l.diffId, reference: l.delta.reference, image: im.id },
        });
      }
    }
  }
  return n;
}
