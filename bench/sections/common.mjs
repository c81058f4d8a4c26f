// Helpers for the bench sections in this directory (install, delta). The same contract as the
// helpers in bench/run.mjs — a benchmarked command's output never passes through this process,
// CPU and peak RSS come from GNU time — kept here so that a section file needs nothing from
// run.mjs beyond the `ctx` it is called with. Only node: modules.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, openSync, closeSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const FERRY = join(ROOT, 'bin', 'ferry');
export const GNU_TIME = '/usr/bin/time';
export const MB = 1e6;

/**
 * A step that could not run (no engine, a command failed). run.mjs prints an error's stack; this
 * one's stack is its message, so the report shows the reason rather than a trace through helpers.
 */
export class SectionError extends Error {
  constructor(message) {
    super(message);
    this.stack = message;
  }
}

export const fixed = (digits) => (v) => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(digits) : '-');

/**
 * Runs a command to completion; stdout captured unless redirected (`stdout: fd|'ignore'`) or
 * consumed by `onStdout` (to count bytes without holding them).
 */
export function run(cmd, args, { stdout = 'pipe', env, cwd = ROOT, onStdout } = {}) {
  return new Promise((resolvePromise, reject) => {
    const started = performance.now();
    const child = spawn(cmd, args, { cwd, env: env ? { ...process.env, ...env } : process.env, stdio: ['ignore', stdout, 'pipe'] });
    const out = [];
    const err = [];
    child.stdout?.on('data', (b) => (onStdout ? onStdout(b) : out.push(b)));
    child.stderr.on('data', (b) => err.push(b));
    child.on('error', (e) => reject(new SectionError(`${cmd}: ${e.message}`)));
    child.on('close', (code, signal) => {
      const ms = performance.now() - started;
      const result = { code, ms, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') };
      if (code === 0) resolvePromise(result);
      else reject(new SectionError(`${[cmd, ...args].join(' ').slice(0, 300)} failed (${signal ?? `exit ${code}`}):\n${(result.stderr.trim() || result.stdout.trim()).slice(-2000)}`));
    });
  });
}

/**
 * Wall time, CPU time (user + system of the command and the children it waited for) and peak RSS
 * (GNU time's %M) of one command.
 */
export async function runMeasured(cmd, args, opts = {}) {
  const statsFile = join(tmpdir(), `ferry-bench-time-${process.pid}-${Math.random().toString(36).slice(2)}`);
  try {
    const r = await run(GNU_TIME, ['-f', '%M %U %S', '-o', statsFile, cmd, ...args], opts);
    const [kb, user, sys] = readFileSync(statsFile, 'utf8').trim().split('\n').at(-1).split(' ').map(Number);
    return { ...r, rssMB: (kb * 1024) / MB, cpuS: user + sys };
  } finally {
    rmSync(statsFile, { force: true });
  }
}

/** A measured bash pipeline; pipefail so a failing `docker save` is not hidden by gzip. */
export function sh(script, args = [], opts = {}) {
  return runMeasured('bash', ['-o', 'pipefail', '-c', script, 'bench', ...args], opts);
}

/** `docker save IDS | FILTER > OUT`, measured, with the size of OUT, which is removed after. */
export async function saveThrough(ids, filter, out, opts = {}) {
  const r = await sh(`docker save "$@" | ${filter} > "$OUT"`, ids, { ...opts, env: { ...opts.env, OUT: out } });
  const bytes = statSync(out).size;
  rmSync(out);
  return { ...r, bytes };
}

/**
 * Seconds until the first byte of `docker save IDS` arrives. An engine with the classic image store
 * writes the whole export into a temporary directory first and only then streams it; nothing
 * downstream of a save can start before this.
 */
export async function saveFirstByte(ids, opts = {}) {
  const t0 = performance.now();
  let first = 0;
  await run('docker', ['save', ...ids], { ...opts, onStdout: () => (first ||= performance.now()) });
  return (first - t0) / 1000;
}

/** Bytes of the archive `docker save IDS` writes (read and counted, not kept). */
export async function saveBytes(ids, opts = {}) {
  let bytes = 0;
  await run('docker', ['save', ...ids], { ...opts, onStdout: (b) => (bytes += b.length) });
  return bytes;
}

/**
 * `ferry bundle create DEF --out OUT --sign-key KEY --json ARGS…`, measured: wall, CPU, peak RSS,
 * the bundle's size (every file) and what its manifest holds. The bundle is removed after unless
 * `keep`.
 */
export async function createBundle(def, out, key, args = [], { keep = false, ...opts } = {}) {
  const r = await runMeasured(process.execPath, [FERRY, 'bundle', 'create', def, '--out', out, '--sign-key', key, '--json', ...args], opts);
  const bytes = await dirBytes(out);
  const manifest = JSON.parse(readFileSync(join(out, 'ferry.json'), 'utf8'));
  if (!keep) rmSync(out, { recursive: true, force: true });
  const layers = new Map(manifest.images.flatMap((im) => im.layers.map((l) => [l.diffId, l.size])));
  return { ms: r.ms, cpuS: r.cpuS, rssMB: r.rssMB, bytes, images: manifest.images.length, layers: layers.size, layerBytes: [...layers.values()].reduce((a, b) => a + b, 0), reportedMs: JSON.parse(r.stdout).result?.durationMs };
}

/** stdout straight to /dev/null by file descriptor, with no pipe to drain. */
export async function runToDevNull(cmd, args, opts = {}) {
  const fd = openSync('/dev/null', 'w');
  try {
    return await runMeasured(cmd, args, { ...opts, stdout: fd });
  } finally {
    closeSync(fd);
  }
}

/** stdout into a file by file descriptor: `cmd > file`, measured. */
export async function runToFile(cmd, args, file, opts = {}) {
  const fd = openSync(file, 'w');
  try {
    return await runMeasured(cmd, args, { ...opts, stdout: fd });
  } finally {
    closeSync(fd);
  }
}

/** `ferry …` as a user runs it, measured; `--json` output parsed. */
export async function ferry(args, opts = {}) {
  const r = await runMeasured(process.execPath, [FERRY, ...args, '--json'], opts);
  let doc;
  try {
    doc = JSON.parse(r.stdout);
  } catch {
    throw new SectionError(`ferry ${args.join(' ')} printed no JSON document:\n${r.stdout.slice(-2000)}`);
  }
  return { ...r, result: doc.result, warnings: doc.warnings ?? [] };
}

export async function dirBytes(dir) {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) total += await dirBytes(p);
    else if (entry.isFile()) total += (await stat(p)).size;
  }
  return total;
}

