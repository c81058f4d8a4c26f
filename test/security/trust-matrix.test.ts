/**
 * The trust campaign by command, not by function: every trust case (trusted, untrusted, revoked by
 * --revoked and by FERRY_REVOKED, an expired validity window, the wrong namespace, unsigned with and
 * without --allow-unsigned) runs through every command that trusts a bundle, through the built CLI:
 * verify, inspect, diff, install on this machine, install over SSH, a fleet of two SSH hosts, and
 * host setup (which refuses unsigned bundles even with --allow-unsigned).
 *
 * A refusal must be the same one everywhere (exit 3, the same code) and leave nothing behind: no
 * state directory, no staged copy, no image on the engine. Which commands trust a bundle is read
 * from the CLI itself (every command with a --trust flag), so a new one fails this file until it
 * joins the matrix.
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Config } from '@oclif/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ferry, ROOT, targetDocker, tmpDir, uniqueName, type DockerClient, type RunResult } from '../support/engines.js';
import { hostDocker, sshHostsDown, sshHostsUp, type SshHosts } from '../support/ssh-hosts.js';
import { buildDemoImages, copyBundle, createBundle, demoDefinition, engineSnapshot, makeKey, outcome, recordFigure, sign, signerLine, unsign, type Key } from './campaign.js';

let work: string;
let hosts: SshHosts;
let home: string;
let stack: string;
let imageIds: string[];
const keys = {} as Record<'alice' | 'dave', Key>;
const bundles = {} as Record<'alice' | 'dave' | 'aliceFileNs' | 'unsigned', string>;
const files = {} as Record<'trust' | 'expired' | 'revoked' | 'executable', string>;

interface Case {
  name: string;
  bundle: () => string;
  /** Trust flags, as a user would type them. */
  args: () => string[];
  env?: () => NodeJS.ProcessEnv;
  /** The code every command refuses with (exit 3), or null: accepted. */
  expect: string | null;
}

const stamp = (offsetDays: number) => `${new Date(Date.now() + offsetDays * 86_400_000).toISOString().replace(/[-:T]/g, '').slice(0, 12)}Z`;

const CASES: Case[] = [
  { name: 'trusted signer', bundle: () => bundles.alice, args: () => ['--trust', files.trust], expect: null },
  { name: 'untrusted signer', bundle: () => bundles.dave, args: () => ['--trust', files.trust], expect: 'TRUST_UNTRUSTED_KEY' },
  { name: 'revoked key (--revoked)', bundle: () => bundles.alice, args: () => ['--trust', files.trust, '--revoked', files.revoked], expect: 'TRUST_KEY_REVOKED' },
  { name: 'revoked key (FERRY_REVOKED)', bundle: () => bundles.alice, args: () => ['--trust', files.trust], env: () => ({ FERRY_REVOKED: files.revoked }), expect: 'TRUST_KEY_REVOKED' },
  { name: 'validity window expired', bundle: () => bundles.alice, args: () => ['--trust', files.expired], expect: 'TRUST_UNTRUSTED_KEY' },
  { name: 'wrong namespace', bundle: () => bundles.aliceFileNs, args: () => ['--trust', files.trust], expect: 'TRUST_WRONG_NAMESPACE' },
  { name: 'unsigned', bundle: () => bundles.unsigned, args: () => ['--trust', files.trust], expect: 'TRUST_UNSIGNED' },
  { name: 'unsigned, --allow-unsigned', bundle: () => bundles.unsigned, args: () => ['--trust', files.trust, '--allow-unsigned'], expect: null },
];

interface Decision {
  /** null: accepted; else the code it was refused with. */
  code: string | null;
  /** Anything that contradicts the decision (wrong exit, something left behind). */
  problems: string[];
}

/** How a refusal shows on the command line: exit 3 and the code, in --json. */
function decided(r: RunResult): Decision {
  const o = outcome(r);
  if (o.exit === 0) return { code: null, problems: [] };
  return { code: o.code, problems: o.exit === 3 ? [] : [`exit ${o.exit} (${o.code}): ${o.text.slice(0, 300)}`] };
}

/** Engines, state directories and staging areas an install may touch, before and after. */
async function untouched(run: () => Promise<RunResult>, engines: DockerClient[], stateDirs: string[]): Promise<Decision> {
  const before = await Promise.all(engines.map((d) => engineSnapshot(stack, imageIds, d)));
  const d = decided(await run());
  if (d.code === null) return d;
  const after = await Promise.all(engines.map((e) => engineSnapshot(stack, imageIds, e)));
  engines.forEach((e, i) => {
    if (after[i] !== before[i]) d.problems.push(`engine ${e.host} changed:\n${before[i]}\n→\n${after[i]}`);
  });
  for (const dir of stateDirs) if (existsSync(dir)) d.problems.push(`state written at ${dir}: ${(await readdir(dir)).join(', ')}`);
  return d;
}

