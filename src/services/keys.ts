/** Signing-key workflows behind `ferry keys …`; commands only parse flags and render. */
import { hostname } from 'node:os';
import { formatAllowedSignersLine } from '../core/allowed-signers.js';
import { writeKeyPair } from '../adapters/signing.js';
import { BUNDLE_NAMESPACE } from '../core/sshsig.js';
import { UsageError } from '../errors.js';

export interface GenerateKeyInput {
  out: string;
  /** Defaults to ferry@<hostname>, so a trust file shows where each key was made. */
  comment?: string;
  /** The identity in the allowed_signers line, i.e. what `ssh-keygen -Y verify -I` names. */
  principal: string;
  force: boolean;
}

export interface GenerateKeyResult {
  privateKeyPath: string;
  publicKeyPath: string;
  fingerprint: string;
  /** The line hosts add to their trust file to accept bundles signed by this key. */
  allowedSignersLine: string;
}

export async function generateSigningKey(input: GenerateKeyInput): Promise<GenerateKeyResult> {
  const principal = input.principal;
  // The principal is one field of the allowed_signers line; these characters would split it or
  // turn it into a list.
  if (principal === '' || /[\s",]/.test(principal) || principal.startsWith('#')) {
    throw new UsageError('USAGE', `--principal "${principal}" cannot be used in an allowed_signers line`, {
      hint: 'Use a single word without spaces, quotes or commas, such as "ferry" or "build@example.com".',
    });
  }
  const comment = input.comment ?? `ferry@${hostname()}`;
  if (/[\r\n]/.test(comment)) {
    throw new UsageError('USAGE', '--comment must be a single line', {
      hint: 'The comment ends the .pub file line and the allowed_signers line.',
    });
  }

  const written = await writeKeyPair(input.out, comment, { force: input.force });
  return {
    privateKeyPath: written.privateKeyPath,
    publicKeyPath: written.publicKeyPath,
    fingerprint: written.fingerprint,
    allowedSignersLine: formatAllowedSignersLine(principal, written.publicKeyLine, { namespaces: [BUNDLE_NAMESPACE] }),
  };
}
