/**
 * README.txt at a bundle's root: what the operator holding the stick runs, with stock tools only,
 * before anything on it runs. Pure text; create writes it, the manifest lists it and SHA256SUMS
 * covers it like every file.
 */
import { SUMS_FILE, SUMS_SIGNATURE_FILE } from './sha256sums.js';

export const README_FILE = 'README.txt';

/** `ferry keys generate`'s default --principal: what allowed_signers lines start with unless chosen otherwise. */
export const DEFAULT_PRINCIPAL = 'ferry';
export const DEFAULT_TRUST_FILE = '/etc/ferry/allowed_signers';

export interface ReadmeInput {
  name: string;
  version: string;
  /** The signing key's fingerprint (SHA256:…); null for an unsigned bundle. */
  signer: string | null;
  /** The namespace the manifest and SHA256SUMS are signed for. */
  namespace: string;
  /** The bundle carries the ferry executable (./ferry): the text says how a first visit sets it up. */
  carriesFerry?: boolean;
}

export function bundleReadme(r: ReadmeInput): string {
  const install = r.carriesFerry ? carriedInstall(r) : [
    'Then install:',
    '',
    '  ./ferry bundle install .',
    '',
    './ferry is on the stick only when the bundle carries the ferry executable; otherwise use',
    'the ferry the host has: ferry bundle install .',
    'ferry checks the signature and every file again before anything reaches Docker.',
  ];
  if (r.signer === null) {
    return [
      `${r.name} ${r.version}: a ferry bundle. It is UNSIGNED: nothing proves who made it.`,
      '',
      'From inside this directory, check that every file is the one it lists (this proves',
      'only that the copy is intact, not where it came from):',
      '',
      `  sha256sum -c ${SUMS_FILE}`,
      '',
      ...install.map((l) => l.replace('bundle install .', 'bundle install . --allow-unsigned')),
      '',
    ].join('\n');
  }
  return [
    `${r.name} ${r.version}: a ferry bundle, signed by the key ${r.signer}.`,
    '',
    'Before running anything from this stick, check all of it with OpenSSH and coreutils',
    'alone, from inside this directory (cd to it first):',
    '',
    `  ssh-keygen -Y verify -f ${DEFAULT_TRUST_FILE} -I ${DEFAULT_PRINCIPAL} -n ${r.namespace} -s ${SUMS_SIGNATURE_FILE} < ${SUMS_FILE} && sha256sum -c ${SUMS_FILE}`,
    '',
    `The first proves that ${SUMS_FILE} was signed by a key the host trusts, the second that`,
    'every file here is the one it lists. Both must succeed.',
    '',
    `-I names the key's identity in ${DEFAULT_TRUST_FILE}: "${DEFAULT_PRINCIPAL}" unless the key was`,
    'given another with `ferry keys generate --principal`. This prints the identity it has there:',
    '',
    `  ssh-keygen -Y find-principals -f ${DEFAULT_TRUST_FILE} -s ${SUMS_SIGNATURE_FILE}`,
    '',
    'If the host keeps a file of revoked keys, add -r FILE to ssh-keygen -Y verify.',
    '',
    ...install,
    '',
  ].join('\n');
}

/** With ./ferry on the stick: a first visit installs it (verified against the bundle) before the bundle. */
function carriedInstall(r: ReadmeInput): string[] {
  const unsigned = r.signer === null;
  return [
    'Then, on a host without ferry (a first visit), install the ferry on this stick and the',
    `trust file; setup checks that ./ferry is the executable the signed bundle lists:`,
    '',
    unsigned ? '  (host setup refuses unsigned bundles: sign them for hosts that need setup)' : '  ./ferry host setup --trust allowed_signers',
    '  ferry bundle install .',
    '',
    `allowed_signers is the file with the build server's key you were given for this host (not`,
    `one from this stick); setup copies it to ${DEFAULT_TRUST_FILE} and ferry to /usr/local/bin.`,
    `On a first visit, also give that file to ssh-keygen -f above.`,
    '',
    'On later visits: ferry bundle install .',
    'ferry checks the signature and every file again before anything reaches Docker.',
  ];
}
