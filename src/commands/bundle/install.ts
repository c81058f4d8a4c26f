import { Args, Flags } from '@oclif/core';
import { openHost, withHost } from '../../adapters/host-factory.js';
import { DEFAULT_KEEP } from '../../core/state.js';
import { FleetFailedError } from '../../errors.js';
import { checkBundleOnce, installFleet, type FleetResult } from '../../services/fleet.js';
import { installBundle, type InstallResult } from '../../services/install.js';
import type { SwarmInstallResult } from '../../services/swarm.js';
import { FerryCommand } from '../../ui/base-command.js';
import { FleetDisplay } from '../../ui/fleet-output.js';
import { composeFlags, composeOptionsFrom, stateDirFlags, stateDirFrom } from '../../ui/host-flags.js';
import { renderFleet } from '../../ui/render/fleet.js';
import { renderInstall } from '../../ui/render/install.js';
import { runSwarmInstall, swarmInstallFlags, swarmOptionsFrom } from '../../ui/swarm-install.js';
import { hostOverrides, sshFlags, sshOptionsFrom } from '../../ui/ssh-flags.js';
import { trustFlags, trustOptionsFrom } from '../../ui/trust-flags.js';

export default class BundleInstall extends FerryCommand {
  static override summary = 'Verify a bundle, load its images and switch the stack to it, rolling back if it fails.';
  static override description = FerryCommand.describe(`Each step refuses, with its exit code, before the next one runs:
a. the signature (a key in --trust) and policy: not older than what this host installed (exit 5 unless --allow-downgrade), made for this --host when the bundle names hosts, not expired;
b. staging: every file is copied off the medium into the state directory while it is hashed, and only that verified copy is used afterwards (--no-stage reads the medium in place);
c. preflight: engine reachable, enough free space and inodes (exit 6, with the numbers);
d. loading: the images the engine lacks stream into it, decompressed on the fly, each layer's digest checked again; then every image is inspected against the manifest and tagged ferry.local/STACK:ID;
e. switching: compose up with the bundle's compose file, the host's override and ferry's override that pins each service to its image ID (pull_policy: never);
f. confirming: services with a health check healthy, the others running, then the smoke test (x-ferry: {smoke: SERVICE}) must exit 0;
g. on failure in e or f the previous release is brought back (exit 7), or exit 8 if that fails too. On success the release is recorded and releases beyond --keep are pruned, with images no kept release uses.

Health must settle within --wait-timeout: an "unhealthy" before then is looked at again (a check through a service being recreated passes once it is back).

Blue/green (x-ferry: {switch: blue-green, front: [...], shared: [...]}): e and f run first on the new colour (compose project STACK-blue or STACK-green, every service but front and shared), while the front keeps serving the live one; then the service names move to the new colour on the front's networks, and after --drain seconds the old colour is stopped. A failure before the switch removes the new colour: exit 7 (DEPLOY_FAILED_KEPT), the previous release served throughout.

Installing the release that is already current and healthy is a no-op. Re-running an interrupted install converges.

Over SSH (--ssh [user@]host): the same steps on that host. The bundle is verified here, then its layers stream over the SSH connection into the remote engine (nothing is staged there); compose runs on the host, and the state directory (--state-dir, a path on that host) is written over SFTP. Host keys are checked against known_hosts: an unknown host is refused (exit 6) unless --accept-new-host-key, a changed key always (exit 3).

A fleet (--ssh a,b,c): every host gets the same install, up to --parallel at a time, one progress line per host, then a table (host, result, exit code, time); --json gives one entry per host. One host's failure never stops the others (--fail-fast: start no new host after a failure). Each host uses the override named by --host TARGET=NAME, else its own hostname. Exit code: 0 when every host succeeded, else the code of the first failed host in the order given.`);

