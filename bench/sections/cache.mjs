// Section `cache` (issue 14): what the build server's layer cache and the no-compression of held
// layers buy. Release 1 and 2 of the delta stack (bench/build-delta-images.sh), on this engine:
// - cold: create of release 1 with an empty cache, against `docker save | zstd -3 -T0`;
// - warm: create of release 2 after release 1 filled the cache, against `docker save`;
// - base: create of release 2 with --base release 1 and no cache, against `docker save`;
// plus a create of release 2 without any cache, the reference the warm bundle must equal byte for
// byte (every file but the manifest's timestamp, what lists it, and the signatures).
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { FERRY, MB, SectionError, dirBytes, ferry, fixed, imageIds, keyValues, requireTools, run, runToDevNull, saveBytes, saveThrough, signingKey, sync } from './common.mjs';

/** sha256 of stdin, printed: the least a consumer of the save that hashes every byte does. */
const HASH_STDIN = "const h = require('node:crypto').createHash('sha256'); process.stdin.on('data', (d) => h.update(d)).on('end', () => console.log(h.digest('hex')));";

const VOLATILE = new Set(['ferry.json', 'ferry.json.sig', 'SHA256SUMS', 'SHA256SUMS.sig']);

function contents(bundle) {
  const out = {};
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (!VOLATILE.has(relative(bundle, p))) out[relative(bundle, p)] = createHash('sha256').update(readFileSync(p)).digest('hex');
    }
  };
  walk(bundle);
  const manifest = JSON.parse(readFileSync(join(bundle, 'ferry.json'), 'utf8'));
  delete manifest.created;
  out['ferry.json without created'] = createHash('sha256').update(JSON.stringify(manifest)).digest('hex');
  return out;
}

