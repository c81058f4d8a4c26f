/**
 * The OpenSSH allowed_signers format (ssh-keygen(1), ALLOWED SIGNERS), parsed the way ssh-keygen
 * reads it so that one trust file serves both `ferry` and `ssh-keygen -Y verify`:
 *
 *   principals [options] keytype base64-key [comment]
 *
 * A trust file that ferry cannot read exactly is an error, never skipped: silently ignoring a
 * line could drop a restriction (a namespaces= or valid-before= option) the operator relies on.
 * Key types other than ssh-ed25519 are parsed (so shared files keep working) but never match,
 * since ferry only verifies ed25519 signatures; cert-authority lines never match a plain key.
 */
import { TrustError } from '../errors.js';
import { matchPatternList } from './patterns.js';
import {
  ED25519_KEY_TYPE,
  WireFormatError,
  WireReader,
  decodeBase64Strict,
  decodeEd25519PublicKey,
  sha256Fingerprint,
} from './ssh-wire.js';

export interface AllowedSigner {
  /** 1-based line in the file, for messages. */
  line: number;
  /** Comma-separated principal patterns as written (may contain `*` and `?`). */
  principals: string[];
  certAuthority: boolean;
  /** Namespace pattern list; undefined means any namespace is permitted. */
  namespaces?: string[];
  validAfter?: Date;
  validBefore?: Date;
  keyType: string;
  /** The public key in SSH wire format, as inside the base64 field. */
  keyBlob: Buffer;
  fingerprint: string;
  comment?: string;
}

const FORMAT_HINT =
  'Each line is: principals [options] keytype base64-key [comment]; options are cert-authority, ' +
  'namespaces="...", valid-after="YYYYMMDD[HHMM[SS]][Z]" and valid-before="..." (see ssh-keygen(1), ALLOWED SIGNERS).';

class LineError extends Error {}

export function parseAllowedSigners(text: string, source?: string): AllowedSigner[] {
  const signers: AllowedSigner[] = [];
  const lines = text.replace(/^\uFEFF/, '').split('\n');
  lines.forEach((raw, index) => {
    const lineNo = index + 1;
    const line = raw.replace(/\r$/, '').trim();
    if (line === '' || line.startsWith('#')) return;
    try {
      signers.push(parseLine(line, lineNo));
    } catch (error) {
      if (!(error instanceof LineError)) throw error;
      throw new TrustError('TRUST_STORE_INVALID', `allowed_signers line ${lineNo}: ${error.message}`, {
        hint: `${source ? `Fix line ${lineNo} of ${source}. ` : ''}${FORMAT_HINT}`,
        details: { file: source ?? null, line: lineNo },
      });
    }
  });
  return signers;
}

function parseLine(line: string, lineNo: number): AllowedSigner {
  const cursor = new Cursor(line);
  const principalsField = cursor.principals();
  const principals = principalsField.split(',');
  if (principals.some((p) => p === '')) throw new LineError('empty principal in the principals list');

  cursor.skipSpace();
  if (cursor.done) throw new LineError('missing key type and key after the principals');

  // ssh-keygen tells options from the key by trying to decode a key first; keywords are checked
  // too so that a line with options and a broken key is reported as a broken key.
  let options: Options = { certAuthority: false };
  if (startsWithOptionKeyword(cursor.peekToken()) || (!looksLikeKeyAt(cursor) && keyFollowsOptionsAt(cursor))) {
    options = parseOptions(cursor.optionsToken());
    cursor.skipSpace();
    if (cursor.done) throw new LineError('missing key type and key after the options');
  }

  const keyType = cursor.token();
  cursor.skipSpace();
  const keyText = cursor.token();
  if (keyText === '') throw new LineError(`missing base64 key after "${keyType}"`);
  const keyBlob = decodeKey(keyType, keyText);
  cursor.skipSpace();
  const comment = cursor.rest().trim();

  return {
    line: lineNo,
    principals,
    certAuthority: options.certAuthority,
    ...(options.namespaces ? { namespaces: options.namespaces } : {}),
    ...(options.validAfter ? { validAfter: options.validAfter } : {}),
    ...(options.validBefore ? { validBefore: options.validBefore } : {}),
    keyType,
    keyBlob,
    fingerprint: sha256Fingerprint(keyBlob),
    ...(comment ? { comment } : {}),
  };
}

/** A small scanner; allowed_signers separates fields by spaces and tabs but lets quotes hold them. */
class Cursor {
  pos = 0;
  constructor(private readonly s: string) {}