let caseNo = 0;
const env = (c: Case) => ({ HOME: home, SSH_AUTH_SOCK: '', ...c.env?.() });
const sshArgs = () => ['-i', hosts.identity, '--known-hosts', hosts.knownHosts];
/** A state directory of its own per run, named on the SSH host (/var/lib/ferry is host N's h<N>/state here). */
const remoteState = (n: number, name: string) => ({ remote: `/var/lib/ferry/${name}`, local: join(hosts.dir, `h${n}/state`, name) });

/** One runner per way a command trusts a bundle; keys are the command ids plus a variant. */
const MODES: Record<string, { command: string; run: (c: Case) => Promise<Decision>; expect?: (c: Case) => string | null }> = {
  verify: {
    command: 'bundle:verify',
    run: async (c) => decided(await ferry(['bundle', 'verify', c.bundle(), ...c.args(), '--json'], { env: env(c) })),
  },
  // inspect shows a bundle whatever it is (exit 0), and says whether verify and install would accept it.
  inspect: {
    command: 'bundle:inspect',
    run: async (c) => {
      const r = await ferry(['bundle', 'inspect', c.bundle(), ...c.args(), '--json'], { env: env(c) });
      if (r.code !== 0) return { code: `exit ${r.code}`, problems: [r.stdout + r.stderr] };
      const sig = JSON.parse(r.stdout).result.signature as { trusted: boolean | null; code: string | null };
      const problems = sig.trusted === null ? ['the signature was not judged'] : sig.trusted !== (sig.code === null) ? [`trusted ${sig.trusted} with code ${sig.code}`] : [];
      return { code: sig.code, problems };
    },
  },
  // diff, like inspect, compares whatever it is given (exit 0) and shows each side's verdict: here one
  // bundle on both sides, so both verdicts must be verify's and agree.
  diff: {
    command: 'bundle:diff',
    run: async (c) => {
      const r = await ferry(['bundle', 'diff', c.bundle(), c.bundle(), ...c.args(), '--json'], { env: env(c) });
      if (r.code !== 0) return { code: `exit ${r.code}`, problems: [r.stdout + r.stderr] };
      const res = JSON.parse(r.stdout).result as Record<'old' | 'new', { signature: { trusted: boolean | null; code: string | null } }>;
      const sig = res.new.signature;
      const problems = sig.trusted === null ? ['the signature was not judged'] : sig.trusted !== (sig.code === null) ? [`trusted ${sig.trusted} with code ${sig.code}`] : [];
      if (res.old.signature.code !== sig.code) problems.push(`the old side's verdict ${res.old.signature.code} differs from the new side's ${sig.code} for the same bundle`);
      return { code: sig.code, problems };
    },
  },
  'install (this machine)': {
    command: 'bundle:install',
    run: async (c) => {
      const state = join(work, `state-${++caseNo}`);
      const args = ['bundle', 'install', c.bundle(), ...c.args(), '--host', 'edge-1', '--state-dir', state, '--no-up', '--json'];
      return untouched(() => ferry(args, { env: { ...env(c), DOCKER_HOST: targetDocker().host } }), [targetDocker()], [state]);
    },
  },
  'install --ssh': {
    command: 'bundle:install',
    run: async (c) => {
      const s = remoteState(1, `matrix-${process.pid}-${++caseNo}`);
      const args = ['bundle', 'install', c.bundle(), ...c.args(), '--ssh', hosts.targets[0]!, ...sshArgs(), '--state-dir', s.remote, '--no-up', '--json'];
      return untouched(() => ferry(args, { env: env(c), timeoutMs: 300_000 }), [hostDocker(hosts, 1)], [s.local]);
    },
  },
  'install, a fleet of two': {
    command: 'bundle:install',
    run: async (c) => {
      const name = `matrix-${process.pid}-${++caseNo}`;
      const args = ['bundle', 'install', c.bundle(), ...c.args(), '--ssh', hosts.targets.slice(0, 2).join(','), ...sshArgs(), '--state-dir', `/var/lib/ferry/${name}`, '--parallel', '2', '--no-up', '--json'];
      return untouched(() => ferry(args, { env: env(c), timeoutMs: 300_000 }), [hostDocker(hosts, 1), hostDocker(hosts, 2)], [remoteState(1, name).local, remoteState(2, name).local]);
    },
  },
  // A first visit: the executable the bundle carries becomes the host's ferry, the trust file its
  // allowed_signers. A refusal installs neither and makes no state directory.
  'host setup': {
    command: 'host:setup',
    // What setup installs runs as root from now on: unsigned is refused even with --allow-unsigned.
    expect: (c) => (c.name === 'unsigned, --allow-unsigned' ? 'TRUST_UNSIGNED' : c.expect),
    run: async (c) => {
      const dir = join(work, `setup-${++caseNo}`);
      const placed = [join(dir, 'bin'), join(dir, 'etc'), join(dir, 'state')];
      const args = ['host', 'setup', ...c.args(), '--bundle', c.bundle(), '--executable', files.executable, '--bin-dir', placed[0]!, '--config-dir', placed[1]!, '--state-dir', placed[2]!, '--json'];
      const d = decided(await ferry(args, { env: env(c) }));
      if (d.code !== null) for (const p of placed) if (existsSync(p)) d.problems.push(`setup refused but made ${p}`);
      return d;
    },
  },
};

