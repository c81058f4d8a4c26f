import { Flags } from '@oclif/core';
import { type GenerateKeyResult, generateSigningKey } from '../../services/keys.js';
import { FerryCommand } from '../../ui/base-command.js';

export default class KeysGenerate extends FerryCommand {
  static override summary = 'Generate an ed25519 key pair for signing bundles.';

  static override description = FerryCommand.describe(
    [
      'Writes FILE, an unencrypted OpenSSH private key (mode 0600), and FILE.pub. Keep the private key on the build server only, readable by the build user alone: ferry signs with nobody at the keyboard, so the key cannot have a passphrase. Both are ordinary OpenSSH key files that ssh-keygen reads.',
      'Prints on stdout the allowed_signers line to add to the trust file (--trust / FERRY_TRUST) of every host that should accept bundles signed by this key. Its namespaces="ferry-bundle" option trusts the key for bundle signatures only, should the same file serve other `ssh-keygen -Y` checks.',
      'The trust file is a plain OpenSSH allowed_signers file (ssh-keygen(1), ALLOWED SIGNERS), so a bundle signature can also be checked with OpenSSH alone, where "ferry" is the principal (--principal) that starts the line:',
      '  ssh-keygen -Y verify -f TRUST_FILE -I ferry -n ferry-bundle -s SIGNATURE < SIGNED_FILE',
    ].join('\n\n'),
  );

  static override examples = [
    {
      description: "Make a key on the build server; stdout is the line for the hosts' trust file",
      command: '<%= config.bin %> <%= command.id %> --out ~/.ferry/signing-key --comment ci@build-01',
    },
    {
      description: "Make a key and append its line to a host's trust file in one go",
      command: "<%= config.bin %> <%= command.id %> --out ~/.ferry/signing-key | ssh host01 'sudo tee -a /etc/ferry/allowed_signers'",
    },
    {
      description: 'Check the fingerprint with OpenSSH (it matches the one ferry printed)',
      command: 'ssh-keygen -l -f ~/.ferry/signing-key.pub',
    },
    {
      description: 'Verify a bundle signature with OpenSSH alone, against the same trust file',
      command: 'ssh-keygen -Y verify -f /etc/ferry/allowed_signers -I ferry -n ferry-bundle -s SIGNATURE < SIGNED_FILE',
    },
    {
      description: 'Replace an existing key (hosts must then trust the new line) and read the result as JSON',
      command: '<%= config.bin %> <%= command.id %> --out ~/.ferry/signing-key --force --json | jq -r .result.allowedSignersLine',
    },
  ];

  static override flags = {
    out: Flags.string({
      char: 'o',
      description: 'where to write the private key; the public key goes to FILE.pub',
      helpValue: 'FILE',
      required: true,
    }),
    comment: Flags.string({
      description: 'comment stored in the key and shown in the trust file; default: ferry@HOSTNAME, so the trust file shows where each key was made',
      helpValue: 'TEXT',
    }),
    principal: Flags.string({
      description: 'identity that starts the allowed_signers line (what `ssh-keygen -Y verify -I` names)',
      helpValue: 'NAME',
      default: 'ferry',
    }),
    force: Flags.boolean({
      description: 'overwrite FILE and FILE.pub if they exist',
      default: false,
    }),
  };

  async run(): Promise<GenerateKeyResult> {
    const { flags } = await this.parse(KeysGenerate);
    const result = await generateSigningKey({
      out: flags.out,
      principal: flags.principal,
      force: flags.force,
      ...(flags.comment === undefined ? {} : { comment: flags.comment }),
    });
    this.out.log(`Wrote private key ${result.privateKeyPath} (keep it on the build server only)`);
    this.out.log(`Wrote public key  ${result.publicKeyPath}`);
    this.out.log(`Fingerprint       ${result.fingerprint}`);
    this.out.log("Add this line to every host's trust file (--trust / FERRY_TRUST):");
    this.out.result(result.allowedSignersLine);
    return result;
  }
}
