/**
 * ferry as a host gets it: the single executable that `npm run package` builds, run inside a mount
 * namespace where node, npm and this repository (sources, dist, node_modules) do not exist. The
 * whole journey runs from it against the real engines: keys, create, verify, install, status,
 * inventory, an upgrade built against that inventory, rollback. A future dynamic `import()` or a
 * file read from the repository that only works under `node bin/ferry` fails here.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFile, copyFile, cp, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COMMANDS } from '../../src/sea/commands.js';
import { removeStack } from '../security/campaign.js';
import { ferry, inTargetNetns, ROOT, run, type RunResult, tmpDir, uniqueName } from '../support/engines.js';
import { hostDocker, resetEngine, sshHostsDown, sshHostsUp, type SshHosts } from '../support/ssh-hosts.js';

const exec = promisify(execFile);

let work: string;
let exe: string;
let stack: string;
let trust: string;
let key: string;
let stateDir: string;
const port = 20000 + ((process.pid + 7919) % 20000);
// What to hide, found while node and npm are still there.
const hide = { node: '', npm: '' };

// Hides node (bind-mounting /dev/null over the binary), npm and global modules, and the repository.
const HIDE = [
  'set -e',
  'mount --bind /dev/null "$FERRY_HIDE_NODE"',
  'mount -t tmpfs -o size=1m ferry-hidden "$FERRY_HIDE_NPM"',
  'mount -t tmpfs -o size=1m ferry-hidden "$FERRY_HIDE_ROOT"',
  // Directories a command may write into, made fresh: an overlay keeps what is there readable and
  // sends every write to a scratch directory that goes with the namespace.
  'for d in $FERRY_OVERLAY; do',
  '  up=$(mktemp -d); mkdir "$up/u" "$up/w"',
  '  mount -t overlay ferry-overlay -o "lowerdir=$d,upperdir=$up/u,workdir=$up/w" "$d"',
  'done',
  'exec "$@"',
].join('\n');

/** Runs a command in a fresh mount namespace without node, npm and the repository. */
function hidden(command: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 300_000, overlay: string[] = []): Promise<RunResult> {
  return run('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', HIDE, 'hidden', ...command], {
    // Not the repository: a working directory inside it would still see it under the tmpfs.
    cwd: work,
    env: { FERRY_HIDE_ROOT: ROOT, FERRY_HIDE_NODE: hide.node, FERRY_HIDE_NPM: hide.npm, FERRY_OVERLAY: overlay.join(' '), NO_COLOR: '1', ...env },
    timeoutMs,
  });
}

const ferryHidden = (args: string[], env: NodeJS.ProcessEnv = {}) => hidden([exe, ...args], env);
const onBuild = { DOCKER_HOST: process.env.FERRY_BUILD_DOCKER_HOST };
const onTarget = { DOCKER_HOST: process.env.FERRY_TARGET_DOCKER_HOST };

async function sha256(file: string): Promise<string> {
  return createHash('sha256').update(await readFile(file)).digest('hex');
}

async function definition(version: string, name = stack, webPort = port): Promise<string> {
  const dir = join(work, `def-${name}-${version}`);
  await cp(join(ROOT, 'bundles/demo'), dir, { recursive: true });
  const edge1 = join(dir, 'hosts/edge-1.yaml');
  await writeFile(edge1, (await readFile(edge1, 'utf8')).replace('"8081:8080"', `"${webPort}:8080"`));
  const f = join(dir, 'ferry.yaml');
  await writeFile(f, (await readFile(f, 'utf8')).replace(/^name: .*$/m, `name: ${name}`).replace(/^version: .*$/m, `version: ${version}`));
  const compose = join(dir, 'compose.yaml');
  await writeFile(compose, (await readFile(compose, 'utf8')).replace(/ferry-demo\/(web|worker|smoke):1\.0\.0/g, `ferry-demo/$1:${version}`));
  return dir;
}

async function page(): Promise<string> {
  const r = await inTargetNetns('wget', ['-qO-', `http://127.0.0.1:${port}/`]);
  return r.code === 0 ? r.stdout : `unreachable (${r.code}): ${r.stderr}`;
}

