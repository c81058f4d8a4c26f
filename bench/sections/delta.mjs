// Section `delta` (issue 4): release 2 of a six-image stack as a bundle built with --base (the
// inventory of a host holding release 1), against `docker save | gzip` and `docker save | zstd` of
// release 2, and against the zstd of exactly the layers release 2 changed.
//
// Target: the release-2 bundle is no bigger than the zstd-compressed changed layers + 1 MB of metadata.
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import {
  MB,
  SectionError,
  benchEngine,
  chainIds,
  dirBytes,
  ferry,
  fixed,
  imageIds,
  keyValues,
  onEngine,
  requireTools,
  run,
  runToDevNull,
  runToFile,
  saveThrough,
  sha256File,
  signingKey,
  sync,
} from './common.mjs';

const METADATA_ALLOWANCE = 1 * MB;

/** diffID → path of every layer tar in an extracted `docker save` (classic and OCI layouts). */
async function layerTarsByDiffId(dir) {
  const found = new Map();
  const visit = async (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await visit(p);
      // Classic: <id>/layer.tar; OCI-style saves (Docker 25+): blobs/sha256/<digest>, layers uncompressed.
      else if (e.isFile() && (e.name === 'layer.tar' || d.endsWith(join('blobs', 'sha256'))) && statSync(p).size >= 1024) {
        const diffId = await sha256File(p);
        if (!found.has(diffId)) found.set(diffId, p);
      }
    }
  };
  await visit(dir);
  return found;
}

