import { Flags } from '@oclif/core';
import { setupHost, type SetupResult } from '../../services/setup.js';
import { FerryCommand } from '../../ui/base-command.js';
import { stateDirFlags, stateDirFrom } from '../../ui/host-flags.js';
import { renderSetup } from '../../ui/render/setup.js';
import { trustFlags, trustOptionsFrom } from '../../ui/trust-flags.js';

export default class HostSetup extends FerryCommand {
  static override summary = 'First visit: install the ferry executable a signed bundle carries, and the host\'s trust file.';
  static override description = FerryCommand.describe(`Run it from the stick, with the executable the bundle carries (bundle create --with-ferry),
after checking the stick with stock tools (README.txt on the stick says how):

  ./ferry host setup --trust allowed_signers

It verifies the bundle's signature against --trust (an unsigned bundle is never accepted here,
--allow-unsigned or not: what setup installs runs as root from now on), checks that the running executable is
byte for byte the one the bundle lists, then installs it as BIN-DIR/ferry (0755, replaced
atomically), copies the trust file to CONFIG-DIR/allowed_signers (0644) and creates the state
directory. Running it again changes nothing. An allowed_signers already there with other
keys is left alone unless --force: it decides what this host installs from now on.

Later visits need no setup: \`ferry bundle install\` with the installed ferry. A bundle that
carries a newer executable upgrades ferry itself the same way; --trust then defaults to the
host's own trust file.`);

  static override examples = [
    { description: 'First visit, from the stick', command: './ferry host setup --trust ./allowed_signers' },
    { description: 'Upgrade ferry itself from a newer stick (the host\'s trust file)', command: './ferry host setup' },
    { description: 'Into other places (a test, or a host with its own layout)', command: './ferry host setup --trust signers --bin-dir /opt/ferry/bin --config-dir /opt/ferry/etc --state-dir /opt/ferry/state' },
  ];

  static override flags = {
    // --trust: the file with the build server's key on a first visit (it becomes CONFIG-DIR/allowed_signers);
    // later, the host's own. --allow-unsigned is declared with the group and refused by the service.
    ...trustFlags,
    bundle: Flags.string({ description: 'the bundle that carries the executable (default: the directory the executable is in)' }),
    executable: Flags.string({ description: 'the executable to install (default: the one running)' }),
    'bin-dir': Flags.string({ description: 'where the executable goes', default: '/usr/local/bin' }),
    'config-dir': Flags.string({ description: 'where allowed_signers goes', default: '/etc/ferry' }),
    force: Flags.boolean({ description: 'replace an allowed_signers that lists other keys', default: false }),
    ...stateDirFlags,
  };

  async run(): Promise<SetupResult> {
    const { flags } = await this.parse(HostSetup);
    const result = await setupHost(
      {
        trust: trustOptionsFrom(flags),
        bundle: flags.bundle ?? null,
        executable: flags.executable ?? null,
        binDir: flags['bin-dir'],
        configDir: flags['config-dir'],
        force: flags.force,
        ...stateDirFrom(flags),
      },
      this.out,
    );
    this.out.result(renderSetup(result));
    return result;
  }
}
