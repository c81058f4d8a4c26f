/**
 * Docker Swarm, as ferry needs it: what the manager says about nodes, services and tasks (the
 * engine API through dockerode), and `docker stack deploy` / `rm` (the docker CLI, run where the
 * manager is: here, or on the manager over the same SSH connection the engine rides on). The CLI
 * rather than the API for deploy: it turns a stack file into services, networks and configs the
 * way every Swarm user's CLI does, and ferry must not grow a second implementation of that.
 */
import { spawn } from 'node:child_process';
import { shellCommand, shellQuote } from '../core/ssh-target.js';
import { HostPreconditionError } from '../errors.js';
import type { Engine } from './engine.js';
import type { HostTarget } from './host.js';
import type { SshConnection } from './ssh.js';

export interface SwarmSelf {
  /** inactive, pending, active, error, locked */
  state: string;
  nodeId: string;
  manager: boolean;
}

export interface SwarmNode {
  id: string;
  hostname: string;
  /** The address the node reaches the swarm from (node inspect: Status.Addr). */
  addr: string;
  role: 'manager' | 'worker';
  /** ready, down, unknown, disconnected */
  state: string;
  availability: string;
  engineVersion: string;
}

export interface SwarmTask {
  id: string;
  nodeId: string;
  state: string;
  desiredState: string;
  image: string;
  labels: Record<string, string>;
  error: string;
  exitCode: number | null;
}

export interface SwarmService {
  id: string;
  name: string;
  image: string;
  /** null for global services. */
  replicas: number | null;
  /** updating, paused, completed, rollback_started, rollback_paused, rollback_completed; null before any update. */
  updateState: string | null;
  updateMessage: string;
  tasks: SwarmTask[];
}

const STACK_LABEL = 'com.docker.stack.namespace';

export async function swarmSelf(engine: Engine): Promise<SwarmSelf> {
  const info = (await engine.idempotent(() => engine.api.info())) as { Swarm?: { LocalNodeState?: string; NodeID?: string; ControlAvailable?: boolean } };
  return { state: info.Swarm?.LocalNodeState ?? 'inactive', nodeId: info.Swarm?.NodeID ?? '', manager: info.Swarm?.ControlAvailable === true };
}

export async function listSwarmNodes(engine: Engine): Promise<SwarmNode[]> {
  const raw = (await engine.idempotent(() => engine.api.listNodes())) as {
    ID: string;
    Description?: { Hostname?: string; Engine?: { EngineVersion?: string } };
    Status?: { State?: string; Addr?: string };
    Spec?: { Role?: string; Availability?: string };
    ManagerStatus?: { Addr?: string };
  }[];
  return raw
    .map((n) => ({
      id: n.ID,
      hostname: n.Description?.Hostname ?? n.ID,
      // A manager's Status.Addr can read 0.0.0.0 on some versions; its ManagerStatus names the real one.
      addr: n.Status?.Addr && n.Status.Addr !== '0.0.0.0' ? n.Status.Addr : (n.ManagerStatus?.Addr ?? '').replace(/:\d+$/, ''),
      role: n.Spec?.Role === 'manager' ? ('manager' as const) : ('worker' as const),
      state: n.Status?.State ?? 'unknown',
      availability: n.Spec?.Availability ?? 'active',
      engineVersion: n.Description?.Engine?.EngineVersion ?? '',
    }))
    .sort((a, b) => a.hostname.localeCompare(b.hostname));
}

