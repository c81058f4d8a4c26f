import { Args } from '@oclif/core';
import { openHost, withHost } from '../../adapters/host-factory.js';
import { FleetFailedError, UsageError } from '../../errors.js';
import { fleetStatus, hostStatus, type FleetStatusResult, type StatusResult } from '../../services/status.js';
import { FerryCommand } from '../../ui/base-command.js';
import { stateDirFlags, stateDirFrom } from '../../ui/host-flags.js';
import { renderFleetStatus, renderStatus } from '../../ui/render/host.js';
import { renderSwarmStatus } from '../../ui/render/swarm.js';
import { swarmStatus, type SwarmStatusResult } from '../../services/swarm-host.js';
import { swarmHostFlag } from '../../ui/swarm-install.js';
import { singleTarget, sshFlags, sshOptionsFrom } from '../../ui/ssh-flags.js';

export default class HostStatus extends FerryCommand {
  static override summary = 'Show installed releases and how each service of a stack runs.';
  static override description = FerryCommand.describe(`For STACK, or every stack in the state directory: the current release (version, sequence,
install time, signer), the releases kept for rollback, and per service of the compose
project its containers with state, health, image ID and whether that image is the one the
current release pinned. A service the release expects but that has no container shows as
"missing" (except its smoke test, which runs once at install and is removed); one-off
\`compose run\` containers are marked "(run)".

Below the stacks: free space and free inodes of the engine's data root and of the state
directory (a warning, LOW_ROOM, when either is under 10%: layers of many small files run out of
inodes first), and per stack what pruning to the current release alone (install --keep 1) would
give back.

An unknown STACK is a usage error (exit 2) listing the stacks that are installed.

With --ssh [user@]host the same for that host: its engine through the SSH connection, its state directory over SFTP.

With several hosts (--ssh a,b,c, or --ssh repeated) one table of what runs where: per host,
stack and service the release, state, health and whether the service runs its pinned image. A
host that cannot be reached or read is a row of its own with its error code; the other hosts are
shown all the same. --json gives one entry per host (its whole status, or its error). Exit code:
0 when every host was read, else that of the first host that failed, in the order given
(FLEET_FAILED).

With --swarm, STACK as the Docker Swarm runs it (installed with bundle install --swarm), through this manager or the --ssh one: per service the replicas running, the nodes its tasks run on and whether it runs the image the current release pinned; then the nodes.

An engine or SSH host that refuses or drops the connection (restarting) is asked again, up to 5
times over about 10 s, with a warning before each pause (ENGINE_RETRY, SSH_RETRY).`);

  static override examples = [
    '<%= config.bin %> host status',
    '<%= config.bin %> host status shop',
    { description: 'Services not on their pinned image', command: '<%= config.bin %> host status shop --json | jq \'.result.stacks[].services[] | select(.imageMatches == false)\'' },
    { description: 'On a host reached over SSH', command: '<%= config.bin %> host status shop --ssh deploy@edge-2' },
    { description: 'What runs where across a fleet', command: '<%= config.bin %> host status shop --ssh deploy@edge-1,deploy@edge-2,deploy@edge-3' },
  ];

  static override args = {
    stack: Args.string({ description: 'stack name; default: every stack installed on this host', required: false }),
  };

  static override flags = {
    ...stateDirFlags,
    ...sshFlags,
    ...swarmHostFlag,
  };

  async run(): Promise<StatusResult | FleetStatusResult | SwarmStatusResult> {
    const { args, flags } = await this.parse(HostStatus);
    const options = { ...stateDirFrom(flags), stack: args.stack };
    const ssh = sshOptionsFrom(flags, (w) => this.out.warn(w));
    const targets = flags.ssh ?? [];
    if (flags.swarm) {
      if (!args.stack) throw new UsageError('USAGE', 'host status --swarm needs STACK', { hint: 'e.g. ferry host status shop --swarm' });
      const result = await withHost(singleTarget(flags), ssh, (host) => swarmStatus({ stack: args.stack!, stateDir: options.stateDir }, host));
      this.out.result(renderSwarmStatus(result));
      return result;
    }
    if (targets.length <= 1) {
      const result = await withHost(singleTarget(flags), ssh, (host) => hostStatus(options, host, this.out));
      this.out.result(renderStatus(result));
      return result;
    }
    const result = await fleetStatus(options, targets, { open: (t, warn) => openHost(t, { ...ssh, warn }) }, this.out);
    this.out.result(renderFleetStatus(result, args.stack));
    if (!result.ok) throw new FleetFailedError(result, 'The other hosts are shown all the same. Check the failed ones (is sshd running, is the engine up?) and run the same command again.');
    return result;
  }
}
