/**
 * Bundle signatures in OpenSSH's SSHSIG format (PROTOCOL.sshsig) with ed25519 keys in OpenSSH's
 * own key file format (PROTOCOL.key). Using the formats ssh-keygen already speaks means operators
 * can make keys, sign and check signatures with tools they have audited, and ferry's trust file is
 * an ordinary allowed_signers file that `ssh-keygen -Y verify` reads too.
 */
import { createHash, createPrivateKey, createPublicKey, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, open, readFile, realpath, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import {
  type AllowedSigner,
  type PathOwnership,
  type RevokedKey,
  findRevoked,
  formatAllowedSignersLine,
  isValidAt,
  matchesKey,
  parseAllowedSigners,
  parseRevokedKeys,
  permitsNamespace,
  trustPathExposure,
} from '../core/allowed-signers.js';
import {
  ED25519_KEY_TYPE,
  WireFormatError,
  WireReader,
  armor,
  dearmor,
  decodeEd25519PublicKey,
  encodeEd25519PublicKey,
  encodeFields,
  encodeUint32,
  formatPublicKeyLine,
  publicKeyType,
  sha256Fingerprint,
} from '../core/ssh-wire.js';
import { BugError, BuildInputError, TrustError } from '../errors.js';

export type { AllowedSigner, RevokedKey } from '../core/allowed-signers.js';

export const BUNDLE_NAMESPACE = 'ferry-bundle';

export interface SigningKey {
  /** "ssh-ed25519 AAAA… comment", as in the key's .pub file. */
  publicKeyLine: string;
  fingerprint: string;
  /** Returns an armored SSHSIG signature ("-----BEGIN SSH SIGNATURE-----…"). */
  sign(message: Buffer, namespace: string): string;
}

export interface SignatureInfo {
  /** "keytype base64" of the key that made the signature (no comment: signatures carry none). */
  publicKeyLine: string;
  fingerprint: string;
  namespace: string;
  hashAlgorithm: string;
}

export interface VerifiedSignature extends SignatureInfo {
  /** Principals of every allowed_signers line that accepted the key, without duplicates. */
  principals: string[];
}

// ---------------------------------------------------------------------------------------------
// ed25519 through node:crypto

/** DER of a PKCS#8 ed25519 private key up to the 32-byte seed (RFC 8410); the seed follows. */
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

function ed25519PrivateKey(seed: Buffer): KeyObject {
  return createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: 'der', type: 'pkcs8' });
}

function ed25519PublicKey(raw: Buffer): KeyObject {
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') }, format: 'jwk' });
}

function rawPublicKeyOf(privateKey: KeyObject): Buffer {
  const jwk = createPublicKey(privateKey).export({ format: 'jwk' });
  if (typeof jwk.x !== 'string') throw new BugError('ED25519_EXPORT', 'could not export an ed25519 public key');
  return Buffer.from(jwk.x, 'base64url');
}

// ---------------------------------------------------------------------------------------------
// SSHSIG

const SSHSIG_MAGIC = Buffer.from('SSHSIG', 'ascii');
const SSHSIG_VERSION = 1;
const SIGNATURE_LABEL = 'SSH SIGNATURE';
/** ssh-keygen signs with sha512; sha256 is the only other algorithm PROTOCOL.sshsig defines. */
const SIGN_HASH = 'sha512';
const HASH_ALGORITHMS = new Set(['sha256', 'sha512']);
/** Far above any real signature (an RSA-16384 one is under 5 kB); stops us decoding a whole file. */
const MAX_ARMORED_BYTES = 64 * 1024;

/** What the signature actually covers: the namespace and hash are bound in, not just the data. */
function signedData(namespace: string, hashAlgorithm: string, message: Buffer): Buffer {
  const digest = createHash(hashAlgorithm).update(message).digest();
  return Buffer.concat([SSHSIG_MAGIC, encodeFields(namespace, '', hashAlgorithm, digest)]);
}

function signSshsig(seed: Buffer, publicKeyBlob: Buffer, message: Buffer, namespace: string): string {
  // ssh-keygen refuses an empty namespace too: it is what keeps a bundle signature from being
  // replayed as a signature for something else.
  if (namespace === '') throw new BugError('EMPTY_NAMESPACE', 'a signature namespace must not be empty');
  const data = signedData(namespace, SIGN_HASH, message);
  const raw = sign(null, data, ed25519PrivateKey(seed));
  const blob = Buffer.concat([
    SSHSIG_MAGIC,
    encodeUint32(SSHSIG_VERSION),
    encodeFields(publicKeyBlob, namespace, '', SIGN_HASH, encodeFields(ED25519_KEY_TYPE, raw)),
  ]);
  return armor(SIGNATURE_LABEL, blob);
}

