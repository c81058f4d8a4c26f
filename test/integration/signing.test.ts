/**
 * Interoperability with the real OpenSSH tools: keys ferry writes must work with ssh-keygen, and
 * keys and signatures ssh-keygen makes must work with ferry. ssh-keygen is a required test
 * dependency (apt openssh-client); these tests fail, never skip, without it.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, it, expect, vi } from 'vitest';
import { loadSigningKey, readAllowedSigners, writeKeyPair } from '../../src/adapters/signing.js';
import { BUNDLE_NAMESPACE, parseSignature, verifySignature } from '../../src/core/sshsig.js';
import { formatAllowedSignersLine } from '../../src/core/allowed-signers.js';
import { BuildInputError, FerryError, TrustError } from '../../src/errors.js';
import KeysGenerate from '../../src/commands/keys/generate.js';

const SSH_KEYGEN = process.env.SSH_KEYGEN ?? 'ssh-keygen';
const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ferry-signing-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function sshKeygen(args: string[], input?: Buffer): { status: number | null; stdout: string; stderr: string } {
  const res = spawnSync(SSH_KEYGEN, args, { input: input ?? Buffer.alloc(0), encoding: 'buffer', timeout: 30_000 });
  if (res.error) throw new Error(`could not run ${SSH_KEYGEN} (install openssh-client): ${res.error.message}`);
  return { status: res.status, stdout: res.stdout.toString(), stderr: res.stderr.toString() };
}

function sshKeygenOk(args: string[], input?: Buffer): string {
  const res = sshKeygen(args, input);
  if (res.status !== 0) throw new Error(`ssh-keygen ${args.join(' ')} exited ${res.status}: ${res.stderr}`);
  return res.stdout;
}

async function errorOf(promise: Promise<unknown>): Promise<FerryError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof FerryError) return error;
    throw error;
  }
  throw new Error('expected an error');
}

/** XORs one byte in place (the mask is below 256, so the result stays a byte). */
function flipByte(buf: Buffer, index: number, mask: number): void {
  buf.writeUInt8(buf.readUInt8(index) ^ mask, index);
}

function keyField(line: string): string {
  return line.trim().split(/\s+/).slice(0, 2).join(' ');
}

describe('keys ferry writes, used by ssh-keygen', () => {
  it('writes a private key ssh-keygen reads back to the same public key and fingerprint', async () => {
    const path = join(dir, 'ferry-key');
    const written = await writeKeyPair(path, 'ci@build-01', { force: false });
    expect(written.privateKeyPath).toBe(path);
    expect(written.publicKeyPath).toBe(`${path}.pub`);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(`${path}.pub`).mode & 0o777).toBe(0o644);

    const pubFile = readFileSync(`${path}.pub`, 'utf8');
    expect(pubFile).toBe(`${written.publicKeyLine}\n`);
    expect(written.publicKeyLine).toMatch(/^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI[A-Za-z0-9+/]+=* ci@build-01$/);

    const derived = sshKeygenOk(['-y', '-f', path]);
    expect(keyField(derived)).toBe(keyField(written.publicKeyLine));
    expect(derived.trim()).toBe(written.publicKeyLine);

    const listed = sshKeygenOk(['-l', '-f', path]);
    expect(listed).toContain(written.fingerprint);
    expect(listed).toMatch(/\(ED25519\)/);
  });

  it('refuses to overwrite without force, and replaces with force', async () => {
    const path = join(dir, 'existing');
    const first = await writeKeyPair(path, 'one', { force: false });
    const err = await errorOf(writeKeyPair(path, 'two', { force: false }));
    expect(err).toBeInstanceOf(BuildInputError);
    expect(err.code).toBe('KEY_EXISTS');
    expect(err.exitCode).toBe(10);
    expect(err.message).toContain(path);
    expect(err.hint).toMatch(/--force/);
    expect(readFileSync(`${path}.pub`, 'utf8')).toBe(`${first.publicKeyLine}\n`);

    const second = await writeKeyPair(path, 'two', { force: true });
    expect(second.fingerprint).not.toBe(first.fingerprint);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(keyField(sshKeygenOk(['-y', '-f', path]))).toBe(keyField(second.publicKeyLine));
  });

  it('refuses when only the .pub file exists, leaving nothing behind', async () => {
    const path = join(dir, 'pub-only');
    writeFileSync(`${path}.pub`, 'something\n');
    const err = await errorOf(writeKeyPair(path, 'x', { force: false }));
    expect(err.code).toBe('KEY_EXISTS');
    expect(err.message).toContain(`${path}.pub`);
    expect(() => statSync(path)).toThrow();
  });

  it('reports a directory that does not exist', async () => {
    const err = await errorOf(writeKeyPair(join(dir, 'no', 'such', 'key'), 'x', { force: false }));
    expect(err).toBeInstanceOf(BuildInputError);
    expect(err.code).toBe('KEY_WRITE_FAILED');
  });
});

