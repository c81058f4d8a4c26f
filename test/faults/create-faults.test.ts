/**
 * Kill anywhere during `ferry bundle create`, on the build engine, through the built CLI. A bundle
 * with a random 80 MB layer makes the save last long enough to be hit in the middle; kill points are
 * spread over the time a whole create takes (start-up, definition, inspect, save and compress,
 * manifest, signatures, seal). After SIGINT or SIGTERM at any point nothing may be left: no
 * `*.partial-*` directory, and the output either absent or a complete bundle that verifies. After
 * SIGKILL a partial directory may stay (nothing can clean up after a SIGKILL); the next create into
 * the same directory removes it and says so.
 *
 * Also the seed lessons of create's warnings: setuid files in shipped layers, and --strict turning
 * any warning into exit 10 with nothing written.
 */
import { spawn } from 'node:child_process';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildDocker, ferry, ROOT, tmpDir, uniqueName } from '../support/engines.js';
import { buildBigImage, buildDemoImages, demoDefinition, LONG, makeKey, recordFigure, signerLine, type Key } from '../security/campaign.js';

let work: string;
let def: string;
let key: Key;
let trust: string;
let fullMs = 0;
/** How long a whole create spends writing: from its partial directory appearing to its end. */
let writeMs = 0;

interface Ended {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

/**
 * Runs create into `out` and sends `signal` at a kill point: `afterMs` after the start, or `afterMs`
 * after its partial directory appeared (the writing phase; polled every 10 ms). A point create ends
 * before is not reached.
 */
function createKilled(out: string, signal: NodeJS.Signals, point: { from: 'start' | 'partial'; afterMs: number }): Promise<Ended> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin/ferry'), 'bundle', 'create', def, '--out', out, '--sign-key', key.path], {
      cwd: ROOT,
      env: { ...process.env, NO_COLOR: '1' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const err: Buffer[] = [];
    child.stderr.on('data', (c: Buffer) => err.push(c));
    let timer: NodeJS.Timeout | undefined;
    let poll: NodeJS.Timeout | undefined;
    const kill = () => {
      timer = setTimeout(() => child.kill(signal), point.afterMs);
    };
    if (point.from === 'start') kill();
    else {
      poll = setInterval(() => {
        void partials(dirname(out)).then((p) => {
          if (p.length > 0 && poll) {
            clearInterval(poll);
            poll = undefined;
            kill();
          }
        }, () => undefined);
      }, 10);
    }
    child.on('error', reject);
    child.on('close', (code, sig) => {
      clearTimeout(timer);
      clearInterval(poll);
      resolve({ code, signal: sig, stderr: Buffer.concat(err).toString('utf8') });
    });
  });
}

async function partials(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => n.includes('.partial-'));
}

beforeAll(async () => {
  work = await tmpDir('ferry-create-faults-');
  const version = `cf${process.pid}`;
  await buildDemoImages(version);
  const big = `ferry-test/create-big:${version}`;
  await buildBigImage(work, big, 80);
  key = await makeKey(work, 'builder');
  trust = join(work, 'allowed_signers');
  await writeFile(trust, `${signerLine(key)}\n`);
  def = await demoDefinition(join(work, 'def'), { stack: uniqueName('cf').replace(/-/g, '').slice(0, 30), version: '1.0.0', images: version, port: 8081, extraImages: [big] });
  const started = Date.now();
  let appeared = 0;
  const watcher = setInterval(() => void partials(work).then((p) => (appeared ||= p.length > 0 ? Date.now() : 0)), 10);
  const whole = await ferry(['bundle', 'create', def, '--out', join(work, 'whole.ferry'), '--sign-key', key.path], { timeoutMs: 300_000 });
  clearInterval(watcher);
  fullMs = Date.now() - started;
  writeMs = appeared ? Date.now() - appeared : fullMs / 2;
  expect(whole.code, whole.stderr).toBe(0);
}, 600_000);

