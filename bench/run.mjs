#!/usr/bin/env node
// `npm run bench` — measurements, not tests: each section prints a table against a baseline measured
// in the same run on the same machine, writes .bench/results-<section>.json, and exits 0 even when
// a target is missed (it is a report). Only a step that errors makes the exit code non-zero.
//
//   node bench/run.mjs [section…]     default: every section, in the order of SECTIONS
//
// Adding a section: write `async function benchX(ctx)` returning
//   { title, columns, rows, targets: [{ name, pass, detail? }], results }
// and register it in SECTIONS. `ctx` carries the shared helpers and machine facts; large temporary
// files belong in ctx.tmp(name), which is removed at the end whatever happens.
//
// Only node: modules, so the bench runs before (and independently of) the project's own build
// tooling, and measures the built CLI exactly as a user would run it: `node bin/ferry …`.
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { composeImages, createBundle, fixed, imageIds, GNU_TIME, MB, run, runToDevNull, saveBytes, saveFirstByte, saveThrough, SectionError } from './sections/common.mjs';
import { benchContainerd } from './sections/containerd.mjs';
import { benchSsh } from './sections/ssh.mjs';
import { benchSwarm } from './sections/swarm.mjs';
import { benchInstall } from './sections/install.mjs';
import { benchSwitch } from './sections/switch.mjs';
import { benchDelta } from './sections/delta.mjs';
import { benchBinary } from './sections/binary.mjs';
import { benchCache } from './sections/cache.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const RESULTS_DIR = join(ROOT, '.bench');

// ---------------------------------------------------------------------------------------------
// Runner helpers (the command runners themselves live in sections/common.mjs, shared by all sections)

function requireTool(path, hint) {
  if (!existsSync(path)) throw new SectionError(`${path} not found: ${hint}`);
}

async function requireOnPath(name, hint) {
  await run('bash', ['-c', `command -v ${name}`]).catch(() => {
    throw new SectionError(`${name} not found on PATH: ${hint}`);
  });
}

