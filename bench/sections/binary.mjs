// Section `binary` (issue 11): ferry as one executable (npm run package) against ferry under the
// machine's node (`node bin/ferry`), measured in the same run.
//
// Targets: executable ≤ 100 MB raw and ≤ 30 MB in a bundle; `--version` ≤ 0.5× `node bin/ferry
// --version`; install from the executable within 1.05× of install from `node bin/ferry`.
import { readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { FERRY, MB, ROOT, SectionError, benchEngine, composeImages, fixed, imageIds, keyValues, onEngine, requireTools, run, runMeasured, sh, signingKey, sync } from './common.mjs';

async function median(times, fn) {
  const ms = [];
  for (let i = 0; i < times; i++) {
    const t0 = performance.now();
    await fn();
    ms.push(performance.now() - t0);
  }
  ms.sort((a, b) => a - b);
  return ms[Math.floor(ms.length / 2)];
}

async function installMeasured(cmd, pre, bundle, trust, stateDir) {
  await benchEngine.reset();
  await sync();
  rmSync(stateDir, { recursive: true, force: true });
  const r = await onEngine(() => runMeasured(cmd, [...pre, 'bundle', 'install', bundle, '--trust', trust, '--state-dir', stateDir, '--no-up', '--json'], { env: benchEngine.env }));
  const doc = JSON.parse(r.stdout);
  if (doc.result?.outcome !== 'loaded') throw new SectionError(`install from ${cmd} did not load: ${r.stdout.slice(-500)}`);
  return r;
}

export async function benchBinary(ctx) {
  await requireTools([['docker', 'docker.io'], ['dockerd', 'docker.io'], ['zstd', 'zstd'], ['strip', 'binutils']]);
  const work = ctx.tmp('binary');
  ctx.log('npm run package (untimed) …');
  const exe = (await run(process.execPath, [join(ROOT, 'scripts/package.mjs'), '--out', join(work, 'release'), '--quiet'])).stdout.trim();
  const rawBytes = statSync(exe).size;
  const nodePin = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).executable.node.version;
  const floorNode = join(process.env.XDG_CACHE_HOME || join(process.env.HOME ?? '/root', '.cache'), 'ferry-build', `node-${nodePin}`, 'node');
  const nodeBytes = statSync(floorNode).size;
  ctx.log('zstd -19 and gzip -9 of the executable (what it would take compressed) …');
  const z19 = Number((await sh('zstd -19 -T0 -qc "$1" | wc -c', [exe])).stdout.trim());
  const gz9 = Number((await sh('gzip -9c "$1" | wc -c', [exe])).stdout.trim());

  ctx.log('--version, 11 runs each …');
  const exeVersion = await median(11, () => run(exe, ['--version']));
  const nodeVersion = await median(11, () => run(process.execPath, [FERRY, '--version']));

  ctx.log('building the bench images (skipped when current) …');
  const facts = await keyValues('build-images.sh', ctx);
  if (!facts.def) throw new SectionError('build-images.sh printed no definition');
  const ids = await imageIds(composeImages(facts.def));
  const { key, trust } = await signingKey(work);
  const bundle = join(work, 'b.ferry');
  const stateDir = join(work, 'state');
  ctx.log('ferry bundle create (untimed) …');
  await run(process.execPath, [FERRY, 'bundle', 'create', facts.def, '--out', bundle, '--sign-key', key, '--json']);
  const rows = [];
  try {
    // Alternating, twice each, best of two: the machine's other load falls on both alike.
    const installs = { exe: [], node: [] };
    for (let i = 0; i < 2; i++) {
      ctx.log(`install --no-up into a fresh engine, round ${i + 1}: executable, then node bin/ferry …`);
      installs.exe.push(await installMeasured(exe, [], bundle, trust, stateDir));
      installs.node.push(await installMeasured(process.execPath, [FERRY], bundle, trust, stateDir));
    }
    const best = (list) => list.reduce((a, b) => (b.ms < a.ms ? b : a));
    const ie = best(installs.exe);
    const inode = best(installs.node);
    ctx.machine.benchEngine = await benchEngine.version();

    rows.push({ what: `executable, raw (Node ${nodePin}, stripped, + ferry)`, value: rawBytes / MB, unit: 'MB' });
    rows.push({ what: '  of which the pinned Node binary alone (stripped)', value: nodeBytes / MB, unit: 'MB' });
    rows.push({ what: '  zstd -19 of it (needs zstd on the host to unpack)', value: z19 / MB, unit: 'MB' });
    rows.push({ what: '  gzip -9 of it', value: gz9 / MB, unit: 'MB' });
    rows.push({ what: 'in a bundle (--with-ferry carries it runnable, as is)', value: rawBytes / MB, unit: 'MB' });
    rows.push({ what: 'executable --version (median of 11)', value: exeVersion / 1000, unit: 's', x: exeVersion / nodeVersion });
    rows.push({ what: 'node bin/ferry --version (median of 11)', value: nodeVersion / 1000, unit: 's', x: 1 });
    rows.push({ what: 'install --no-up from the executable (best of 2)', value: ie.ms / 1000, unit: 's', x: ie.ms / inode.ms, rssMB: ie.rssMB, cpu: ie.cpuS });
    rows.push({ what: 'install --no-up from node bin/ferry (best of 2)', value: inode.ms / 1000, unit: 's', x: 1, rssMB: inode.rssMB, cpu: inode.cpuS });

    const targets = [
      { name: 'executable ≤ 100 MB raw', pass: rawBytes <= 100 * MB, detail: `${(rawBytes / MB).toFixed(1)} MB; floor: the pinned Node alone is ${(nodeBytes / MB).toFixed(1)} MB` },
      { name: '≤ 30 MB in the bundle', pass: rawBytes <= 30 * MB, detail: `${(rawBytes / MB).toFixed(1)} MB as carried (runnable); ${(z19 / MB).toFixed(1)} MB if it travelled zstd -19` },
      { name: '--version ≤ 0.5× node bin/ferry', pass: exeVersion / nodeVersion <= 0.5, detail: `${(exeVersion / nodeVersion).toFixed(2)}×` },
      { name: 'install within 1.05× of node bin/ferry', pass: ie.ms / inode.ms <= 1.05, detail: `${(ie.ms / inode.ms).toFixed(2)}×` },
    ];
    return {
      title: `the single executable — ${(rawBytes / MB).toFixed(1)} MB, Node ${nodePin}; install of ${ids.length} images into a fresh engine (docker ${ctx.machine.benchEngine})`,
      columns: [
        { key: 'what', label: 'what', align: 'left' },
        { key: 'value', label: 'value', format: fixed(2) },
        { key: 'unit', label: '', align: 'left' },
        { key: 'x', label: '× node bin/ferry', format: fixed(2) },
        { key: 'cpu', label: 'cpu s', format: fixed(1) },
        { key: 'rssMB', label: 'peak RSS MB', format: fixed(0) },
      ],
      rows,
      targets,
      notes: [
        `node bin/ferry runs on this machine's node ${process.version} (zstd-napi decompresses); the executable decompresses with Node ${nodePin}'s node:zlib`,
        'the raw size is the official Node binary (stripped of debug symbols) plus ferry\'s 3.4 MB script and the 1 MB zstd addon: nothing ferry leaves out can bring it under 100 MB; an official Node with a smaller ICU, or a Node built from source with --without-intl, would',
        'a bundle carries the executable runnable, not compressed: the host may have no zstd, and the point is `./ferry bundle install .` from the stick; an inventory taken by the executable lets the next bundle leave it out',
      ],
      results: { rawBytes, nodeBytes, zstd19Bytes: z19, gzip9Bytes: gz9, versionMs: { exe: exeVersion, node: nodeVersion }, install: { exe: installs.exe.map((r) => ({ ms: r.ms, cpuS: r.cpuS, rssMB: r.rssMB })), node: installs.node.map((r) => ({ ms: r.ms, cpuS: r.cpuS, rssMB: r.rssMB })) } },
    };
  } finally {
    rmSync(bundle, { recursive: true, force: true });
    rmSync(stateDir, { recursive: true, force: true });
    await benchEngine.down().catch((e) => ctx.log(`stopping the bench engine failed: ${e.message}`));
  }
}