describe('signatures ferry makes, checked by ssh-keygen -Y verify', () => {
  let keyPath: string;
  let filePath: string;
  let sigPath: string;
  let allowedPath: string;

  beforeAll(async () => {
    keyPath = join(dir, 'signer');
    await writeKeyPair(keyPath, 'signer@test', { force: false });
    const key = await loadSigningKey(keyPath);
    filePath = join(dir, 'manifest.json');
    writeFileSync(filePath, JSON.stringify({ images: ['a', 'b'], created: '2025-01-01' }));
    sigPath = `${filePath}.sig`;
    writeFileSync(sigPath, key.sign(readFileSync(filePath), BUNDLE_NAMESPACE));
    allowedPath = join(dir, 'allowed_signers');
    writeFileSync(allowedPath, `${formatAllowedSignersLine('ferry', key.publicKeyLine, { namespaces: [BUNDLE_NAMESPACE] })}\n`);
  });

  const verify = (namespace: string, principal = 'ferry', data?: Buffer) =>
    sshKeygen(['-Y', 'verify', '-f', allowedPath, '-I', principal, '-n', namespace, '-s', sigPath], data ?? readFileSync(filePath));

  it('is accepted for the ferry-bundle namespace', () => {
    const res = verify(BUNDLE_NAMESPACE);
    expect(res.stderr + res.stdout).toMatch(/Good "ferry-bundle" signature for ferry/);
    expect(res.status).toBe(0);
  });

  it('is refused for another namespace, another principal, or changed data', () => {
    expect(verify('other').status).not.toBe(0);
    expect(verify(BUNDLE_NAMESPACE, 'someone-else').status).not.toBe(0);
    const changed = Buffer.from(readFileSync(filePath));
    flipByte(changed, 3, 1);
    expect(verify(BUNDLE_NAMESPACE, 'ferry', changed).status).not.toBe(0);
  });

  it('is byte-identical to what ssh-keygen -Y sign makes with the same key (ed25519 is deterministic)', () => {
    const copy = join(dir, 'manifest-copy.json');
    writeFileSync(copy, readFileSync(filePath));
    sshKeygenOk(['-Y', 'sign', '-f', keyPath, '-n', BUNDLE_NAMESPACE, copy]);
    expect(readFileSync(`${copy}.sig`, 'utf8')).toBe(readFileSync(sigPath, 'utf8'));
  });

  it('is accepted by our own verifier against the same trust file', async () => {
    const signers = await readAllowedSigners(allowedPath);
    const result = verifySignature(readFileSync(filePath), readFileSync(sigPath), BUNDLE_NAMESPACE, signers);
    expect(result.principals).toEqual(['ferry']);
  });
});

describe('keys and signatures ssh-keygen makes, used by ferry', () => {
  let keyPath: string;
  let filePath: string;

  beforeAll(() => {
    keyPath = join(dir, 'openssh-ed25519');
    sshKeygenOk(['-q', '-t', 'ed25519', '-N', '', '-C', 'made by ssh-keygen', '-f', keyPath]);
    filePath = join(dir, 'payload.bin');
    writeFileSync(filePath, Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7) % 256)));
  });

  it('loads an ssh-keygen ed25519 key', async () => {
    const key = await loadSigningKey(keyPath);
    expect(key.publicKeyLine).toBe(readFileSync(`${keyPath}.pub`, 'utf8').trim());
    expect(sshKeygenOk(['-l', '-f', keyPath])).toContain(key.fingerprint);
  });

  it('accepts ssh-keygen -Y sign signatures, and rejects them once the file changes', async () => {
    sshKeygenOk(['-Y', 'sign', '-f', keyPath, '-n', BUNDLE_NAMESPACE, filePath]);
    const signature = readFileSync(`${filePath}.sig`);
    const pub = readFileSync(`${keyPath}.pub`, 'utf8').trim();
    const allowedPath = join(dir, 'allowed_openssh');
    writeFileSync(allowedPath, `# hosts trust file\nbuild@example.com namespaces="ferry-bundle" ${pub}\n`);
    const signers = await readAllowedSigners(allowedPath);

    const info = parseSignature(signature);
    expect(info.namespace).toBe(BUNDLE_NAMESPACE);
    expect(info.hashAlgorithm).toBe('sha512');
    expect(info.publicKeyLine).toBe(keyField(pub));

    const data = readFileSync(filePath);
    expect(verifySignature(data, signature, BUNDLE_NAMESPACE, signers).principals).toEqual(['build@example.com']);

    const flipped = Buffer.from(data);
    flipByte(flipped, 1000, 0x01);
    let err: unknown;
    try {
      verifySignature(flipped, signature, BUNDLE_NAMESPACE, signers);
    } catch (error) {
      err = error;
    }
    expect(err).toBeInstanceOf(TrustError);
    expect((err as TrustError).code).toBe('TRUST_SIGNATURE_INVALID');
  });

  it('rejects ssh-keygen signatures made for another namespace', async () => {
    const other = join(dir, 'other.txt');
    writeFileSync(other, 'hello');
    sshKeygenOk(['-Y', 'sign', '-f', keyPath, '-n', 'file', other]);
    const signers = await readAllowedSigners(join(dir, 'allowed_openssh'));
    expect(() => verifySignature(readFileSync(other), readFileSync(`${other}.sig`), BUNDLE_NAMESPACE, signers)).toThrow(
      expect.objectContaining({ code: 'TRUST_WRONG_NAMESPACE' }),
    );
  });
});

