/** Text rendering of `host setup`, for people. --json output never passes through here. */
import type { SetupResult } from '../../services/setup.js';
import { shortDigest } from '../format.js';

export function renderSetup(r: SetupResult): string {
  return [
    `ferry ${r.version} (${shortDigest(r.sha256)}), as listed in the signed bundle ${r.bundle}`,
    `  ${r.executable.path}: ${r.executable.action}`,
    `  ${r.trust.path}: ${r.trust.action}`,
    `  ${r.stateDir.path}: ${r.stateDir.action}`,
    `next: ferry bundle install ${r.bundle}`,
  ].join('\n');
}
