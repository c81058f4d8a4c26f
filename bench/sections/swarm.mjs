// Section `swarm` (issue 13): `ferry bundle install --swarm` of the full bench stack onto the three
// nodes of scripts/swarm.sh, against the same bundle loaded onto one host over SSH.
//
// Every row starts from empty engines (each node's engine reset, the swarm formed again). The
// bench stack's images run `/bin/sh` and exit; in a swarm a task must keep running, so the
// swarm's definition gives every service `command: sleep 86400` (same images, same bundle bytes).
// The one-host rows are `install --ssh NODE1`, the whole install (load, `compose up`, every service
// healthy: the same first health check a swarm task waits for), and the same with --no-up (transfer
// and load, what a swarm install does on each node before its deploy); the swarm row is the whole
// install: every node loaded at once, `docker stack deploy`, every service running and healthy.
//
// Targets: the 3-node install ≤ 1.3× the one-host install; ferry's peak RSS ≤ 200 MB whatever the
// node count.
import { spawnSync } from 'node:child_process';
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MB, ROOT, SectionError, dirBytes, ferry, fixed, keyValues, requireTools, run, signingKey, sync } from './common.mjs';

const SWARM = join(ROOT, 'scripts', 'swarm.sh');
const HOSTS = join(ROOT, 'scripts', 'ssh-hosts.sh');
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
const SWARM_DIR = process.env.FERRY_SWARM_DIR ?? '/tmp/ferry-swarm';
const HOSTS_ENV = { FERRY_ENGINES_DIR: SWARM_DIR, FERRY_SSH_NAME: 'ferry-sw', FERRY_SSH_HOSTNAME: 'swarm', FERRY_SSH_NET_PREFIX: process.env.FERRY_SWARM_NET_PREFIX ?? '198.19', FERRY_SSH_ENGINE_TMPFS: '1', FERRY_SWARM_DOCKER26C_NODES: '' };

function cpuOf(pidFile) {
  try {
    const pid = readFileSync(pidFile, 'utf8').trim();
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const x = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return (Number(x[11]) + Number(x[12]) + Number(x[13]) + Number(x[14])) / CLK_TCK;
  } catch {
    return 0;
  }
}

