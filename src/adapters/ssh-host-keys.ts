/**
 * Host keys, checked as OpenSSH checks them: known_hosts files (the user's, then the system's, or
 * only --known-hosts), a verdict per presented key, and --accept-new-host-key appending a key seen
 * for the first time (never a changed one).
 */
import { appendFile, mkdir, readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { checkHostKey, fingerprint, knownHostsLine, parseKnownHosts, type KnownHostEntry } from '../core/known-hosts.js';
import type { SshHostConfig } from '../core/ssh-config.js';
import { publicKeyType } from '../core/ssh-wire.js';
import { HostPreconditionError } from '../errors.js';
import { hostKeyChanged, hostKeyRevoked, hostKeyUnknown, knownHostsUnwritable } from './ssh-errors.js';


/** Host key algorithms per known_hosts key type: an RSA key is offered under three names. */
export function algorithmsFor(keyType: string): string[] {
  return keyType === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [keyType];
}

export const SUPPORTED_HOST_KEY_ALGOS = new Set(['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa']);

export interface KnownHostsSet {
  entries: KnownHostEntry[];
  /** Files read (for messages) and the one new keys are appended to. */
  files: string[];
  appendTo: string;
}

export async function loadKnownHosts(options: { knownHosts?: string | undefined }, config: SshHostConfig): Promise<KnownHostsSet> {
  const home = homedir();
  const user = options.knownHosts ? [options.knownHosts] : (config.userKnownHostsFiles ?? [join(home, '.ssh', 'known_hosts'), join(home, '.ssh', 'known_hosts2')]);
  // With an explicit --known-hosts file only that file counts: tests and scripts need a closed world.
  const files = options.knownHosts ? user : [...user, '/etc/ssh/ssh_known_hosts', '/etc/ssh/ssh_known_hosts2'];
  const entries: KnownHostEntry[] = [];
  for (const path of files) {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw new HostPreconditionError('KNOWN_HOSTS_UNREADABLE', `cannot read the known hosts file ${path}: ${(e as Error).message}`, { cause: e });
    }
    entries.push(...parseKnownHosts({ path, text }));
  }
  return { entries, files, appendTo: user[0]! };
}

async function appendKnownHost(path: string, line: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  let prefix = '';
  try {
    const existing = await readFile(path, 'utf8');
    if (existing.length > 0 && !existing.endsWith('\n')) prefix = '\n';
  } catch {
    // A new file: nothing to separate from.
  }
  await appendFile(path, `${prefix}${line}\n`, { mode: 0o600 });
}

function safeKeyType(key: Buffer): string {
  try {
    return publicKeyType(key);
  } catch {
    return 'unknown';
  }
}


export interface PresentedKey {
  type: string;
  fingerprint: string;
}

/**
 * ssh2's host verifier: trusts what known_hosts trusts, adds a first-seen key only with
 * --accept-new-host-key, and hands each verdict to `onVerdict` (the error that refused the key, if
 * any, so the connection fails with it rather than ssh2's generic "Host denied").
 */
export function hostKeyVerifier(
  ctx: { known: KnownHostsSet; khName: string; label: string; acceptNewHostKey: boolean; warn?: ((w: { code: string; message: string; subject?: string }) => void) | undefined },
  onVerdict: (error: Error | undefined, presented: PresentedKey) => void,
): (key: Buffer, verify: (ok: boolean) => void) => void {
  const { known, khName, label } = ctx;
  return (key, verify) => {
    const presented = { type: safeKeyType(key), fingerprint: fingerprint(key) };
    const refuse = (error: Error) => {
      onVerdict(error, presented);
      verify(false);
    };
    const verdict = checkHostKey(known.entries, khName, key);
    switch (verdict.kind) {
      case 'trusted':
        onVerdict(undefined, presented);
        verify(true);
        return;
      case 'revoked':
        refuse(hostKeyRevoked(label, presented, verdict.entry));
        return;
      case 'changed':
        refuse(hostKeyChanged(label, khName, presented, verdict.known));
        return;
      case 'unknown':
        if (!ctx.acceptNewHostKey) {
          refuse(hostKeyUnknown(label, khName, presented, known));
          return;
        }
        appendKnownHost(known.appendTo, knownHostsLine(khName, key)).then(
          () => {
            ctx.warn?.({ code: 'HOST_KEY_ADDED', subject: label, message: `added ${khName} (${presented.type} ${presented.fingerprint}) to ${known.appendTo} (--accept-new-host-key)` });
            onVerdict(undefined, presented);
            verify(true);
          },
          (e: Error) => refuse(knownHostsUnwritable(label, known.appendTo, e)),
        );
        return;
    }
  };
}
