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