  get done(): boolean {
    return this.pos >= this.s.length;
  }

  skipSpace(): void {
    while (this.pos < this.s.length && isSpace(this.s[this.pos])) this.pos++;
  }

  token(): string {
    const start = this.pos;
    while (this.pos < this.s.length && !isSpace(this.s[this.pos])) this.pos++;
    return this.s.slice(start, this.pos);
  }

  peekToken(): string {
    const save = this.pos;
    const t = this.token();
    this.pos = save;
    return t;
  }

  /** ssh-keygen accepts the principals field in double quotes, which lets it hold spaces. */
  principals(): string {
    if (this.s[this.pos] !== '"') return this.token();
    const close = this.s.indexOf('"', this.pos + 1);
    if (close < 0) throw new LineError('unterminated quote in the principals field');
    const value = this.s.slice(this.pos + 1, close);
    this.pos = close + 1;
    if (!this.done && !isSpace(this.s[this.pos])) throw new LineError('unexpected text after the quoted principals');
    if (value === '') throw new LineError('the principals field is empty');
    return value;
  }

  /** The options field ends at the first space outside double quotes. */
  optionsToken(): string {
    const start = this.pos;
    let quoted = false;
    while (this.pos < this.s.length && (quoted || !isSpace(this.s[this.pos]))) {
      const c = this.s[this.pos];
      if (c === '\\' && this.s[this.pos + 1] === '"') this.pos++;
      else if (c === '"') quoted = !quoted;
      this.pos++;
    }
    if (quoted) throw new LineError('unterminated quote in the options');
    return this.s.slice(start, this.pos);
  }

  rest(): string {
    const r = this.s.slice(this.pos);
    this.pos = this.s.length;
    return r;
  }
}

function isSpace(c: string | undefined): boolean {
  return c === ' ' || c === '\t';
}

const OPTION_KEYWORD_RE = /^(cert-authority(?:,|$)|namespaces=|valid-after=|valid-before=)/i;

function startsWithOptionKeyword(token: string): boolean {
  return OPTION_KEYWORD_RE.test(token);
}

/** Whether "keytype base64" starts at the cursor, judged as ssh-keygen does: by decoding it. */
function looksLikeKeyAt(cursor: Cursor): boolean {
  const save = cursor.pos;
  try {
    const type = cursor.token();
    cursor.skipSpace();
    const b64 = cursor.token();
    if (type === '' || b64 === '') return false;
    decodeKey(type, b64);
    return true;
  } catch {
    return false;
  } finally {
    cursor.pos = save;
  }
}

function keyFollowsOptionsAt(cursor: Cursor): boolean {
  const save = cursor.pos;
  try {
    cursor.optionsToken();
    cursor.skipSpace();
    return !cursor.done && looksLikeKeyAt(cursor);
  } catch {
    return false;
  } finally {
    cursor.pos = save;
  }
}

function decodeKey(keyType: string, keyText: string): Buffer {
  let blob: Buffer;
  try {
    blob = decodeBase64Strict(keyText, 'key');
  } catch {
    throw new LineError(`the ${keyType} key is not valid base64`);
  }
  try {
    const embedded = new WireReader(blob).readText('key type');
    if (embedded !== keyType) throw new LineError(`the key is labelled ${keyType} but its data is a ${embedded} key`);
    if (keyType === ED25519_KEY_TYPE) decodeEd25519PublicKey(blob);
  } catch (error) {
    if (error instanceof WireFormatError) throw new LineError(`the ${keyType} key is malformed: ${error.message}`);
    throw error;
  }
  return blob;
}

interface Options {
  certAuthority: boolean;
  namespaces?: string[];
  validAfter?: Date;
  validBefore?: Date;
}