describe('kill anywhere during create', () => {
  // Before the partial directory exists (start-up, definition, inspect), then through the writing
  // phase measured from when it appears (save and compress, manifest, signatures, seal).
  const points = (LONG ? [0.05, 0.2, 0.35] : [0.1, 0.3]).map((f) => ({ from: 'start' as const, f }));
  points.push(...(LONG ? [0, 0.05, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9, 0.97] : [0, 0.2, 0.5, 0.8, 0.95]).map((f) => ({ from: 'partial' as const, f })));

  it('SIGINT or SIGTERM at any moment leaves no partial directory and no incomplete bundle', async () => {
    const findings: string[] = [];
    const rows: string[] = [];
    let n = 0;
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      for (const { from, f } of points) {
        const dir = join(work, `interrupt-${++n}`);
        const out = join(dir, 'b.ferry');
        const afterMs = Math.round((from === 'start' ? fullMs : writeMs) * f);
        const ended = await createKilled(out, signal, { from, afterMs });
        const left = await partials(dir).catch(() => []);
        const outNames = await readdir(dir).catch(() => [] as string[]);
        const made = outNames.includes('b.ferry');
        let verdict: string;
        if (ended.code === 0) verdict = 'finished first';
        else if (ended.code === 130) verdict = 'interrupted, cleaned up';
        else if (ended.signal === signal) verdict = 'ended by the signal before anything was written';
        else verdict = `exit ${ended.code ?? ended.signal}`;
        rows.push(`  ${signal} ${afterMs} ms after ${from === 'start' ? 'the start' : 'the partial directory appeared'}: ${verdict}`);
        const at = `${signal} ${from}+${afterMs}ms`;
        if (!['finished first', 'interrupted, cleaned up', 'ended by the signal before anything was written'].includes(verdict)) findings.push(`${at}: ${verdict}: ${ended.stderr.slice(-400)}`);
        // Once the partial directory exists the handler is armed: the default action must not end it.
        if (from === 'partial' && verdict === 'ended by the signal before anything was written') findings.push(`${at}: the signal was not handled while writing`);
        if (left.length) findings.push(`${at}: left ${left.join(', ')}`);
        if (made) {
          const v = await ferry(['bundle', 'verify', out, '--trust', trust]);
          if (v.code !== 0) findings.push(`${at}: an incomplete bundle was left: ${v.stderr.slice(-300)}`);
        }
      }
    }
    process.stderr.write(`${rows.join('\n')}\n`);
    await recordFigure('create-kill-anywhere', { cases: rows.length, held: rows.length - new Set(findings.map((x) => x.split(':')[0])).size, verb: 'left nothing half-done after SIGINT/SIGTERM', findings });
    expect(findings).toEqual([]);
    // The campaign must have hit create while it was writing, not only before or after.
    expect(rows.some((r) => r.includes('interrupted, cleaned up'))).toBe(true);
  }, 900_000);

  it('after SIGKILLs, the next create into the same directory removes the stale partials and says so', async () => {
    const dir = join(work, 'killed');
    let stale = 0;
    for (const f of [0, 0.3, 0.7]) {
      const ended = await createKilled(join(dir, `k-${f}.ferry`), 'SIGKILL', { from: 'partial', afterMs: Math.round(writeMs * f) });
      expect(ended.signal === 'SIGKILL' || ended.code === 0, ended.stderr).toBe(true);
      stale = (await partials(dir).catch(() => [])).length;
    }
    // Killed the moment its partial directory appeared, at least the first one left it behind.
    expect(stale, 'no SIGKILL hit create while it wrote').toBeGreaterThan(0);
    const left = await partials(dir);
    const next = await ferry(['bundle', 'create', def, '--out', join(dir, 'next.ferry'), '--sign-key', key.path], { timeoutMs: 300_000 });
    expect(next.code, next.stderr).toBe(0);
    for (const name of left) expect(next.stderr).toContain(`removed ${join(dir, name)}: a partial bundle left by create process`);
    expect(await partials(dir)).toEqual([]);
  }, 900_000);
});