describe('keys ferry cannot sign with', () => {
  it('refuses a passphrase-protected key with exit 10', async () => {
    const path = join(dir, 'protected');
    sshKeygenOk(['-q', '-t', 'ed25519', '-N', 'secret', '-f', path]);
    const err = await errorOf(loadSigningKey(path));
    expect(err).toBeInstanceOf(BuildInputError);
    expect(err.exitCode).toBe(10);
    expect(err.code).toBe('KEY_ENCRYPTED');
    expect(err.message).toContain(path);
    expect(err.hint).toMatch(/unencrypted key file; keep it on the build server only/);
  });

  it('refuses an RSA key, in OpenSSH and in PEM format', async () => {
    const path = join(dir, 'rsa');
    sshKeygenOk(['-q', '-t', 'rsa', '-b', '2048', '-N', '', '-f', path]);
    const err = await errorOf(loadSigningKey(path));
    expect(err).toBeInstanceOf(BuildInputError);
    expect(err.exitCode).toBe(10);
    expect(err.code).toBe('KEY_NOT_ED25519');
    expect(err.message).toMatch(/ssh-rsa key/);
    expect(err.hint).toMatch(/ferry keys generate.*ssh-keygen -t ed25519/);

    const pemPath = join(dir, 'rsa-pem');
    sshKeygenOk(['-q', '-t', 'rsa', '-b', '2048', '-m', 'PEM', '-N', '', '-f', pemPath]);
    expect((await errorOf(loadSigningKey(pemPath))).code).toBe('KEY_NOT_ED25519');
  });

  it('refuses an ECDSA key', async () => {
    const path = join(dir, 'ecdsa');
    sshKeygenOk(['-q', '-t', 'ecdsa', '-N', '', '-f', path]);
    const err = await errorOf(loadSigningKey(path));
    expect(err.code).toBe('KEY_NOT_ED25519');
    expect(err.message).toMatch(/ecdsa-sha2-nistp256/);
  });

  it('explains a .pub file, a missing file, a directory and a damaged key', async () => {
    const pub = await errorOf(loadSigningKey(join(dir, 'openssh-ed25519.pub')));
    expect(pub.code).toBe('KEY_NOT_OPENSSH');
    expect(pub.message).toMatch(/public key/);

    const missing = join(dir, 'nope');
    const gone = await errorOf(loadSigningKey(missing));
    expect(gone).toBeInstanceOf(BuildInputError);
    expect(gone.code).toBe('KEY_UNREADABLE');
    expect(gone.message).toContain(missing);

    expect((await errorOf(loadSigningKey(dir))).code).toBe('KEY_UNREADABLE');

    const damaged = join(dir, 'damaged');
    const text = readFileSync(join(dir, 'openssh-ed25519'), 'utf8').split('\n');
    text[3] = text[3]!.replace(/[A-Z]/, (c) => (c === 'A' ? 'B' : 'A'));
    writeFileSync(damaged, text.join('\n'));
    const bad = await errorOf(loadSigningKey(damaged));
    expect(bad).toBeInstanceOf(BuildInputError);
    expect(['KEY_NOT_OPENSSH', 'KEY_NOT_ED25519']).toContain(bad.code);
  });
});