interface DecodedSignature {
  publicKeyBlob: Buffer;
  keyType: string;
  namespace: string;
  hashAlgorithm: string;
  /** The raw ed25519 signature, when the key is ed25519. */
  ed25519Signature?: Buffer;
}

function malformed(detail: string, cause?: unknown): TrustError {
  return new TrustError('TRUST_SIGNATURE_MALFORMED', `the signature is not a valid SSH signature: ${detail}`, {
    hint: 'The signature file is damaged or is not an SSHSIG signature ("-----BEGIN SSH SIGNATURE-----"). Copy it again from the bundle source.',
    ...(cause === undefined ? {} : { cause }),
  });
}

function decodeSignature(armored: string | Buffer): DecodedSignature {
  if (armored.length > MAX_ARMORED_BYTES) throw malformed(`it is ${armored.length} bytes, far too large`);
  const text = typeof armored === 'string' ? armored : armored.toString('utf8');
  try {
    const r = new WireReader(dearmor(SIGNATURE_LABEL, text));
    if (!r.readBytes(SSHSIG_MAGIC.length, 'magic').equals(SSHSIG_MAGIC)) throw new WireFormatError('wrong magic, not SSHSIG');
    const version = r.readUint32('version');
    if (version !== SSHSIG_VERSION) throw new WireFormatError(`unsupported SSHSIG version ${version}`);
    const publicKeyBlob = r.readString('public key');
    const keyType = publicKeyType(publicKeyBlob);
    const namespace = r.readText('namespace');
    r.readString('reserved'); // PROTOCOL.sshsig: content is ignored on verification
    const hashAlgorithm = r.readText('hash algorithm');
    if (!HASH_ALGORITHMS.has(hashAlgorithm)) throw new WireFormatError(`unsupported hash algorithm "${hashAlgorithm}"`);
    const sigReader = new WireReader(r.readString('signature'));
    r.expectEnd('signature');
    const sigType = sigReader.readText('signature type');
    const sigBytes = sigReader.readString('signature data');
    sigReader.expectEnd('signature data');
    if (keyType !== ED25519_KEY_TYPE) return { publicKeyBlob, keyType, namespace, hashAlgorithm };
    decodeEd25519PublicKey(publicKeyBlob);
    if (sigType !== ED25519_KEY_TYPE) throw new WireFormatError(`an ed25519 key with a ${sigType} signature`);
    if (sigBytes.length !== 64) throw new WireFormatError(`ed25519 signature is ${sigBytes.length} bytes, not 64`);
    return { publicKeyBlob, keyType, namespace, hashAlgorithm, ed25519Signature: sigBytes };
  } catch (error) {
    if (error instanceof WireFormatError) throw malformed(error.message, error);
    throw error;
  }
}

function infoOf(sig: DecodedSignature): SignatureInfo {
  return {
    publicKeyLine: formatPublicKeyLine(sig.publicKeyBlob),
    fingerprint: sha256Fingerprint(sig.publicKeyBlob),
    namespace: sig.namespace,
    hashAlgorithm: sig.hashAlgorithm,
  };
}

/** Reads who signed and for what, without deciding whether to trust it. */
export function parseSignature(armored: string | Buffer): SignatureInfo {
  return infoOf(decodeSignature(armored));
}

/**
 * Checks, in this order so that the error names the most useful problem: the signature's
 * structure, its namespace, whether the trust file accepts its key for this namespace at `now`,
 * and finally the cryptography.
 */
