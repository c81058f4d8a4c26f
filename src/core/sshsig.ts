/**
 * Bundle signatures in OpenSSH's SSHSIG format (PROTOCOL.sshsig) with ed25519 keys. Using the
 * format ssh-keygen already speaks means operators can sign and check signatures with tools they
 * have audited. Pure: the codec and the trust decision; the files (allowed_signers, revoked keys)
 * are read by adapters/signing.ts.
 */
import { createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { type AllowedSigner, type RevokedKey, findRevoked, formatAllowedSignersLine, isValidAt, matchesKey, permitsNamespace } from './allowed-signers.js';
import { ED25519_KEY_TYPE, WireFormatError, WireReader, armor, dearmor, decodeEd25519PublicKey, encodeFields, encodeUint32, formatPublicKeyLine, publicKeyType, sha256Fingerprint } from './ssh-wire.js';
import { BugError, TrustError } from '../errors.js';

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

export function ed25519PrivateKey(seed: Buffer): KeyObject {
  return createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: 'der', type: 'pkcs8' });
}

function ed25519PublicKey(raw: Buffer): KeyObject {
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') }, format: 'jwk' });
}

export function rawPublicKeyOf(privateKey: KeyObject): Buffer {
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

export function signSshsig(seed: Buffer, publicKeyBlob: Buffer, message: Buffer, namespace: string): string {
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