beforeAll(async () => {
  hosts = await sshHostsUp(2);
  work = await tmpDir('ferry-trust-matrix-');
  home = join(work, 'home');
  await mkdir(home, { recursive: true });
  stack = uniqueName('trustmatrix').replace(/-/g, '').slice(0, 30);
  // Images of a version of our own: their IDs are on no engine yet, so a load would show.
  const version = `tm${process.pid}`;
  imageIds = Object.values(await buildDemoImages(version));
  keys.alice = await makeKey(work, 'alice');
  keys.dave = await makeKey(work, 'dave');
  // host setup needs a bundle that carries a ferry executable; the signature is what is under test,
  // so a stand-in that answers --version as ferry does is enough (the real one: e2e/executable).
  files.executable = join(work, 'ferry-stand-in');
  await writeFile(files.executable, '#!/bin/sh\necho "ferry/0.0.0-matrix linux-x64 node-v26.0.0"\n', { mode: 0o755 });
  bundles.alice = await createBundle(await demoDefinition(join(work, 'def'), { stack, version: '1.0.0', images: version, port: 8081 }), join(work, 'alice.ferry'), keys.alice, ['--ferry-executable', files.executable]);
  bundles.dave = await copyBundle(bundles.alice, join(work, 'dave.ferry'));
  await sign(bundles.dave, keys.dave);
  bundles.aliceFileNs = await copyBundle(bundles.alice, join(work, 'alice-file-ns.ferry'));
  await sign(bundles.aliceFileNs, keys.alice, 'file');
  bundles.unsigned = await copyBundle(bundles.alice, join(work, 'unsigned.ferry'));
  await unsign(bundles.unsigned);
  files.trust = join(work, 'allowed_signers');
  await writeFile(files.trust, `${signerLine(keys.alice)}\n`);
  files.expired = join(work, 'allowed_signers.expired');
  await writeFile(files.expired, `ferry namespaces="ferry-bundle",valid-after="${stamp(-30)}",valid-before="${stamp(-1)}" ${keys.alice.publicKeyLine}\n`);
  files.revoked = join(work, 'revoked_keys');
  await writeFile(files.revoked, `# compromised\n${keys.alice.publicKeyLine}\n`);
}, 600_000);

afterAll(async () => {
  await sshHostsDown(hosts);
}, 300_000);

describe('trust matrix: every trust case through every command that trusts a bundle', () => {
  it('covers every command that takes --trust', async () => {
    const config = await Config.load(ROOT);
    const trusting = config.commands.filter((c) => 'trust' in (c.flags ?? {})).map((c) => c.id);
    expect(trusting.length).toBeGreaterThan(0);
    expect([...new Set(Object.values(MODES).map((m) => m.command))].sort(), 'a command takes --trust but is not in this matrix').toEqual(trusting.sort());
  });

  it('each command decides each case as verify does, and a refusal leaves nothing behind', async () => {
    const findings: string[] = [];
    let cases = 0;
    for (const c of CASES) {
      for (const [mode, m] of Object.entries(MODES)) {
        cases += 1;
        const d = await m.run(c);
        const expected = m.expect ? m.expect(c) : c.expect;
        if (d.code !== expected) findings.push(`${mode} / ${c.name}: ${d.code ?? 'accepted'}, expected ${expected ?? 'accepted'}`);
        for (const p of d.problems) findings.push(`${mode} / ${c.name}: ${p}`);
      }
    }
    await recordFigure('trust-matrix', { cases, held: cases - new Set(findings.map((f) => f.split(':')[0])).size, verb: 'decided as verify does, leaving nothing behind on refusal', findings });
    expect(findings).toEqual([]);
  }, 900_000);
});