export async function benchDelta(ctx) {
  await requireTools([['docker', 'docker.io'], ['dockerd', 'docker.io'], ['gzip', 'gzip'], ['zstd', 'zstd'], ['tar', 'tar'], ['ip', 'iproute2'], ['nsenter', 'util-linux']]);

  ctx.log('building the delta images (skipped when current) …');
  const facts = await keyValues('build-delta-images.sh', ctx);
  for (const k of ['def_r1', 'def_r2', 'images_r1', 'images_r2']) if (!facts[k]) throw new SectionError(`build-delta-images.sh printed no ${k}`);
  const refs1 = facts.images_r1.split(' ');
  const refs2 = facts.images_r2.split(' ');
  const ids2 = await imageIds(refs2);

  const work = ctx.tmp('delta');
  const step = (what) => ctx.log(`${what} …`);
  const { key, trust } = await signingKey(work);
  const b1 = join(work, 'r1.ferry');
  const b2 = join(work, 'r2.ferry');
  const b2full = join(work, 'r2-full.ferry');
  const inv = join(work, 'inventory.json');
  const stateDir = join(work, 'state');
  const saveTar = join(work, 'r2.tar');
  const extracted = join(work, 'r2-save');
  const create = (def, out, seq, extra = []) => ferry(['bundle', 'create', def, '--out', out, '--sign-key', key, '--sequence', String(seq), ...extra, ...ctx.ferryArgs]);

  try {
    const rows = [];

    // --- the host: release 1 installed by ferry on a fresh engine, then its inventory ----------
    step('ferry bundle create r1 (setup)');
    const c1 = await create(facts.def_r1, b1, 1);
    const b1Bytes = await dirBytes(b1);
    step('fresh engine; ferry bundle install r1 --no-up (setup)');
    await benchEngine.reset(ctx);
    ctx.machine.benchEngine = await benchEngine.version();
    await sync();
    const i1 = await onEngine(() => ferry(['bundle', 'install', b1, '--trust', trust, '--state-dir', stateDir, '--no-up'], { env: benchEngine.env }));
    if (i1.result?.outcome !== 'loaded') throw new SectionError(`install of release 1 did not load: ${JSON.stringify(i1.result)}`);
    rmSync(b1, { recursive: true, force: true });
    step('ferry host inventory');
    await ferry(['host', 'inventory', '--out', inv, '--state-dir', stateDir], { env: benchEngine.env });
    const inventory = JSON.parse(readFileSync(inv, 'utf8'));
    const held = new Set(inventory.layers);

    // --- release 2: what changed, by chain ID against the inventory --------------------------
    const inspect = JSON.parse((await run('docker', ['image', 'inspect', ...ids2])).stdout);
    const changed = new Map(); // chainId -> diffId
    let r2Layers = 0;
    for (const im of inspect) {
      const diffIds = im.RootFS.Layers;
      chainIds(diffIds).forEach((c, i) => {
        r2Layers += 1;
        if (!held.has(c)) changed.set(c, diffIds[i]);
      });
    }
    const uniqueR2Chains = new Set(inspect.flatMap((im) => chainIds(im.RootFS.Layers))).size;

    // Untimed: the release-2 archive, also the page-cache warm-up for the timed saves below.
    step('docker save r2 > r2.tar (untimed), extracting its layer tars');
    await runToFile('docker', ['save', ...ids2], saveTar);
    const archiveBytes = statSync(saveTar).size;
    mkdirSync(extracted);
    await run('tar', ['-xf', saveTar, '-C', extracted]);
    rmSync(saveTar);
    const tars = await layerTarsByDiffId(extracted);
    // The changed layers, each once (the bundle stores a layer once however many images use it),
    // compressed the way a person would: zstd -3 of the uncompressed layer tar.
    step(`zstd -3 of the ${changed.size} changed layers`);
    const changedDiffIds = [...new Set(changed.values())];
    let changedRaw = 0;
    let changedZstd = 0;
    const changedDetail = [];
    for (const d of changedDiffIds) {
      const p = tars.get(d);
      if (!p) throw new SectionError(`changed layer ${d} is not in the docker save of release 2`);
      const z = join(work, 'layer.zst');
      await runToFile('zstd', ['-3', '-q', '-c', p], z);
      const raw = statSync(p).size;
      const zst = statSync(z).size;
      rmSync(z);
      changedRaw += raw;
      changedZstd += zst;
      changedDetail.push({ diffId: d, bytes: raw, zstd3: zst });
    }
    rmSync(extracted, { recursive: true, force: true });

    // --- timed: the baselines, then ferry ----------------------------------------------------
    step('docker save r2 > /dev/null');
    const save = await runToDevNull('docker', ['save', ...ids2]);
    rows.push({ what: 'docker save r2 > /dev/null', wall: save.ms / 1000, cpu: save.cpuS, sizeMB: archiveBytes / MB });

    step('docker save r2 | gzip -6');
    const gz = await saveThrough(ids2, 'gzip -6', join(work, 'r2.tar.gz'));
    const gzBytes = gz.bytes;
    rows.push({ what: 'docker save r2 | gzip -6', wall: gz.ms / 1000, cpu: gz.cpuS, sizeMB: gzBytes / MB });

    step('docker save r2 | zstd -3 -T0');
    const zst = await saveThrough(ids2, 'zstd -q -3 -T0', join(work, 'r2.tar.zst'));
    const zstBytes = zst.bytes;
    rows.push({ what: 'docker save r2 | zstd -3 -T0', wall: zst.ms / 1000, cpu: zst.cpuS, sizeMB: zstBytes / MB });

    step('ferry bundle create r2 (no --base)');
    const cFull = await create(facts.def_r2, b2full, 2);
    const fullBytes = await dirBytes(b2full);
    rmSync(b2full, { recursive: true, force: true });
    rows.push({ what: 'ferry bundle create r2 (no --base)', wall: cFull.ms / 1000, cpu: cFull.cpuS, sizeMB: fullBytes / MB, rssMB: cFull.rssMB });

    step('ferry bundle create r2 --base inventory.json');
    const c2 = await create(facts.def_r2, b2, 2, ['--base', inv]);
    const deltaBytes = await dirBytes(b2);
    const m2 = JSON.parse(readFileSync(join(b2, 'ferry.json'), 'utf8'));
    const included = new Map();
    for (const im of m2.images) for (const l of im.layers) if (l.included) included.set(l.chainId, l);
    const blobBytes = [...new Map([...included.values()].map((l) => [l.blob.digest, l.blob.size])).values()].reduce((a, b) => a + b, 0);
    rows.push({ what: 'ferry bundle create r2 --base inventory.json', wall: c2.ms / 1000, cpu: c2.cpuS, sizeMB: deltaBytes / MB, rssMB: c2.rssMB });
    rows.push({ what: `  of which layer blobs (${new Set([...included.values()].map((l) => l.blob.digest)).size})`, sizeMB: blobBytes / MB });
    rows.push({ what: '  of which metadata (manifest, configs, compose, OCI)', sizeMB: (deltaBytes - blobBytes) / MB });
    rows.push({ what: `changed layers (${changedDiffIds.length}), zstd -3 each`, sizeMB: changedZstd / MB });
    rows.push({ what: `changed layers (${changedDiffIds.length}), uncompressed`, sizeMB: changedRaw / MB });

    step('ferry bundle install r2 --no-up on the engine holding r1');
    await sync();
    const i2 = await onEngine(() => ferry(['bundle', 'install', b2, '--trust', trust, '--state-dir', stateDir, '--no-up'], { env: benchEngine.env }));
    if (i2.result?.outcome !== 'loaded') throw new SectionError(`install of release 2 did not load: ${JSON.stringify(i2.result)}`);
    const onHost = await imageIds(ids2, benchEngine.env).catch(() => []);
    if (onHost.join() !== ids2.join()) throw new SectionError('after installing release 2 the bench engine lacks some of its images');
    rows.push({ what: 'ferry bundle install r2 --no-up (host holds r1)', wall: i2.ms / 1000, cpu: i2.cpuS, engineCpu: i2.engineCpuS, sizeMB: deltaBytes / MB, rssMB: i2.rssMB });
    rows.push({ what: 'ferry bundle install r1 --no-up (fresh engine; setup)', wall: i1.ms / 1000, cpu: i1.cpuS, engineCpu: i1.engineCpuS, sizeMB: b1Bytes / MB, rssMB: i1.rssMB });
    rows.push({ what: 'ferry bundle create r1 (setup)', wall: c1.ms / 1000, cpu: c1.cpuS, sizeMB: b1Bytes / MB, rssMB: c1.rssMB });

    for (const row of rows) {
      if (row.sizeMB !== undefined && !row.what.startsWith(' ') && !row.what.startsWith('ferry bundle install')) row.xDelta = row.sizeMB / (deltaBytes / MB);
      if (row.wall !== undefined && (row.what.startsWith('docker save') || row.what.startsWith('ferry bundle create r2'))) row.xSave = row.wall / (save.ms / 1000);
    }

    const limit = changedZstd + METADATA_ALLOWANCE;
    const sameSet = included.size === changed.size && [...changed.keys()].every((c) => included.has(c));
    const targets = [
      { name: 'r2 bundle ≤ zstd-3 of the changed layers + 1 MB', pass: deltaBytes <= limit, detail: `${(deltaBytes / MB).toFixed(2)} MB ≤ ${(changedZstd / MB).toFixed(2)} + 1 MB` },
      { name: 'carries exactly the changed layers', pass: sameSet, detail: `${included.size} carried, ${changed.size} changed, of ${uniqueR2Chains} in r2` },
    ];

    return {
      title: `delta — ${refs2.length} images, release 2 changes ${changed.size} of ${uniqueR2Chains} layers (${(changedRaw / MB).toFixed(1)} MB of ${(archiveBytes / MB).toFixed(0)} MB save archive); host: fresh engine (docker ${ctx.machine.benchEngine}) holding release 1`,
      columns: [
        { key: 'what', label: 'what', align: 'left' },
        { key: 'wall', label: 'wall s', format: fixed(1) },
        { key: 'xSave', label: '× save', format: fixed(2) },
        { key: 'cpu', label: 'cpu s', format: fixed(1) },
        { key: 'engineCpu', label: 'engine cpu s', format: fixed(1) },
        { key: 'sizeMB', label: 'size MB', format: fixed(2) },
        { key: 'xDelta', label: '× r2 bundle', format: fixed(1) },
        { key: 'rssMB', label: 'peak RSS MB', format: fixed(0) },
      ],
      rows,
      targets,
      notes: [
        `release 2 (bench/build-delta-images.sh): ${facts.changed ?? 'api worker web'} changed — api and web: three source files edited in the application layer; worker: one package (pygments) added to its dependency layer, so its application layer is rebuilt on top`,
        '"changed layers": layers of release 2 whose chain ID is not in the host inventory, each layer tar from docker save (identified by its sha256 = diffID) compressed alone with zstd -3',
        '× save: wall time against docker save r2 > /dev/null; × r2 bundle: size against the --base bundle',
        'install r2 is a partial load: the archive streamed to the engine names the layers the host already holds without carrying them',
      ],
      results: {
        imagesR1: refs1,
        imagesR2: refs2,
        imageIdsR2: ids2,
        archiveBytes,
        r2Layers,
        uniqueR2Chains,
        changed: changedDetail,
        changedRawBytes: changedRaw,
        changedZstdBytes: changedZstd,
        deltaBundleBytes: deltaBytes,
        deltaBlobBytes: blobBytes,
        fullBundleBytes: fullBytes,
        r1BundleBytes: b1Bytes,
        gzipBytes: gzBytes,
        zstdBytes: zstBytes,
        saveMs: save.ms,
        createDelta: { ms: c2.ms, cpuS: c2.cpuS, rssMB: c2.rssMB },
        createFull: { ms: cFull.ms, cpuS: cFull.cpuS, rssMB: cFull.rssMB },
        installR2: { ms: i2.ms, cpuS: i2.cpuS, engineCpuS: i2.engineCpuS, rssMB: i2.rssMB, timings: i2.result.timings },
        installR1: { ms: i1.ms, cpuS: i1.cpuS, engineCpuS: i1.engineCpuS, rssMB: i1.rssMB, timings: i1.result.timings },
        ferryArgs: ctx.ferryArgs,
        benchEngine: ctx.machine.benchEngine,
      },
    };
  } finally {
    for (const p of [b1, b2, b2full, saveTar, extracted, stateDir]) rmSync(p, { recursive: true, force: true });
    await benchEngine.down().catch((e) => ctx.log(`stopping the bench engine failed: ${e.message}`));
  }
}
