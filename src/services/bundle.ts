/**
 * Opening a bundle the safe way, shared by verify, inspect and install: the signed manifest is
 * read (bounded) and its signature checked before a single byte of it is parsed.
 */
import { join, resolve } from 'node:path';
import { hashFile, isDirectory, listTree, readBounded } from '../adapters/fs.js';
import {
  BUNDLE_NAMESPACE,
  parseSignature,
  readAllowedSigners,
  verifySignature,
  type SignatureInfo,
  type VerifiedSignature,
} from '../adapters/signing.js';
import { MANIFEST_FILE, ManifestInvalid, MAX_MANIFEST_BYTES, parseManifest, SIGNATURE_FILE, type FerryManifest } from '../core/manifest.js';
import { compareListing } from '../core/verify.js';
import { IntegrityError, TrustError, UsageError, type Problem } from '../errors.js';
import type { Reporter } from './reporter.js';

export const DEFAULT_TRUST_FILE = '/etc/ferry/allowed_signers';
/** A signature file larger than this is garbage, not a signature. */
const MAX_SIGNATURE_BYTES = 64 * 1024;

export interface TrustOptions {
  /** allowed_signers file. */
  trust: string;
  allowUnsigned: boolean;
}

export interface OpenedBundle {
  dir: string;
  manifestBytes: Buffer;
  manifest: FerryManifest;
  /** null only for an unsigned bundle accepted with --allow-unsigned. */
  signer: VerifiedSignature | null;
}

export async function requireBundleDir(path: string): Promise<string> {
  const dir = resolve(path);
  if (!(await isDirectory(dir))) {
    throw new UsageError('BUNDLE_NOT_FOUND', `${path} is not a bundle directory`, {
      hint: 'Pass the directory `ferry bundle create --out` made, e.g. /media/usb/shop-1.4.2.ferry',
    });
  }
  return dir;
}

async function readManifestBytes(dir: string): Promise<Buffer> {
  let bytes: Buffer | null;
  try {
    bytes = await readBounded(join(dir, MANIFEST_FILE), MAX_MANIFEST_BYTES);
  } catch (e) {
    throw new IntegrityError('MANIFEST_UNREADABLE', `${MANIFEST_FILE}: ${(e as Error).message}`, { details: { file: MANIFEST_FILE } });
  }
  if (!bytes) {
    throw new IntegrityError('MANIFEST_MISSING', `${MANIFEST_FILE} is missing: this is not a complete ferry bundle`, {
      details: { file: MANIFEST_FILE },
      hint: 'Copy the whole bundle directory again from the build server.',
    });
  }
  return bytes;
}

async function readSignatureBytes(dir: string): Promise<Buffer | null> {
  try {
    return await readBounded(join(dir, SIGNATURE_FILE), MAX_SIGNATURE_BYTES);
  } catch (e) {
    throw new TrustError('TRUST_SIGNATURE_MALFORMED', `${SIGNATURE_FILE}: ${(e as Error).message}`, { details: { file: SIGNATURE_FILE } });
  }
}

function parseOrRefuse(bytes: Buffer): FerryManifest {
  try {
    return parseManifest(bytes);
  } catch (e) {
    if (e instanceof ManifestInvalid) {
      throw new IntegrityError('MANIFEST_INVALID', `${MANIFEST_FILE}: ${e.message}`, { details: { file: MANIFEST_FILE, problems: e.problems } });
    }
    throw e;
  }
}

/** Signature first (trusted key, our namespace), then parse. */
export async function openBundle(path: string, trust: TrustOptions, reporter: Reporter): Promise<OpenedBundle> {
  const dir = await requireBundleDir(path);
  const manifestBytes = await readManifestBytes(dir);
  const sig = await readSignatureBytes(dir);
  let signer: VerifiedSignature | null = null;
  if (!sig) {
    if (!trust.allowUnsigned) {
      throw new TrustError('TRUST_UNSIGNED', `the bundle is not signed (${SIGNATURE_FILE} is missing)`, {
        details: { file: SIGNATURE_FILE },
        hint: 'Create it with --sign-key. Only for a lab, --allow-unsigned accepts it.',
      });
    }
    reporter.warn({ code: 'UNSIGNED_ACCEPTED', message: 'ACCEPTING AN UNSIGNED BUNDLE (--allow-unsigned): nothing proves who made it' });
  } else {
    const signers = await readAllowedSigners(trust.trust);
    try {
      signer = verifySignature(manifestBytes, sig, BUNDLE_NAMESPACE, signers);
    } catch (e) {
      if (e instanceof TrustError) throw withFile(e, SIGNATURE_FILE);
      throw e;
    }
  }
  return { dir, manifestBytes, manifest: parseOrRefuse(manifestBytes), signer };
}

/** For inspect: the manifest without requiring trust; the signature is described, not required. */
export async function readBundleUnverified(path: string): Promise<{ dir: string; manifest: FerryManifest; signature: SignatureInfo | null; signatureError: string | null }> {
  const dir = await requireBundleDir(path);
  const manifest = parseOrRefuse(await readManifestBytes(dir));
  const sig = await readSignatureBytes(dir);
  if (!sig) return { dir, manifest, signature: null, signatureError: null };
  try {
    return { dir, manifest, signature: parseSignature(sig), signatureError: null };
  } catch (e) {
    return { dir, manifest, signature: null, signatureError: (e as Error).message };
  }
}

function withFile(e: TrustError, file: string): TrustError {
  const details = typeof e.details === 'object' && e.details !== null ? e.details : {};
  return new TrustError(e.code, e.message.includes(file) ? e.message : `${file}: ${e.message}`, {
    details: { ...details, file },
    hint: e.hint,
    cause: e.cause,
  });
}

/**
 * Every listed file present with its exact size and sha256, nothing unlisted; each byte read once.
 * Returns all problems rather than stopping at the first, so an operator sees the whole damage.
 */
export async function checkFiles(opened: OpenedBundle, reporter: Reporter): Promise<{ problems: Problem[]; files: number; bytes: number }> {
  const { problems, toHash } = compareListing(opened.manifest.files, await listTree(opened.dir));
  const total = toHash.reduce((n, f) => n + f.size, 0);
  const progress = reporter.progress();
  const bar = progress.overall('verifying files', total);
  let done = 0;
  try {
    for (const f of toHash) {
      try {
        const got = await hashFile(join(opened.dir, f.path), f.size, (n) => bar.update((done += n)));
        if (got.longer || got.bytes !== f.size) {
          problems.push({ file: f.path, kind: 'size', message: `${f.path} changed size while being read (the manifest says ${f.size} bytes)` });
        } else if (got.sha256 !== f.sha256) {
          problems.push({ file: f.path, kind: 'digest', message: `${f.path} has sha256 ${got.sha256}, the manifest says ${f.sha256}` });
        }
      } catch (e) {
        problems.push({ file: f.path, kind: 'unreadable', message: `${f.path} cannot be read: ${(e as Error).message}` });
      }
    }
  } finally {
    bar.done();
    progress.stop();
  }
  return { problems, files: opened.manifest.files.length, bytes: total };
}

export function integrityFailure(problems: Problem[]): IntegrityError {
  const shown = problems.slice(0, 20).map((p) => `  - ${p.message}`);
  if (problems.length > 20) shown.push(`  … and ${problems.length - 20} more (see --json)`);
  return new IntegrityError('BUNDLE_INTEGRITY', `the bundle failed verification, ${problems.length} problem${problems.length === 1 ? '' : 's'}:\n${shown.join('\n')}`, {
    details: { problems },
    hint: 'Do not install it. Copy the bundle again from the build server and verify the copy.',
  });
}