export function verifySignature(
  message: Buffer,
  armored: string | Buffer,
  namespace: string,
  signers: AllowedSigner[],
  now: Date = new Date(),
  revoked: readonly RevokedKey[] = [],
): VerifiedSignature {
  const sig = decodeSignature(armored);
  const info = infoOf(sig);

  if (sig.namespace !== namespace) {
    throw new TrustError(
      'TRUST_WRONG_NAMESPACE',
      `the signature was made for namespace "${sig.namespace}", not "${namespace}"`,
      {
        hint: 'A signature made for another purpose must not be accepted for this one; sign the data again with the right namespace.',
        details: { expected: namespace, actual: sig.namespace, fingerprint: info.fingerprint },
      },
    );
  }

  // Before trust: a revoked key stays refused whatever the trust file still says about it.
  const revokedEntry = findRevoked(revoked, sig.publicKeyBlob);
  if (revokedEntry) {
    throw new TrustError('TRUST_KEY_REVOKED', `the signing key ${info.fingerprint} is revoked (line ${revokedEntry.line} of the revoked-keys file)`, {
      hint: 'Bundles signed with a revoked key are never accepted. Ask for the bundle to be signed again with a current key, and remove the revoked key\'s line from the trust file.',
      details: { fingerprint: info.fingerprint, revokedLine: revokedEntry.line },
    });
  }

  const sameKey = signers.filter((s) => matchesKey(s, sig.publicKeyBlob));
  const permitted = sameKey.filter((s) => permitsNamespace(s, namespace));
  const matching = permitted.filter((s) => isValidAt(s, now));
  if (matching.length === 0) {
    throw untrusted(sig, info, namespace, sameKey, permitted, signers, now);
  }

  const signature = sig.ed25519Signature;
  let ok = false;
  if (signature) {
    try {
      ok = verify(null, signedData(namespace, sig.hashAlgorithm, message), ed25519PublicKey(decodeEd25519PublicKey(sig.publicKeyBlob)), signature);
    } catch {
      // A key that OpenSSL will not load cannot have made a valid signature.
      ok = false;
    }
  }
  if (!ok) {
    throw new TrustError('TRUST_SIGNATURE_INVALID', `the signature by ${info.fingerprint} does not match the signed data`, {
      hint: 'The data was changed after it was signed, or the signature belongs to other data. Do not use it; get the bundle again from its source.',
      details: { fingerprint: info.fingerprint },
    });
  }

  const principals = [...new Set(matching.flatMap((s) => s.principals))];
  return { ...info, principals };
}

function untrusted(
  sig: DecodedSignature,
  info: SignatureInfo,
  namespace: string,
  sameKey: AllowedSigner[],
  permitted: AllowedSigner[],
  all: AllowedSigner[],
  now: Date,
): TrustError {
  const keyType = sig.keyType;
  const lines = (list: AllowedSigner[]) => list.map((s) => s.line).join(', ');
  const validity = (s: AllowedSigner) =>
    [s.validAfter && `valid from ${s.validAfter.toISOString()}`, s.validBefore && `valid until ${s.validBefore.toISOString()}`]
      .filter(Boolean)
      .join(', ');
  let why: string;
  if (keyType !== ED25519_KEY_TYPE) {
    why = `the signing key ${info.fingerprint} is a ${keyType} key; ferry only accepts ssh-ed25519 signing keys`;
  } else if (sameKey.length === 0) {
    const caOnly = all.some((s) => s.certAuthority && s.keyBlob.equals(sig.publicKeyBlob));
    why = `the signing key ${info.fingerprint} is not in the trust file${caOnly ? ' (only as a cert-authority, which ferry does not support)' : ''}`;
  } else if (permitted.length === 0) {
    why = `the signing key ${info.fingerprint} is in the trust file (line ${lines(sameKey)}) but not for namespace "${namespace}"`;
  } else {
    const ranges = permitted.map((s) => `line ${s.line}: ${validity(s)}`).join('; ');
    why = `the signing key ${info.fingerprint} is in the trust file but not valid at ${now.toISOString()} (${ranges})`;
  }
  const suggested = keyType === ED25519_KEY_TYPE ? formatAllowedSignersLine('ferry', info.publicKeyLine, { namespaces: [namespace] }) : undefined;
  return new TrustError('TRUST_UNTRUSTED_KEY', why, {
    hint: suggested
      ? `If, and only if, you trust this key (compare its fingerprint with the one \`ferry keys generate\` printed where the key was made), add this line to the trust file:\n  ${suggested}`
      : 'Sign with an ed25519 key (`ferry keys generate`) and add its allowed_signers line to the trust file.',
    details: { fingerprint: info.fingerprint, publicKeyLine: info.publicKeyLine, namespace },
  });
}

export async function readAllowedSigners(path: string): Promise<AllowedSigner[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new TrustError('TRUST_STORE_MISSING', `cannot read the trust file ${path}: ${describeFsError(error)}`, {
      hint: 'Pass --trust FILE or set FERRY_TRUST to an allowed_signers file listing the keys allowed to sign bundles.',
      details: { file: path },
      cause: error,
    });
  }
  return parseAllowedSigners(text, path);
}