describe('what create warns about (seed lessons), and --strict', () => {
  let setuidDef: string;

  beforeAll(async () => {
    const tag = `ferry-test/setuid:${process.pid}`;
    const ctx = join(work, 'setuid-image');
    await mkdir(ctx, { recursive: true });
    await writeFile(join(ctx, 'Dockerfile'), `FROM ferry-demo/base:1.0.0\nRUN mkdir -p /usr/bin && cp /bin/busybox /usr/bin/helper && chmod 4755 /usr/bin/helper && mkdir -p /var/spool/x && chmod 2775 /var/spool/x && echo ${tag} > /tag\n`);
    const built = await buildDocker().run(['build', '-q', '-t', tag, ctx], { env: { DOCKER_BUILDKIT: '0' }, timeoutMs: 300_000 });
    expect(built.code, built.stderr).toBe(0);
    setuidDef = await demoDefinition(join(work, 'def-setuid'), { stack: uniqueName('su').replace(/-/g, '').slice(0, 30), version: '1.0.0', images: `cf${process.pid}`, port: 8081, extraImages: [tag] });
  }, 300_000);

  it('names setuid and setgid files of shipped layers, by path, mode and image (not setgid directories)', async () => {
    const r = await ferry(['bundle', 'create', setuidDef, '--out', join(work, 'setuid.ferry'), '--sign-key', key.path, '--json'], { timeoutMs: 300_000 });
    expect(r.code, r.stderr).toBe(0);
    const warnings = (JSON.parse(r.stdout) as { warnings: { code: string; message: string; subject?: string }[] }).warnings.filter((w) => w.code === 'SETUID_FILES');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.message).toContain('/usr/bin/helper (4755)');
    expect(warnings[0]!.subject).toContain('ferry-test/setuid');
    expect(warnings[0]!.message).not.toContain('/var/spool/x');
  });

  it('--strict refuses the bundle over any warning: exit 10, STRICT_WARNINGS, nothing written', async () => {
    const out = join(work, 'strict', 'setuid.ferry');
    const r = await ferry(['bundle', 'create', setuidDef, '--out', out, '--sign-key', key.path, '--strict', '--json'], { timeoutMs: 300_000 });
    expect(r.code).toBe(10);
    const doc = JSON.parse(r.stdout) as { error: { code: string; details: { warnings: { code: string }[] } } };
    expect(doc.error.code).toBe('STRICT_WARNINGS');
    expect(doc.error.details.warnings.map((w) => w.code)).toContain('SETUID_FILES');
    expect(await readdir(join(work, 'strict')).catch(() => [])).toEqual([]);
  });

  it('ferry.yaml strict: true does the same, refusing before the save when warnings are known up front', async () => {
    const f = join(setuidDef, 'ferry.yaml');
    await writeFile(f, `${await readFile(f, 'utf8')}\nstrict: true\n`);
    const out = join(work, 'strict-yaml', 'x.ferry');
    // Unsigned: the UNSIGNED warning is known before anything is saved.
    const r = await ferry(['bundle', 'create', setuidDef, '--out', out, '--json'], { timeoutMs: 300_000 });
    expect(r.code).toBe(10);
    const doc = JSON.parse(r.stdout) as { error: { code: string; message: string; details: { warnings: { code: string }[] } } };
    expect(doc.error.message).toContain("ferry.yaml's strict: true");
    expect(doc.error.details.warnings.map((w) => w.code)).toContain('UNSIGNED');
    expect(doc.error.details.warnings.map((w) => w.code)).not.toContain('SETUID_FILES');
    expect(await readdir(join(work, 'strict-yaml')).catch(() => [])).toEqual([]);
  });
});
