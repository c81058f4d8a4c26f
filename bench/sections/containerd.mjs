// Section `containerd`: the create and install benches on Docker 26 with the containerd image store
// (what fresh Docker 29 installs default to), against the same plain-docker baselines:
//   create: `docker save` (time, first byte), `docker save | zstd -3 -T0`, the floor, and
//           `ferry bundle create` of the bench stack built on that engine;
//   install: `docker load` of the `docker save` tar vs `ferry bundle install --no-up` of the bundle
//           just created, each into an empty engine.
//
// The engine is the bench's own (bench/bench-engine.sh with FERRY_BENCH_ENGINE_KIND=d26c): Docker
// 26.1 from scripts/docker26.sh's prefix, configured as scripts/engines26.sh's d26c
// (features.containerd-snapshotter) but with its own dockerd, containerd, data root and network
// namespace: every test run resets or stops the tests' d26c, which would cut a bench run short,
// and the bench's resets would break the tests using it.
//
// Targets as in `create` (wall ≤ 1.2× save, size ≤ zstd-3, RSS ≤ 200 MB) and `install`
// (≤ 1.3× docker load, RSS ≤ 200 MB).
import { readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  MB,
  SectionError,
  benchEngineD26c as engine,
  composeImages,
  createBundle,
  dirBytes,
  ferry,
  fixed,
  imageIds,
  keyValues,
  onEngine,
  requireTools,
  run,
  runMeasured,
  runToDevNull,
  runToFile,
  saveBytes,
  saveFirstByte,
  saveThrough,
  signingKey,
  sync,
} from './common.mjs';