export async function sha256File(path) {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk);
  return `sha256:${hash.digest('hex')}`;
}

/** Chain IDs of a layer stack (diffIDs base first), as Docker computes them. */
export function chainIds(diffIds) {
  const out = [];
  for (const d of diffIds) out.push(out.length === 0 ? d : `sha256:${createHash('sha256').update(`${out.at(-1)} ${d}`).digest('hex')}`);
  return out;
}

/** Every tool a section needs, with the package that brings it; and a built ferry. */
export async function requireTools(tools) {
  if (!existsSync(GNU_TIME)) throw new SectionError(`${GNU_TIME} not found: GNU time measures peak RSS (apt-get install time, done by scripts/setup.sh)`);
  if (!existsSync(join(ROOT, 'dist', 'commands', 'bundle', 'create.js'))) throw new SectionError('ferry is not built; run `npm run build` first');
  for (const [tool, pkg] of tools) {
    await run('bash', ['-c', `command -v ${tool}`]).catch(() => {
      throw new SectionError(`${tool} not found on PATH: apt-get install ${pkg}`);
    });
  }
}

/** Runs a bench/*.sh that prints key=value lines; its log (stderr) is passed through. */
export async function keyValues(script, ctx, opts = {}) {
  const r = await run('bash', [join(ROOT, 'bench', script)], opts);
  process.stderr.write(r.stderr);
  const facts = Object.fromEntries(r.stdout.trim().split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  ctx?.log?.(`${script}: ${Object.keys(facts).join(', ')}`);
  return facts;
}

export async function imageIds(refs, env) {
  const r = await run('docker', ['image', 'inspect', '--format', '{{.Id}}', ...refs], { env });
  return r.stdout.trim().split('\n');
}

/** The service images a definition's compose file names. */
export function composeImages(def) {
  const compose = readFileSync(join(def, 'compose.yaml'), 'utf8');
  return [...compose.matchAll(/^\s+image:\s*(\S+)\s*$/gm)].map((m) => m[1]);
}

/** A signing key and the allowed_signers file a host would trust it with, made by ferry itself. */
export async function signingKey(dir) {
  const key = join(dir, 'key');
  const r = await run(process.execPath, [FERRY, 'keys', 'generate', '--out', key, '--comment', 'ferry-bench', '--json']);
  const line = JSON.parse(r.stdout).result.allowedSignersLine;
  const trust = join(dir, 'allowed_signers');
  await run('bash', ['-c', 'umask 077 && printf "%s\\n" "$1" > "$2"', 'x', line, trust]);
  return { key, trust };
}

/** Writes dirty pages back, so that one step's writeback does not land in the next step's time. */
export async function sync() {
  await run('sync', []);
}

// ---------------------------------------------------------------------------------------------
// The bench engines (bench/bench-engine.sh): empty engines of our own, each in its own network
// namespace. `benchEngine` is Docker 20.10 on the classic store; `benchEngineD26c` Docker 26 on the
// containerd image store (FERRY_BENCH_ENGINE_KIND=d26c).

const ENGINE_SCRIPT = join(ROOT, 'bench', 'bench-engine.sh');
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** utime + stime + cutime + cstime of a process, in seconds. */
function procCpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may contain spaces.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime, stime, cutime, cstime are fields 14–17 of the whole line, 12–15 after "pid (comm) ".
  return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / CLK_TCK;
}