/** Far above any real revocation list of public keys; stops us reading a wrong file whole. */
const MAX_REVOKED_BYTES = 16 * 1024 * 1024;

/**
 * A revoked-keys file named on purpose must be read: if it is missing or unreadable, verification
 * fails (closed) rather than going on as if nothing were revoked.
 */
export async function readRevokedKeys(path: string): Promise<RevokedKey[]> {
  let text: string;
  try {
    const info = await stat(path);
    if (info.isFile() && info.size > MAX_REVOKED_BYTES) throw Object.assign(new Error(`it is ${info.size} bytes, far too large`), { code: 'EFBIG' });
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new TrustError('TRUST_REVOKED_UNREADABLE', `cannot read the revoked-keys file ${path}: ${describeFsError(error)}`, {
      hint: 'Fix --revoked (env FERRY_REVOKED), or make the file readable. Verification does not go on without it: a key it names could otherwise be accepted.',
      details: { file: path },
      cause: error,
    });
  }
  return parseRevokedKeys(text, path);
}

/**
 * Who besides root could change a trust file: reasons from the file itself and every directory up
 * to /, for the path as given (a symlink there can be re-pointed) and for its real location.
 * An empty list when the file does not exist: reading it reports that.
 */
export async function trustFileExposure(path: string): Promise<string[]> {
  const chain = new Map<string, PathOwnership>();
  const add = async (p: string, kind: PathOwnership['kind']) => {
    if (chain.has(p)) return;
    const st = await stat(p);
    chain.set(p, { path: p, kind, uid: st.uid, mode: st.mode });
  };
  const ancestors = async (dir: string) => {
    for (let d = dir; ; d = dirname(d)) {
      await add(d, 'directory');
      if (dirname(d) === d) break;
    }
  };
  try {
    const real = await realpath(path);
    await add(real, 'file');
    await ancestors(dirname(real));
    await ancestors(await realpath(dirname(resolve(path))));
  } catch {
    return [];
  }
  return trustPathExposure([...chain.values()]);
}

function describeFsError(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOENT':
      return 'it does not exist';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EISDIR':
      return 'it is a directory';
    case 'ENOTDIR':
      return 'a parent of it is not a directory';
    default:
      return error instanceof Error ? error.message : String(error);
  }
}

// ---------------------------------------------------------------------------------------------
// OpenSSH private key files

const PRIVATE_KEY_LABEL = 'OPENSSH PRIVATE KEY';
const KEY_MAGIC = Buffer.from('openssh-key-v1\0', 'ascii');
/** The "none" cipher pads the private section to 8 bytes (PROTOCOL.key). */
const UNENCRYPTED_BLOCK = 8;
/** A key file is a few hundred bytes; this stops us reading an image tarball passed by mistake. */
const MAX_KEY_FILE_BYTES = 1024 * 1024;

const KEY_HINT = 'Pass the private key made by `ferry keys generate` (or `ssh-keygen -t ed25519`), not the .pub file.';

interface Ed25519KeyMaterial {
  seed: Buffer;
  publicKey: Buffer;
  comment: string;
}

function encodePrivateKeyFile(key: Ed25519KeyMaterial): string {
  const publicKeyBlob = encodeEd25519PublicKey(key.publicKey);
  const check = randomBytes(4);
  const body = Buffer.concat([
    check,
    check,
    encodeFields(ED25519_KEY_TYPE, key.publicKey, Buffer.concat([key.seed, key.publicKey]), key.comment),
  ]);
  const padLength = (UNENCRYPTED_BLOCK - (body.length % UNENCRYPTED_BLOCK)) % UNENCRYPTED_BLOCK;
  const padding = Buffer.from(Array.from({ length: padLength }, (_, i) => i + 1));
  const blob = Buffer.concat([KEY_MAGIC, encodeFields('none', 'none', '', 1, publicKeyBlob, Buffer.concat([body, padding]))]);
  return armor(PRIVATE_KEY_LABEL, blob);
}