export async function benchCache(ctx) {
  await requireTools([['docker', 'docker.io'], ['zstd', 'zstd'], ['ssh-keygen', 'openssh-client']]);
  ctx.log('building the delta images (skipped when current) …');
  const facts = await keyValues('build-delta-images.sh', ctx);
  for (const k of ['def_r1', 'def_r2', 'images_r1', 'images_r2']) if (!facts[k]) throw new SectionError(`build-delta-images.sh printed no ${k}`);
  const ids1 = [...new Set(await imageIds(facts.images_r1.split(' ')))];
  const ids2 = [...new Set(await imageIds(facts.images_r2.split(' ')))];
  const work = ctx.tmp('cache');
  const { key } = await signingKey(work);
  const cache = join(work, 'layer-cache');
  const step = (what) => ctx.log(`${what} …`);
  const create = async (def, name, seq, extra) => {
    await sync();
    const out = join(work, name);
    const r = await ferry(['bundle', 'create', def, '--out', out, '--sign-key', key, '--sequence', String(seq), '--version', `bench-${seq}`, ...extra, ...ctx.ferryArgs]);
    return { ...r, out, bytes: await dirBytes(out) };
  };

  ctx.log('warming up: docker save of both releases (counted) …');
  const archive1 = await saveBytes(ids1);
  const archive2 = await saveBytes(ids2);
  const rows = [];

  step('docker save r1 | zstd -3 -T0');
  await sync();
  const zst1 = await saveThrough(ids1, 'zstd -q -3 -T0', join(work, 'r1.tar.zst'));
  rows.push({ what: 'docker save r1 | zstd -3 -T0', wall: zst1.ms / 1000, cpu: zst1.cpuS, sizeMB: zst1.bytes / MB });
  step('ferry bundle create r1, empty cache (cold)');
  const cold = await create(facts.def_r1, 'r1.ferry', 1, ['--cache', cache]);
  rows.push({ what: 'ferry create r1, empty cache (cold)', wall: cold.ms / 1000, cpu: cold.cpuS, sizeMB: cold.bytes / MB, rssMB: cold.rssMB, x: cold.ms / zst1.ms, vs: 'zstd', work: describe(cold.result) });

  step('docker save r2 > /dev/null');
  await sync();
  const save2 = await runToDevNull('docker', ['save', ...ids2]);
  rows.push({ what: 'docker save r2 > /dev/null', wall: save2.ms / 1000, cpu: save2.cpuS });
  step('ferry bundle create r2, cache filled by r1 (warm)');
  const warm = await create(facts.def_r2, 'r2-warm.ferry', 2, ['--cache', cache]);
  rows.push({ what: 'ferry create r2, cache of r1 (warm)', wall: warm.ms / 1000, cpu: warm.cpuS, sizeMB: warm.bytes / MB, rssMB: warm.rssMB, x: warm.ms / save2.ms, vs: 'save', work: describe(warm.result) });
  step('ferry bundle create r2 --base r1 --no-cache');
  const base = await create(facts.def_r2, 'r2-base.ferry', 2, ['--base', cold.out, '--no-cache']);
  rows.push({ what: 'ferry create r2 --base r1, no cache', wall: base.ms / 1000, cpu: base.cpuS, sizeMB: base.bytes / MB, rssMB: base.rssMB, x: base.ms / save2.ms, vs: 'save', work: describe(base.result) });
  step('ferry bundle create r2 --no-cache (the reference bundle)');
  const ref = await create(facts.def_r2, 'r2-ref.ferry', 2, ['--no-cache']);
  rows.push({ what: 'ferry create r2, no cache (reference)', wall: ref.ms / 1000, cpu: ref.cpuS, sizeMB: ref.bytes / MB, rssMB: ref.rssMB, x: ref.ms / save2.ms, vs: 'save', work: describe(ref.result) });

  // What no create can go below on this machine: the CLI's start-up, then the engine's save, which
  // create asks for from the compose files as written while Compose's own `config` of the project
  // runs beside it (docker-compose v1 is a Python program: its start-up alone is most of it), each
  // byte of it hashed on its way through (the issue's "only hashed": what confirms a layer is the
  // one the cache or a base says). The hashing is measured as this Node's sha256 of the whole save
  // in a pipe, with nothing else done to the bytes.
  step('floor: ferry start-up, compose config of r2, docker save r2 | sha256 in Node');
  const startup = await run(process.execPath, [FERRY, '--version']);
  const config = await composeConfig(facts.def_r2);
  const hashed = await saveThrough(ids2, `${JSON.stringify(process.execPath)} -e ${JSON.stringify(HASH_STDIN)}`, join(work, 'r2.sha256'));
  rows.push({ what: 'docker save r2 | sha256 (Node, nothing else)', wall: hashed.ms / 1000, x: hashed.ms / save2.ms, vs: 'save', cpu: hashed.cpuS });
  const floorMs = startup.ms + Math.max(config.ms, hashed.ms);
  rows.push({ what: `floor through a save: start-up + save r2 hashed (${config.tool} config beside it)`, wall: floorMs / 1000, x: floorMs / save2.ms, vs: 'save' });

  const a = contents(warm.out);
  const b = contents(ref.out);
  const differing = [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((k) => a[k] !== b[k]);
  const limit = 200;
  const targets = [
    { name: 'cold ≤ 1.1× save|zstd', pass: cold.ms / zst1.ms <= 1.1, detail: `${(cold.ms / zst1.ms).toFixed(2)}×` },
    { name: 'warm ≤ 1.15× save', pass: warm.ms / save2.ms <= 1.15, detail: `${(warm.ms / save2.ms).toFixed(2)}×, floor ${(floorMs / save2.ms).toFixed(2)}×` },
    { name: '--base ≤ 1.15× save', pass: base.ms / save2.ms <= 1.15, detail: `${(base.ms / save2.ms).toFixed(2)}×, floor ${(floorMs / save2.ms).toFixed(2)}×` },
    { name: `RSS ≤ ${limit} MB`, pass: [cold, warm, base].every((r) => r.rssMB <= limit), detail: [cold, warm, base].map((r) => r.rssMB.toFixed(0)).join(' / ') },
    { name: 'warm bundle = no-cache bundle', pass: differing.length === 0, detail: differing.length ? `differ: ${differing.slice(0, 3).join(', ')}` : `${Object.keys(a).length} files compared` },
  ];
  return {
    title: `layer cache — release 1 (${(archive1 / MB).toFixed(0)} MB save) then release 2 (${(archive2 / MB).toFixed(0)} MB save) of the delta stack`,
    columns: [
      { key: 'what', label: 'what', align: 'left' },
      { key: 'wall', label: 'wall s', format: fixed(1) },
      { key: 'x', label: '× baseline', format: fixed(2) },
      { key: 'vs', label: 'baseline', align: 'left' },
      { key: 'cpu', label: 'cpu s', format: fixed(1) },
      { key: 'sizeMB', label: 'size MB', format: fixed(1) },
      { key: 'rssMB', label: 'peak RSS MB', format: fixed(0) },
      { key: 'work', label: 'layers', align: 'left' },
    ],
    rows,
    targets,
    notes: [
      'layers: c compressed, h only hashed (held or from the cache), u skipped unread (held or from the cache), held! held but compressed before the hash told',
      'cold is against the zstd pipeline of release 1; warm and --base against the plain save of release 2',
      `floor through a save: ferry --version ${(startup.ms / 1000).toFixed(2)} s, then docker save with every byte hashed ${(hashed.ms / 1000).toFixed(2)} s (the save alone ${(save2.ms / 1000).toFixed(2)} s), ${config.tool} config (${(config.ms / 1000).toFixed(2)} s) beside it: the least a create that reads a save and hashes what it does not compress can take. Where the engine's classic store is on the build server ("read from the layer store"), create reads no save, and layers held or cached are not read at all: it can go under this floor`,
    ],
    results: { floor: { startupMs: startup.ms, configMs: config.ms, composeTool: config.tool, hashedSaveMs: hashed.ms, ms: floorMs }, archive1, archive2, cold: strip(cold), warm: strip(warm), base: strip(base), ref: strip(ref), zst1: { ms: zst1.ms, bytes: zst1.bytes }, save2: { ms: save2.ms, cpuS: save2.cpuS }, differing },
  };
}

/** One `config` of the definition's compose project by the Compose ferry would pick (v2 first), timed. */
async function composeConfig(def) {
  const v2 = await run('docker', ['compose', 'version']).then(() => true, () => false);
  const [cmd, pre, tool] = v2 ? ['docker', ['compose'], 'docker compose'] : ['docker-compose', [], 'docker-compose'];
  const r = await run(cmd, [...pre, '--project-directory', def, '--file', join(def, 'compose.yaml'), 'config'], { cwd: def });
  return { ms: r.ms, tool };
}

function describe(result) {
  const w = result?.layerWork;
  if (!w) return '-';
  const hits = result.cache?.hits ?? 0;
  const early = w.earlySave === 'used' ? ', early save' : w.earlySave === 'discarded' ? ', early save discarded' : '';
  const read = w.read === 'layer store' ? ', read from the layer store' : '';
  return `${w.compressed}c ${w.hashedOnly}h ${w.skippedUnread}u${hits ? ` (${hits} from the cache)` : ''}${w.compressedHeld ? ` ${w.compressedHeld}held!` : ''}${w.wrongGuesses ? ` ${w.wrongGuesses} wrong` : ''}${early}${read}`;
}

function strip(r) {
  return { ms: r.ms, cpuS: r.cpuS, rssMB: r.rssMB, bytes: r.bytes, layerWork: r.result?.layerWork, cache: r.result?.cache };
}
