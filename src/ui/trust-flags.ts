/** The trust flags every command that reads a bundle shares, so they read the same everywhere. */
import { Flags } from '@oclif/core';
import { DEFAULT_TRUST_FILE } from '../services/bundle.js';

export const trustFlags = {
  trust: Flags.string({
    description: `allowed_signers file (OpenSSH format) listing the keys whose bundles this machine accepts`,
    env: 'FERRY_TRUST',
    default: DEFAULT_TRUST_FILE,
  }),
  'allow-unsigned': Flags.boolean({
    description: 'accept a bundle that has no signature (labs only; prints a loud warning)',
    default: false,
  }),
};

/**
 * Separate from trustFlags until every command that spreads those also passes this one on: a
 * revocation flag that a command accepted and then ignored would be worse than none.
 */
export const revokedFlag = {
  revoked: Flags.string({
    description: 'file of revoked public keys, one a line (as `ssh-keygen -Y verify -r` reads; not a binary KRL): a bundle signed by any of them is refused, whatever --trust says',
    env: 'FERRY_REVOKED',
  }),
};