function decodePrivateKeyFile(text: string, path: string): Ed25519KeyMaterial {
  const trimmed = text.trimStart();
  const notOpenSsh = (what: string) =>
    new BuildInputError('KEY_NOT_OPENSSH', `${path} is not an OpenSSH private key: ${what}`, { hint: KEY_HINT, details: { file: path } });
  const notEd25519 = (type: string) =>
    new BuildInputError('KEY_NOT_ED25519', `${path} is a ${type} key; ferry signs bundles with ed25519 keys only`, {
      hint: 'Generate one with `ferry keys generate --out FILE` or `ssh-keygen -t ed25519 -N "" -f FILE`.',
      details: { file: path, keyType: type },
    });

  if (!trimmed.startsWith(`-----BEGIN ${PRIVATE_KEY_LABEL}-----`)) {
    const pem = /^-----BEGIN (RSA|DSA|EC) PRIVATE KEY-----/.exec(trimmed);
    if (pem) throw notEd25519(pem[1] as string);
    if (/^(ssh-|ecdsa-|sk-)\S*\s+AAAA/.test(trimmed)) throw notOpenSsh('it is a public key');
    if (trimmed.startsWith('-----BEGIN')) throw notOpenSsh(`it is a "${trimmed.split('\n')[0]?.trim()}" file`);
    throw notOpenSsh('it does not start with "-----BEGIN OPENSSH PRIVATE KEY-----"');
  }

  try {
    const r = new WireReader(dearmor(PRIVATE_KEY_LABEL, text));
    if (!r.readBytes(KEY_MAGIC.length, 'magic').equals(KEY_MAGIC)) throw new WireFormatError('missing openssh-key-v1 magic');
    const cipher = r.readText('cipher name');
    const kdf = r.readText('kdf name');
    r.readString('kdf options');
    const count = r.readUint32('key count');
    if (cipher !== 'none' || kdf !== 'none') {
      throw new BuildInputError('KEY_ENCRYPTED', `${path} is protected by a passphrase`, {
        hint:
          'ferry needs an unencrypted key file; keep it on the build server only, readable by the build user alone (mode 0600), ' +
          'since ferry signs with nobody at the keyboard to type a passphrase. Make one with `ferry keys generate --out FILE`, ' +
          'or remove the passphrase from a copy with `ssh-keygen -p -N "" -f COPY`.',
        details: { file: path, cipher, kdf },
      });
    }
    if (count !== 1) throw new WireFormatError(`it holds ${count} keys; OpenSSH key files hold exactly one`);
    const publicKeyBlob = r.readString('public key');
    const keyType = publicKeyType(publicKeyBlob);
    if (keyType !== ED25519_KEY_TYPE) throw notEd25519(keyType);
    const publicKey = decodeEd25519PublicKey(publicKeyBlob);
    const section = r.readString('private section');
    r.expectEnd('private section');
    if (section.length % UNENCRYPTED_BLOCK !== 0) throw new WireFormatError('private section is not padded to 8 bytes');

    const p = new WireReader(section);
    // The check integers detect a wrong passphrase when encrypted; unencrypted they detect damage.
    if (p.readUint32('check') !== p.readUint32('check')) throw new WireFormatError('check integers differ');
    const privateType = p.readText('private key type');
    if (privateType !== ED25519_KEY_TYPE) throw new WireFormatError(`private key is ${privateType} but public key is ${keyType}`);
    const privatePublic = p.readString('ed25519 public key');
    const secret = p.readString('ed25519 secret key');
    if (secret.length !== 64) throw new WireFormatError(`ed25519 secret key is ${secret.length} bytes, not 64`);
    const comment = p.readString('comment').toString('utf8');
    const padding = p.readRest();
    if (padding.length >= UNENCRYPTED_BLOCK || padding.some((b, i) => b !== i + 1)) throw new WireFormatError('bad padding');

    const seed = Buffer.from(secret.subarray(0, 32));
    if (!privatePublic.equals(publicKey) || !secret.subarray(32).equals(publicKey)) {
      throw new WireFormatError('the public and private halves do not belong together');
    }
    if (!rawPublicKeyOf(ed25519PrivateKey(seed)).equals(publicKey)) {
      throw new WireFormatError('the private key does not produce its public key');
    }
    return { seed, publicKey, comment };
  } catch (error) {
    if (error instanceof WireFormatError) throw notOpenSsh(`the file is damaged (${error.message})`);
    throw error;
  }
}

function signingKeyFrom(key: Ed25519KeyMaterial): SigningKey {
  const publicKeyBlob = encodeEd25519PublicKey(key.publicKey);
  const seed = key.seed;
  return {
    publicKeyLine: formatPublicKeyLine(publicKeyBlob, key.comment),
    fingerprint: sha256Fingerprint(publicKeyBlob),
    sign: (message, namespace) => signSshsig(seed, publicKeyBlob, message, namespace),
  };
}

