/**
 * Faults on the host, classes 5 and 6 of the campaign, on an engine of this file's own (a scratch
 * engine in its own network namespace, its data root a small loop-mounted ext4), so that killing,
 * restarting and filling never disturb the shared air-gapped engine.
 *
 * 5. Kill anywhere: `ferry bundle install` of release 2 is SIGKILLed at many points while
 *    release 1 serves. No test hook in ferry: kill points come from its stderr lines ("staging: …
 *    staged", "loading: … loaded", "starting …", "running smoke test"), from what appears in the
 *    state directory (the lock, the staging copy growing, the kept release directory being
 *    rewritten, the state file's temporary sibling), and from timed offsets. A 150 MB random
 *    layer makes loading last long enough to be hit in the middle. After each kill the state
 *    directory must be sound and a release serving (or brought back by re-running install), and
 *    re-running install must converge to release 2.
 * 6. The engine restarting during a load; its data root filling up before and during a load; the
 *    state directory on a 64 MB filesystem, and filling up while staging and while recording; two
 *    installs at once. Each must end in a clear refusal with nothing half-deployed.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateStackState } from '../../src/core/state.js';
import { ferry, ROOT, run, tmpDir, type RunResult } from '../support/engines.js';
import {
  buildBigImage,
  buildDemoImages,
  createBundle,
  demoDefinition,
  engineSnapshot,
  LONG,
  makeKey,
  outcome,
  readManifest,
  recordFigure,
  removeBuildImages,
  signerLine,
  treeSnapshot,
  type Key,
} from '../security/campaign.js';
import { fill, loopFs, startScratchEngine, unfill, type LoopFs, type ScratchEngine } from './scratch-engine.js';

let work: string;
let engine: ScratchEngine;
let stack: string;
let key: Key;
let trust: string;
let stateDir: string;
let r1: string;
let r2: string;
let r2Label: string;
let r1Id: string;
let r2Id: string;
let bigId: string;
let bigTag: string;
let imageIds: string[] = [];
let bundleBytes = 0;
const port = 8080 + 1;
const loops: LoopFs[] = [];

const env = () => ({ DOCKER_HOST: engine.host, DOCKER_CONTEXT: '' });
const installArgs = (bundle: string, state = stateDir) => ['bundle', 'install', bundle, '--trust', trust, '--host', 'edge-1', '--state-dir', state, '--wait-timeout', '60'];
const install = (bundle: string, state = stateDir, extra: string[] = []) => ferry([...installArgs(bundle, state), ...extra], { env: env(), timeoutMs: 240_000 });
const rollbackTo1 = () => ferry(['host', 'rollback', stack, '--to', '1.0.0', '--state-dir', stateDir, '--wait-timeout', '60'], { env: env(), timeoutMs: 240_000 });
const bigPresent = async () => (await engine.docker(['image', 'inspect', bigId])).code === 0;
const snapshot = () => engineSnapshot(stack, imageIds, { run: (a) => engine.docker(a) });

async function page(tries = 3): Promise<string> {
  for (let i = 0; i < tries; i++) {
    const r = await engine.inNetns('wget', ['-qO-', '-T', '3', `http://127.0.0.1:${port}/`]);
    if (r.code === 0) return /<span id="version">([^<]*)<\/span>/.exec(r.stdout)?.[1] ?? 'unknown page';
    await new Promise((res) => setTimeout(res, 1000));
  }
  return 'none';
}

// ---------------------------------------------------------------------------------------------
// Watching an install from outside, and acting at a moment of our choosing

interface Watch {
  startedAt: number;
  lines: string[];
  /** ms since the first line matching `re`, or -1. */
  since(re: RegExp): number;
  /** `label:name` for every name created or removed in the watched directories. */
  events: string[];
}

type Trigger = (w: Watch) => boolean | Promise<boolean>;

interface Watched {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Whether the action ran before the install ended. */
  acted: boolean;
  ms: number;
}

const exists = (p: string) => stat(p).then(() => true, () => false);

async function dirBytes(dir: string): Promise<number> {
  const names = await readdir(dir, { recursive: true }).catch(() => [] as string[]);
  let total = 0;
  for (const n of names) total += await stat(join(dir, n)).then((s) => (s.isFile() ? s.size : 0), () => 0);
  return total;
}

