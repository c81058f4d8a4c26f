import { hostname } from 'node:os';
import { Args, Flags } from '@oclif/core';
import { localHost } from '../../adapters/local-host.js';
import { DEFAULT_KEEP } from '../../core/state.js';
import { installBundle, type InstallResult } from '../../services/install.js';
import { FerryCommand } from '../../ui/base-command.js';
import { composeFlags, stateDirFlag } from '../../ui/host-flags.js';
import { renderInstall } from '../../ui/render/install.js';
import { trustFlags } from '../../ui/trust-flags.js';

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

Installing the release that is already current and healthy is a no-op. Re-running an interrupted install converges.`);

  static override examples = [
    '<%= config.bin %> bundle install /media/usb/shop-1.4.2.ferry --trust /etc/ferry/allowed_signers --host edge-1',
    '<%= config.bin %> bundle install shop.ferry --host edge-1 --wait-timeout 300 --json',
  ];

  static override args = {
    bundle: Args.string({ description: 'bundle directory', required: true }),
  };

  static override flags = {
    ...trustFlags,
    host: Flags.string({ description: 'which host override to use (default: this machine\'s hostname)' }),
    'state-dir': stateDirFlag,
    'allow-downgrade': Flags.boolean({ description: 'accept a bundle older than the newest this host installed', default: false }),
    stage: Flags.boolean({ description: 'copy the bundle off the medium before using it (--no-stage to read it in place)', default: true, allowNo: true }),
    up: Flags.boolean({ description: 'switch the stack after loading (--no-up only loads and tags images)', default: true, allowNo: true }),
    splice: Flags.string({
      description: 'how layers the bundle assumes reach the engine: auto (splice from the host\'s own images where a partial load is unsafe: containerd store, Podman), always, never',
      options: ['auto', 'always', 'never'],
      default: 'auto',
    }),
    keep: Flags.integer({ description: 'releases to keep per stack for rollback', default: DEFAULT_KEEP, min: 1 }),
    ...composeFlags,
  };

  async run(): Promise<InstallResult> {
    const { args, flags } = await this.parse(BundleInstall);
    const result = await installBundle(
      {
        bundle: args.bundle,
        trust: { trust: flags.trust, allowUnsigned: flags['allow-unsigned'] },
        host: flags.host ?? hostname(),
        stateDir: flags['state-dir'],
        stage: flags.stage,
        allowDowngrade: flags['allow-downgrade'],
        composeCmd: flags['compose-cmd'],
        waitTimeoutMs: flags['wait-timeout'] * 1000,
        keep: flags.keep,
        up: flags.up,
        splice: flags.splice as 'auto' | 'always' | 'never',
      },
      localHost(),
      this.out,
    );
    this.out.result(renderInstall(result));
    return result;
  }
}