beforeAll(async () => {
  work = await tmpDir('ferry-exe-');
  stack = uniqueName('exe').replace(/-/g, '').slice(0, 30);
  stateDir = join(work, 'state');
  hide.node = (await exec('readlink', ['-f', process.execPath])).stdout.trim();
  hide.npm = (await exec('npm', ['root', '-g'])).stdout.trim();
  const built = await run(process.execPath, [join(ROOT, 'scripts/package.mjs'), '--out', join(work, 'release'), '--quiet'], { timeoutMs: 600_000, check: true });
  exe = built.stdout.trim();
  await exec('bash', [join(ROOT, 'scripts/build-demo-images.sh'), '--version', '1.1.0'], { env: { ...process.env, ...onBuild } });
}, 900_000);

afterAll(async () => {
  if (!stack) return;
  // Containers, networks and ferry's tags of both stacks: the air-gapped engine is shared.
  for (const project of [stack, `${stack}fv`]) await removeStack(project);
});

describe('the single executable', () => {
  it('is one file whose name carries the version, with a sha256 beside it that matches', async () => {
    const { version } = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(exe).toBe(join(work, 'release', `ferry-${version}-linux-x64`));
    expect(await readFile(`${exe}.sha256`, 'utf8')).toBe(`${await sha256(exe)}  ferry-${version}-linux-x64\n`);
  });

  it('is rebuilt byte for byte from the same sources', async () => {
    const again = await run(process.execPath, [join(ROOT, 'scripts/package.mjs'), '--out', join(work, 'release-again'), '--quiet'], { timeoutMs: 600_000, check: true });
    expect(await sha256(again.stdout.trim())).toBe(await sha256(exe));
  }, 600_000);

  it('runs where node, npm and the repository do not exist (and they really do not)', async () => {
    const probe = await hidden(['sh', '-c', 'node --version; echo "node:$?"; npm --version; echo "npm:$?"; ls -A "$FERRY_HIDE_ROOT" | wc -l']);
    expect(probe.stdout).toMatch(/node:(126|127)/);
    expect(probe.stdout).toMatch(/npm:(126|127)/);
    expect(probe.stdout.trim().split('\n').pop()).toBe('0');
    const version = await ferryHidden(['--version']);
    expect(version.code, version.stderr).toBe(0);
    expect(version.stdout).toMatch(/^ferry\/\d+\.\d+\.\d+ linux-x64 node-v2[4-9]\./);
    // No experimental-feature warning from Node on a clean start.
    expect(version.stderr).toBe('');
  });

  it('answers --help for every command', async () => {
    for (const id of Object.keys(COMMANDS)) {
      const r = await ferryHidden([...id.split(':'), '--help']);
      expect(r.code, `${id}: ${r.stderr}`).toBe(0);
      expect(r.stdout, id).toContain('USAGE');
      expect(r.stdout, id).toContain(`ferry ${id.replace(':', ' ')}`);
    }
  });

  it('reads DOCKER_HOST=ssh://user@host:port (Node 26 refused the URL docker-modem builds for it)', async () => {
    // Port 1 on this machine: nothing listens, so the one attempt ends in a refused connection; the
    // failure before was the address itself ("Invalid port in url"). The whole path is tested
    // against a real host in ssh-hosts.test.ts.
    const r = await ferryHidden(['host', 'inventory', '--json'], { DOCKER_HOST: 'ssh://root@127.0.0.1:1', FERRY_RETRY: '0', SSH_AUTH_SOCK: '' });
    expect(r.code, r.stderr).toBe(6);
    const error = JSON.parse(r.stdout).error as { code: string; message: string };
    expect(error.code).toBe('ENGINE_UNREACHABLE');
    expect(error.message).toMatch(/ECONNREFUSED/);
    expect(error.message).not.toMatch(/Invalid port|url/i);
  });

  it('needs no C library newer than glibc 2.28', async () => {
    const { stdout } = await exec('objdump', ['-T', exe], { maxBuffer: 64 * 1024 * 1024 });
    const versions = [...new Set(stdout.match(/GLIBC_[0-9.]+/g) ?? [])].map((v) => v.slice('GLIBC_'.length).split('.').map(Number));
    expect(versions.length).toBeGreaterThan(0);
    const newest = versions.sort((a, b) => a[0]! - b[0]! || (a[1] ?? 0) - (b[1] ?? 0)).pop()!;
    expect(newest[0]).toBe(2);
    expect(newest[1]).toBeLessThanOrEqual(28);
  });
});