export async function stackServices(engine: Engine, stack: string): Promise<SwarmService[]> {
  const services = (await engine.idempotent(() => engine.api.listServices({ filters: JSON.stringify({ label: [`${STACK_LABEL}=${stack}`] }) }))) as {
    ID: string;
    Spec: { Name: string; Mode?: { Replicated?: { Replicas?: number } }; TaskTemplate?: { ContainerSpec?: { Image?: string } } };
    UpdateStatus?: { State?: string; Message?: string };
  }[];
  const tasks = (await engine.idempotent(() => engine.api.listTasks({ filters: JSON.stringify({ label: [`${STACK_LABEL}=${stack}`] }) }))) as {
    ID: string;
    ServiceID: string;
    NodeID?: string;
    DesiredState?: string;
    Status?: { State?: string; Err?: string; ContainerStatus?: { ExitCode?: number } };
    Spec?: { ContainerSpec?: { Image?: string; Labels?: Record<string, string> } };
  }[];
  return services
    .map((s) => ({
      id: s.ID,
      name: s.Spec.Name,
      image: s.Spec.TaskTemplate?.ContainerSpec?.Image ?? '',
      replicas: s.Spec.Mode?.Replicated ? (s.Spec.Mode.Replicated.Replicas ?? 1) : null,
      updateState: s.UpdateStatus?.State ?? null,
      updateMessage: s.UpdateStatus?.Message ?? '',
      tasks: tasks
        .filter((t) => t.ServiceID === s.ID)
        .map((t) => ({
          id: t.ID,
          nodeId: t.NodeID ?? '',
          state: t.Status?.State ?? 'unknown',
          desiredState: t.DesiredState ?? '',
          image: t.Spec?.ContainerSpec?.Image ?? '',
          labels: t.Spec?.ContainerSpec?.Labels ?? {},
          error: t.Status?.Err ?? '',
          exitCode: t.Status?.ContainerStatus?.ExitCode ?? null,
        })),
    }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

/**
 * Removes an image of a stack from a node's engine, as a single host prunes a release it no longer
 * keeps. Swarm keeps the containers of a service's finished tasks (its task history), and those
 * hold their image: the stack's stopped ones on this node that use it go first. A container of the
 * stack still running it keeps it. Returns whether the image is gone.
 */
export async function removeStackImage(engine: Engine, stack: string, ref: string): Promise<'removed' | 'absent' | 'in-use'> {
  if (!(await engine.inspectImage(ref))) return 'absent';
  const containers = (await engine.idempotent(() => engine.api.listContainers({ all: true, filters: JSON.stringify({ label: [`${STACK_LABEL}=${stack}`], ancestor: [ref] }) }))) as { Id: string; State?: string }[];
  if (containers.some((c) => c.State === 'running' || c.State === 'restarting' || c.State === 'paused')) return 'in-use';
  for (const c of containers) await engine.api.getContainer(c.Id).remove({ v: true }).catch(() => undefined);
  return (await engine.removeImage(ref)) ? 'removed' : 'in-use';
}

export interface CliRun {
  code: number;
  output: string;
}

/** The docker CLI where the manager is, talking to the manager's engine. */
export interface DockerCli {
  run(args: string[], opts: { cwd: string; timeoutMs: number }): Promise<CliRun>;
}

export function dockerCliFor(host: HostTarget): DockerCli {
  const conn = (host as HostTarget & { connection?: SshConnection }).connection;
  if (conn) {
    // engine.host is ssh://LABEL/path/to/docker.sock for a host over SSH (adapters/ssh-host.ts).
    const socket = host.engine.host.slice(`ssh://${conn.label}`.length) || '/var/run/docker.sock';
    return {
      async run(args, opts) {
        const command = `cd ${shellQuote(opts.cwd)} && export DOCKER_HOST=${shellQuote(`unix://${socket}`)} DOCKER_CONTEXT= && exec ${shellCommand(['docker', ...args])} </dev/null`;
        let output = '';
        const r = await conn.exec(command, { timeoutMs: opts.timeoutMs, onData: (t) => (output = (output + t).slice(-64 * 1024)) });
        if (r.code === 127) throw noCli(host.label);
        return { code: r.code === -1 ? 1 : r.code, output: output || `${r.stdout}${r.stderr}` };
      },
    };
  }
  return {
    run(args, opts) {
      return new Promise((resolve, reject) => {
        const child = spawn('docker', args, {
          cwd: opts.cwd,
          env: { ...process.env, DOCKER_HOST: host.engine.host, DOCKER_CONTEXT: '' },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let output = '';
        const onData = (b: Buffer) => (output = (output + b.toString('utf8')).slice(-64 * 1024));
        child.stdout.on('data', onData);
        child.stderr.on('data', onData);
        const timer = setTimeout(() => child.kill('SIGTERM'), opts.timeoutMs);
        child.on('error', (e) => {
          clearTimeout(timer);
          reject((e as NodeJS.ErrnoException).code === 'ENOENT' ? noCli(host.label) : e);
        });
        child.on('close', (code) => {
          clearTimeout(timer);
          resolve({ code: code ?? 1, output });
        });
      });
    },
  };
}

function noCli(label: string): HostPreconditionError {
  return new HostPreconditionError('SWARM_NO_DOCKER_CLI', `the docker CLI is not on ${label === 'local' ? 'this machine' : label}: ferry runs \`docker stack deploy\` where the manager is`, {
    hint: 'Install the docker CLI (Debian: docker.io or docker-cli) on the manager.',
  });
}

export const stackDeploy = (cli: DockerCli, stack: string, file: string, cwd: string, timeoutMs: number) =>
  cli.run(['stack', 'deploy', '--compose-file', file, '--resolve-image', 'never', '--prune', stack], { cwd, timeoutMs });

export const stackRemove = (cli: DockerCli, stack: string, cwd: string, timeoutMs: number) => cli.run(['stack', 'rm', stack], { cwd, timeoutMs });
