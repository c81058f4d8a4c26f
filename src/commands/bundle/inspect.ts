import { Args, Flags } from '@oclif/core';
import { inspectBundle, type InspectResult } from '../../services/inspect.js';
import { DEFAULT_TRUST_FILE } from '../../services/bundle.js';
import { FerryCommand } from '../../ui/base-command.js';
import { renderInspect } from '../../ui/render/bundle.js';

export default class BundleInspect extends FerryCommand {
  static override summary = 'Show what a bundle holds and how big it is.';
  static override description = FerryCommand.describe(`Reads the manifest only (fast; no blob is read): name, version, sequence, creation time and
signer; per image its references, ID and layers with uncompressed and compressed sizes; the
hosts it has overrides for; totals. The signer is checked against --trust when that file
exists. inspect does not check the files: run \`ferry bundle verify\` for that.`);

  static override examples = ['<%= config.bin %> bundle inspect /media/usb/shop-1.4.2.ferry', '<%= config.bin %> bundle inspect shop.ferry --json | jq ".result.images[].refs"'];

  static override args = {
    bundle: Args.string({ description: 'bundle directory', required: true }),
  };

  static override flags = {
    trust: Flags.string({ description: 'allowed_signers file to check the signer against', env: 'FERRY_TRUST', default: DEFAULT_TRUST_FILE }),
    layers: Flags.boolean({ description: 'list every layer of every image', default: false }),
  };

  async run(): Promise<InspectResult> {
    const { args, flags } = await this.parse(BundleInspect);
    const result = await inspectBundle(args.bundle, flags.trust);
    this.out.result(renderInspect(result, { layers: flags.layers }));
    return result;
  }
}