describe('the journey, from the executable only', () => {
  let r1: string;
  let r2: string;
  let inventory: string;

  it('makes a key and a bundle on the build server (zstd compression from the carried addon)', async () => {
    key = join(work, 'signer');
    const gen = await ferryHidden(['keys', 'generate', '--out', key, '--json']);
    expect(gen.code, gen.stderr).toBe(0);
    trust = join(work, 'allowed_signers');
    await writeFile(trust, `${(JSON.parse(gen.stdout) as { result: { allowedSignersLine: string } }).result.allowedSignersLine}\n`);
    r1 = join(work, 'r1.ferry');
    const trace = join(work, 'create.strace');
    // --no-cache: earlier test files fill the run's layer cache, and a cached layer is not compressed.
    const created = await hidden(['strace', '-f', '-qq', '-e', 'trace=openat', '-o', trace, exe, 'bundle', 'create', await definition('1.0.0'), '--out', r1, '--sign-key', key, '--sequence', '1', '--no-cache'], onBuild);
    expect(created.code, created.stderr).toBe(0);
    // The compressor is native: it is written to a private directory, loaded, removed.
    expect(await readFile(trace, 'utf8')).toMatch(/ferry-native-[^"]*\/zstd-napi\.node/);
  });

  it('verifies and installs without ever loading a native addon', async () => {
    for (const [name, args, env] of [
      ['verify', ['bundle', 'verify', r1, '--trust', trust], {}],
      ['install', ['bundle', 'install', r1, '--trust', trust, '--host', 'edge-1', '--state-dir', stateDir, '--wait-timeout', '60'], onTarget],
    ] as const) {
      const trace = join(work, `${name}.strace`);
      const r = await hidden(['strace', '-f', '-qq', '-e', 'trace=openat', '-o', trace, exe, ...args], env);
      expect(r.code, `${name}: ${r.stderr}`).toBe(0);
      const opened = await readFile(trace, 'utf8');
      expect(opened, name).toContain('r1.ferry');
      expect(opened, name).not.toMatch(/ferry-native-|\.node"/);
    }
    expect(await page()).toContain('1.0.0');
  });

  it('shows status and writes an inventory', async () => {
    const status = await ferryHidden(['host', 'status', stack, '--state-dir', stateDir, '--json'], onTarget);
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.stringify(JSON.parse(status.stdout))).toContain('1.0.0');
    inventory = join(work, 'edge-1.inventory.json');
    const inv = await ferryHidden(['host', 'inventory', '--host', 'edge-1', '--out', inventory, '--state-dir', stateDir], onTarget);
    expect(inv.code, inv.stderr).toBe(0);
    expect(await readFile(inventory, 'utf8')).toContain('edge-1');
  });

  it('upgrades with a bundle built against that inventory, then rolls back', async () => {
    r2 = join(work, 'r2.ferry');
    const created = await ferryHidden(['bundle', 'create', await definition('1.1.0'), '--out', r2, '--sign-key', key, '--sequence', '2', '--base', inventory], onBuild);
    expect(created.code, created.stderr).toBe(0);
    const installed = await ferryHidden(['bundle', 'install', r2, '--trust', trust, '--host', 'edge-1', '--state-dir', stateDir, '--wait-timeout', '60'], onTarget);
    expect(installed.code, installed.stderr).toBe(0);
    expect(await page()).toContain('1.1.0');
    const back = await ferryHidden(['host', 'rollback', stack, '--state-dir', stateDir, '--wait-timeout', '60'], onTarget);
    expect(back.code, back.stderr).toBe(0);
    expect(await page()).toContain('1.0.0');
  });
});

describe('a fleet, from the executable', () => {
  let hosts: SshHosts | undefined;
  afterAll(async () => {
    if (!hosts) return;
    for (const n of [1, 2]) await resetEngine(n);
    await sshHostsDown(hosts);
  }, 300_000);

  // Two hosts at once share one read of each layer, decompressed on a worker thread: inside the
  // executable that thread has only node:zlib's zstd (under `node bin/ferry` on Node 20, zstd-napi).
  it('loads two SSH hosts at once, each layer read once on its worker thread, no native addon', async () => {
    hosts = await sshHostsUp(2);
    for (const n of [1, 2]) await resetEngine(n);
    const r1 = join(work, 'r1.ferry');
    const trace = join(work, 'fleet.strace');
    const r = await hidden(
      ['strace', '-f', '-qq', '-e', 'trace=openat', '-o', trace, exe, 'bundle', 'install', r1, '--trust', trust, '--no-up', '--ssh', hosts.targets.slice(0, 2).join(','), '--parallel', '2', '-i', hosts.identity, '--known-hosts', hosts.knownHosts, '--ssh-config', 'none', '--json'],
      { SSH_AUTH_SOCK: '' },
    );
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout) as { result: { hosts: { result: { outcome: string } }[]; sharedLayers: { layers: number; fed: number; alone: number } } };
    expect(doc.result.hosts.map((h) => h.result.outcome)).toEqual(['loaded', 'loaded']);
    expect(doc.result.sharedLayers.layers).toBeGreaterThan(0);
    expect(doc.result.sharedLayers).toMatchObject({ fed: doc.result.sharedLayers.layers * 2, alone: 0 });
    const manifest = JSON.parse(await readFile(join(r1, 'ferry.json'), 'utf8')) as { images: { id: string }[] };
    for (const n of [1, 2]) {
      const ids = await hostDocker(hosts, n).run(['image', 'inspect', '--format', '{{.Id}}', ...manifest.images.map((im) => im.id)]);
      expect(ids.stdout.trim().split('\n').sort(), `host ${n}: ${ids.stderr}`).toEqual(manifest.images.map((im) => im.id).sort());
    }
    expect(await readFile(trace, 'utf8')).not.toMatch(/ferry-native-|\.node"/);
  }, 300_000);
});

describe('the first visit: the stick carries ferry, stock tools check it, ferry sets itself up', () => {
  let stick: string;
  const firstVisit = () => `${stack}fv`;
  const fvPort = port + 1;

  it('create --with-ferry carries the running executable, listed, summed and signed like any file', async () => {
    stick = join(work, 'stick.ferry');
    const created = await ferryHidden(['bundle', 'create', await definition('1.0.0', firstVisit(), fvPort), '--out', stick, '--sign-key', key, '--sequence', '1', '--with-ferry'], onBuild);
    expect(created.code, created.stderr).toBe(0);
    const digest = await sha256(exe);
    expect((await stat(join(stick, 'ferry'))).mode & 0o777).toBe(0o755);
    expect(await sha256(join(stick, 'ferry'))).toBe(digest);
    const manifest = JSON.parse(await readFile(join(stick, 'ferry.json'), 'utf8')) as { ferry?: { path: string; sha256: string; version: string } };
    expect(manifest.ferry).toMatchObject({ path: 'ferry', sha256: `sha256:${digest}` });
    expect(await readFile(join(stick, 'SHA256SUMS'), 'utf8')).toContain(`${digest}  ferry\n`);
    expect(await readFile(join(stick, 'README.txt'), 'utf8')).toContain('./ferry host setup');
    const inspect = await ferryHidden(['bundle', 'inspect', stick, '--trust', trust]);
    expect(inspect.code, inspect.stderr).toBe(0);
    expect(inspect.stdout).toContain(`ferry executable ${manifest.ferry!.version}`);
  });

  it('on a host with nothing but Docker and OpenSSH: check with ssh-keygen and sha256sum, ./ferry host setup, ferry bundle install', async () => {
    const fvState = join(work, 'state-first-visit');
    const script = [
      'set -e',
      'cd "$STICK"',
      'if command -v ferry || test -e /etc/ferry/allowed_signers; then echo "not a first visit"; exit 99; fi',
      // Exactly what README.txt on the stick says, before anything on it runs.
      'ssh-keygen -Y verify -f "$TRUST" -I ferry -n ferry-bundle -s SHA256SUMS.sig < SHA256SUMS',
      'sha256sum --quiet -c SHA256SUMS',
      './ferry host setup --trust "$TRUST" --state-dir "$STATE"',
      'stat -c "mode %a %U %n" /usr/local/bin/ferry /etc/ferry/allowed_signers',
      './ferry host setup --trust "$TRUST" --state-dir "$STATE" --json > "$WORK/setup-again.json"',
      // From here on the installed ferry and the host's own trust file (the default --trust).
      'cd /',
      'ferry bundle install "$STICK" --host edge-1 --state-dir "$STATE" --wait-timeout 60',
      'ferry host inventory --host edge-1 --state-dir "$STATE" --out "$WORK/first-visit.inventory.json"',
    ].join('\n');
    const r = await hidden(['sh', '-c', script], { ...onTarget, STICK: stick, TRUST: trust, STATE: fvState, WORK: work, PATH: '/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' }, 300_000, ['/usr/local', '/etc']);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toContain('Good "ferry-bundle" signature');
    expect(r.stdout).toMatch(/mode 755 root \/usr\/local\/bin\/ferry/);
    expect(r.stdout).toMatch(/mode 644 root \/etc\/ferry\/allowed_signers/);
    const again = JSON.parse(await readFile(join(work, 'setup-again.json'), 'utf8')) as { result: { executable: { action: string }; trust: { action: string } } };
    expect(again.result.executable.action).toBe('unchanged');
    expect(again.result.trust.action).toBe('unchanged');
    const inv = JSON.parse(await readFile(join(work, 'first-visit.inventory.json'), 'utf8')) as { tool: { executable?: { sha256: string } } };
    expect(inv.tool.executable).toEqual({ sha256: `sha256:${await sha256(exe)}` });
    const served = await inTargetNetns('wget', ['-qO-', `http://127.0.0.1:${fvPort}/`]);
    expect(served.stdout).toContain('1.0.0');
  });

  it('the next bundle built against that inventory leaves the executable out, and says so', async () => {
    const next = join(work, 'next.ferry');
    const created = await ferryHidden(['bundle', 'create', await definition('1.1.0', firstVisit(), fvPort), '--out', next, '--sign-key', key, '--sequence', '2', '--with-ferry', '--base', join(work, 'first-visit.inventory.json')], onBuild);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stderr).toMatch(/ferry executable left out: .*edge-1.* has it/);
    await expect(stat(join(next, 'ferry'))).rejects.toThrow();
    expect((JSON.parse(await readFile(join(next, 'ferry.json'), 'utf8')) as { ferry?: unknown }).ferry).toBeUndefined();
  });

  it('host setup refuses an executable the signed bundle does not list, and installs nothing', async () => {
    const tampered = join(work, 'ferry-tampered');
    await copyFile(exe, tampered);
    await appendFile(tampered, Buffer.from('x'));
    const bin = join(work, 'bin-refused');
    const etc = join(work, 'etc-refused');
    const r = await ferry(['host', 'setup', '--trust', trust, '--bundle', stick, '--executable', tampered, '--bin-dir', bin, '--config-dir', etc, '--state-dir', join(work, 'state-refused'), '--json']);
    expect(r.code, r.stderr).toBe(3);
    expect((JSON.parse(r.stdout) as { error: { code: string } }).error.code).toBe('SETUP_EXECUTABLE_UNVERIFIED');
    for (const path of [bin, etc]) await expect(stat(path)).rejects.toThrow();
  });

  it('host setup under node needs --executable, and says so', async () => {
    const r = await ferry(['host', 'setup', '--trust', trust, '--bin-dir', join(work, 'bin-node'), '--config-dir', join(work, 'etc-node'), '--json']);
    expect(r.code).toBe(2);
    expect((JSON.parse(r.stdout) as { error: { code: string } }).error.code).toBe('SETUP_NEEDS_EXECUTABLE');
  });
});