/** Runs install (args) and, the first time `when` holds, runs `act` (given the child, e.g. to kill it). */
async function watchInstall(args: string[], state: string, when: Trigger, act: (child: ReturnType<typeof spawn>) => Promise<void> | void): Promise<Watched> {
  const started = Date.now();
  const child = spawn(process.execPath, [join(ROOT, 'bin/ferry'), ...args], { env: { ...process.env, ...env(), NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  const seen: { line: string; at: number }[] = [];
  const w: Watch = {
    startedAt: started,
    lines: [],
    events: [],
    since: (re) => {
      const hit = seen.find((s) => re.test(s.line));
      return hit ? Date.now() - hit.at : -1;
    },
  };
  let acted = false;
  let acting: Promise<void> | undefined;
  let stdout = '';
  let buffer = '';
  let checking = false;
  const check = async () => {
    if (acted || checking || child.exitCode !== null || child.signalCode !== null) return;
    checking = true;
    try {
      if (await when(w)) {
        acted = true;
        acting = Promise.resolve(act(child));
      }
    } finally {
      checking = false;
    }
  };
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => {
    buffer += d.toString();
    for (let nl = buffer.indexOf('\n'); nl >= 0; nl = buffer.indexOf('\n')) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      w.lines.push(line);
      seen.push({ line, at: Date.now() });
      void check();
    }
  });
  // inotify: act the moment a name appears or goes, not at the next poll.
  const watchers: FSWatcher[] = [];
  for (const [label, dir] of [['stack', join(state, 'stacks', stack)], ['releases', join(state, 'stacks', stack, 'releases')]] as const) {
    try {
      const fw = watch(dir, (_e, name) => {
        if (name) w.events.push(`${label}:${name.toString()}`);
        void check();
      });
      fw.on('error', () => undefined);
      watchers.push(fw);
    } catch {
      // not there (yet)
    }
  }
  const poll = setInterval(() => void check(), 5);
  const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  clearInterval(poll);
  for (const fw of watchers) fw.close();
  await acting;
  return { code, signal: child.signalCode, stdout, stderr: w.lines.join('\n') + buffer, acted, ms: Date.now() - started };
}

/** The state directory must always parse and be consistent, with no torn release on record. */
async function stateProblems(state = stateDir, currentMustBe: (string | null)[] = [r1Id, r2Id]): Promise<string[]> {
  const file = join(state, 'stacks', stack, 'state.json');
  const text = await readFile(file, 'utf8').catch(() => null);
  if (text === null) return currentMustBe.includes(null) ? [] : ['state.json missing'];
  let s;
  try {
    s = validateStackState(JSON.parse(text), stack);
  } catch (e) {
    return [`state.json corrupt: ${(e as Error).message}`];
  }
  const problems: string[] = [];
  if (!currentMustBe.includes(s.current)) problems.push(`current is ${s.current}`);
  for (const r of s.releases) {
    const dir = join(state, 'stacks', stack, 'releases', r.id);
    for (const f of ['ferry.json', ...r.composeFiles]) if (!(await exists(join(dir, f)))) problems.push(`kept release ${r.id} lacks ${f}`);
    const m = await readFile(join(dir, 'ferry.json'), 'utf8').catch(() => '');
    try {
      if (m) JSON.parse(m);
    } catch {
      problems.push(`kept release ${r.id} has a torn ferry.json`);
    }
  }
  return problems;
}

async function currentOf(state = stateDir): Promise<string | null> {
  const text = await readFile(join(state, 'stacks', stack, 'state.json'), 'utf8').catch(() => null);
  return text ? (JSON.parse(text) as { current: string | null }).current : null;
}

const stagingLeft = async (state = stateDir) => (await readdir(join(state, 'staging', stack)).catch(() => [] as string[])).map((n) => `staging/${stack}/${n}`);

// ---------------------------------------------------------------------------------------------

beforeAll(async () => {
  work = await tmpDir('ferry-faults-');
  const rand = randomBytes(3).toString('hex');
  stack = `flt${process.pid}${rand}`;
  stateDir = join(work, 'state');
  key = await makeKey(work, 'signer');
  trust = join(work, 'allowed_signers');
  await writeFile(trust, `${signerLine(key)}\n`);
  // Short: containerd's sockets live under the exec root, and unix socket paths are short.
  engine = await startScratchEngine(`/tmp/ff${process.pid}`, 1200);
  r2Label = `flt-${rand}`;
  const r2images = await buildDemoImages(r2Label);
  bigTag = `ferry-faults-${rand}/big:1`;
  bigId = await buildBigImage(work, bigTag);
  r1 = await createBundle(await demoDefinition(join(work, 'def-r1'), { stack, version: '1.0.0', images: '1.0.0', port, fastStop: true }), join(work, 'r1.ferry'), key, ['--sequence', '1']);
  r2 = await createBundle(await demoDefinition(join(work, 'def-r2'), { stack, version: '2.0.0', images: r2Label, port, extraImages: [bigTag], fastStop: true }), join(work, 'r2.ferry'), key, ['--sequence', '2']);
  const [m1, m2] = [await readManifest(r1), await readManifest(r2)];
  r1Id = `${m1.sequence}-${m1.version}`;
  r2Id = `${m2.sequence}-${m2.version}`;
  bundleBytes = m2.files.reduce((n, f) => n + f.size, 0);
  imageIds = [...new Set([...m1.images, ...m2.images].map((i) => i.id)), ...Object.values(r2images)];
  const r = await install(r1);
  expect(r.code, r.stderr).toBe(0);
  expect(await page()).toBe('1.0.0');
}, 600_000);

afterAll(async () => {
  await engine?.stop();
  for (const l of loops) await l.remove();
  if (r2Label) await removeBuildImages([bigTag, ...['web', 'worker', 'smoke'].map((s) => `ferry-demo/${s}:${r2Label}`)]);
}, 180_000);

// ---------------------------------------------------------------------------------------------
// 5. Kill anywhere

interface KillPoint {
  name: string;
  when: Trigger;
  /** Only meaningful once release 2 is a kept release (its directory is then rewritten). */
  needsKept?: boolean;
  /** Needs the big layer to load again: it is removed from the engine first. */
  needsLoad?: boolean;
}

function killPoints(): KillPoint[] {
  const staging = () => join(stateDir, 'staging', stack, r2Id);
  const after = (re: RegExp, ms: number): Trigger => (w) => w.since(re) >= ms;
  // Points that need the big layer loaded first; later ones find it on the engine (cheaper).
  const points: KillPoint[] = [
    { name: 'holding the lock, verifying the signature', when: () => exists(join(stateDir, 'lock')) },
    { name: 'staging (40 % copied)', when: async () => (await dirBytes(staging())) > bundleBytes * 0.4 },
    { name: 'loading, 600 ms in (mid-layer)', when: after(/^staging: .* staged/, 600), needsLoad: true },
    { name: 'loaded, before the switch', when: after(/^loading: .* loaded/, 0), needsLoad: true },
    // No 'rewriting the kept release directory' point: install no longer deletes a kept release's
    // directory before rewriting it (the gap this campaign found), so there is no such moment.
    { name: 'compose up, 300 ms in', when: after(/^starting /, 300) },
    { name: 'writing the state file', when: (w) => w.events.some((e) => e.startsWith('stack:state.json.tmp')) },
  ];
  if (LONG) {
    points.unshift(
      { name: 'preflight (just staged)', when: after(/^staging: .* staged/, 0), needsLoad: true },
      { name: 'loading, 150 ms in', when: after(/^staging: .* staged/, 150), needsLoad: true },
      { name: 'loading, 1200 ms in', when: after(/^staging: .* staged/, 1200), needsLoad: true },
    );
    points.push(
      { name: 'compose up, at once', when: after(/^starting /, 0) },
      { name: 'compose up, 1500 ms in', when: after(/^starting /, 1500) },
      { name: 'waiting for health', when: after(/^ {2}(web|worker): /, 0) },
      { name: 'smoke test running', when: after(/^running smoke test/, 300) },
      { name: 'recorded, cleaning up', when: after(/installed and healthy/, 0) },
    );
    for (let t = 250; t <= 8000; t += 250) points.push({ name: `${t} ms after start`, when: (w) => Date.now() - w.startedAt >= t, needsLoad: true });
  }
  return points;
}

describe('5. kill anywhere during install', () => {
  it('after SIGKILL at every point the state is sound, a release serves or comes back, and install converges', async () => {
    type Row = { point: string; reached: boolean; servingAfterKill: string; stateOk: boolean; converged: boolean; ms: number };
    const rows: Row[] = [];
    const findings: string[] = [];
    const points = killPoints();
    // Default: kills in a chain (each install killed at a later point than the one before,
    // starting from whatever the previous kill left), then one re-run must converge; that is a
    // harder test than a fresh start each time, and halves the cost. Long: one kill per cycle.
    const chainEnds = new Set(LONG ? points.map((p) => p.name) : ['loaded, before the switch', points.at(-1)!.name]);
    let kept = false;
    let chain: Row[] = [];
    let cycleStart = Date.now();
    for (const point of points) {
      if (point.needsKept && !kept) continue;
      if (point.needsLoad && (await bigPresent())) await engine.docker(['rmi', '-f', bigId]);
      const t0 = Date.now();
      const run = await watchInstall(installArgs(r2), stateDir, point.when, (child) => void child.kill('SIGKILL'));
      const reached = run.signal === 'SIGKILL';
      const servingAfterKill = await page();
      const afterKill = await stateProblems();
      if (!reached && run.code !== 0) findings.push(`${point.name}: install failed by itself (exit ${run.code}): ${run.stderr.slice(-600)}`);
      if (afterKill.length) findings.push(`${point.name}: after the kill: ${afterKill.join('; ')}`);
      const row: Row = { point: point.name, reached, servingAfterKill, stateOk: afterKill.length === 0, converged: false, ms: Date.now() - t0 };
      rows.push(row);
      chain.push(row);
      if (!chainEnds.has(point.name)) continue;

      // Re-running install converges to release 2, whatever the kills before left.
      const again = await install(r2);
      const serving = await page();
      const problems = await stateProblems();
      const leftovers = await stagingLeft();
      const converged = again.code === 0 && serving === r2Label && problems.length === 0 && (await currentOf()) === r2Id && leftovers.length === 0;
      if (!converged) findings.push(`after ${chain.map((r) => r.point).join(' → ')}: did not converge: exit ${again.code}, serving ${serving}, state [${problems.join('; ')}], staging left [${leftovers.join(', ')}]: ${again.stderr.slice(-400)}`);
      for (const r of chain) r.converged = converged;
      kept = kept || again.code === 0;
      chain = [];
      // Release 1 serving again for the next cycle.
      const back = await rollbackTo1();
      expect(back.code, back.stderr).toBe(0);
      expect(await page()).toBe('1.0.0');
      process.stderr.write(`  kill cycle of ${LONG ? 1 : 'several'} point(s): ${Date.now() - cycleStart} ms\n`);
      cycleStart = Date.now();
    }
    process.stderr.write(`${rows.map((r) => `  ${r.reached ? 'killed' : 'ended '}  ${r.point.padEnd(44)} serving after kill: ${r.servingAfterKill.padEnd(12)} state ${r.stateOk ? 'ok ' : 'BAD'}  ${r.converged ? 'converged' : 'DID NOT CONVERGE'}`).join('\n')}\n`);
    await recordFigure('kill-anywhere', {
      cases: rows.length,
      held: rows.filter((r) => r.stateOk && r.converged).length,
      verb: 'left sound state and converged',
      findings,
      extra: {
        killPointsReached: rows.filter((r) => r.reached).length,
        stateSoundAfterKill: rows.filter((r) => r.stateOk).length,
        converged: rows.filter((r) => r.converged).length,
        servingRightAfterKill: rows.filter((r) => r.servingAfterKill !== 'none').length,
        chained: !LONG,
        rows,
      },
    });
    expect(findings).toEqual([]);
    // Points that were never hit prove nothing.
    expect(rows.filter((r) => r.reached).length).toBeGreaterThanOrEqual(rows.length - 1);
  }, LONG ? 3_600_000 : 900_000);
});

// ---------------------------------------------------------------------------------------------
// 6. Engine, disk and lock faults

describe('6. engine restarts, full disks, two installs at once', () => {
  const results: { fault: string; exit: number | null; code: string | null; held: boolean; note: string }[] = [];
  const findings: string[] = [];
  const note = (fault: string, exit: number | null, code: string | null, ok: boolean, why: string) => {
    results.push({ fault, exit, code, held: ok, note: why });
    process.stderr.write(`  ${ok ? 'held' : 'FAIL'}  ${fault.padEnd(56)} exit ${String(exit).padEnd(4)} ${code ?? ''} ${ok ? '' : why.slice(-700)}\n`);
    if (!ok) findings.push(`${fault}: exit ${exit} ${code ?? ''}: ${why}`);
  };
  let engineBefore = '';
  let stateBefore = '';

  /** Refused cleanly: the documented exit code, release 1 still serving, state and engine as before. */
  const refusedCleanly = async (fault: string, r: { code: number | null; stdout: string; stderr: string }, exits: number[], opts: { state?: string; engineMayChange?: boolean } = {}) => {
    const o = outcome({ code: r.code ?? -1, stdout: r.stdout, stderr: r.stderr });
    const why: string[] = [];
    const text = o.text || r.stderr;
    if (!exits.includes(o.exit)) why.push(`expected exit ${exits.join(' or ')}: ${text.split('\n').find((l) => /^error:/.test(l)) ?? text.slice(-600)}`);
    const serving = await page(10);
    if (serving !== '1.0.0') why.push(`serving ${serving}, not release 1`);
    if ((opts.state ?? stateDir) === stateDir && (await treeSnapshot(stateDir)) !== stateBefore) why.push('the state directory changed');
    const left = await stagingLeft(opts.state ?? stateDir);
    if (left.length) why.push(`staging left behind: ${left.join(', ')}`);
    const engineNow = await snapshot();
    if (!opts.engineMayChange && engineNow !== engineBefore) why.push('the engine changed');
    // A restart or an allowed load changes what later faults compare against.
    engineBefore = engineNow;
    note(fault, o.exit, o.code, why.length === 0, why.join('; ') || 'refused cleanly');
    // Each fault is judged on its own: what one left behind must not count against the next.
    for (const left of await stagingLeft(opts.state ?? stateDir)) await rm(join(opts.state ?? stateDir, left), { recursive: true, force: true });
  };

  /** Release 1 serving, the big layer not on the engine: each fault meets a real load. */
  const fresh = async () => {
    if ((await currentOf()) !== r1Id || (await page(1)) !== '1.0.0') await rollbackTo1();
    if (await bigPresent()) await engine.docker(['rmi', '-f', bigId]);
    expect(await page()).toBe('1.0.0');
    engineBefore = await snapshot();
    stateBefore = await treeSnapshot(stateDir);
  };
  /** The load is under way: the engine's data root has grown by 40 MB since `base`. */
  const dataRootUsed = async () => Number((await run('df', ['-B1', '--output=used', engine.dataRoot.mount])).stdout.trim().split('\n').at(-1));
  const loading = (base: number) => async (w: Watch) => w.since(/^staging: .* staged/) >= 0 && (await dataRootUsed()) > base + 40 * 1024 * 1024;

  it('state directory on a 64 MB filesystem: refused before copying (exit 6)', async () => {
    await fresh();
    const small = await loopFs(join(work, 'state64.img'), join(work, 'state64'), 64);
    loops.push(small);
    const r = await install(r2, small.mount, ['--json']);
    await refusedCleanly('state directory on 64 MB', r, [6], { state: small.mount });
    const files = (await readdir(small.mount, { recursive: true })).filter((f) => !f.startsWith('lost+found'));
    if (files.some((f) => !['stacks', 'staging'].includes(f))) note('state directory on 64 MB: nothing written', null, null, false, `left ${files.join(', ')}`);
  });

  it('engine data root nearly full: refused in preflight (exit 6)', async () => {
    await fresh();
    const filler = await fill(engine.dataRoot.mount, 300);
    try {
      await refusedCleanly('data root full before loading', await install(r2, stateDir, ['--json']), [6]);
    } finally {
      await unfill(filler);
    }
  });

  it('engine data root filling up during the load: refused (exit 6), release 1 untouched', async () => {
    await fresh();
    let filler = '';
    const r = await watchInstall(installArgs(r2), stateDir, loading(await dataRootUsed()), async () => {
      filler = await fill(engine.dataRoot.mount, 5);
    });
    try {
      await refusedCleanly(`data root full during load${r.acted ? '' : ' (filled too late)'}`, r, [6], { engineMayChange: true });
      if (await bigPresent()) note('data root full during load: no partial image', null, null, false, 'the big image is on the engine after a failed load');
    } finally {
      if (filler) await unfill(filler);
    }
  });

  it('engine crashing and restarting during the load: refused (exit 6), release 1 serving throughout', async () => {
    await fresh();
    // SIGKILL: a graceful stop lets the engine finish the load in flight first (seen on 20.10),
    // so only a crash interrupts it. The containers live on under their shims.
    const r = await watchInstall(installArgs(r2), stateDir, loading(await dataRootUsed()), () => engine.crashRestart());
    if (!r.acted) note('engine crash-restart during load', r.code, null, false, 'the install ended before the crash');
    // A crash takes the engine's port proxies with it; the engine brings its containers back by
    // their restart policy, or the operator's rollback does. Either way release 1, not a mix.
    let back = 'by the engine';
    if ((await page(20)) !== '1.0.0') {
      back = 'by `ferry host rollback`';
      await rollbackTo1();
    }
    await refusedCleanly(`engine crash-restart during load (release 1 back ${back})`, r, [6], { engineMayChange: true });
    if (await bigPresent()) note('engine crash-restart during load: no partial image', null, null, false, 'the big image is on the engine after the interrupted load');
  }, 300_000);

  it('state directory filling up while staging: refused (exit 6), no staging copy left', async () => {
    await fresh();
    const fs = await loopFs(join(work, 'state400.img'), join(work, 'state400'), 400);
    loops.push(fs);
    let filler = '';
    const r = await watchInstall(installArgs(r2, fs.mount), fs.mount, async () => (await dirBytes(join(fs.mount, 'staging', stack, r2Id))) > bundleBytes * 0.3, async () => {
      filler = await fill(fs.mount, 0);
    });
    try {
      await refusedCleanly(`state directory full while staging${r.acted ? '' : ' (filled too late)'}`, r, [6], { state: fs.mount });
    } finally {
      await unfill(filler || join(fs.mount, 'filler'));
    }
  });

  it('state directory filling up while the release is recorded: refused (exit 6), nothing half-done', async () => {
    await fresh();
    const fs = loops.find((l) => l.mount.endsWith('state400'))!;
    let filler = '';
    // Filled as soon as staging is done: full by the time the release is written after loading.
    const r = await watchInstall(installArgs(r2, fs.mount), fs.mount, (w) => w.since(/^staging: .* staged/) >= 0, async () => {
      filler = await fill(fs.mount, 0, 'filler2');
    });
    try {
      // Loading into the engine is allowed (images first, by design); nothing may be switched or recorded.
      await refusedCleanly(`state directory full while recording${r.acted ? '' : ' (filled too late)'}`, r, [6], { state: fs.mount, engineMayChange: true });
      const torn = (await readdir(fs.mount, { recursive: true })).filter((f) => /\.tmp-\d+$/.test(f));
      if (torn.length) note('state directory full while recording: no temporary files left', null, null, false, torn.join(', '));
      const problems = await stateProblems(fs.mount, [null]);
      if (problems.length) note('state directory full while recording: state sound', null, null, false, problems.join('; '));
    } finally {
      await unfill(filler || join(fs.mount, 'filler2'));
    }
  });

  it('two installs at once: the second (and a rollback) refuse with HOST_BUSY (exit 6); the first converges', async () => {
    await fresh();
    let second: RunResult | undefined;
    let rollback: RunResult | undefined;
    const first = await watchInstall(installArgs(r2), stateDir, () => exists(join(stateDir, 'lock')), async () => {
      [second, rollback] = await Promise.all([
        ferry([...installArgs(r2), '--json'], { env: env(), timeoutMs: 60_000 }),
        ferry(['host', 'rollback', stack, '--state-dir', stateDir, '--json'], { env: env(), timeoutMs: 60_000 }),
      ]);
    });
    for (const [what, r] of [['second install', second], ['rollback during install', rollback]] as const) {
      const o = r ? outcome(r) : null;
      note(`two at once: ${what}`, o?.exit ?? null, o?.code ?? null, o?.exit === 6 && o.code === 'HOST_BUSY' && /another ferry \(pid \d+/.test(o.text), o ? o.text.slice(0, 200) : 'never ran');
    }
    // This install is also the re-run that must converge after the faults above.
    const problems = await stateProblems();
    const ok = first.code === 0 && (await page()) === r2Label && (await currentOf()) === r2Id && problems.length === 0 && (await stagingLeft()).length === 0;
    note('two at once: the first install converges', first.code, null, ok, ok ? 'converged to release 2' : `${problems.join('; ')} ${first.stderr.slice(-300)}`);

    const fs = loops.find((l) => l.mount.endsWith('state400'))!;
    const again = await install(r2, fs.mount);
    note('full state directory freed: install converges', again.code, null, again.code === 0 && (await stagingLeft(fs.mount)).length === 0, again.stderr.slice(-300));

    await recordFigure('host-faults', { cases: results.length, held: results.filter((r) => r.held).length, verb: 'refused cleanly or converged', findings, extra: { results } });
    expect(findings).toEqual([]);
  }, 300_000);
});
