/**
 * Opening a bundle the safe way, shared by verify, inspect and install: the signed manifest is
 * read (bounded) and its signature checked before a single byte of it is parsed.
 */
import { join, resolve } from 'node:path';
import { exists, hashFile, isDirectory, listTree, readBounded } from '../adapters/fs.js';
import { readAllowedSigners, readRevokedKeys, trustFileExposure } from '../adapters/signing.js';
import type { RevokedKey } from '../core/allowed-signers.js';
import { BUNDLE_NAMESPACE, parseSignature, verifySignature, type SignatureInfo, type VerifiedSignature } from '../core/sshsig.js';
import { DEFAULT_TRUST_FILE, README_FILE } from '../core/bundle-readme.js';
import { hexOf, sha256Digest } from '../core/digest.js';
import { MANIFEST_FILE, ManifestInvalid, MAX_MANIFEST_BYTES, parseManifest, SIGNATURE_FILE, type FerryManifest, type FileEntry } from '../core/manifest.js';
import { compareSha256Sums, SUMS_FILE, SUMS_SIGNATURE_FILE } from '../core/sha256sums.js';
import { compareListing } from '../core/verify.js';
import { IntegrityError, TrustError, UsageError, type Problem } from '../errors.js';
import type { Reporter } from './reporter.js';

export { DEFAULT_TRUST_FILE };
/** A signature file larger than this is garbage, not a signature. */
const MAX_SIGNATURE_BYTES = 64 * 1024;

/**
 * What decides whether this machine accepts a bundle's signature. Every field is required (null
 * where unused) so that code building these by hand cannot leave one out and still compile: a
 * revocation list that is silently dropped is worse than none.
 */
export interface TrustOptions {
  /** allowed_signers file. */
  trust: string;
  allowUnsigned: boolean;
  /** A file of revoked public keys, one a line; a key listed there is refused whatever `trust` says. */
  revoked: string | null;
}

export interface OpenedBundle {
  dir: string;
  manifestBytes: Buffer;
  manifest: FerryManifest;
  /** The signature bytes that were verified: keep these, never re-read the medium for them. */
  signatureBytes: Buffer | null;
  /** null only for an unsigned bundle accepted with --allow-unsigned. */
  signer: VerifiedSignature | null;
  /**
   * SHA256SUMS, checked against the manifest (and its signature against the same trust):
   * `signed`, `unsigned` (an unsigned bundle's), or `absent` (a bundle from an older ferry).
   */
  sha256sums: Sha256SumsState;
}

export type Sha256SumsState = 'signed' | 'unsigned' | 'absent';


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
    bytes = await readBounded(join(dir, MANIFEST_FILE), MAX_MANIFEST_BYTES, { singleLink: true });
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
    return await readBounded(join(dir, SIGNATURE_FILE), MAX_SIGNATURE_BYTES, { singleLink: true });
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

/**
 * Signature first (trusted key, our namespace, not revoked), then parse, then SHA256SUMS against
 * both. Warns when someone other than root could change the trust file or the revoked-keys file:
 * whoever can write those decides what this host installs.
 */
export async function openBundle(path: string, trust: TrustOptions, reporter: Reporter): Promise<OpenedBundle> {
  const dir = await requireBundleDir(path);
  const manifestBytes = await readManifestBytes(dir);
  const sig = await readSignatureBytes(dir);
  const { signer, verifier } = await decideSignature(manifestBytes, sig, trust, reporter);
  const manifest = parseOrRefuse(manifestBytes);
  const sha256sums = await checkSha256Sums(dir, { manifest, manifestBytes, signatureBytes: sig, signer }, verifier, reporter);
  return { dir, manifestBytes, manifest, signatureBytes: sig, signer, sha256sums };
}

/**
 * The one decision on a bundle's signature, for every command that trusts a bundle (verify,
 * install, fleets, inspect's verdict): throws the TrustError that refuses it, or returns the
 * signer (null for an unsigned bundle accepted with --allow-unsigned).
 */
/** What a command that only looks at a bundle (inspect, diff) says of its signature. */
export interface SignatureVerdict {
  /** null: not judged (signed, and no trust file to judge it by). */
  trusted: boolean | null;
  principals: string[];
  /** The trust error's code, as verify and install would refuse with it. */
  code: string | null;
  problem: string | null;
}

