/**
 * ed25519 keys in OpenSSH's own private key file format (PROTOCOL.key), unencrypted, as
 * `ssh-keygen -t ed25519 -N ""` writes them: decoded with every check OpenSSH makes, and written
 * so that ssh-keygen reads them. Pure: adapters/signing.ts reads and writes the files.
 */
import { randomBytes } from 'node:crypto';
import { ED25519_KEY_TYPE, WireFormatError, WireReader, armor, dearmor, decodeEd25519PublicKey, encodeEd25519PublicKey, encodeFields, formatPublicKeyLine, publicKeyType, sha256Fingerprint } from './ssh-wire.js';
import { ed25519PrivateKey, rawPublicKeyOf, signSshsig, type SigningKey } from './sshsig.js';
import { BuildInputError } from '../errors.js';


const PRIVATE_KEY_LABEL = 'OPENSSH PRIVATE KEY';
const KEY_MAGIC = Buffer.from('openssh-key-v1\0', 'ascii');
/** The "none" cipher pads the private section to 8 bytes (PROTOCOL.key). */
const UNENCRYPTED_BLOCK = 8;
/** A key file is a few hundred bytes; this stops us reading an image tarball passed by mistake. */
export const MAX_KEY_FILE_BYTES = 1024 * 1024;

export const KEY_HINT = 'Pass the private key made by `ferry keys generate` (or `ssh-keygen -t ed25519`), not the .pub file.';

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

/** The text of an OpenSSH private key file; `source` names it in errors (a path, an env var). */
export function parseSigningKey(text: string, source: string): SigningKey {
  return signingKeyFrom(decodePrivateKeyFile(text, source));
}


export function generateKeyPair(comment: string): { privateKey: string; publicKeyLine: string; fingerprint: string } {
  // A newline would split the .pub file and the allowed_signers line built from it.
  if (/[\r\n]/.test(comment)) throw new RangeError('a key comment must be a single line');
  const seed = randomBytes(32);
  const publicKey = rawPublicKeyOf(ed25519PrivateKey(seed));
  const material = { seed, publicKey, comment };
  const key = signingKeyFrom(material);
  return { privateKey: encodePrivateKeyFile(material), publicKeyLine: key.publicKeyLine, fingerprint: key.fingerprint };
}