export async function benchContainerd(ctx) {
  await requireTools([['docker', 'docker.io'], ['zstd', 'zstd'], ['ip', 'iproute2'], ['nsenter', 'util-linux']]);
  const step = (what) => ctx.log(`${what} …`);

  // Left as found: an engine that was up stays up (emptied, like every reset here), one that was
  // not is stopped at the end.
  const wasUp = await engine.answers();
  step(`${wasUp ? 'resetting' : 'starting'} the bench's Docker 26 engine (containerd image store)`);
  const resetOpts = { stopAtExit: !wasUp };
  await engine.reset(ctx, resetOpts);
  const env = engine.env;
  const version = await engine.version();
  const driver = (await runMeasured('docker', ['info', '--format', '{{.Driver}} {{json .DriverStatus}}'], { env })).stdout.trim();
  if (!driver.includes('io.containerd.snapshotter')) throw new SectionError(`the d26c bench engine is not on the containerd image store: ${driver}`);
  ctx.machine.d26c = version;

  const work = ctx.tmp('containerd');
  const tar = join(work, 'save.tar');
  const bundle = join(work, 'full.ferry');
  const stateDir = join(work, 'state');
  try {
    step('building the bench images on it (an empty engine: about a minute)');
    const buildStarted = performance.now();
    const facts = await keyValues('build-images.sh', ctx, { env });
    const built = { ms: performance.now() - buildStarted };
    if (!facts.def) throw new SectionError('build-images.sh printed no definition');
    const refs = composeImages(facts.def);
    // By the engine's IDs (manifest digests on this store), the very set `ferry bundle create` saves.
    const ids = await imageIds(refs, env);
    const { key, trust } = await signingKey(work);

    step('warming up: docker save > (counted)');
    const archiveBytes = await saveBytes(ids, { env });

    const rows = [];
    step('docker save > /dev/null');
    const save = await runToDevNull('docker', ['save', ...ids], { env });
    rows.push({ what: 'docker save > /dev/null', wall: save.ms / 1000, cpu: save.cpuS, rssMB: save.rssMB });

    step('docker save: time to the first byte');
    const firstByteS = await saveFirstByte(ids, { env });
    rows.push({ what: 'docker save: first byte', wall: firstByteS });

    step('docker save | zstd -3 -T0');
    const zst = await saveThrough(ids, 'zstd -q -3 -T0', join(work, 'save.tar.zst'), { env });
    rows.push({ what: 'docker save | zstd -3 -T0', wall: zst.ms / 1000, cpu: zst.cpuS, sizeMB: zst.bytes / MB });
    const floorS = firstByteS + Math.max(0, zst.cpuS - save.cpuS) / ctx.machine.cores;
    rows.push({ what: `floor: first byte + zstd -3 CPU / ${ctx.machine.cores} cores`, wall: floorS });

    step(`ferry bundle create${ctx.ferryArgs.length ? ` ${ctx.ferryArgs.join(' ')}` : ''}`);
    const created = await createBundle(facts.def, bundle, key, ctx.ferryArgs, { env, keep: true });
    rows.push({ what: 'ferry bundle create', wall: created.ms / 1000, cpu: created.cpuS, sizeMB: created.bytes / MB, rssMB: created.rssMB });
    for (const row of rows) {
      row.xBase = row.wall / (save.ms / 1000);
      if (row.sizeMB !== undefined) row.xZstd = row.sizeMB / (zst.bytes / MB);
    }

    // Install: the archive `docker load` reads (this engine's save, an OCI layout) and the bundle
    // ferry installs, each into an empty engine. Both were just written: in the page cache.
    step('docker save IDS > save.tar (untimed)');
    await runToFile('docker', ['save', ...ids], tar, { env });
    const tarBytes = statSync(tar).size;
    // How the save carries the layers: as the store keeps them (the content store's blobs), which
    // decides what a compressor downstream of the save has to do.
    const savedLayers = [...new Set(JSON.parse((await run('tar', ['-xOf', tar, 'manifest.json'])).stdout).flatMap((m) => m.Layers))];
    const layerFormats = {};
    for (const path of savedLayers) {
      const magic = (await run('bash', ['-c', 'tar -xOf "$1" "$2" 2>/dev/null | head -c 4 | od -An -tx1 || true', 'x', tar, path])).stdout.replace(/\s+/g, '');
      const format = magic.startsWith('1f8b') ? 'gzip' : magic === '28b52ffd' ? 'zstd' : 'uncompressed tar';
      layerFormats[format] = (layerFormats[format] ?? 0) + 1;
    }
    const formats = Object.entries(layerFormats).map(([f, n]) => `${n} ${f}`).join(', ');
    const bundleBytes = await dirBytes(bundle);
    const manifest = JSON.parse(readFileSync(join(bundle, 'ferry.json'), 'utf8'));
    const configIds = manifest.images.map((im) => im.id);

    step('empty engine; docker load -i save.tar');
    await engine.reset(ctx, resetOpts);
    await sync();
    const load = await onEngine(() => runMeasured('docker', ['load', '-i', tar], { env }), engine);
    const loaded = await imageIds(ids, env).catch(() => []);
    if (loaded.join() !== ids.join()) throw new SectionError('after docker load the engine lacks some of the images');
    const installRows = [];
    installRows.push({ what: 'docker load -i save.tar', wall: load.ms / 1000, cpu: load.cpuS, engineCpu: load.engineCpuS, sizeMB: tarBytes / MB, rssMB: load.rssMB });

    step('empty engine; ferry bundle install --no-up');
    await engine.reset(ctx, resetOpts);
    await sync();
    let inst;
    try {
      inst = await onEngine(() => ferry(['bundle', 'install', bundle, '--trust', trust, '--state-dir', stateDir, '--no-up'], { env }), engine);
    } catch (e) {
      // Reported as it is: install on this store is new, and a failure is a finding, not noise.
      throw new SectionError(`ferry bundle install failed on the containerd image store: ${e.message}`);
    }
    if (inst.result?.outcome !== 'loaded' || inst.result.images?.some((im) => !im.loaded)) {
      throw new SectionError(`ferry bundle install did not load every image: ${JSON.stringify(inst.result)}`);
    }
    // --no-up loads and tags each image ferry.local/STACK:CONFIG-HEX (the result's `tag`): each must
    // be on the engine now with exactly the layers the bundle pins.
    for (const im of manifest.images) {
      const tag = inst.result.images.find((r) => r.id === im.id)?.tag;
      const got = tag && (await runMeasured('docker', ['image', 'inspect', '--format', '{{json .RootFS.Layers}}', tag], { env }).catch(() => null));
      if (!got || got.stdout.trim() !== JSON.stringify(im.layers.map((l) => l.diffId))) {
        throw new SectionError(`after ferry bundle install the engine lacks image ${im.id} (tag ${tag ?? 'none in the result'}) with its layers`);
      }
    }
    installRows.push({ what: 'ferry bundle install --no-up', wall: inst.ms / 1000, cpu: inst.cpuS, engineCpu: inst.engineCpuS, sizeMB: bundleBytes / MB, rssMB: inst.rssMB });
    const t = inst.result.timings ?? {};
    const within = Object.values(t).reduce((a, b) => a + b, 0);
    const part = (what, ms) => installRows.push({ what: `  ${what}`, wall: ms / 1000 });
    part('start-up (node, oclif) and exit', inst.ms - inst.result.durationMs);
    for (const [name, ms] of Object.entries(t)) part(name, ms);
    part('records (release dir, verification report)', inst.result.durationMs - within);
    for (const row of installRows) if (!row.what.startsWith(' ')) row.xBase = row.wall / (load.ms / 1000);

    const createRatio = created.ms / save.ms;
    const installRatio = inst.ms / load.ms;
    const rssLimit = 200;
    const targets = [
      { name: 'create ≤ 1.2× save', pass: createRatio <= 1.2, detail: `${createRatio.toFixed(2)}×; the floor for zstd -3 on this engine and machine is ${(floorS / (save.ms / 1000)).toFixed(2)}×` },
      { name: 'size ≤ zstd-3', pass: created.bytes <= zst.bytes, detail: `${(created.bytes / zst.bytes).toFixed(3)}×` },
      { name: `create RSS ≤ ${rssLimit} MB`, pass: created.rssMB <= rssLimit, detail: `${created.rssMB.toFixed(0)} MB` },
      { name: 'install ≤ 1.3× docker load', pass: installRatio <= 1.3, detail: `${installRatio.toFixed(2)}×` },
      { name: `install RSS ≤ ${rssLimit} MB`, pass: inst.rssMB <= rssLimit, detail: `${inst.rssMB.toFixed(0)} MB` },
    ];

    return {
      title: `containerd image store (docker ${version}, own engine) — full stack: ${created.images} images (${created.layers} layers), ${(created.layerBytes / MB).toFixed(0)} MB of layers, ${(archiveBytes / MB).toFixed(0)} MB save archive; install rows each into an empty engine`,
      columns: [
        { key: 'what', label: 'what', align: 'left' },
        { key: 'wall', label: 'wall s', format: fixed(1) },
        { key: 'xBase', label: '× base', format: fixed(2) },
        { key: 'cpu', label: 'cpu s', format: fixed(1) },
        { key: 'engineCpu', label: 'engine cpu s', format: fixed(1) },
        { key: 'sizeMB', label: 'size MB', format: fixed(1) },
        { key: 'xZstd', label: '× zstd-3', format: fixed(3) },
        { key: 'rssMB', label: 'peak RSS MB', format: fixed(0) },
      ],
      rows: [...rows, ...installRows],
      targets,
      notes: [
        '× base: create rows against `docker save > /dev/null`, install rows against `docker load -i save.tar`',
        'cpu s: user + system time of the client (docker CLI, zstd, ferry); engine cpu s: dockerd, its containerd (which stores and unpacks the layers on this store) and their helpers, over the same span',
        `the save carries the layers as this store keeps them (${formats}): ${(archiveBytes / MB).toFixed(0)} MB of archive for ${(created.layerBytes / MB).toFixed(0)} MB of layers, so the save does no compressing, zstd -3 of it gains little, and the floor row (first byte + zstd -3 of the save) does not bound ferry, which decompresses every layer to hash its diffID and recompresses it at zstd`,
        `first byte: this store streams its save (${((firstByteS / (save.ms / 1000)) * 100).toFixed(0)}% of the save's wall time passes before the first byte, ${(firstByteS * 1000).toFixed(0)} ms)`,
        `save.tar for docker load is this engine's own save (OCI layout, ${(tarBytes / MB).toFixed(0)} MB); the bundle (${(bundleBytes / MB).toFixed(0)} MB) is the one the create row made, installed with --trust (signature verified) and staged into --state-dir on the same disk`,
        'indented rows: ferry\'s own --json step timings',
        `images built on the engine by bench/build-images.sh in ${(built.ms / 1000).toFixed(0)} s (legacy builder, DOCKER_BUILDKIT=0)`,
      ],
      results: {
        engine: { version, driver, host: engine.host },
        images: refs,
        imageIds: ids,
        configIds,
        buildMs: built.ms,
        archiveBytes,
        tarBytes,
        layerFormats,
        bundleBytes,
        layerBytes: created.layerBytes,
        layers: created.layers,
        ferryArgs: ctx.ferryArgs,
        saveMs: save.ms,
        saveCpuS: save.cpuS,
        firstByteMs: firstByteS * 1000,
        floorMs: floorS * 1000,
        zstd: { ms: zst.ms, cpuS: zst.cpuS, bytes: zst.bytes },
        ferryCreate: created,
        dockerLoad: { ms: load.ms, cpuS: load.cpuS, engineCpuS: load.engineCpuS, rssMB: load.rssMB },
        ferryInstall: { ms: inst.ms, cpuS: inst.cpuS, engineCpuS: inst.engineCpuS, rssMB: inst.rssMB, durationMs: inst.result.durationMs, timings: t, warnings: inst.warnings },
      },
    };
  } finally {
    rmSync(tar, { force: true });
    rmSync(bundle, { recursive: true, force: true });
    rmSync(stateDir, { recursive: true, force: true });
    if (wasUp) await engine.reset(ctx, resetOpts).catch((e) => ctx.log(`emptying the d26c bench engine failed: ${e.message}`));
    else await engine.down().catch((e) => ctx.log(`stopping the d26c bench engine failed: ${e.message}`));
  }
}
