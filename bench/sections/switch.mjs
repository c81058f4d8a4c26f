// Section `switch` (issue 16): failed requests during an upgrade, in place against blue/green, with
// a bounded request loop through a front proxy (busybox httpd whose CGI resolves `web` per
// request) inside the air-gapped engine's network namespace (scripts/engines.sh); the time from
// "switch" to the new colour holding every name; a rollback by the stopped colour, flipped to
// without compose (its kept containers started, their own checks run at once, the names moved).
//
// Targets: blue/green upgrade, a broken release and one whose smoke test fails 0 failed requests;
// the switch and a rollback's switch ≤ 2 s; the new version answering every request ≤ 2 s after it
// first answers; a rollback by alias flip ≤ 2 s from its start to the names moved (when the
// rollback still ran compose and the smoke test, the names moved about 8 s after the command and
// the whole rollback took 8.5–14 s with --drain 1); the loop ≥ 20 requests/s. Printed beside: the
// longest wait between two answers, which shows a request held up at the switch: Docker's DNS gives
// out a freshly connected container's address while the engine is still connecting it, and the
// proxy's connection then waits for TCP to resend its SYN (1 s, sometimes 3 s); the front's retry
// on a new connection keeps it from failing.
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FERRY, ROOT, SectionError, fixed, requireTools, run, signingKey } from './common.mjs';

const PORT = 8083;

const cgi = (lines) => lines.map((l) => `        ${l}`).join('\n');
const httpd = (name, file, script, extra = '') => `  ${name}:
    image: ferry-demo/base:1.0.0
    restart: unless-stopped
    stop_grace_period: 1s
    entrypoint: ["/bin/sh", "-c"]
    command:
      - |
        mkdir -p /tmp/www/cgi-bin
        cat > /tmp/www/cgi-bin/${file} <<'EOF'
${cgi(script)}
        EOF
        chmod 755 /tmp/www/cgi-bin/${file}
        exec httpd -f -p 8080 -h /tmp/www
    healthcheck:
      test: ["CMD", "wget", "-qO-", "http://127.0.0.1:8080/cgi-bin/${file}"]
      interval: 1s
      timeout: 3s
      retries: 2
${extra}`;

function compose(version, { blueGreen, broken, smokeFails }) {
  const front = ['#!/bin/sh', 'for i in 1 2; do', '  if body=$$(timeout 3 wget -qO- http://web:8080/cgi-bin/app 2>/dev/null); then', "    printf 'Content-Type: text/plain\\r\\n\\r\\n%s\\n' \"$$body\"; exit 0", '  fi', 'done', "printf 'Status: 502 Bad Gateway\\r\\n\\r\\nno upstream\\n'"];
  const web = broken ? ['#!/bin/sh', "printf 'Status: 500 Internal Server Error\\r\\n\\r\\nbroken\\n'"] : ['#!/bin/sh', `printf 'Content-Type: text/plain\\r\\n\\r\\nversion ${version}\\n'`];
  return `x-ferry:
  smoke: smoke
${blueGreen ? '  switch: blue-green\n  front: [front]\n' : ''}
services:
${httpd('front', 'proxy', front, `    ports: ["${PORT}:8080"]\n`)}
${httpd('web', 'app', web)}
  smoke:
    image: ferry-demo/base:1.0.0
    profiles: ["smoke"]
    restart: "no"
    command: ["/bin/sh", "-c", "wget -qO- http://web:8080/cgi-bin/app | grep -q 'version ${smokeFails ? 'other' : version}'"]
`;
}

/**
 * The request loop: busybox in the engine's namespace, ~20 ms apart, until stop() or 240 s. Each
 * answer is timed as it arrives here, with the version that answered it.
 */
function requestLoop(netns, stopFile) {
  const script = `end=$(( $(date +%s) + 240 )); while [ ! -e ${stopFile} ] && [ $(date +%s) -lt $end ]; do
    if body=$(timeout 10 wget -qO- http://127.0.0.1:${PORT}/cgi-bin/proxy 2>/dev/null); then echo "ok $body"; else echo fail; fi; usleep 10000; done`;
  const started = Date.now();
  const child = spawn('nsenter', [`--net=${netns}`, 'busybox', 'sh', '-c', script], { stdio: ['ignore', 'pipe', 'ignore'] });
  const answers = [];
  let partial = '';
  child.stdout.on('data', (b) => {
    const lines = (partial + b).split('\n');
    partial = lines.pop();
    for (const l of lines) if (l) answers.push({ at: Date.now(), line: l });
  });
  const done = new Promise((r) => child.on('close', r));
  return async () => {
    writeFileSync(stopFile, '');
    await done;
    const gaps = answers.map((a, i) => a.at - (i === 0 ? started : answers[i - 1].at));
    return { total: answers.length, failed: answers.filter((a) => a.line === 'fail').length, perSecond: answers.length / ((Date.now() - started) / 1000), handoverMs: handover(answers), slowestMs: Math.max(0, ...gaps.slice(1)) };
  };
}

/**
 * From the first answer by the version that ends up serving to the last answer by any other: how
 * long after the switch began the new colour was not yet answering every request. 0 when no other
 * version answered after it; undefined when the serving version never changed.
 */