/**
 * The verdict verify and install would reach, without refusing: an unsigned bundle is judged
 * without a trust file (verify refuses it whatever the file says); a signed one when there is one.
 */
export async function judgeSignature(b: { manifestBytes: Buffer; signatureBytes: Buffer | null; signatureError: string | null }, trust: TrustOptions, reporter: Reporter): Promise<SignatureVerdict> {
  if (b.signatureBytes && !(await exists(trust.trust))) return { trusted: null, principals: [], code: null, problem: b.signatureError };
  try {
    const principals = (await checkSignature(b.manifestBytes, b.signatureBytes, trust, reporter))?.principals ?? [];
    return { trusted: true, principals, code: null, problem: b.signatureError };
  } catch (e) {
    if (!(e instanceof TrustError)) throw e;
    return { trusted: false, principals: [], code: e.code, problem: e.message };
  }
}

export async function checkSignature(manifestBytes: Buffer, sig: Buffer | null, trust: TrustOptions, reporter: Reporter): Promise<VerifiedSignature | null> {
  return (await decideSignature(manifestBytes, sig, trust, reporter)).signer;
}

/** Checks one more signature with the trust files as read for the manifest's (same signers, revoked keys and time). */
type Verifier = (data: Buffer, sig: Buffer) => VerifiedSignature;

async function decideSignature(manifestBytes: Buffer, sig: Buffer | null, trust: TrustOptions, reporter: Reporter): Promise<{ signer: VerifiedSignature | null; verifier: Verifier | null }> {
  if (!sig) {
    if (!trust.allowUnsigned) {
      throw new TrustError('TRUST_UNSIGNED', `the bundle is not signed (${SIGNATURE_FILE} is missing)`, {
        details: { file: SIGNATURE_FILE },
        hint: 'Create it with --sign-key. Only for a lab, --allow-unsigned accepts it.',
      });
    }
    reporter.warn({ code: 'UNSIGNED_ACCEPTED', message: 'ACCEPTING AN UNSIGNED BUNDLE (--allow-unsigned): nothing proves who made it' });
    return { signer: null, verifier: null };
  }
  await warnIfExposed(trust.trust, 'trust file', reporter);
  const signers = await readAllowedSigners(trust.trust);
  let revoked: RevokedKey[] = [];
  if (trust.revoked !== null) {
    await warnIfExposed(trust.revoked, 'revoked-keys file', reporter);
    revoked = await readRevokedKeys(trust.revoked);
  }
  const now = new Date();
  const verifier: Verifier = (data, s) => verifySignature(data, s, BUNDLE_NAMESPACE, signers, now, revoked);
  try {
    return { signer: verifier(manifestBytes, sig), verifier };
  } catch (e) {
    if (e instanceof TrustError) throw withFile(e);
    throw e;
  }
}

/**
 * SHA256SUMS and its signature, which let an operator check the stick with ssh-keygen and
 * sha256sum before running ferry, must say what the manifest says: otherwise those stock tools
 * would pass a stick ferry refuses, or the other way round. Signature first (the same trust
 * decision as the manifest's, by the same key), then the listing: exactly the manifest's files
 * with its digests, plus ferry.json and ferry.json.sig as read. Nothing is hashed here beyond those
 * two; checkFiles then holds every other file to the manifest, hence to SHA256SUMS.
 */
