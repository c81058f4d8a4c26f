/**
 * The files of signing: the trust file (an ordinary allowed_signers file that `ssh-keygen -Y verify`
 * reads too), the revoked-keys file, and OpenSSH private key files. The formats and the
 * cryptography are pure and live in core (sshsig.ts, openssh-key.ts, allowed-signers.ts).
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, open, readFile, realpath, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { type AllowedSigner, type PathOwnership, type RevokedKey, parseAllowedSigners, parseRevokedKeys, trustPathExposure } from '../core/allowed-signers.js';
import { generateKeyPair, KEY_HINT, MAX_KEY_FILE_BYTES, parseSigningKey } from '../core/openssh-key.js';
import type { SigningKey } from '../core/sshsig.js';
import { BuildInputError, TrustError } from '../errors.js';

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
    hint: ['Pass --force to replace it.', 'Hosts that trust the old key will refuse bundles signed by the new one until their trust file lists it.'],
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

