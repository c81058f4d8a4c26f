/**
 * Which keys ferry offers a host, in OpenSSH's order: --identity files, the agent (unless
 * IdentitiesOnly), then IdentityFile lines or the default ~/.ssh/id_* keys.
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { AnyAuthMethod, ParsedKey, utils as Ssh2Utils } from 'ssh2';
import { UsageError } from '../errors.js';
import type { ResolvedTarget } from './ssh-target.js';


export interface Credentials {
  methods: AnyAuthMethod[];
  /** What was tried, in order, for the message when the host refuses them all. */
  tried: string[];
  skipped: string[];
}

function loadKey(ssh2Utils: typeof Ssh2Utils, path: string, explicit: boolean, skipped: string[]): ParsedKey | null {
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch (e) {
    if (explicit) throw new UsageError('IDENTITY_UNREADABLE', `cannot read the identity file ${path}: ${(e as Error).message}`, { hint: 'Pass --identity with the path of an OpenSSH private key.' });
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') skipped.push(`${path} (${(e as Error).message})`);
    return null;
  }
  const parsed = ssh2Utils.parseKey(data);
  const key = Array.isArray(parsed) ? (parsed[0] as ParsedKey | Error | undefined) : parsed;
  if (!key || key instanceof Error || !key.isPrivateKey()) {
    const why = key instanceof Error && /encrypted|passphrase/i.test(key.message) ? 'encrypted: load it into ssh-agent instead' : `not a usable private key${key instanceof Error ? `: ${key.message}` : ''}`;
    if (explicit) throw new UsageError('IDENTITY_UNUSABLE', `the identity file ${path} is ${why}`, { hint: 'ferry cannot ask for passphrases; add the key to ssh-agent (ssh-add) and drop --identity.' });
    skipped.push(`${path} (${why})`);
    return null;
  }
  return key;
}

/** `ssh2Utils`: ssh2's key parser, from the caller that has loaded ssh2 (it loads on demand). */
export function credentials(ssh2Utils: typeof Ssh2Utils, options: { identities?: string[] | undefined }, resolved: ResolvedTarget): Credentials {
  const { config, user } = resolved;
  const home = homedir();
  const methods: AnyAuthMethod[] = [];
  const tried: string[] = [];
  const skipped: string[] = [];
  for (const path of options.identities ?? []) {
    const key = loadKey(ssh2Utils, path, true, skipped);
    if (key) {
      methods.push({ type: 'publickey', username: user, key });
      tried.push(`--identity ${path}`);
    }
  }
  const agent = config.identityAgent === 'none' ? undefined : config.identityAgent && config.identityAgent !== 'SSH_AUTH_SOCK' ? config.identityAgent : process.env.SSH_AUTH_SOCK;
  if (agent && !config.identitiesOnly) {
    methods.push({ type: 'agent', username: user, agent });
    tried.push(`the SSH agent (${agent})`);
  }
  // Default keys only when nothing names one, as ssh does.
  const files = config.identityFiles.length > 0 ? config.identityFiles : (options.identities ?? []).length > 0 ? [] : ['id_ed25519', 'id_ecdsa', 'id_rsa'].map((n) => join(home, '.ssh', n));
  for (const path of files) {
    const key = loadKey(ssh2Utils, path, false, skipped);
    if (key) {
      methods.push({ type: 'publickey', username: user, key });
      tried.push(path);
    }
  }
  return { methods, tried, skipped };
}