async function checkSha256Sums(
  dir: string,
  opened: Pick<OpenedBundle, 'manifest' | 'manifestBytes' | 'signatureBytes' | 'signer'>,
  verifier: Verifier | null,
  reporter: Reporter,
): Promise<Sha256SumsState> {
  const sums = await readBounded(join(dir, SUMS_FILE), MAX_MANIFEST_BYTES, { singleLink: true }).catch((e: Error) => {
    throw sumsInvalid([{ file: SUMS_FILE, kind: 'unreadable', message: `${SUMS_FILE} cannot be read: ${e.message}` }]);
  });
  const sumsSig = await readBounded(join(dir, SUMS_SIGNATURE_FILE), MAX_SIGNATURE_BYTES, { singleLink: true }).catch((e: Error) => {
    throw sumsSignatureInvalid(`${SUMS_SIGNATURE_FILE} cannot be read: ${e.message}`, null);
  });
  if (!sums) {
    if (sumsSig) throw sumsInvalid([{ file: SUMS_FILE, kind: 'missing', message: `${SUMS_FILE} is missing while ${SUMS_SIGNATURE_FILE} is there: it was removed` }]);
    // Only a ferry that writes SHA256SUMS writes README.txt: its listing in the signed manifest
    // tells a bundle whose SHA256SUMS was removed from one made before SHA256SUMS existed.
    if (opened.manifest.files.some((f) => f.path === README_FILE)) {
      throw sumsInvalid([{ file: SUMS_FILE, kind: 'missing', message: `${SUMS_FILE} is missing: the signed ${MANIFEST_FILE} lists ${README_FILE}, so the bundle was made with one and it was removed` }]);
    }
    reporter.warn({
      code: 'SHA256SUMS_MISSING',
      subject: SUMS_FILE,
      message: `the bundle has no ${SUMS_FILE} (made by an older ferry): it cannot be checked with ssh-keygen and sha256sum alone; ferry checks it against its signed manifest as before`,
    });
    return 'absent';
  }
  if (opened.signer === null) {
    if (sumsSig) throw sumsSignatureInvalid(`${SUMS_SIGNATURE_FILE} is there but ${MANIFEST_FILE} is unsigned: a signature was removed`, null);
  } else {
    if (!sumsSig) throw sumsSignatureInvalid(`${SUMS_SIGNATURE_FILE} is missing while ${MANIFEST_FILE} is signed`, null);
    let signer: VerifiedSignature;
    try {
      signer = verifier!(sums, sumsSig);
    } catch (e) {
      if (!(e instanceof TrustError)) throw e;
      const why = e.code === 'TRUST_SIGNATURE_INVALID' ? ` (${SUMS_FILE} was changed, or the signature belongs to another ${SUMS_FILE})` : '';
      throw sumsSignatureInvalid(`${SUMS_SIGNATURE_FILE}: ${e.message}${why}`, e);
    }
    if (signer.fingerprint !== opened.signer.fingerprint) {
      throw sumsSignatureInvalid(`${SUMS_SIGNATURE_FILE} is by the key ${signer.fingerprint}, ${SIGNATURE_FILE} by ${opened.signer.fingerprint}: both must come from the key that made the bundle`, null);
    }
  }
  const expected = [
    ...opened.manifest.files.map((f) => ({ path: f.path, sha256: f.sha256 })),
    { path: MANIFEST_FILE, sha256: hexOf(sha256Digest(opened.manifestBytes)) },
    ...(opened.signatureBytes ? [{ path: SIGNATURE_FILE, sha256: hexOf(sha256Digest(opened.signatureBytes)) }] : []),
  ];
  const problems = compareSha256Sums(sums, expected);
  if (problems.length > 0) throw sumsInvalid(problems);
  return opened.signer ? 'signed' : 'unsigned';
}

function sumsInvalid(problems: Problem[]): IntegrityError {
  const shown = problems.slice(0, 20).map((p) => `  - ${p.message}`);
  if (problems.length > 20) shown.push(`  … and ${problems.length - 20} more (see --json)`);
  return new IntegrityError('SHA256SUMS_INVALID', `${SUMS_FILE} does not list exactly the bundle's files with the digests ${MANIFEST_FILE} gives, ${problems.length} problem${problems.length === 1 ? '' : 's'}:\n${shown.join('\n')}`, {
    details: { file: SUMS_FILE, problems },
    hint: ['Do not install it: the stick was changed after it was made.', 'Copy the bundle again from the build server and verify the copy.'],
  });
}

function sumsSignatureInvalid(message: string, cause: TrustError | null): TrustError {
  return new TrustError('SHA256SUMS_SIGNATURE_INVALID', message, {
    details: { ...(cause && typeof cause.details === 'object' && cause.details !== null ? cause.details : {}), ...(cause ? { reason: cause.code } : {}), file: SUMS_SIGNATURE_FILE, files: [SUMS_SIGNATURE_FILE, SUMS_FILE] },
    hint: cause?.nextSteps.length ? cause.nextSteps : ['Do not install it: the stick was changed after it was signed.', 'Copy the bundle again from the build server and verify the copy.'],
    ...(cause ? { cause } : {}),
  });
}

