import { Flags } from '@oclif/core';
import { openHost, withHost } from '../../adapters/host-factory.js';
import { isHostName } from '../../core/definition.js';
import type { Inventory } from '../../core/inventory.js';
import { hostInventory } from '../../services/inventory.js';
import { UsageError } from '../../errors.js';
import { FerryCommand } from '../../ui/base-command.js';
import { stateDirFlags, stateDirFrom } from '../../ui/host-flags.js';
import { renderInventory } from '../../ui/render/host.js';
import { renderSwarmInventory } from '../../ui/render/swarm.js';
import { parseSshTarget } from '../../core/ssh-target.js';
import { swarmInventory } from '../../services/swarm-host.js';
import { nodeSshFrom, swarmInventoryFlags } from '../../ui/swarm-install.js';
import { singleTarget, sshFlags, sshOptionsFrom } from '../../ui/ssh-flags.js';

export default class HostInventory extends FerryCommand {
  static override summary = 'Describe what this host holds, for the next bundle to leave out.';
  static override description = FerryCommand.describe(`Writes one JSON document (format ferry.inventory/v1): the engine (version, storage
driver, Docker or Podman), every image with its layers (diffIDs and chain IDs), the set of
all chain IDs present, and the releases ferry installed per stack. Carry it back to the build
machine: \`ferry bundle create --base FILE\` leaves out every layer it lists.

Without --out the document goes to stdout, so \`ferry host inventory > host.json\` works; with
--out it is written atomically (never half a file) and a summary is printed. Under --json the
result is the document itself. A missing state directory means no releases, not an error.

The document names the host it describes; \`bundle create --base\` shows that name in its
"built for" line. Give it the name you install with (--host edge-1, the name of the host's
override in ferry.yaml); without --host it is the same default install uses: this machine's
hostname, or with --ssh the remote host's.

With --ssh [user@]host it describes that host (its engine through the SSH connection, its
state directory over SFTP, its hostname) and writes the document here.

With --swarm, the Docker Swarm this engine (or the --ssh one) manages: every node's inventory (the
others over SSH at their swarm address, or --node-ssh NODE=TARGET), reduced to what EVERY node
holds, since a task may start on any of them; the releases are the manager's. A node that cannot
be read fails the command (exit 6, SWARM_NODE_FAILED): no inventory is written without it.`);

  static override examples = [
    { description: 'Write the inventory to a stick, named as install names this host', command: '<%= config.bin %> host inventory --host edge-1 --out /media/usb/edge-1.inventory.json' },
    { description: 'The same on stdout', command: '<%= config.bin %> host inventory > edge-1.inventory.json' },
    { description: 'Over SSH from the build machine', command: '<%= config.bin %> host inventory --ssh deploy@edge-1 --host edge-1 --out edge-1.json' },
  ];

  static override flags = {
    out: Flags.string({ char: 'o', description: 'file to write the inventory to (replaced atomically); default: stdout' }),
    host: Flags.string({ description: 'the name to record for this host, as `bundle install --host` names it (default: the host\'s own hostname)' }),
    ...stateDirFlags,
    ...sshFlags,
    ...swarmInventoryFlags,
  };

  async run(): Promise<Inventory> {
    const { flags } = await this.parse(HostInventory);
    const target = singleTarget(flags);
    const options = { ...stateDirFrom(flags), out: flags.out };
    const name = hostNameFrom(flags.host);
    const nodeSsh = nodeSshFrom({ swarm: flags.swarm, 'node-ssh': flags['node-ssh'] });
    if (flags.swarm) {
      // Nodes are reached over SSH even when the manager is this machine.
      const ssh = sshOptionsFrom({ ...flags, ssh: flags.ssh ?? ['(swarm nodes)'] }, (w) => this.out.warn(w));
      const result = await withHost(target, ssh, (manager) =>
        swarmInventory(
          { ...options, host: name, nodeSsh, sshUser: target ? parseSshTarget(target).user : undefined },
          { manager, open: (t) => openHost(t, { ...ssh, warn: (w) => this.out.warn(w) }), reporter: this.out },
        ),
      );
      this.out.result(renderSwarmInventory(result));
      return result.inventory;
    }
    const result = await withHost(target, sshOptionsFrom(flags, (w) => this.out.warn(w)), async (host) =>
      hostInventory({ ...options, host: name ?? (await host.hostname()) }, host, this.out),
    );
    this.out.result(renderInventory(result));
    return result.inventory;
  }
}

/** --host as ferry.yaml's `hosts:` would spell it: a name that could never pick an override is a typo. */
function hostNameFrom(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (!isHostName(value)) {
    throw new UsageError('BAD_FLAG', `--host ${JSON.stringify(value)} is not a host name`, {
      hint: 'Letters, digits, ".", "_" and "-", as the host is named in ferry.yaml, e.g. --host edge-1.',
    });
  }
  return value;
}
