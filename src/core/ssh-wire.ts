/**
 * The SSH wire format (RFC 4251 §5) as used by SSHSIG signatures, OpenSSH key files and public key
 * blobs, plus the text armor and fingerprint conventions ssh-keygen uses around it.
 *
 * Everything read here may come from an attacker (a signature shipped inside a bundle), so the
 * reader checks every declared length against what is actually left before touching it, never
 * allocates from a declared size, and fails with one error type that callers map to their own
 * typed errors.
 */
import { createHash } from 'node:crypto';

/** Raised for any structural problem in wire data; callers translate it into a FerryError. */
export class WireFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WireFormatError';
  }
}

/** A bounds-checked cursor over untrusted bytes. Returned slices share memory with the input. */
export class WireReader {
  private offset = 0;

  constructor(private readonly buf: Uint8Array) {}

  get remaining(): number {
    return this.buf.length - this.offset;
  }

  get position(): number {
    return this.offset;
  }

  readBytes(n: number, what = 'data'): Buffer {
    if (!Number.isSafeInteger(n) || n < 0) throw new WireFormatError(`invalid length for ${what}`);
    if (n > this.remaining) {
      throw new WireFormatError(`truncated ${what}: needs ${n} bytes, ${this.remaining} left`);
    }
    const out = Buffer.from(this.buf.buffer, this.buf.byteOffset + this.offset, n);
    this.offset += n;
    return out;
  }

  readByte(what = 'byte'): number {
    return this.readBytes(1, what)[0] as number;
  }

  readUint32(what = 'uint32'): number {
    return this.readBytes(4, what).readUInt32BE(0);
  }

  /** An SSH `string`: uint32 length then that many bytes. */
  readString(what = 'string'): Buffer {
    const length = this.readUint32(`${what} length`);
    if (length > this.remaining) {
      throw new WireFormatError(`${what} declares ${length} bytes but only ${this.remaining} remain`);
    }
    return this.readBytes(length, what);
  }

  /**
   * A string that names something (a key type, an algorithm, a namespace). Rejects invalid UTF-8
   * so that two different byte strings can never print or compare as the same name.
   */
  readText(what = 'string'): string {
    const bytes = this.readString(what);
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      throw new WireFormatError(`${what} is not valid UTF-8`);
    }
  }

  /** Consumes the rest of the input. */
  readRest(): Buffer {
    return this.readBytes(this.remaining, 'rest');
  }

  /** Trailing bytes are refused: data that is ignored by us might be read differently elsewhere. */
  expectEnd(what = 'data'): void {
    if (this.remaining !== 0) throw new WireFormatError(`${this.remaining} unexpected trailing bytes after ${what}`);
  }
}

export function encodeUint32(n: number): Buffer {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`not a uint32: ${n}`);
  const out = Buffer.alloc(4);
  out.writeUInt32BE(n, 0);
  return out;
}

export function encodeString(value: Uint8Array | string): Buffer {
  const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : Buffer.from(value);
  return Buffer.concat([encodeUint32(bytes.length), bytes]);
}

/** Joins wire fields; strings and byte arrays are encoded as SSH `string`s, numbers as uint32. */
export function encodeFields(...fields: Array<Uint8Array | string | number>): Buffer {
  return Buffer.concat(fields.map((f) => (typeof f === 'number' ? encodeUint32(f) : encodeString(f))));
}

// ---------------------------------------------------------------------------------------------
// Armor

const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Strict base64: Node's decoder silently skips junk characters, which would let two different
 * texts stand for the same bytes and hide corruption.
 */
export function decodeBase64Strict(text: string, what = 'base64 data'): Buffer {
  if (!BASE64_RE.test(text)) throw new WireFormatError(`${what} is not valid base64`);
  return Buffer.from(text, 'base64');
}

/** ssh-keygen wraps armored signatures and private keys at 70 columns. */
export const ARMOR_WRAP = 70;

export function armor(label: string, data: Uint8Array): string {
  const b64 = Buffer.from(data).toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += ARMOR_WRAP) lines.push(b64.slice(i, i + ARMOR_WRAP));
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/**
 * Reverses `armor`. Tolerates surrounding whitespace and CRLF line ends (files that crossed
 * Windows machines), but nothing else: text before BEGIN or after END is refused.
 */
export function dearmor(label: string, text: string): Buffer {
  const begin = `-----BEGIN ${label}-----`;
  const end = `-----END ${label}-----`;
  const trimmed = text.trim();
  if (!trimmed.startsWith(begin)) throw new WireFormatError(`does not start with "${begin}"`);
  const endAt = trimmed.indexOf(end, begin.length);
  if (endAt < 0) throw new WireFormatError(`missing "${end}"`);
  if (endAt + end.length !== trimmed.length) throw new WireFormatError(`unexpected text after "${end}"`);
  const body = trimmed.slice(begin.length, endAt).replace(/[\r\n\t ]+/g, '');
  if (body.length === 0) throw new WireFormatError('armor contains no data');
  return decodeBase64Strict(body, 'armored data');
}

// ---------------------------------------------------------------------------------------------
// Keys

/** `SHA256:<base64 without padding>`, the form ssh-keygen -l prints and users compare by eye. */
export function sha256Fingerprint(publicKeyBlob: Uint8Array): string {
  const digest = createHash('sha256').update(publicKeyBlob).digest('base64');
  return `SHA256:${digest.replace(/=+$/, '')}`;
}

/** The key type named at the start of a public key blob, checked to be the whole first field. */
export function publicKeyType(publicKeyBlob: Uint8Array): string {
  return new WireReader(publicKeyBlob).readText('key type');
}

/** `ssh-ed25519 AAAA… [comment]`, as in a .pub file or authorized_keys. */
export function formatPublicKeyLine(publicKeyBlob: Uint8Array, comment?: string): string {
  const line = `${publicKeyType(publicKeyBlob)} ${Buffer.from(publicKeyBlob).toString('base64')}`;
  return comment ? `${line} ${comment}` : line;
}

export const ED25519_KEY_TYPE = 'ssh-ed25519';

export function encodeEd25519PublicKey(publicKey: Uint8Array): Buffer {
  if (publicKey.length !== 32) throw new RangeError('an ed25519 public key is 32 bytes');
  return encodeFields(ED25519_KEY_TYPE, publicKey);
}

/** The raw 32-byte key from an ssh-ed25519 blob; throws on any other type or shape. */
export function decodeEd25519PublicKey(publicKeyBlob: Uint8Array): Buffer {
  const r = new WireReader(publicKeyBlob);
  const type = r.readText('key type');
  if (type !== ED25519_KEY_TYPE) throw new WireFormatError(`key type is ${type}, not ${ED25519_KEY_TYPE}`);
  const key = r.readString('ed25519 public key');
  if (key.length !== 32) throw new WireFormatError(`ed25519 public key is ${key.length} bytes, not 32`);
  r.expectEnd('ed25519 public key');
  return key;
}
