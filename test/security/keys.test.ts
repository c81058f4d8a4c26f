/**
 * Keys, class 4 of the campaign: several trusted signers, validity windows, revoked keys, the
 * namespace, and a warning when someone other than root can change the trust files. Runs through
 * the verify service in-process, with every flag and environment variable also once through the
 * built CLI; ssh-keygen checks that the revoked-keys file means the same to it.
 */
import { execFile } from 'node:child_process';
import { chmod, chown, mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { FerryError } from '../../src/errors.js';
import type { TrustOptions } from '../../src/services/bundle.js';
import type { Reporter } from '../../src/services/reporter.js';
import { verifyBundle } from '../../src/services/verify.js';
import { ferry, tmpDir } from '../support/engines.js';
import { copyBundle, createBundle, demoDefinition, makeKey, outcome, recordFigure, sign, signerLine, type Key } from './campaign.js';

const exec = promisify(execFile);

let work: string;
let bundle: string;
const keys: Record<'alice' | 'bob' | 'carol' | 'dave', Key> = {} as never;
const signedBy: Partial<Record<keyof typeof keys | 'alice-file-ns', string>> = {};

/** allowed_signers timestamps, in UTC. */
const stamp = (offsetDays: number) => `${new Date(Date.now() + offsetDays * 86_400_000).toISOString().replace(/[-:T]/g, '').slice(0, 12)}Z`;

interface Result {
  exit: number;
  code: string | null;
  principals: string[];
  warnings: { code: string; message: string }[];
}

async function verify(path: string, trust: TrustOptions): Promise<Result> {
  const warnings: Result['warnings'] = [];
  const reporter: Reporter = {
    log() {},
    warn: (w) => void warnings.push(w),
    progress: () => ({ overall: () => ({ update() {}, setTotal() {}, done() {} }), task: () => ({ update() {}, setTotal() {}, done() {} }), note() {}, stop() {} }),
  };
  try {
    const r = await verifyBundle(path, trust, reporter);
    return { exit: 0, code: null, principals: r.signer?.principals ?? [], warnings };
  } catch (e) {
    if (e instanceof FerryError) return { exit: e.exitCode, code: e.code, principals: [], warnings };
    throw e;
  }
}

async function file(name: string, text: string, mode = 0o644): Promise<string> {
  const path = join(work, name);
  await writeFile(path, text, { mode });
  await chmod(path, mode);
  return path;
}

beforeAll(async () => {
  work = await tmpDir('ferry-keys-');
  for (const name of ['alice', 'bob', 'carol', 'dave'] as const) keys[name] = await makeKey(work, name);
  bundle = await createBundle(await demoDefinition(join(work, 'def'), { stack: 'keys', version: '1.0.0', images: '1.0.0', port: 8081 }), join(work, 'alice.ferry'), keys.alice);
  signedBy.alice = bundle;
  for (const name of ['bob', 'carol', 'dave'] as const) {
    signedBy[name] = await copyBundle(bundle, join(work, `${name}.ferry`));
    await sign(signedBy[name]!, keys[name]);
  }
  signedBy['alice-file-ns'] = await copyBundle(bundle, join(work, 'alice-file-ns.ferry'));
  await sign(signedBy['alice-file-ns']!, keys.alice, 'file');
}, 300_000);

describe('4. keys', () => {
  const figure = { cases: 0, held: 0, findings: [] as string[] };
  const expectCase = (name: string, got: Result, exit: number, code: string | null, extra?: (r: Result) => boolean) => {
    figure.cases += 1;
    if (got.exit === exit && got.code === code && (extra?.(got) ?? true)) figure.held += 1;
    else figure.findings.push(`${name}: exit ${got.exit} ${got.code}, expected ${exit} ${code}`);
  };

  it('accepts any of several trusted signers, each with its principals, and only those', async () => {
    const trust = await file(
      'several',
      [
        `# build servers`,
        `alice namespaces="ferry-bundle" ${keys.alice.publicKeyLine}`,
        `bob,release-team namespaces="ferry-bundle" ${keys.bob.publicKeyLine}`,
        `carol namespaces="git" ${keys.carol.publicKeyLine}`,
        `ops namespaces="ferry-*" ${keys.alice.publicKeyLine}`,
        '',
      ].join('\n'),
    );
    const t = { trust, allowUnsigned: false, revoked: null };
    expectCase('signed by alice', await verify(signedBy.alice!, t), 0, null, (r) => r.principals.join() === 'alice,ops');
    expectCase('signed by bob', await verify(signedBy.bob!, t), 0, null, (r) => r.principals.join() === 'bob,release-team');
    expectCase('signed by carol, trusted for git only', await verify(signedBy.carol!, t), 3, 'TRUST_UNTRUSTED_KEY');
    expectCase('signed by dave, not in the file', await verify(signedBy.dave!, t), 3, 'TRUST_UNTRUSTED_KEY');
    expectCase('alice, for namespace "file"', await verify(signedBy['alice-file-ns']!, t), 3, 'TRUST_WRONG_NAMESPACE');
    const cli = outcome(await ferry(['bundle', 'verify', signedBy.bob!, '--trust', trust, '--json']));
    expectCase('CLI: signed by bob', { ...cli, principals: [] }, 0, null);
    expect(figure.findings).toEqual([]);
  });

  it('honours valid-after and valid-before in allowed_signers', async () => {
    const window = (k: Key, after: number | null, before: number | null) =>
      `${k === keys.alice ? 'alice' : 'bob'} namespaces="ferry-bundle"${after !== null ? `,valid-after="${stamp(after)}"` : ''}${before !== null ? `,valid-before="${stamp(before)}"` : ''} ${k.publicKeyLine}`;
    const cases: [string, string, keyof typeof signedBy, 0 | 3][] = [
      ['expired yesterday', window(keys.alice, -30, -1), 'alice', 3],
      ['valid from tomorrow', window(keys.alice, 1, null), 'alice', 3],
      ['valid since last month', window(keys.alice, -30, null), 'alice', 0],
      ['valid until next year', window(keys.alice, null, 365), 'alice', 0],
      ['inside a window', window(keys.alice, -1, 1), 'alice', 0],
      ['in 2020 only', `alice namespaces="ferry-bundle",valid-after="20200101Z",valid-before="20201231Z" ${keys.alice.publicKeyLine}`, 'alice', 3],
    ];
    for (const [name, line, by, exit] of cases) {
      const trust = await file(`window-${figure.cases}`, `${line}\n`);
      expectCase(name, await verify(signedBy[by]!, { trust, allowUnsigned: false, revoked: null }), exit, exit === 0 ? null : 'TRUST_UNTRUSTED_KEY');
    }
    // Rotation: the old key expired, the new one current; only the new signature passes.
    const rotation = await file('rotation', `${window(keys.alice, -365, -1)}\n${window(keys.bob, -1, null)}\n`);
    expectCase('rotated: new key', await verify(signedBy.bob!, { trust: rotation, allowUnsigned: false, revoked: null }), 0, null);
    expectCase('rotated: old key', await verify(signedBy.alice!, { trust: rotation, allowUnsigned: false, revoked: null }), 3, 'TRUST_UNTRUSTED_KEY');
    expect(figure.findings).toEqual([]);
  });

  it('refuses a revoked key even while the trust file lists it (--revoked, FERRY_REVOKED), failing closed', async () => {
    const trust = await file('both', `${signerLine(keys.alice)}\n${signerLine(keys.bob)}\n`);
    const t = (revoked?: string): TrustOptions => ({ trust, allowUnsigned: false, revoked: revoked ?? null });
    const pubLine = keys.alice.publicKeyLine;
    const revokedAlice = await file('revoked-alice', `# compromised 2026-11-20\n${pubLine}\n`);
    const revokedAsSigner = await file('revoked-signer-line', `alice namespaces="ferry-bundle" ${pubLine}\n`);
    const revokedBob = await file('revoked-bob', `${keys.bob.publicKeyLine}\n`);
    const empty = await file('revoked-empty', '# nothing revoked yet\n');
    const garbage = await file('revoked-garbage', `${pubLine}\nthis is not a key\n`);
    await exec('ssh-keygen', ['-q', '-k', '-f', join(work, 'krl'), `${keys.alice.path}.pub`]);

    expectCase('alice revoked (.pub line)', await verify(signedBy.alice!, t(revokedAlice)), 3, 'TRUST_KEY_REVOKED');
    expectCase('alice revoked (allowed_signers line)', await verify(signedBy.alice!, t(revokedAsSigner)), 3, 'TRUST_KEY_REVOKED');
    expectCase('bob revoked, alice signs', await verify(signedBy.alice!, t(revokedBob)), 0, null);
    expectCase('bob revoked, bob signs', await verify(signedBy.bob!, t(revokedBob)), 3, 'TRUST_KEY_REVOKED');
    expectCase('nothing revoked', await verify(signedBy.alice!, t(empty)), 0, null);
    expectCase('revoked file missing', await verify(signedBy.alice!, t(join(work, 'no-such-file'))), 3, 'TRUST_REVOKED_UNREADABLE');
    expectCase('revoked file with an unreadable line', await verify(signedBy.alice!, t(garbage)), 3, 'TRUST_REVOKED_INVALID');
    expectCase('a binary KRL', await verify(signedBy.alice!, t(join(work, 'krl'))), 3, 'TRUST_REVOKED_INVALID');

    const flag = outcome(await ferry(['bundle', 'verify', signedBy.alice!, '--trust', trust, '--revoked', revokedAlice, '--json']));
    expectCase('CLI --revoked', { ...flag, principals: [] }, 3, 'TRUST_KEY_REVOKED');
    const env = outcome(await ferry(['bundle', 'verify', signedBy.alice!, '--trust', trust, '--json'], { env: { FERRY_REVOKED: revokedAlice } }));
    expectCase('CLI FERRY_REVOKED', { ...env, principals: [] }, 3, 'TRUST_KEY_REVOKED');

    // The same file means the same to ssh-keygen -Y verify -r.
    const sshVerify = (revoked: string) =>
      new Promise<number>((resolve) => {
        const p = execFile('ssh-keygen', ['-Y', 'verify', '-f', trust, '-I', 'ferry', '-n', 'ferry-bundle', '-s', join(signedBy.alice!, 'ferry.json.sig'), '-r', revoked], (err) =>
          resolve(err ? ((err as { code?: number }).code ?? 1) : 0),
        );
        readFile(join(signedBy.alice!, 'ferry.json')).then((b) => p.stdin!.end(b));
      });
    expect(await sshVerify(revokedAlice)).not.toBe(0);
    expect(await sshVerify(revokedBob)).toBe(0);
    expect(figure.findings).toEqual([]);
  });

  it('warns (TRUST_FILE_WRITABLE) when someone other than root can change the trust or revoked-keys file', async () => {
    const line = `${signerLine(keys.alice)}\n`;
    const dir = (name: string, mode: number) => mkdir(join(work, name), { mode }).then(() => chmod(join(work, name), mode)).then(() => join(work, name));
    const safeDir = await dir('etc-ferry', 0o755);
    const cases: [string, () => Promise<TrustOptions>, boolean][] = [
      ['root-owned 0644 in a root-owned 0755 directory', async () => ({ trust: await writeAt(safeDir, 'ok', line, 0o644), allowUnsigned: false, revoked: null }), false],
      ['world-writable file', async () => ({ trust: await writeAt(safeDir, 'w666', line, 0o666), allowUnsigned: false, revoked: null }), true],
      ['group-writable file', async () => ({ trust: await writeAt(safeDir, 'w664', line, 0o664), allowUnsigned: false, revoked: null }), true],
      ['file owned by uid 1000', async () => { const p = await writeAt(safeDir, 'u1000', line, 0o644); await chown(p, 1000, 1000); return { trust: p, allowUnsigned: false, revoked: null }; }, true],
      ['world-writable directory', async () => ({ trust: await writeAt(await dir('open', 0o777), 'f', line, 0o644), allowUnsigned: false, revoked: null }), true],
      ['sticky world-writable directory (like /tmp)', async () => ({ trust: await writeAt(await dir('sticky', 0o1777), 'f', line, 0o644), allowUnsigned: false, revoked: null }), false],
      ['directory owned by uid 1000', async () => { const d = await dir('userdir', 0o755); await chown(d, 1000, 1000); return { trust: await writeAt(d, 'f', line, 0o644), allowUnsigned: false, revoked: null }; }, true],
      ['a symlink in a world-writable directory to a safe file', async () => { const d = await dir('linkdir', 0o777); const p = join(d, 'allowed_signers'); await symlink(join(safeDir, 'ok'), p); return { trust: p, allowUnsigned: false, revoked: null }; }, true],
      ['world-writable revoked-keys file', async () => ({ trust: join(safeDir, 'ok'), allowUnsigned: false, revoked: await writeAt(safeDir, 'revoked', '# none\n', 0o666) }), true],
    ];
    for (const [name, make, warns] of cases) {
      const r = await verify(signedBy.alice!, await make());
      const warned = r.warnings.some((w) => w.code === 'TRUST_FILE_WRITABLE');
      figure.cases += 1;
      if (r.exit === 0 && warned === warns) figure.held += 1;
      else figure.findings.push(`${name}: exit ${r.exit}, warned ${warned}, expected ${warns}`);
    }
    const cli = outcome(await ferry(['bundle', 'verify', signedBy.alice!, '--trust', join(safeDir, 'w666'), '--json']));
    figure.cases += 1;
    if (cli.exit === 0 && cli.warnings.some((w) => w.code === 'TRUST_FILE_WRITABLE' && w.message.includes('w666'))) figure.held += 1;
    else figure.findings.push(`CLI warning missing: ${JSON.stringify(cli)}`);
    const text = await ferry(['bundle', 'verify', signedBy.alice!, '--trust', join(safeDir, 'w666')]);
    expect(text.stderr).toMatch(/warning: the trust file .*w666 can be changed by others than root/);
    await recordFigure('keys', { cases: figure.cases, held: figure.held, verb: 'as required (accepted, refused or warned)', findings: figure.findings });
    expect(figure.findings).toEqual([]);
    await rm(join(work, 'userdir'), { recursive: true, force: true });
  });
});

async function writeAt(dir: string, name: string, text: string, mode: number): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text);
  await chmod(path, mode);
  return path;
}
