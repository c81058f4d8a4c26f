/** `ferry bundle verify`: signature, then every file, then the bundle's own policy (expiry). */
import { PolicyError } from '../errors.js';
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
}

export async function verifyBundle(path: string, trust: TrustOptions, reporter: Reporter, now = new Date()): Promise<VerifyResult> {
  const opened = await openBundle(path, trust, reporter);
  const { problems, files, bytes } = await checkFiles(opened, reporter);
  if (problems.length > 0) throw integrityFailure(problems);
  const m = opened.manifest;
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
  };
}