export async function loadSigningKey(path: string): Promise<SigningKey> {
  let data: Buffer;
  try {
    const info = await stat(path);
    if (info.isFile() && info.size > MAX_KEY_FILE_BYTES) {
      throw new BuildInputError('KEY_NOT_OPENSSH', `${path} is not an OpenSSH private key: it is ${info.size} bytes, far too large`, {
        hint: KEY_HINT,
        details: { file: path },
      });
    }
    data = await readFile(path);
  } catch (error) {
    if (error instanceof BuildInputError) throw error;
    throw new BuildInputError('KEY_UNREADABLE', `cannot read the signing key ${path}: ${describeFsError(error)}`, {
      hint: KEY_HINT,
      details: { file: path },
      cause: error,
    });
  }
  return parseSigningKey(data.toString('utf8'), path);
}

/** The text of an OpenSSH private key file; `source` names it in errors (a path, an env var). */
export function parseSigningKey(text: string, source: string): SigningKey {
  return signingKeyFrom(decodePrivateKeyFile(text, source));
}

// ---------------------------------------------------------------------------------------------
// Key generation

export function generateKeyPair(comment: string): { privateKey: string; publicKeyLine: string; fingerprint: string } {
  // A newline would split the .pub file and the allowed_signers line built from it.
  if (/[\r\n]/.test(comment)) throw new RangeError('a key comment must be a single line');
  const seed = randomBytes(32);
  const publicKey = rawPublicKeyOf(ed25519PrivateKey(seed));
  const material = { seed, publicKey, comment };
  const key = signingKeyFrom(material);
  return { privateKey: encodePrivateKeyFile(material), publicKeyLine: key.publicKeyLine, fingerprint: key.fingerprint };
}

export interface WrittenKeyPair {
  privateKeyPath: string;
  publicKeyPath: string;
  publicKeyLine: string;
  fingerprint: string;
}

export async function writeKeyPair(path: string, comment: string, opts: { force: boolean }): Promise<WrittenKeyPair> {
  const privateKeyPath = resolve(path);
  const publicKeyPath = `${privateKeyPath}.pub`;
  const pair = generateKeyPair(comment);
  const files = [
    { path: privateKeyPath, content: pair.privateKey, mode: 0o600 },
    { path: publicKeyPath, content: `${pair.publicKeyLine}\n`, mode: 0o644 },
  ];

  if (!opts.force) {
    // Checked up front so that neither file is touched when either exists.
    for (const f of files) {
      if (await exists(f.path)) throw keyExists(f.path);
    }
  }
  const written: string[] = [];
  try {
    for (const f of files) {
      if (opts.force) await replaceFile(f.path, f.content, f.mode);
      else await createExclusive(f.path, f.content, f.mode);
      written.push(f.path);
    }
  } catch (error) {
    // Never leave a private key without its public half (or the reverse) from a failed run.
    if (!opts.force) await Promise.all(written.map((p) => rm(p, { force: true })));
    if (error instanceof BuildInputError) throw error;
    const failed = files[written.length]?.path ?? privateKeyPath;
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') throw keyExists(failed);
    throw new BuildInputError('KEY_WRITE_FAILED', `cannot write ${failed}: ${describeFsError(error)}`, {
      hint: 'Choose a --out path in a directory that exists and that you can write to.',
      details: { file: failed },
      cause: error,
    });
  }
  return { privateKeyPath, publicKeyPath, publicKeyLine: pair.publicKeyLine, fingerprint: pair.fingerprint };
}

function keyExists(path: string): BuildInputError {
  return new BuildInputError('KEY_EXISTS', `${path} already exists`, {
    hint: 'Pass --force to replace it. Hosts that trust the old key will refuse bundles signed by the new one until their trust file lists it.',
    details: { file: path },
  });
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path); // lstat: a dangling symlink still occupies the name
    return true;
  } catch {
    // Missing, or a parent we cannot search: the create that follows reports the real reason.
    return false;
  }
}

async function createExclusive(path: string, content: string, mode: number): Promise<void> {
  // O_EXCL with the final mode from the start: the secret never sits in a file others can read.
  const handle = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
  try {
    await handle.writeFile(content);
    await handle.chmod(mode); // the umask may have narrowed .pub below 0644
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Replaces via a sibling temp file and rename, so a crash leaves the old key or the new, never half. */
async function replaceFile(path: string, content: string, mode: number): Promise<void> {
  const temp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await createExclusive(temp, content, mode);
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}