function handover(answers) {
  const ok = answers.filter((a) => a.line.startsWith('ok '));
  if (ok.length === 0) return undefined;
  const last = ok[ok.length - 1].line;
  const first = ok.findIndex((a) => a.line === last);
  if (first === 0) return undefined;
  const stragglers = ok.slice(first).filter((a) => a.line !== last);
  return stragglers.length === 0 ? 0 : stragglers[stragglers.length - 1].at - ok[first].at;
}

export async function benchSwitch(ctx) {
  await requireTools([['docker', 'docker.io'], ['docker-compose', 'docker-compose'], ['nsenter', 'util-linux'], ['busybox', 'busybox-static']]);
  const engines = Object.fromEntries(
    (await run('bash', [join(ROOT, 'scripts/engines.sh'), 'env'])).stdout
      .split('\n')
      .map((l) => /^export ([A-Z0-9_]+)=(.*)$/.exec(l.trim()))
      .filter(Boolean)
      .map((m) => [m[1], m[2].replace(/^"|"$/g, '')]),
  );
  const target = engines.FERRY_TARGET_DOCKER_HOST;
  const netns = engines.FERRY_TARGET_NETNS;
  if (!target || !netns) throw new SectionError('scripts/engines.sh env names no target engine: run `bash scripts/engines.sh up`');
  await run('bash', [join(ROOT, 'scripts/build-demo-images.sh')], { env: { DOCKER_HOST: engines.FERRY_BUILD_DOCKER_HOST } });

  const work = ctx.tmp('switch');
  const { key, trust } = await signingKey(work);
  // A failed install is a result here (exit 7 is expected), not an error of the bench.
  const cli = (args, env = {}) =>
    new Promise((resolvePromise) => {
      const child = spawn(process.execPath, [FERRY, ...args, '--json'], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      child.stdout.on('data', (b) => (out += b));
      child.on('close', () => {
        let doc = null;
        try {
          doc = JSON.parse(out);
        } catch {
          doc = null;
        }
        resolvePromise({ ok: doc?.ok === true, doc });
      });
    });
  const bundle = async (stack, version, seq, opts) => {
    const dir = join(work, `${stack}-${version}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'ferry.yaml'), `name: ${stack}\nversion: ${version}\ncompose: compose.yaml\n`);
    writeFileSync(join(dir, 'compose.yaml'), compose(version, opts));
    const out = join(work, `${stack}-${version}.ferry`);
    const r = await cli(['bundle', 'create', dir, '--out', out, '--sign-key', key, '--sequence', String(seq)], { DOCKER_HOST: engines.FERRY_BUILD_DOCKER_HOST });
    if (!r.ok) throw new SectionError(`bundle create ${stack} ${version} failed: ${JSON.stringify(r.doc?.error)}`);
    return out;
  };
  const onTarget = { DOCKER_HOST: target };
  const install = (stack, b, waitS = 30) => cli(['bundle', 'install', b, '--trust', trust, '--state-dir', join(work, `state-${stack}`), '--wait-timeout', String(waitS), '--drain', '2'], onTarget);
  const cleanup = async (stack) => {
    for (const p of [stack, `${stack}-blue`, `${stack}-green`]) {
      const ids = (await run('docker', ['ps', '-aq', '--filter', `label=com.docker.compose.project=${p}`], { env: onTarget })).stdout.split('\n').filter(Boolean);
      if (ids.length) await run('docker', ['rm', '-f', ...ids], { env: onTarget });
      const nets = (await run('docker', ['network', 'ls', '-q', '--filter', `label=com.docker.compose.project=${p}`], { env: onTarget })).stdout.split('\n').filter(Boolean);
      if (nets.length) await run('docker', ['network', 'rm', ...nets], { env: onTarget });
    }
  };
  let loops = 0;
  const measured = async (what, fn) => {
    const stop = requestLoop(netns, join(work, `stop-${(loops += 1)}`));
    const started = Date.now();
    const r = await fn();
    const wall = (Date.now() - started) / 1000;
    const c = await stop();
    const t = r.doc?.result?.timings ?? {};
    // A rollback by alias flip: when the names had moved, from the rollback's start (`flipped`) and
    // from the command's (the CLI's own start-up included: the wall time less what followed the flip).
    const durationMs = r.doc?.result?.durationMs;
    const commandToFlipMs = t.flipped !== undefined && durationMs !== undefined ? Math.round(wall * 1000 - (durationMs - t.flipped)) : undefined;
    return { what, wall, requests: c.total, failed: c.failed, perSecond: c.perSecond, ok: r.ok, code: r.doc?.error?.code ?? '', switchMs: t.switch, handoverMs: c.handoverMs, slowestMs: c.slowestMs, flippedMs: t.flipped, commandToFlipMs };
  };

  const rows = [];
  const inPlace = `benchip${process.pid}`;
  const bg = `benchbg${process.pid}`;
  try {
    ctx.log('in place: install 1.0.0, then the upgrade to 1.0.1 measured …');
    await cleanup(inPlace);
    const ip1 = await bundle(inPlace, '1.0.0', 1, { blueGreen: false });
    const ip2 = await bundle(inPlace, '1.0.1', 2, { blueGreen: false });
    const firstIp = await install(inPlace, ip1);
    if (!firstIp.ok) throw new SectionError(`in-place install of 1.0.0 failed: ${JSON.stringify(firstIp.doc?.error ?? firstIp.doc)}`);
    rows.push(await measured('in place: upgrade', () => install(inPlace, ip2)));
    await cleanup(inPlace);

    ctx.log('blue/green: install 2.0.0, then the upgrade to 2.0.1, a rollback and a broken 2.0.2 measured …');
    await cleanup(bg);
    const b1 = await bundle(bg, '2.0.0', 1, { blueGreen: true });
    const b2 = await bundle(bg, '2.0.1', 2, { blueGreen: true });
    const b3 = await bundle(bg, '2.0.2', 3, { blueGreen: true, broken: true });
    const b4 = await bundle(bg, '2.0.3', 4, { blueGreen: true, smokeFails: true });
    const first = await install(bg, b1);
    if (!first.ok) throw new SectionError(`blue/green install of 2.0.0 failed: ${JSON.stringify(first.doc?.error ?? first.doc)}`);
    rows.push(await measured('blue/green: upgrade', () => install(bg, b2)));
    // While blue still holds 2.0.0 (stopped): a rollback by alias flip. The broken release then
    // runs as green, beside 2.0.0.
    rows.push(await measured('blue/green: rollback to 2.0.0', () => cli(['host', 'rollback', bg, '--state-dir', join(work, `state-${bg}`), '--wait-timeout', '30', '--drain', '1'], onTarget)));
    rows.push(await measured('blue/green: broken release (exit 7)', () => install(bg, b3, 15)));
    rows.push(await measured('blue/green: smoke test fails (exit 7)', () => install(bg, b4, 15)));
  } finally {
    await cleanup(inPlace).catch(() => undefined);
    await cleanup(bg).catch(() => undefined);
  }

  const row = (w) => rows.find((r) => r.what.startsWith(w));
  const up = row('blue/green: upgrade');
  const broken = row('blue/green: broken');
  const back = row('blue/green: rollback');
  const smoke = row('blue/green: smoke test fails');
  return {
    title: 'switch: failed requests during an upgrade, in place against blue/green (Docker 20.10, Compose v1)',
    columns: [
      { key: 'what', label: 'what', align: 'left' },
      { key: 'wall', label: 'wall s', format: fixed(1) },
      { key: 'requests', label: 'requests' },
      { key: 'failed', label: 'failed' },
      { key: 'perSecond', label: 'req/s', format: fixed(0) },
      { key: 'switchMs', label: 'switch ms' },
      { key: 'handoverMs', label: 'handover ms' },
      { key: 'slowestMs', label: 'longest gap ms' },
      { key: 'flippedMs', label: 'flipped ms' },
      { key: 'commandToFlipMs', label: 'cmd→flip ms' },
      { key: 'code', label: 'result', format: (v) => v || 'ok' },
    ],
    rows,
    targets: [
      { name: 'blue/green upgrade: 0 failed requests', pass: up?.ok && up.failed === 0, detail: `${up?.failed} of ${up?.requests}` },
      { name: 'broken release: exit 7 and 0 failed requests', pass: broken?.code === 'DEPLOY_FAILED_KEPT' && broken.failed === 0, detail: `${broken?.failed} of ${broken?.requests}` },
      { name: 'smoke test fails: exit 7 and 0 failed requests', pass: smoke?.code === 'DEPLOY_FAILED_KEPT' && smoke.failed === 0, detail: `${smoke?.failed} of ${smoke?.requests}` },
      { name: 'switch ≤ 2 s', pass: up?.switchMs !== undefined && up.switchMs <= 2000, detail: `${up?.switchMs} ms` },
      {
        name: 'new colour answering every request ≤ 2 s after it first answers',
        pass: [up, back].every((r) => r?.handoverMs !== undefined && r.handoverMs <= 2000),
        detail: `upgrade ${up?.handoverMs} ms, rollback ${back?.handoverMs} ms (last answer by the old version after the first by the new)`,
      },
      { name: 'rollback: 0 failed, switch ≤ 2 s', pass: back?.ok && back.failed === 0 && back.switchMs <= 2000, detail: `${back?.failed} failed, ${back?.switchMs} ms, ${back?.wall.toFixed(1)} s in all (--drain 1)` },
      {
        name: 'rollback by alias flip ≤ 2 s (start of the rollback to the names moved)',
        pass: back?.ok && back.flippedMs !== undefined && back.flippedMs <= 2000,
        detail: back?.flippedMs === undefined ? 'not by flip' : `${back.flippedMs} ms; ${back.commandToFlipMs} ms from the command, the CLI's start-up included`,
      },
      { name: 'loop ≥ 20 requests/s', pass: rows.every((r) => r.perSecond >= 20), detail: rows.map((r) => r.perSecond.toFixed(0)).join(', ') },
    ],
    results: rows,
  };
}