function parseOptions(text: string): Options {
  const result: Options = { certAuthority: false };
  const seen = new Set<string>();
  let rest = text;
  while (rest.length > 0) {
    const m = /^([A-Za-z-]+)(=?)/.exec(rest);
    const keyword = (m?.[1] ?? '').toLowerCase();
    const hasValue = m?.[2] === '=';
    if (!m || !['cert-authority', 'namespaces', 'valid-after', 'valid-before'].includes(keyword)) {
      throw new LineError(`unknown option "${rest.split(/[,=]/)[0]}"`);
    }
    // A repeated option would leave it unclear which restriction the operator meant.
    if (seen.has(keyword)) throw new LineError(`option ${keyword} given twice`);
    seen.add(keyword);
    rest = rest.slice(m[0].length);

    if (keyword === 'cert-authority') {
      if (hasValue) throw new LineError('cert-authority takes no value');
      result.certAuthority = true;
    } else {
      if (!hasValue) throw new LineError(`${keyword} needs a value: ${keyword}="..."`);
      if (!rest.startsWith('"')) throw new LineError(`the value of ${keyword} must be in double quotes`);
      let value = '';
      let i = 1;
      for (; i < rest.length && rest[i] !== '"'; i++) {
        if (rest[i] === '\\' && rest[i + 1] === '"') i++;
        value += rest[i];
      }
      if (i >= rest.length) throw new LineError(`unterminated quote in ${keyword}`);
      rest = rest.slice(i + 1);
      if (keyword === 'namespaces') {
        if (value.trim() === '') throw new LineError('namespaces is empty, so the key could sign nothing');
        result.namespaces = value.split(',');
        if (result.namespaces.some((n) => n === '')) throw new LineError('empty name in namespaces');
      } else {
        const date = parseTimestamp(value);
        if (!date) {
          throw new LineError(`${keyword} "${value}" is not a timestamp of the form YYYYMMDD[Z] or YYYYMMDDHHMM[SS][Z]`);
        }
        if (keyword === 'valid-after') result.validAfter = date;
        else result.validBefore = date;
      }
    }

    if (rest.startsWith(',')) {
      rest = rest.slice(1);
      if (rest === '') throw new LineError('trailing comma in the options');
    } else if (rest !== '') {
      throw new LineError(`unexpected "${rest}" in the options`);
    }
  }
  return result;
}

/**
 * YYYYMMDD[Z] or YYYYMMDDHHMM[SS][Z]: local time unless suffixed with Z, as ssh-keygen reads it.
 * Returns undefined for anything else, including impossible dates like 20250230.
 */
export function parseTimestamp(text: string): Date | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})(\d{2})?)?([Zz])?$/.exec(text);
  if (!m) return undefined;
  const [y, mo, d, h, mi, s] = [m[1], m[2], m[3], m[4] ?? '0', m[5] ?? '0', m[6] ?? '0'].map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const utc = m[7] !== undefined;
  const date = utc ? new Date(Date.UTC(y, mo - 1, d, h, mi, s)) : new Date(y, mo - 1, d, h, mi, s);
  // Date rolls out-of-range fields over (Feb 30 -> Mar 2); reading the fields back catches that.
  const back = utc
    ? [date.getUTCFullYear(), date.getUTCMonth() + 1, date.getUTCDate(), date.getUTCHours(), date.getUTCMinutes(), date.getUTCSeconds()]
    : [date.getFullYear(), date.getMonth() + 1, date.getDate(), date.getHours(), date.getMinutes(), date.getSeconds()];
  // A local time skipped by a DST jump also fails this check, which is the honest answer.
  if (back.join() !== [y, mo, d, h, mi, s].join()) return undefined;
  return date;
}

export function permitsNamespace(signer: AllowedSigner, namespace: string): boolean {
  return signer.namespaces === undefined || matchPatternList(namespace, signer.namespaces);
}

/** valid-after and valid-before are both inclusive, to the second, as in ssh-keygen. */
export function isValidAt(signer: AllowedSigner, now: Date): boolean {
  const t = Math.floor(now.getTime() / 1000) * 1000;
  if (signer.validAfter && t < signer.validAfter.getTime()) return false;
  if (signer.validBefore && t > signer.validBefore.getTime()) return false;
  return true;
}

/** Whether the line is for exactly this plain key (cert-authority lines are for certificates). */
export function matchesKey(signer: AllowedSigner, keyBlob: Uint8Array): boolean {
  return !signer.certAuthority && signer.keyType === ED25519_KEY_TYPE && signer.keyBlob.equals(keyBlob);
}

