import { Args, Flags } from '@oclif/core';
import { inspectBundle, type InspectResult } from '../../services/inspect.js';
import { FerryCommand } from '../../ui/base-command.js';
import { renderInspect } from '../../ui/render/bundle.js';
import { trustFlags, trustOptionsFrom } from '../../ui/trust-flags.js';

export default class BundleInspect extends FerryCommand {
  static override summary = 'Show what a bundle holds and how big it is.';
  static override description = FerryCommand.describe(`Reads the manifest only (fast; no blob is read): name, version, sequence, creation time and
signer; per image its references, ID and layers with uncompressed and compressed sizes; the
hosts it has overrides for; totals. When the --trust file exists (or the bundle is unsigned),
the signature is judged exactly as verify and install judge it, with the same --trust,
--revoked and --allow-unsigned: "NOT TRUSTED" names the code they would refuse it with (exit 3).
inspect itself still exits 0 and does not check the files: run \`ferry bundle verify\` for that.

--layers lists every layer once, biggest first: the build instruction that made it (the image
history's created_by, shortened to fit the terminal; --json carries it in full), its size
uncompressed and in the bundle, whether it is shipped or assumed on the host (left out by
--base), and the images holding it. It reads each image's config too (a small file, checked
against the manifest); a layer whose config has no history says "(no history)".`);

  static override examples = ['<%= config.bin %> bundle inspect /media/usb/shop-1.4.2.ferry', '<%= config.bin %> bundle inspect shop.ferry --json | jq ".result.images[].refs"',
    { description: 'Where the size comes from', command: '<%= config.bin %> bundle inspect shop.ferry --layers' },
  ];

  static override args = {
    bundle: Args.string({ description: 'bundle directory', required: true }),
  };

  static override flags = {
    ...trustFlags,
    layers: Flags.boolean({ description: 'list every layer, biggest first, with the build instruction that made it, shipped or assumed, and its images', default: false }),
  };

  async run(): Promise<InspectResult> {
    const { args, flags } = await this.parse(BundleInspect);
    const view = { layers: flags.layers, width: process.stdout.columns };
    const result = await inspectBundle(args.bundle, trustOptionsFrom(flags), this.out, { layers: flags.layers });
    this.out.result(renderInspect(result, view));
    return result;
  }
}