/** The live descendants of a process (children of every thread, recursively). */
function descendants(pid) {
  const out = [];
  let tasks = [];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const t of tasks) {
    let children = '';
    try {
      children = readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim();
    } catch {
      continue;
    }
    for (const c of children.split(/\s+/).filter(Boolean)) out.push(c, ...descendants(c));
  }
  return out;
}

function makeBenchEngine({ kind, defaultDir, withDescendants }) {
  const scriptEnv = { FERRY_BENCH_ENGINE_KIND: kind };
  let stopRegistered = false;
  return {
    kind,
    dir: process.env.FERRY_BENCH_ENGINE_DIR && kind === 'classic' ? process.env.FERRY_BENCH_ENGINE_DIR : defaultDir,
    get host() {
      return `unix://${join(this.dir, 'docker.sock')}`;
    },
    get env() {
      return { DOCKER_HOST: this.host };
    },
    get scriptEnv() {
      return { ...scriptEnv, FERRY_BENCH_ENGINE_DIR: this.dir };
    },
    /** Whether the engine answers now (it is up). */
    async answers() {
      return run('docker', ['version', '--format', '{{.Server.Version}}'], { env: this.env }).then(
        () => true,
        () => false,
      );
    },
    /**
     * A fresh, empty engine (stopped, data root wiped, started). Stopped again when the bench exits
     * (also on Ctrl-C) unless `stopAtExit` is false on the first call.
     */
    async reset(ctx, { stopAtExit = true } = {}) {
      if (stopAtExit && !stopRegistered) {
        stopRegistered = true;
        // run.mjs ends the process on Ctrl-C with process.exit: only an 'exit' listener still runs then.
        process.on('exit', () => {
          spawnSync('bash', [ENGINE_SCRIPT, 'down'], { stdio: 'ignore', env: { ...process.env, ...this.scriptEnv } });
        });
      }
      const r = await run('bash', [ENGINE_SCRIPT, 'reset'], { env: this.scriptEnv });
      ctx?.log?.(`fresh bench engine (${kind}) at ${this.host}`);
      return r;
    },
    async down() {
      await run('bash', [ENGINE_SCRIPT, 'down'], { env: this.scriptEnv });
    },
    async version() {
      return (await run('docker', ['version', '--format', '{{.Server.Version}}'], { env: this.env })).stdout.trim();
    },
    /**
     * CPU seconds the engine has used so far: dockerd's user + system time plus that of the children
     * it has reaped (the re-executed untar/applyLayer helpers that unpack layers); with the
     * containerd store also its live descendants' (containerd, which stores and unpacks the layers).
     */
    cpuSeconds() {
      const pid = readFileSync(join(this.dir, 'docker.pid'), 'utf8').trim();
      let total = procCpuSeconds(pid);
      if (withDescendants) {
        for (const c of descendants(pid)) {
          try {
            total += procCpuSeconds(c);
          } catch {
            // exited between the listing and the read: its time is in its parent's cutime now
          }
        }
      }
      return total;
    },
  };
}

export const benchEngine = makeBenchEngine({ kind: 'classic', defaultDir: '/tmp/ferry-bench-engine', withDescendants: false });
export const benchEngineD26c = makeBenchEngine({ kind: 'd26c', defaultDir: process.env.FERRY_BENCH_D26C_DIR ?? '/tmp/ferry-bench-d26c', withDescendants: true });

/** Bytes of every regular file under dir (0 when it does not exist or vanishes while read). */
function treeBytes(dir) {
  let total = 0;
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    try {
      if (e.isDirectory()) total += treeBytes(p);
      else if (e.isFile()) total += statSync(p).size;
    } catch {
      // removed between readdir and stat: the engine cleans up as it goes
    }
  }
  return total;
}

/**
 * A measured command against the bench engine, with the engine's own CPU time over the same span,
 * and when the engine had received the whole archive of a load: Docker's classic loader first
 * unpacks the archive into a temporary directory under its data root (phase 1, fed by the client),
 * then registers each layer from there (phase 2, the engine alone). `receivedMs` is when that
 * directory last grew, polled every 100 ms.
 */
export async function onEngine(fn, engine = benchEngine) {
  const before = engine.cpuSeconds();
  const tmp = join(engine.dir, 'root', 'tmp');
  const started = performance.now();
  let max = 0;
  let receivedMs;
  const poll = () => {
    const n = treeBytes(tmp);
    if (n > max) {
      max = n;
      receivedMs = performance.now() - started;
    }
  };
  const timer = setInterval(poll, 100);
  try {
    const r = await fn();
    return { ...r, engineCpuS: engine.cpuSeconds() - before, receivedMs, receivedBytes: max };
  } finally {
    clearInterval(timer);
  }
}
