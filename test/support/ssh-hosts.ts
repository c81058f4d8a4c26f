// Hosts reached over SSH for end-to-end tests: scripts/ssh-hosts.sh starts them (each a network,
// mount and UTS namespace with its own dockerd and sshd; Docker 20.10, or Docker 26 on the
// containerd image store with its own containerd and Compose v2), these helpers drive and observe them.
import { join } from 'node:path';
import { ROOT, run, type DockerClient, type RunOptions, type RunResult } from './engines.js';

export interface SshHosts {
  /** root@198.18.N.2, host N at index N-1. */
  targets: string[];
  /** Private key the hosts accept for root. */
  identity: string;
  /** known_hosts listing every host's key. */
  knownHosts: string;
  dir: string;
  /** Whether this process started them (and so stops them). */
  started: boolean;
  /** Host numbers that run Docker 26 on the containerd image store, with Compose v2 (the rest: Docker 20.10, Compose v1). */
  docker26c: number[];
}

export interface SshHostsOptions {
  /**
   * Host numbers that must run Docker 26 on the containerd image store with Compose v2
   * (FERRY_SSH_DOCKER26C_HOSTS of scripts/ssh-hosts.sh); every other host runs Docker 20.10.
   * A host already up with the other engine is rebuilt. Unset: hosts already up keep theirs.
   */
  docker26c?: number[];
}

const script = (args: string[], opts: RunOptions = {}) => run('bash', [join(ROOT, 'scripts/ssh-hosts.sh'), ...args], { timeoutMs: 240_000, ...opts });

/** The `export NAME=value` lines a harness script's `up`/`env` prints (ssh-hosts.sh, swarm.sh). */
export function parseEnv(stdout: string): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const line of stdout.split('\n')) {
    const m = /^export ([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) vars[m[1]!] = m[2]!.replace(/^"|"$/g, '');
  }
  return vars;
}

/** Starts N hosts unless they already run (then they are left running afterwards). */
export async function sshHostsUp(n: number, opts: SshHostsOptions = {}): Promise<SshHosts> {
  const status = await script(['status']);
  const already = status.code === 0 && status.stdout.trim().split('\n').length >= n;
  const env = opts.docker26c ? { FERRY_SSH_DOCKER26C_HOSTS: opts.docker26c.join(' ') } : undefined;
  const up = await script(['up', String(n)], { check: true, ...(env ? { env } : {}) });
  const vars = parseEnv(up.stdout);
  const targets = (vars.FERRY_SSH_HOSTS ?? '').split(' ').filter(Boolean);
  if (targets.length < n) throw new Error(`ssh-hosts.sh up ${n} printed ${targets.length} hosts:\n${up.stdout}\n${up.stderr}`);
  const docker26c = (vars.FERRY_SSH_DOCKER26C_HOSTS ?? '').split(' ').filter(Boolean).map(Number);
  if (opts.docker26c && docker26c.join(' ') !== opts.docker26c.filter((h) => h <= targets.length).join(' ')) {
    throw new Error(`ssh-hosts.sh up ${n}: Docker 26 (containerd store) hosts are [${docker26c}], not [${opts.docker26c}]:\n${up.stdout}\n${up.stderr}`);
  }
  return { targets, identity: vars.FERRY_SSH_IDENTITY!, knownHosts: vars.FERRY_SSH_KNOWN_HOSTS!, dir: vars.FERRY_SSH_DIR!, started: !already, docker26c };
}

export async function sshHostsDown(hosts: SshHosts | undefined): Promise<void> {
  if (hosts?.started && process.env.FERRY_TEST_KEEP_SSH_HOSTS !== '1') await script(['down']);
}

/** The docker CLI on host N's engine (through its socket on this machine, not over SSH). */
export function hostDocker(hosts: SshHosts, n: number): DockerClient {
  const host = `unix://${hosts.dir}/h${n}/docker.sock`;
  return { host, run: (args, opts = {}) => run('docker', args, { ...opts, env: { ...opts.env, DOCKER_HOST: host, DOCKER_CONTEXT: '' } }) };
}

/** A command inside host N's network namespace, e.g. wget of a port a container published there. */
export function inHostNetns(n: number, command: string, args: readonly string[], opts?: RunOptions): Promise<RunResult> {
  return run('nsenter', [`--net=/var/run/netns/ferry-ssh${n}`, command, ...args], opts);
}

/** Host N's engine empty again (stopped, data wiped, started with the engine it runs), its /var/lib/ferry emptied. */
export const resetEngine = (n: number) => script(['reset-engine', String(n)], { check: true });

export const sshd = (n: number, action: 'stop' | 'start') => script(['sshd', action, String(n)], { check: true });

/** Kills every SSH connection host N serves, as a link or host dying mid-transfer would. */
export const killSessions = (n: number) => script(['kill-sessions', String(n)], { check: true });