async function warnIfExposed(file: string, what: string, reporter: Reporter): Promise<void> {
  const reasons = await trustFileExposure(file);
  if (reasons.length === 0) return;
  reporter.warn({
    code: 'TRUST_FILE_WRITABLE',
    subject: file,
    message: `the ${what} ${file} can be changed by others than root, who could then decide what this host accepts: ${reasons.join('; ')}`,
  });
}

/** For inspect: the manifest without requiring trust; the signature is described, not required. */
export async function readBundleUnverified(path: string): Promise<{
  dir: string;
  manifest: FerryManifest;
  manifestBytes: Buffer;
  signatureBytes: Buffer | null;
  signature: SignatureInfo | null;
  signatureError: string | null;
}> {
  const dir = await requireBundleDir(path);
  const manifestBytes = await readManifestBytes(dir);
  const manifest = parseOrRefuse(manifestBytes);
  // Read once: inspect checks the signer from these same bytes.
  const signatureBytes = await readSignatureBytes(dir);
  const base = { dir, manifest, manifestBytes, signatureBytes };
  if (!signatureBytes) return { ...base, signature: null, signatureError: null };
  try {
    return { ...base, signature: parseSignature(signatureBytes), signatureError: null };
  } catch (e) {
    return { ...base, signature: null, signatureError: (e as Error).message };
  }
}

/** Names the files a trust failure is about; a signature that does not match names the manifest too. */
function withFile(e: TrustError): TrustError {
  const details = typeof e.details === 'object' && e.details !== null ? e.details : {};
  const files = e.code === 'TRUST_SIGNATURE_INVALID' ? [SIGNATURE_FILE, MANIFEST_FILE] : [SIGNATURE_FILE];
  const message = e.code === 'TRUST_SIGNATURE_INVALID' ? `${SIGNATURE_FILE}: ${e.message} (${MANIFEST_FILE} was changed, or the signature belongs to another manifest)` : e.message.includes(SIGNATURE_FILE) ? e.message : `${SIGNATURE_FILE}: ${e.message}`;
  return new TrustError(e.code, message, {
    details: { ...details, file: SIGNATURE_FILE, files },
    hint: e.nextSteps,
    cause: e.cause,
  });
}

/**
 * The bundle opened (signature decided) and every file checked, or the error that refuses it: what
 * a fleet or a swarm does once, before any host is contacted, for all its hosts to install from.
 */
export async function openChecked(path: string, trust: TrustOptions, reporter: Reporter): Promise<OpenedBundle> {
  const opened = await openBundle(path, trust, reporter);
  const { problems } = await checkFiles(opened, reporter);
  if (problems.length > 0) throw integrityFailure(problems);
  return opened;
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

/**
 * A listed file's bytes, checked against the manifest as they are read. For every read after the
 * verification pass (config, compose files): a medium may answer a second read differently than
 * the first (a failing stick, or one built to do so), and only signed bytes may reach the host.
 */
export async function readVerified(root: string, entry: FileEntry): Promise<Buffer> {
  let data: Buffer | null;
  try {
    data = await readBounded(join(root, entry.path), entry.size, { singleLink: true });
  } catch (e) {
    throw integrityFailure([{ file: entry.path, kind: 'unreadable', message: `${entry.path} cannot be read: ${(e as Error).message}` }]);
  }
  if (!data) throw integrityFailure([{ file: entry.path, kind: 'missing', message: `${entry.path} is missing` }]);
  if (data.length !== entry.size) throw integrityFailure([{ file: entry.path, kind: 'size', message: `${entry.path} has ${data.length} bytes, the manifest says ${entry.size}` }]);
  const sha256 = hexOf(sha256Digest(data));
  if (sha256 !== entry.sha256) throw integrityFailure([{ file: entry.path, kind: 'digest', message: `${entry.path} has sha256 ${sha256}, the manifest says ${entry.sha256}` }]);
  return data;
}

export function integrityFailure(problems: Problem[]): IntegrityError {
  const shown = problems.slice(0, 20).map((p) => `  - ${p.message}`);
  if (problems.length > 20) shown.push(`  … and ${problems.length - 20} more (see --json)`);
  return new IntegrityError('BUNDLE_INTEGRITY', `the bundle failed verification, ${problems.length} problem${problems.length === 1 ? '' : 's'}:\n${shown.join('\n')}`, {
    details: { problems },
    hint: ['Do not install it.', 'Copy the bundle again from the build server and verify the copy.'],
  });
}
