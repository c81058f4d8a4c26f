/** The flags of every command that can work on a host over SSH, so they read the same everywhere. */
import { Flags } from '@oclif/core';
import { DEFAULT_REMOTE_DOCKER_SOCKET, type SshHostOptions } from '../adapters/ssh-host.js';
import { DEFAULT_SSH_TIMEOUT_S } from '../adapters/ssh.js';
import { hostNames, TargetError } from '../core/ssh-target.js';
import { UsageError } from '../errors.js';

export const sshFlags = {
  ssh: Flags.string({
    description: 'work on this host over SSH instead of this machine: [user@]host[:port], names from ~/.ssh/config work',
    multiple: true,
    delimiter: ',',
    helpGroup: 'SSH',
  }),
  identity: Flags.string({
    char: 'i',
    description: 'private key to log in with, tried before the SSH agent (SSH_AUTH_SOCK) and ~/.ssh/config IdentityFile (repeatable)',
    multiple: true,
    helpGroup: 'SSH',
  }),
  'known-hosts': Flags.string({
    description: 'known_hosts file to check host keys against (default: ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts)',
    helpGroup: 'SSH',
  }),
  'accept-new-host-key': Flags.boolean({
    description: 'trust a host seen for the first time and add its key to known_hosts (like StrictHostKeyChecking=accept-new); a CHANGED key is always refused',
    default: false,
    helpGroup: 'SSH',
  }),
  'ssh-timeout': Flags.integer({
    description: `seconds to connect, check the host key and log in (default ${DEFAULT_SSH_TIMEOUT_S}, or ConnectTimeout from ~/.ssh/config)`,
    min: 1,
    helpGroup: 'SSH',
  }),
  'ssh-config': Flags.string({
    description: 'OpenSSH client configuration to read (default ~/.ssh/config; "none" for none)',
    helpGroup: 'SSH',
  }),
  'remote-docker-socket': Flags.string({
    description: 'the Docker engine\'s socket on the remote host',
    default: DEFAULT_REMOTE_DOCKER_SOCKET,
    helpGroup: 'SSH',
  }),
};

export interface SshFlagValues {
  ssh?: string[];
  identity?: string[];
  'known-hosts'?: string;
  'accept-new-host-key': boolean;
  'ssh-timeout'?: number;
  'ssh-config'?: string;
  'remote-docker-socket': string;
}

export function sshOptionsFrom(flags: SshFlagValues, warn?: SshHostOptions['warn']): SshHostOptions {
  if (!flags.ssh?.length) {
    const used = (['identity', 'known-hosts', 'ssh-config'] as const).filter((f) => flags[f] !== undefined);
    if (used.length > 0 || flags['accept-new-host-key']) {
      throw new UsageError('SSH_FLAG_WITHOUT_SSH', `--${used[0] ?? 'accept-new-host-key'} only applies with --ssh`, { hint: 'Name the host with --ssh [user@]host.' });
    }
  }
  if (!flags['remote-docker-socket'].startsWith('/')) {
    throw new UsageError('BAD_FLAG', `--remote-docker-socket ${JSON.stringify(flags['remote-docker-socket'])} is not an absolute path`, { hint: 'e.g. --remote-docker-socket /run/user/1000/docker.sock' });
  }
  return {
    ...(flags.identity ? { identities: flags.identity } : {}),
    ...(flags['known-hosts'] ? { knownHosts: flags['known-hosts'] } : {}),
    ...(flags['ssh-config'] ? { configFile: flags['ssh-config'] } : {}),
    acceptNewHostKey: flags['accept-new-host-key'],
    ...(flags['ssh-timeout'] !== undefined ? { timeoutMs: flags['ssh-timeout'] * 1000 } : {}),
    remoteDockerSocket: flags['remote-docker-socket'],
    ...(warn ? { warn } : {}),
  };
}

/** Host commands (status, rollback, inventory) work on one host: none (this machine) or one --ssh. */
export function singleTarget(flags: SshFlagValues): string | undefined {
  const targets = flags.ssh ?? [];
  if (targets.length > 1) {
    throw new UsageError('ONE_HOST_ONLY', `this command works on one host; --ssh names ${targets.length}: ${targets.join(', ')}`, { hint: 'Run it once per host (only bundle install takes a fleet).' });
  }
  return targets[0];
}

/**
 * The host override per target from `--host` values (see hostNames in core/ssh-target): undefined
 * means "ask the host for its name". Without --ssh only one bare name makes sense.
 */
export function hostOverrides(targets: string[], values: string[]): Map<string | undefined, string> {
  if (targets.length === 0) {
    if (values.length > 1 || values.some((v) => v.includes('='))) {
      throw new UsageError('BAD_FLAG', `--host ${values.join(', ')}: without --ssh, --host takes one name`, { hint: 'e.g. --host edge-1; TARGET=NAME entries name the overrides of --ssh hosts.' });
    }
    return new Map(values.length ? [[undefined, values[0]!]] : []);
  }
  const dup = targets.find((t, i) => targets.indexOf(t) !== i);
  if (dup) throw new UsageError('BAD_FLAG', `--ssh names ${dup} twice`, { hint: 'Each host once: two installs on one host would only wait for each other\'s lock.' });
  try {
    return hostNames(targets, values);
  } catch (e) {
    if (e instanceof TargetError) throw new UsageError('BAD_FLAG', e.message, { hint: 'e.g. --ssh deploy@edge-1,deploy@edge-2 --host deploy@edge-1=edge-1 --host deploy@edge-2=edge-2' });
    throw e;
  }
}
