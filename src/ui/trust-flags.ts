/**
 * The trust flag group: every command that reads a bundle's signature declares these flags and
 * turns them into TrustOptions with trustOptionsFrom, so no command can accept a flag of the
 * group and drop it (test/integration/flag-audit.test.ts walks every command to keep it so).
 */
import { Flags } from '@oclif/core';
import { DEFAULT_TRUST_FILE, type TrustOptions } from '../services/bundle.js';

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
  revoked: Flags.string({
    description: 'file of revoked public keys, one a line (as `ssh-keygen -Y verify -r` reads; not a binary KRL): a bundle signed by any of them is refused, whatever --trust says',
    env: 'FERRY_REVOKED',
  }),
};

export interface TrustFlagValues {
  trust: string;
  'allow-unsigned': boolean;
  revoked?: string | undefined;
}

export function trustOptionsFrom(flags: TrustFlagValues): TrustOptions {
  return { trust: flags.trust, allowUnsigned: flags['allow-unsigned'], revoked: flags.revoked ?? null };
}