async function machineFacts() {
  const model = cpus()[0]?.model?.trim() || 'unknown CPU';
  const docker = await run('docker', ['version', '--format', '{{.Server.Version}}'])
    .then((r) => r.stdout.trim())
    .catch(() => 'unreachable');
  return {
    cores: cpus().length,
    memGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    cpu: model,
    node: process.version,
    docker,
    describe() {
      return `${this.cores} cores, ${this.memGiB} GiB RAM, ${this.cpu}, node ${this.node}, docker ${this.docker}`;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Table output

function renderTable(columns, rows) {
  const cells = rows.map((row) => columns.map((c) => (row[c.key] === undefined || row[c.key] === null ? '-' : c.format ? c.format(row[c.key]) : String(row[c.key]))));
  const widths = columns.map((c, i) => Math.max(c.label.length, ...cells.map((r) => r[i].length)));
  const line = (values) =>
    values
      .map((v, i) => (columns[i].align === 'left' ? v.padEnd(widths[i]) : v.padStart(widths[i])))
      .join('   ')
      .trimEnd();
  return [line(columns.map((c) => c.label)), ...cells.map(line)].join('\n');
}

// ---------------------------------------------------------------------------------------------
// Section: create — `ferry bundle create` against `docker save` and the usual compressors.

async function benchCreate(ctx) {
  requireTool(GNU_TIME, 'GNU time measures peak RSS; install it (apt-get install time, done by scripts/setup.sh)');
  requireTool(join(ROOT, 'dist', 'commands', 'bundle', 'create.js'), 'ferry is not built; run `npm run build` first');
  for (const [tool, pkg] of [['docker', 'docker.io'], ['gzip', 'gzip'], ['zstd', 'zstd'], ['ssh-keygen', 'openssh-client']]) {
    await requireOnPath(tool, `apt-get install ${pkg}`);
  }

  ctx.log('building the bench images (skipped when current) …');
  const built = await run('bash', [join(ROOT, 'bench', 'build-images.sh')]);
  process.stderr.write(built.stderr);
  const facts = Object.fromEntries(built.stdout.trim().split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  if (!facts.def || !facts.def_small || !facts.images) throw new SectionError(`build-images.sh printed no definitions:\n${built.stdout}`);
  const refs = facts.images.split(' ');
  // Asked again now that build-images.sh has waited for the engine (it may have been restarting).
  ctx.machine.docker = (await run('docker', ['version', '--format', '{{.Server.Version}}'])).stdout.trim();
  const idsOf = (def) => imageIds(composeImages(def));
  // By ID, the very set `ferry bundle create` pins and saves, so every row reads the same archive.
  const ids = await idsOf(facts.def);
  const smallIds = await idsOf(facts.def_small);

  const work = ctx.tmp('create');
  await run('ssh-keygen', ['-t', 'ed25519', '-N', '', '-C', 'ferry-bench', '-f', join(work, 'key'), '-q']);

  // Warm-up, untimed: brings the engine's layer files into the page cache so the first timed row
  // does not pay for the disk, and measures the archive every row reads.
  ctx.log('warming up: docker save > (counted) …');
  const archiveBytes = await saveBytes(ids);
  const smallArchiveBytes = await saveBytes(smallIds);

  const rows = [];
  const step = (what) => ctx.log(`${what} …`);

  step('docker save > /dev/null');
  const save = await runToDevNull('docker', ['save', ...ids]);
  rows.push({ what: 'docker save > /dev/null', wall: save.ms / 1000, cpu: save.cpuS });

  // When the first byte leaves the engine: nothing downstream of a save can start before it. An
  // engine with the classic image store writes the whole export into a temporary directory first
  // and only then streams it, so most of `docker save`'s wall time passes with no byte to work on.
  step('docker save: time to the first byte');
  const firstByteS = await saveFirstByte(ids);
  rows.push({ what: 'docker save: first byte', wall: firstByteS });

  step('docker save | gzip -6');
  const gz = await saveThrough(ids, 'gzip -6', join(work, 'save.tar.gz'));
  rows.push({ what: 'docker save | gzip -6', wall: gz.ms / 1000, cpu: gz.cpuS, sizeMB: gz.bytes / MB });

  step('docker save | zstd -3 -T0');
  const zst = await saveThrough(ids, 'zstd -q -3 -T0', join(work, 'save.tar.zst'));
  const zstBytes = zst.bytes;
  rows.push({ what: 'docker save | zstd -3 -T0', wall: zst.ms / 1000, cpu: zst.cpuS, sizeMB: zstBytes / MB });
  // The least wall time of anything that compresses the save at zstd -3 here: the first byte,
  // then zstd's CPU for the archive (the pipeline's CPU less the docker CLI's) on every core.
  const floorS = firstByteS + Math.max(0, zst.cpuS - save.cpuS) / ctx.machine.cores;
  rows.push({ what: `floor: first byte + zstd -3 CPU / ${ctx.machine.cores} cores`, wall: floorS });

  // A fresh layer cache each: the create section measures a cold create (compression), whatever
  // ~/.cache/ferry holds; the cache section measures the warm one.
  const ferryCreate = (def, name) => createBundle(def, join(work, name), join(work, 'key'), ctx.ferryArgs.includes('--no-cache') || ctx.ferryArgs.includes('--cache') ? ctx.ferryArgs : ['--cache', join(work, `cache-${name}`), ...ctx.ferryArgs]);

  step(`ferry bundle create${ctx.ferryArgs.length ? ` ${ctx.ferryArgs.join(' ')}` : ''}`);
  const full = await ferryCreate(facts.def, 'full.ferry');
  rows.push({ what: 'ferry bundle create', wall: full.ms / 1000, cpu: full.cpuS, sizeMB: full.bytes / MB, rssMB: full.rssMB });

  // The same measurement on base + one app: peak RSS should not grow with the stack.
  step('docker save (small) > /dev/null');
  const saveSmall = await runToDevNull('docker', ['save', ...smallIds]);
  step('ferry bundle create (small)');
  const small = await ferryCreate(facts.def_small, 'small.ferry');
  rows.push({ what: 'docker save (small) > /dev/null', wall: saveSmall.ms / 1000, cpu: saveSmall.cpuS, baseline: saveSmall.ms / 1000 });
  rows.push({ what: 'ferry bundle create (small)', wall: small.ms / 1000, cpu: small.cpuS, sizeMB: small.bytes / MB, rssMB: small.rssMB, baseline: saveSmall.ms / 1000 });

  for (const row of rows) {
    row.xSave = row.wall / (row.baseline ?? save.ms / 1000);
    // Sizes compare only against the zstd of the same image set: the small stack has none.
    if (row.sizeMB !== undefined && row.baseline === undefined) row.xZstd = row.sizeMB / (zstBytes / MB);
  }

  const wallRatio = full.ms / save.ms;
  const rssLimit = 200;
  const flat = full.rssMB <= small.rssMB * 1.25;
  const targets = [
    { name: 'create ≤ 1.2× save', pass: wallRatio <= 1.2, detail: `${wallRatio.toFixed(2)}×; the floor for zstd -3 on this engine and machine is ${(floorS / (save.ms / 1000)).toFixed(2)}×` },
    { name: 'size ≤ zstd-3', pass: full.bytes <= zstBytes, detail: `${(full.bytes / zstBytes).toFixed(3)}×` },
    { name: `RSS ≤ ${rssLimit} MB`, pass: full.rssMB <= rssLimit && small.rssMB <= rssLimit, detail: `${full.rssMB.toFixed(0)} MB` },
    { name: 'RSS flat (full ≤ 1.25× small)', pass: flat, detail: `${small.rssMB.toFixed(0)} → ${full.rssMB.toFixed(0)} MB for ${(smallArchiveBytes / MB).toFixed(0)} → ${(archiveBytes / MB).toFixed(0)} MB` },
  ];

  return {
    title: `bundle create — ${full.images} images (${full.layers} layers), ${(full.layerBytes / MB).toFixed(0)} MB of layers, ${(archiveBytes / MB).toFixed(0)} MB save archive`,
    columns: [
      { key: 'what', label: 'what', align: 'left' },
      { key: 'wall', label: 'wall s', format: fixed(1) },
      { key: 'xSave', label: '× save', format: fixed(2) },
      { key: 'cpu', label: 'cpu s', format: fixed(1) },
      { key: 'sizeMB', label: 'size MB', format: fixed(1) },
      { key: 'xZstd', label: '× zstd-3', format: fixed(3) },
      { key: 'rssMB', label: 'peak RSS MB', format: fixed(0) },
    ],
    rows,
    targets,
    notes: [
      'the (small) rows: base + one app; × save is against the save of that same small set',
      'cpu s: user + system time of the client side (docker CLI, gzip/zstd, ferry); the engine\'s own work for the save is not in it',
      `first byte: the engine sends nothing for the first ${((firstByteS / (save.ms / 1000)) * 100).toFixed(0)}% of its save (it writes the export to a temporary directory first), so no consumer of the stream can start before ${firstByteS.toFixed(1)} s`,
    ],
    results: {
      images: refs,
      imageIds: ids,
      archiveBytes,
      smallArchiveBytes,
      layerBytes: full.layerBytes,
      layers: full.layers,
      ferryArgs: ctx.ferryArgs,
      saveMs: save.ms,
      firstByteMs: firstByteS * 1000,
      floorMs: floorS * 1000,
      saveCpuS: save.cpuS,
      gzip: { ms: gz.ms, cpuS: gz.cpuS, bytes: gz.bytes },
      zstd: { ms: zst.ms, cpuS: zst.cpuS, bytes: zstBytes },
      ferry: full,
      saveSmallMs: saveSmall.ms,
      ferrySmall: small,
    },
  };
}

// ---------------------------------------------------------------------------------------------

const SECTIONS = {
  create: benchCreate,
  cache: benchCache,
  ssh: benchSsh,
  install: benchInstall,
  delta: benchDelta,
  containerd: benchContainerd,
  binary: benchBinary,
  swarm: benchSwarm,
  switch: benchSwitch,
};

async function main() {
  const argv = process.argv.slice(2);
  // Extra flags for `ferry bundle create` (e.g. `-- --workers 1 --level 1`) to compare settings
  // without editing this file; the default run measures ferry as shipped.
  const dashdash = argv.indexOf('--');
  const names = dashdash >= 0 ? argv.slice(0, dashdash) : argv;
  const ferryArgs = dashdash >= 0 ? argv.slice(dashdash + 1) : [];
  const unknown = names.filter((n) => !(n in SECTIONS));
  if (unknown.length > 0) throw new SectionError(`unknown section ${unknown.join(', ')}; known: ${Object.keys(SECTIONS).join(', ')}`);
  const selected = names.length > 0 ? names : Object.keys(SECTIONS);

  const machine = await machineFacts();
  const scratch = [];
  const cleanup = () => scratch.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true }));
  // Bundles and archives here run to hundreds of MB: never leave them behind, even on Ctrl-C.
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.once(sig, () => {
      cleanup();
      process.exit(130);
    });
  }
  const ctx = {
    machine,
    ferryArgs,
    log: (msg) => process.stderr.write(`bench: ${msg}\n`),
    tmp(name) {
      const dir = mkdtempSync(join(process.env.FERRY_BENCH_TMP ?? tmpdir(), `ferry-bench-${name}-`));
      scratch.push(dir);
      return dir;
    },
  };
  // bundle create keeps a layer cache by default: one per bench run, so that no row depends on what
  // an earlier run (or the user's own creates) left in ~/.cache/ferry.
  if (!process.env.XDG_CACHE_HOME) process.env.XDG_CACHE_HOME = ctx.tmp('xdg-cache');

  try {
    for (const name of selected) {
      const started = performance.now();
      // Load from other work on the machine skews wall times; printed so a reader can judge a run.
      const loadBefore = loadavg()[0];
      const section = await SECTIONS[name](ctx);
      const loadAfter = loadavg()[0];
      const elapsed = (performance.now() - started) / 1000;
      const lines = [
        `bench: ${section.title}, machine: ${machine.describe()}, load avg ${loadBefore.toFixed(1)} → ${loadAfter.toFixed(1)}`,
        renderTable(section.columns, section.rows),
        `targets: ${section.targets.map((t) => `${t.name}: ${t.pass ? 'PASS' : 'FAIL'}${t.detail ? ` (${t.detail})` : ''}`).join('; ')}`,
        ...(section.notes ?? []).map((n) => `note: ${n}`),
      ];
      process.stdout.write(`${lines.join('\n')}\n\n`);
      mkdirSync(RESULTS_DIR, { recursive: true });
      const file = join(RESULTS_DIR, `results-${name}.json`);
      writeFileSync(
        file,
        `${JSON.stringify({ section: name, date: new Date().toISOString(), elapsedS: elapsed, machine: { ...machine, describe: undefined }, loadAvg1m: { before: loadBefore, after: loadAfter }, title: section.title, rows: section.rows, targets: section.targets, results: section.results }, null, 2)}\n`,
      );
      ctx.log(`${name}: ${elapsed.toFixed(0)} s; results in ${file}`);
    }
  } finally {
    cleanup();
  }
}

main().catch((e) => {
  process.stderr.write(`bench: ERROR: ${e instanceof SectionError ? e.message : (e?.stack ?? e)}\n`);
  process.exit(1);
});
