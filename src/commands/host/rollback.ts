import { Args, Flags } from '@oclif/core';
import { withHost } from '../../adapters/host-factory.js';
import { rollbackStack, type RollbackResult } from '../../services/rollback.js';
import { swarmRollback, type SwarmRollbackResult } from '../../services/swarm-host.js';
import { renderSwarmRollback } from '../../ui/render/swarm.js';
import { swarmHostFlag } from '../../ui/swarm-install.js';
import { FerryCommand } from '../../ui/base-command.js';
import { composeFlags, composeOptionsFrom, stateDirFlags, stateDirFrom } from '../../ui/host-flags.js';
import { singleTarget, sshFlags, sshOptionsFrom } from '../../ui/ssh-flags.js';

export default class HostRollback extends FerryCommand {
  static override summary = 'Switch a stack back to a release this host kept.';
  static override description = FerryCommand.describe(`Brings up a kept release (default: the newest one older than the current) with its own rendered compose files and images, and waits for it as install does: health checks, then the smoke test. If it fails, the release that was current is restored (exit 7), or exit 8 when that fails too.

A blue/green release comes back as a colour: its stopped containers are started when they are still there (else it starts fresh), confirmed, and then the service names move to it; the live colour is stopped after --drain seconds.

The downgrade protection does not move: a later install still needs a bundle at least as new as the newest one installed.

With --ssh [user@]host the same on that host: compose runs there, its state directory is read and written over SFTP.

With --swarm, a stack installed with bundle install --swarm: the kept release's stack file is deployed again through this manager (or the --ssh one) and waited for as install waits (replicas running, then the smoke task); if that fails the current one is deployed again (exit 7, or 8).`);

  static override examples = ['<%= config.bin %> host rollback shop', '<%= config.bin %> host rollback shop --to 1.4.1', '<%= config.bin %> host rollback shop --ssh deploy@edge-2'];

  static override args = {
    stack: Args.string({ description: 'stack name (the bundle name)', required: true }),
  };

  static override flags = {
    to: Flags.string({ description: 'version (or release id) to switch to' }),
    ...stateDirFlags,
    ...composeFlags,
    ...sshFlags,
    ...swarmHostFlag,
  };

  async run(): Promise<RollbackResult | SwarmRollbackResult> {
    const { args, flags } = await this.parse(HostRollback);
    const options = { stack: args.stack, to: flags.to, ...stateDirFrom(flags), ...composeOptionsFrom(flags) };
    if (flags.swarm) {
      const result = await withHost(singleTarget(flags), sshOptionsFrom(flags, (w) => this.out.warn(w)), (host) => swarmRollback(options, host, this.out));
      this.out.result(renderSwarmRollback(result));
      return result;
    }
    const result = await withHost(singleTarget(flags), sshOptionsFrom(flags, (w) => this.out.warn(w)), (host) => rollbackStack(options, host, this.out));
    this.out.result(`${result.stack} rolled back to ${result.version}${result.from ? ` (from ${result.from})` : ''} in ${(result.durationMs / 1000).toFixed(1)} s`);
    return result;
  }
}