describe('readAllowedSigners', () => {
  it('reports a missing trust file with its path and how to pass one', async () => {
    const path = join(dir, 'missing_allowed_signers');
    const err = await errorOf(readAllowedSigners(path));
    expect(err).toBeInstanceOf(TrustError);
    expect(err.code).toBe('TRUST_STORE_MISSING');
    expect(err.message).toContain(path);
    expect(err.hint).toMatch(/--trust FILE.*FERRY_TRUST/);
  });

  it('names the line and the file of a parse error', async () => {
    const path = join(dir, 'broken_allowed_signers');
    writeFileSync(path, '# ok\nferry ssh-ed25519 not-base64!\n');
    const err = await errorOf(readAllowedSigners(path));
    expect(err.code).toBe('TRUST_STORE_INVALID');
    expect(err.message).toMatch(/^allowed_signers line 2: /);
    expect(err.hint).toContain(path);
  });
});

describe('ferry keys generate', () => {
  async function runCommand(argv: string[]): Promise<{ result: unknown; stdout: string; stderr: string; exitCode: unknown }> {
    let stdout = '';
    let stderr = '';
    const out = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      stdout += chunk.toString();
      return true;
    });
    const err = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      stderr += chunk.toString();
      return true;
    });
    const before = process.exitCode;
    try {
      const result = await KeysGenerate.run(argv, repoRoot);
      return { result, stdout, stderr, exitCode: process.exitCode };
    } finally {
      out.mockRestore();
      err.mockRestore();
      process.exitCode = before;
    }
  }

  it('prints the allowed_signers line on stdout, which ssh-keygen -Y verify accepts', async () => {
    const path = join(dir, 'cmd-key');
    const { stdout, stderr } = await runCommand(['--out', path, '--comment', 'ci@build-02']);
    const line = stdout.trim();
    expect(line).toMatch(/^ferry namespaces="ferry-bundle" ssh-ed25519 AAAA\S+ ci@build-02$/);
    expect(stdout.split('\n').filter(Boolean)).toHaveLength(1);
    expect(stderr).toContain(path);
    expect(stderr).toContain(`${path}.pub`);

    const allowed = join(dir, 'cmd-allowed');
    writeFileSync(allowed, `${line}\n`);
    const data = join(dir, 'cmd-data');
    writeFileSync(data, 'bundle contents');
    sshKeygenOk(['-Y', 'sign', '-f', path, '-n', BUNDLE_NAMESPACE, data]);
    expect(
      sshKeygen(['-Y', 'verify', '-f', allowed, '-I', 'ferry', '-n', BUNDLE_NAMESPACE, '-s', `${data}.sig`], readFileSync(data)).status,
    ).toBe(0);
  });

  it('returns the documented JSON document with --json', async () => {
    const path = join(dir, 'cmd-json');
    const { stdout, stderr } = await runCommand(['--out', path, '--principal', 'builds@example.com', '--json']);
    const doc = JSON.parse(stdout) as { ok: boolean; result: Record<string, string> };
    expect(doc.ok).toBe(true);
    expect(Object.keys(doc.result).sort()).toEqual(['allowedSignersLine', 'fingerprint', 'privateKeyPath', 'publicKeyPath']);
    expect(doc.result.privateKeyPath).toBe(path);
    expect(doc.result.publicKeyPath).toBe(`${path}.pub`);
    expect(doc.result.allowedSignersLine).toMatch(/^builds@example\.com namespaces="ferry-bundle" ssh-ed25519 /);
    expect(sshKeygenOk(['-l', '-f', path])).toContain(doc.result.fingerprint);
    expect(stderr).toBe('');
  });

  it('fails with KEY_EXISTS and exit 10 when the key exists', async () => {
    const path = join(dir, 'cmd-json');
    const { stdout, exitCode } = await runCommand(['--out', path, '--json']);
    const doc = JSON.parse(stdout) as { ok: boolean; error: { code: string; exitCode: number; message: string } };
    expect(doc.ok).toBe(false);
    expect(doc.error.code).toBe('KEY_EXISTS');
    expect(doc.error.exitCode).toBe(10);
    expect(exitCode).toBe(10);
  });

  it('refuses a principal that would break the trust line', async () => {
    const { stdout, exitCode } = await runCommand(['--out', join(dir, 'cmd-bad'), '--principal', 'two words', '--json']);
    expect(JSON.parse(stdout).error.code).toBe('USAGE');
    expect(exitCode).toBe(2);
    expect(() => statSync(join(dir, 'cmd-bad'))).toThrow();
  });
});
