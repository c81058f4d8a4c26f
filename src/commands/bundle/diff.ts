import { Args } from '@oclif/core';
import { diffBundles, type DiffResult } from '../../services/diff.js';
import { FerryCommand } from '../../ui/base-command.js';
import { renderDiff, TEXT_FILES_PER_LAYER } from '../../ui/render/diff.js';
import { trustFlags, trustOptionsFrom } from '../../ui/trust-flags.js';

export default class BundleDiff extends FerryCommand {
  static override summary = 'Show what a new bundle changes against the previous one, or against what a host holds.';
  static override description = FerryCommand.describe(`What a change board reviews before a stick may go in. NEW is a bundle directory; OLD is the
bundle it replaces, or a host inventory (\`ferry host inventory --out FILE\`).

Per image (matched by ID, then compose service, then repository name): the image ID old → new
and its layers by diffID, position by position: unchanged, changed, added, removed. For each
changed or added layer NEW ships whole, its files (path, type, size, mode; content by sha256)
against the old image's layer at the same position: added, changed, removed. When the old
layer's contents are not at hand (OLD is an inventory, or the old bundle left that layer out),
the new layer's files are listed as added and the report says the old contents are unknown. For
a layer NEW ships as a delta, the changes the delta records against its reference layer: added
and changed entries with their new size, mode and type (changed: in content or in the tar header
alone, e.g. an mtime), removed ones by path. A layer NEW assumes on the host is named as such.
Against an inventory: which of NEW's images and layers the host holds already.

Then the compose file and each host's override as unified line diffs, and the project files the
bundle carries (added, removed, changed by sha256). A text larger than 1 MiB or 20 000 lines is
not diffed: both sha256 are given. An inventory records no compose files: that part says so.

Both bundles' signatures are judged as verify judges them (--trust, --revoked,
--allow-unsigned) and shown, as inspect shows them: diff compares an untrusted bundle too and
exits 0. Everything it reads is checked against the manifest on the way (layers by diffID,
texts by sha256): a mismatch exits 4 (BUNDLE_INTEGRITY). Text lists ${TEXT_FILES_PER_LAYER} files per layer, then
"… and N more"; --json has them all, up to 100 000 per layer ("truncated": true past that).`);

  static override examples = [
    '<%= config.bin %> bundle diff /media/usb/shop-1.4.2.ferry /media/usb/shop-1.4.3.ferry --trust allowed_signers',
    { description: 'Against what the host holds', command: '<%= config.bin %> bundle diff edge-1.inventory.json shop-1.4.3.ferry' },
    '<%= config.bin %> bundle diff old.ferry new.ferry --json | jq ".result.images[].layers[].files.changed"',
  ];

  static override args = {
    old: Args.string({ description: 'the previous bundle directory, or a host inventory file', required: true }),
    new: Args.string({ description: 'the new bundle directory', required: true }),
  };

  static override flags = { ...trustFlags };

  async run(): Promise<DiffResult> {
    const { args, flags } = await this.parse(BundleDiff);
    const result = await diffBundles(args.old, args.new, trustOptionsFrom(flags), this.out);
    this.out.result(renderDiff(result));
    return result;
  }
}
