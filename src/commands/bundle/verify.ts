import { Args } from '@oclif/core';
import { verifyBundle, type VerifyResult } from '../../services/verify.js';
import { FerryCommand } from '../../ui/base-command.js';
import { renderVerify } from '../../ui/render/bundle.js';
import { trustFlags, trustOptionsFrom } from '../../ui/trust-flags.js';

export default class BundleVerify extends FerryCommand {
  static override summary = 'Check a bundle\'s signature and every file before it travels or is installed.';
  static override description = FerryCommand.describe(`First the signature of the manifest: made by a key in the trust file (--trust, an OpenSSH
allowed_signers file) for the "ferry-bundle" namespace. Then every file the manifest lists:
present, a regular file, the exact size and sha256, each byte read once; and no file the
manifest does not list. All problems are reported, each naming its file, not just the first.

The same checks can be made without ferry:
  ssh-keygen -Y verify -f allowed_signers -I <principal> -n ferry-bundle -s ferry.json.sig [-r revoked_keys] < ferry.json
  then sha256sum each file listed in ferry.json.

--revoked FILE (env FERRY_REVOKED) lists public keys, one a line, whose signatures are refused
even when the trust file still lists them. A warning (TRUST_FILE_WRITABLE) says when either file,
or a directory above it, can be changed by someone other than root.`);

  static override examples = [
    '<%= config.bin %> bundle verify /media/usb/shop-1.4.2.ferry --trust allowed_signers',
    'FERRY_TRUST=/etc/ferry/allowed_signers <%= config.bin %> bundle verify shop.ferry --json',
  ];

  static override args = {
    bundle: Args.string({ description: 'bundle directory', required: true }),
  };

  static override flags = { ...trustFlags };

  async run(): Promise<VerifyResult> {
    const { args, flags } = await this.parse(BundleVerify);
    const result = await verifyBundle(args.bundle, trustOptionsFrom(flags), this.out);
    this.out.result(renderVerify(result));
    return result;
  }
}