  static override examples = [
    '<%= config.bin %> bundle install /media/usb/shop-1.4.2.ferry --trust /etc/ferry/allowed_signers --host edge-1',
    '<%= config.bin %> bundle install shop.ferry --host edge-1 --wait-timeout 300 --json',
    { description: 'On a host reached over SSH', command: '<%= config.bin %> bundle install shop-1.4.3.ferry --ssh deploy@edge-1 --host edge-1' },
    { description: 'Three hosts at once', command: '<%= config.bin %> bundle install shop-1.4.3.ferry --ssh deploy@edge-1,deploy@edge-2,deploy@edge-3 --parallel 3' },
  ];

  static override args = {
    bundle: Args.string({ description: 'bundle directory', required: true }),
  };

  static override flags = {
    ...trustFlags,
    host: Flags.string({
      description: 'which host override to use (default: the host\'s own hostname); for several --ssh hosts, TARGET=NAME per host (repeatable)',
      multiple: true,
    }),
    ...stateDirFlags,
    'allow-downgrade': Flags.boolean({ description: 'accept a bundle older than the newest this host installed', default: false }),
    stage: Flags.boolean({ description: 'copy the bundle off the medium before using it (--no-stage to read it in place; never over SSH)', default: true, allowNo: true }),
    up: Flags.boolean({ description: 'switch the stack after loading (--no-up only loads and tags images)', default: true, allowNo: true }),
    splice: Flags.string({
      description: 'how layers the bundle assumes reach the engine: auto (splice from the host\'s own images where a partial load is unsafe: containerd store, Podman), always, never',
      options: ['auto', 'always', 'never'],
      default: 'auto',
    }),
    keep: Flags.integer({ description: 'releases to keep per stack for rollback', default: DEFAULT_KEEP, min: 1 }),
    ...composeFlags,
    ...sshFlags,
    parallel: Flags.integer({ description: 'with several --ssh hosts: how many to install at the same time', default: 1, min: 1, helpGroup: 'SSH' }),
    'fail-fast': Flags.boolean({ description: 'with several --ssh hosts: start no further host after one failed', default: false, helpGroup: 'SSH' }),
    ...swarmInstallFlags,
  };

  async run(): Promise<InstallResult | FleetResult | SwarmInstallResult> {
    const { args, flags } = await this.parse(BundleInstall);
    const targets = flags.ssh ?? [];
    const swarm = swarmOptionsFrom(flags);
    // Nodes of a swarm are reached over SSH even when the manager is this machine.
    const ssh = sshOptionsFrom(swarm.on && targets.length === 0 ? { ...flags, ssh: ['(swarm nodes)'] } : flags, (w) => this.out.warn(w));
    const overrides = hostOverrides(targets, flags.host ?? []);
    const install = {
      bundle: args.bundle,
      trust: trustOptionsFrom(flags),
      ...stateDirFrom(flags),
      ...composeOptionsFrom(flags),
      stage: flags.stage,
      allowDowngrade: flags['allow-downgrade'],
      keep: flags.keep,
      up: flags.up,
      splice: flags.splice as 'auto' | 'always' | 'never',
    };
    const fleet = { parallel: flags.parallel, failFast: flags['fail-fast'] };
    if (swarm.on) return runSwarmInstall({ install, targets, ssh, hostName: flags.host, parallel: flags.parallel, ...swarm }, this.out);

    if (targets.length <= 1) {
      const target = targets[0];
      const result = await withHost(target, ssh, async (host) => installBundle({ ...install, host: overrides.get(target) ?? (await host.hostname()) }, host, this.out));
      this.out.result(renderInstall(result));
      return result;
    }

    const display = new FleetDisplay(this.out, targets);
    let result: FleetResult;
    try {
      result = await installFleet(
        { install, hosts: targets.map((t) => ({ target: t, ...(overrides.has(t) ? { hostName: overrides.get(t)! } : {}) })), ...fleet },
        { open: (t) => openHost(t, { ...ssh, warn: (w) => display.reporterFor(t).warn(w) }), reporterFor: (t) => display.reporterFor(t), overall: this.out, checkOnce: checkBundleOnce },
      );
    } finally {
      display.stop();
    }
    this.out.result(renderFleet(result));
    if (!result.ok) throw new FleetFailedError(result);
    return result;
  }
}