/** Builds one allowed_signers line, e.g. `ferry namespaces="ferry-bundle" ssh-ed25519 AAAA… comment`. */
export function formatAllowedSignersLine(
  principals: string | readonly string[],
  publicKeyLine: string,
  options: { namespaces?: readonly string[] } = {},
): string {
  const list = typeof principals === 'string' ? [principals] : [...principals];
  if (list.length === 0 || list.some((p) => p === '' || /[\s",]/.test(p))) {
    throw new RangeError('principals must be non-empty and contain no spaces, quotes or commas');
  }
  const fields = [list.join(',')];
  if (options.namespaces) {
    if (options.namespaces.some((n) => n === '' || /[\s",]/.test(n))) {
      throw new RangeError('namespaces must be non-empty and contain no spaces, quotes or commas');
    }
    fields.push(`namespaces="${options.namespaces.join(',')}"`);
  }
  fields.push(publicKeyLine.trim());
  return fields.join(' ');
}

// ---------------------------------------------------------------------------------------------
// Revoked keys

export interface RevokedKey {
  /** 1-based line in the file, for messages. */
  line: number;
  keyType: string;
  keyBlob: Buffer;
  fingerprint: string;
}

const KEY_TYPE_RE = /^(?:ssh-ed25519|ssh-rsa|ssh-dss|ecdsa-sha2-nistp(?:256|384|521)|sk-[a-z0-9-]+@openssh\.com|[a-z0-9-]+-cert-v01@openssh\.com)$/;

/**
 * A revoked-keys file: public keys one a line, as `ssh-keygen -Y verify -r FILE` also reads it
 * (the .pub line, an authorized_keys line or an allowed_signers line all work: the key is the
 * first "keytype base64" pair that decodes). Binary KRLs are refused rather than misread.
 * Like the trust file, a line that cannot be read is an error: skipping it could un-revoke a key.
 */
export function parseRevokedKeys(text: string, source?: string): RevokedKey[] {
  const fail = (message: string, line: number | null) =>
    new TrustError('TRUST_REVOKED_INVALID', `${source ?? 'the revoked-keys file'}${line ? ` line ${line}` : ''}: ${message}`, {
      hint: 'List one public key a line ("ssh-ed25519 AAAA… comment", as in the key\'s .pub file); lines starting with # are comments.',
      details: { file: source ?? null, line },
    });
  if (text.startsWith('SSHKRL\n')) throw fail('is a binary OpenSSH KRL, which ferry does not read; list the revoked public keys one a line instead', null);
  const revoked: RevokedKey[] = [];
  text
    .replace(/^\uFEFF/, '')
    .split('\n')
    .forEach((raw, index) => {
      const line = raw.replace(/\r$/, '').trim();
      if (line === '' || line.startsWith('#')) return;
      const tokens = line.split(/[ \t]+/);
      for (let i = 0; i + 1 < tokens.length; i++) {
        const keyType = tokens[i] as string;
        if (!KEY_TYPE_RE.test(keyType)) continue;
        try {
          const keyBlob = decodeKey(keyType, tokens[i + 1] as string);
          revoked.push({ line: index + 1, keyType, keyBlob, fingerprint: sha256Fingerprint(keyBlob) });
          return;
        } catch (error) {
          if (!(error instanceof LineError)) throw error;
        }
      }
      throw fail('holds no public key ("keytype base64")', index + 1);
    });
  return revoked;
}

/** The revoked-keys entry for this key blob, if any (any key type: revocation is by key, not by use). */
export function findRevoked(revoked: readonly RevokedKey[], keyBlob: Uint8Array): RevokedKey | undefined {
  return revoked.find((r) => r.keyBlob.equals(keyBlob));
}

// ---------------------------------------------------------------------------------------------
// Who can change the trust files

export interface PathOwnership {
  path: string;
  kind: 'file' | 'directory';
  uid: number;
  /** st_mode, including the type and sticky bits. */
  mode: number;
}

/**
 * Why someone other than root could change a trust file: the file, or a directory on the way to
 * it, owned by another user or writable by group or others. A sticky directory (/tmp) that
 * others may write is fine as long as its owner is root: they cannot rename or replace entries
 * they do not own, and the file and its own directory are checked by the rules above.
 */
export function trustPathExposure(chain: readonly PathOwnership[]): string[] {
  const reasons: string[] = [];
  for (const e of chain) {
    if (e.uid !== 0) reasons.push(`${e.path} is owned by uid ${e.uid}, not root`);
    const sticky = e.kind === 'directory' && (e.mode & 0o1000) !== 0;
    const who = [(e.mode & 0o020) !== 0 && 'group', (e.mode & 0o002) !== 0 && 'others'].filter(Boolean);
    if (who.length > 0 && !sticky) reasons.push(`${e.path} is writable by ${who.join(' and ')} (mode ${(e.mode & 0o7777).toString(8).padStart(4, '0')})`);
  }
  return reasons;
}
