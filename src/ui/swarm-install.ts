/**
 * `bundle install --swarm`: its flags, and the glue between them, the swarm install service and
 * what the operator sees (a line per node while nodes load, then the node and service tables).
 */
import { Flags } from '@oclif/core';
import { openHost, withHost } from '../adapters/host-factory.js';
import type { SshHostOptions } from '../adapters/ssh-host.js';
import { parseSshTarget } from '../core/ssh-target.js';
import { UsageError } from '../errors.js';
import type { InstallOptions } from '../services/install.js';
import { installSwarm, type SwarmInstallResult } from '../services/swarm.js';
import { FleetDisplay } from './fleet-output.js';
import type { Output } from './output.js';
import { renderSwarmInstall } from './render/swarm.js';

export const swarmInstallFlags = {
  swarm: Flags.boolean({
    description: 'install onto the Docker Swarm this engine (or the --ssh host) manages: load every node, then docker stack deploy',
    default: false,
    helpGroup: 'SWARM',
  }),
  'node-ssh': Flags.string({
    description: 'with --swarm: the SSH target of a node, NODE=[user@]host[:port] (NODE: its hostname or ID; default: its swarm address, as the --ssh user)',
    multiple: true,
    helpGroup: 'SWARM',
  }),
  'allow-partial-nodes': Flags.boolean({
    description: 'with --swarm: deploy even if some nodes could not be loaded, keeping the stack off them (placement); never the manager',
    default: false,
    helpGroup: 'SWARM',
  }),
};

/** host status and host rollback: the stack as a swarm runs it, through a manager. */
export const swarmHostFlag = {
  swarm: Flags.boolean({ description: 'the stack as the Docker Swarm runs it, through this manager (or the --ssh one): installed with bundle install --swarm', default: false }),
};

/** host inventory: what every node of a swarm holds, for `bundle create --base`. */
export const swarmInventoryFlags = {
  swarm: Flags.boolean({ description: 'describe the Docker Swarm this engine (or the --ssh host) manages: what EVERY node holds, read over SSH (--node-ssh as for install)', default: false }),
  'node-ssh': swarmInstallFlags['node-ssh'],
};

/** --node-ssh NODE=TARGET values, checked; only with --swarm. */
export function nodeSshFrom(flags: { swarm: boolean; 'node-ssh'?: string[] | undefined }): Map<string, string> {
  return swarmOptionsFrom({ swarm: flags.swarm, 'node-ssh': flags['node-ssh'], 'allow-partial-nodes': false }).nodeSsh;
}

export interface SwarmFlagOptions {
  on: boolean;
  nodeSsh: Map<string, string>;
  allowPartialNodes: boolean;
}

export function swarmOptionsFrom(flags: { swarm: boolean; 'node-ssh'?: string[] | undefined; 'allow-partial-nodes': boolean }): SwarmFlagOptions {
  const nodeSsh = new Map<string, string>();
  for (const v of flags['node-ssh'] ?? []) {
    const eq = v.indexOf('=');
    if (eq <= 0 || eq === v.length - 1) throw new UsageError('BAD_FLAG', `--node-ssh ${JSON.stringify(v)} is not NODE=TARGET`, { hint: 'e.g. --node-ssh worker-2=deploy@10.0.0.12' });
    nodeSsh.set(v.slice(0, eq), v.slice(eq + 1));
  }
  if (!flags.swarm && (nodeSsh.size > 0 || flags['allow-partial-nodes'])) {
    throw new UsageError('SWARM_FLAG_WITHOUT_SWARM', `--${nodeSsh.size > 0 ? 'node-ssh' : 'allow-partial-nodes'} only applies with --swarm`, { hint: 'Add --swarm to install onto a Docker Swarm.' });
  }
  return { on: flags.swarm, nodeSsh, allowPartialNodes: flags['allow-partial-nodes'] };
}

export interface SwarmRun extends SwarmFlagOptions {
  install: Omit<InstallOptions, 'host' | 'up' | 'filesChecked'> & { up: boolean };
  targets: string[];
  ssh: SshHostOptions;
  hostName: string[] | undefined;
  parallel: number;
}

export async function runSwarmInstall(run: SwarmRun, out: Output): Promise<SwarmInstallResult> {
  if (run.targets.length > 1) {
    throw new UsageError('ONE_HOST_ONLY', `--swarm works through one manager; --ssh names ${run.targets.length}: ${run.targets.join(', ')}`, { hint: 'Name one manager with --ssh; ferry finds the other nodes through it.' });
  }
  if ((run.hostName ?? []).length > 1 || (run.hostName ?? []).some((h) => h.includes('='))) {
    throw new UsageError('BAD_FLAG', `--host ${run.hostName!.join(', ')}: a swarm runs one stack, with one host override`, { hint: 'e.g. --host cluster-a' });
  }
  if (!run.install.up) throw new UsageError('BAD_FLAG', '--no-up with --swarm: load the nodes with a fleet install instead (--ssh a,b,c --no-up)');
  const managerTarget = run.targets[0];
  const sshUser = managerTarget ? parseSshTarget(managerTarget).user : undefined;
  const { up: _up, ...install } = run.install;
  let display: FleetDisplay | undefined;
  try {
    const result = await withHost(managerTarget, run.ssh, (manager) =>
      installSwarm(
        {
          install,
          ...(run.hostName?.[0] ? { hostName: run.hostName[0] } : {}),
          nodeSsh: run.nodeSsh,
          ...(sshUser ? { sshUser } : {}),
          allowPartialNodes: run.allowPartialNodes,
          // Every node at once unless --parallel limits it: its default of one is a fleet's, watched host by host.
          parallel: run.parallel > 1 ? run.parallel : Number.MAX_SAFE_INTEGER,
        },
        {
          manager,
          open: (t) => openHost(t, { ...run.ssh, warn: (w) => out.warn(w) }),
          nodeReporters: (labels) => {
            display = new FleetDisplay(out, labels);
            return (label) => display!.reporterFor(label);
          },
          overall: out,
        },
      ),
    );
    display?.stop();
    display = undefined;
    out.result(renderSwarmInstall(result));
    return result;
  } finally {
    display?.stop();
  }
}