export async function benchSwarm(ctx) {
  await requireTools([['docker', 'docker.io'], ['dockerd', 'docker.io'], ['ip', 'iproute2'], ['nsenter', 'util-linux'], ['ssh-keygen', 'openssh-client']]);
  ctx.log('building the bench images (skipped when current) …');
  const facts = await keyValues('build-images.sh', ctx);
  if (!facts.def) throw new SectionError('build-images.sh printed no definition');

  const wasUp = spawnSync('bash', [SWARM, 'status'], { stdio: 'ignore' }).status === 0;
  const work = ctx.tmp('swarm');
  const def = join(work, 'def');
  cpSync(facts.def, def, { recursive: true });
  const compose = readFileSync(join(def, 'compose.yaml'), 'utf8').replace(/^(\s+)image: (\S+)$/gm, '$1image: $2\n$1command: ["sleep", "86400"]');
  writeFileSync(join(def, 'compose.yaml'), compose);
  writeFileSync(join(def, 'ferry.yaml'), 'name: benchswarm\nversion: 1.0.0\ncompose: compose.yaml\n');
  const { key, trust } = await signingKey(work);
  const bundle = join(work, 'full.ferry');

  /** Empty engines, the swarm formed again: a reset wipes the data root, and the swarm's state with it. */
  const fresh = async () => {
    await run('bash', [SWARM, 'up', '3'], { env: HOSTS_ENV });
    for (const n of [1, 2, 3]) await run('bash', [HOSTS, 'reset-engine', String(n)], { env: HOSTS_ENV });
    const up = await run('bash', [SWARM, 'up', '3'], { env: HOSTS_ENV });
    await sync();
    return Object.fromEntries([...up.stdout.matchAll(/^export (\w+)="?([^"\n]*)"?$/gm)].map((m) => [m[1], m[2]]));
  };
  const measured = async (fn, dir) => {
    const files = [1, 2, 3].flatMap((n) => [join(dir, `h${n}`, 'dockerd.pid'), join(dir, `h${n}`, 'sshd.pid')]);
    const before = files.map(cpuOf);
    const r = await fn();
    return { ...r, hostCpuS: files.map(cpuOf).reduce((a, v, i) => a + v - before[i], 0) };
  };

  try {
    ctx.log('swarm: scripts/swarm.sh up 3 (engines in memory) …');
    let env = await fresh();
    const ssh = ['-i', env.FERRY_SWARM_IDENTITY, '--known-hosts', env.FERRY_SWARM_KNOWN_HOSTS, '--ssh-config', 'none'];
    const clientEnv = { SSH_AUTH_SOCK: '' };
    ctx.log('ferry bundle create (untimed) …');
    await ferry(['bundle', 'create', def, '--out', bundle, '--sign-key', key, ...ctx.ferryArgs]);
    const manifest = JSON.parse(readFileSync(join(bundle, 'ferry.json'), 'utf8'));
    const layerBytes = [...new Map(manifest.images.flatMap((im) => im.layers.map((l) => [l.diffId, l.size]))).values()].reduce((x, y) => x + y, 0);

    ctx.log('one host: install --ssh node 1 --no-up …');
    const one = await measured(() => ferry(['bundle', 'install', bundle, '--trust', trust, '--ssh', env.FERRY_SWARM_MANAGER, ...ssh, '--no-up'], { env: clientEnv }), env.FERRY_SWARM_DIR);
    if (one.result?.outcome !== 'loaded') throw new SectionError(`one host: ${JSON.stringify(one.result).slice(0, 400)}`);

    env = await fresh();
    ctx.log('one host: install --ssh node 1 (load, compose up, healthy) …');
    const oneUp = await measured(() => ferry(['bundle', 'install', bundle, '--trust', trust, '--ssh', env.FERRY_SWARM_MANAGER, ...ssh, '--wait-timeout', '300'], { env: clientEnv }), env.FERRY_SWARM_DIR);
    if (oneUp.result?.outcome !== 'installed') throw new SectionError(`one host, up: ${JSON.stringify(oneUp.result).slice(0, 400)}`);

    env = await fresh();
    ctx.log('three nodes: install --swarm …');
    const three = await measured(() => ferry(['bundle', 'install', bundle, '--trust', trust, '--swarm', '--ssh', env.FERRY_SWARM_MANAGER, ...ssh, '--wait-timeout', '300'], { env: clientEnv }), env.FERRY_SWARM_DIR);
    if (three.result?.outcome !== 'installed') throw new SectionError(`swarm: ${JSON.stringify(three.result).slice(0, 400)}`);
    const nodes = three.result.nodes;
    // The timeline, from ferry's own start: when each node's load began and ended.
    const offsetS = (three.ms - three.result.durationMs) / 1000;
    const loadedS = Math.max(...nodes.map((n) => n.startedMs + n.durationMs)) / 1000 + offsetS;

    const ratio = three.ms / oneUp.ms;
    const loadRatio = loadedS / (one.ms / 1000);
    // What the cores allow: the CPU the loads need (every node's engine and sshd, and ferry) spread
    // over this machine's cores, plus the wait for a first health check that both installs have.
    const floorS = (three.cpuS + three.hostCpuS) / ctx.machine.cores;
    const healthWaitS = oneUp.ms / 1000 - one.ms / 1000;
    const rssTarget = 200;
    const rows = [
      { what: 'one host: install --ssh (load, compose up, healthy)', wall: oneUp.ms / 1000, cpu: oneUp.cpuS, hostCpu: oneUp.hostCpuS, rssMB: oneUp.rssMB },
      { what: 'one host: install --ssh --no-up (load only)', wall: one.ms / 1000, cpu: one.cpuS, hostCpu: one.hostCpuS, rssMB: one.rssMB },
      { what: '3-node swarm: install --swarm (load every node, stack deploy, healthy)', wall: three.ms / 1000, xOne: ratio, cpu: three.cpuS, hostCpu: three.hostCpuS, rssMB: three.rssMB, rssTarget: `≤ ${rssTarget}` },
      { what: '  every node loaded (× the one-host load)', wall: loadedS, xOne: loadRatio },
      ...nodes.map((n) => ({ what: `  ${n.node} (${n.role}): load from ${(offsetS + n.startedMs / 1000).toFixed(1)} s to`, wall: offsetS + (n.startedMs + n.durationMs) / 1000 })),
      { what: '  stack deploy until every service ran healthy', wall: three.ms / 1000 - loadedS },
    ];
    const mb = (x) => (x / MB).toFixed(0);
    return {
      title: `install onto a 3-node swarm — ${manifest.images.length} images, ${mb(layerBytes)} MB of layers, bundle ${mb(await dirBytes(bundle))} MB; empty engines`,
      columns: [
        { key: 'what', label: 'what', align: 'left' },
        { key: 'wall', label: 'wall s', format: fixed(1) },
        { key: 'xOne', label: '× 1 host', format: fixed(2) },
        { key: 'cpu', label: 'ferry cpu s', format: fixed(1) },
        { key: 'hostCpu', label: 'hosts cpu s', format: fixed(1) },
        { key: 'rssMB', label: 'peak RSS MB', format: fixed(0) },
        { key: 'rssTarget', label: 'target MB' },
      ],
      rows,
      targets: [
        {
          name: '3-node install ≤ 1.3× one host',
          pass: ratio <= 1.3,
          detail: `${ratio.toFixed(2)}× the one-host install (the loads alone ${loadRatio.toFixed(2)}× one host's); the floor on this machine is ${(floorS + healthWaitS).toFixed(1)} s = ${((floorS + healthWaitS) / (oneUp.ms / 1000)).toFixed(2)}× (the loads' CPU over ${ctx.machine.cores} cores, ${floorS.toFixed(1)} s = ${(floorS / (one.ms / 1000)).toFixed(2)}× one host's load, and the health checks' wait both installs have, ${healthWaitS.toFixed(1)} s)`,
        },
        { name: `peak RSS ≤ ${rssTarget} MB`, pass: three.rssMB <= rssTarget, detail: `${three.rssMB.toFixed(0)} MB for 3 nodes loading at once, ${one.rssMB.toFixed(0)} MB for one` },
      ],
      notes: [
        `the nodes load at once (the indented rows: when each node's load began and ended, from ferry's start); all three share this machine's ${ctx.machine.cores} cores, as three real nodes would not. Their CPU and ferry's (${(three.cpuS + three.hostCpuS).toFixed(1)} s over ${ctx.machine.cores} cores) put a floor of ${floorS.toFixed(1)} s under the loads`,
        'both whole installs wait for the stack\'s first health check (["CMD", "true"] at Docker\'s default 30 s interval): a swarm task counts as running, and compose up --wait returns, only once healthy',
        'engines keep their data roots in memory (FERRY_SSH_ENGINE_TMPFS=1)',
      ],
      results: { one, oneUp, three: { ...three, result: undefined }, nodes, layerBytes },
    };
  } finally {
    rmSync(bundle, { recursive: true, force: true });
    await run('bash', [SWARM, wasUp ? 'leave' : 'down'], { env: HOSTS_ENV }).catch((e) => ctx.log(`swarm.sh failed: ${e.message}`));
  }
}
