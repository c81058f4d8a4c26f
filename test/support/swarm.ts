// A real Docker Swarm for end-to-end tests: scripts/swarm.sh starts N nodes (ssh-hosts.sh hosts of
// their own, joined by a bridge) and forms the swarm; these helpers drive and observe it.
import { join } from 'node:path';
import { ROOT, run, type DockerClient, type RunOptions, type RunResult } from './engines.js';
import { parseEnv } from './ssh-hosts.js';

export interface Swarm {
  /** root@198.19.0.11: node 1, the manager, at its swarm address. */
  manager: string;
  /** Every node's SSH target at its swarm address, node N at index N-1. */
  nodes: string[];
  identity: string;
  knownHosts: string;
  dir: string;
  /** Whether this process started the nodes (and so removes them). */
  started: boolean;
}

export interface SwarmOptions {
  /** Node numbers that run Docker 26 on the containerd image store; the others Docker 20.10. */
  docker26c?: number[];
}

const script = (args: string[], opts: RunOptions = {}) => run('bash', [join(ROOT, 'scripts/swarm.sh'), ...args], { timeoutMs: 300_000, ...opts });

export async function swarmUp(n: number, opts: SwarmOptions = {}): Promise<Swarm> {
  const already = (await script(['status'])).code === 0;
  const env = opts.docker26c ? { FERRY_SWARM_DOCKER26C_NODES: opts.docker26c.join(' ') } : undefined;
  const up = await script(['up', String(n)], { check: true, ...(env ? { env } : {}) });
  const v = parseEnv(up.stdout);
  const nodes = (v.FERRY_SWARM_NODES ?? '').split(' ').filter(Boolean);
  if (nodes.length < n) throw new Error(`swarm.sh up ${n} printed ${nodes.length} nodes:\n${up.stdout}\n${up.stderr}`);
  return { manager: v.FERRY_SWARM_MANAGER!, nodes, identity: v.FERRY_SWARM_IDENTITY!, knownHosts: v.FERRY_SWARM_KNOWN_HOSTS!, dir: v.FERRY_SWARM_DIR!, started: !already };
}

/** Leaves nothing behind: every node leaves the swarm; nodes this process started are removed. */
export async function swarmDown(swarm: Swarm | undefined): Promise<void> {
  if (!swarm) return;
  await script([swarm.started && process.env.FERRY_TEST_KEEP_SWARM !== '1' ? 'down' : 'leave']);
}

/** The docker CLI on node N's engine, through its socket on this machine. */
export function nodeDocker(swarm: Swarm, n: number): DockerClient {
  const host = `unix://${swarm.dir}/h${n}/docker.sock`;
  return { host, run: (args, opts = {}) => run('docker', args, { ...opts, env: { ...opts.env, DOCKER_HOST: host, DOCKER_CONTEXT: '' } }) };
}

/** A command inside node N's network namespace, e.g. wget of a port a task published there (mode host). */
export function inNodeNetns(n: number, command: string, args: readonly string[], opts?: RunOptions): Promise<RunResult> {
  return run('nsenter', [`--net=/var/run/netns/ferry-sw${n}`, command, ...args], opts);
}

/** Stops or starts node N's sshd; its engine stays in the swarm (a node ferry cannot reach). */
export const nodeSshd = (n: number, action: 'stop' | 'start') =>
  run('bash', [join(ROOT, 'scripts/ssh-hosts.sh'), 'sshd', action, String(n)], {
    check: true,
    timeoutMs: 60_000,
    env: { FERRY_ENGINES_DIR: process.env.FERRY_SWARM_DIR ?? '/tmp/ferry-swarm', FERRY_SSH_NAME: 'ferry-sw', FERRY_SSH_HOSTNAME: 'swarm', FERRY_SSH_NET_PREFIX: process.env.FERRY_SWARM_NET_PREFIX ?? '198.19' },
  });
