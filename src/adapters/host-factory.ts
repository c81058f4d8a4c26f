/**
 * Which host a command works on: this machine, or one reached over SSH (`--ssh`). Commands and the
 * fleet service open hosts only through here, so every service sees a HostTarget and never knows
 * which transport carries it.
 */
import { hostname } from 'node:os';
import { Engine } from './engine.js';
import type { HostTarget } from './host.js';
import { localHost } from './local-host.js';
import { sshHost, type SshHostOptions } from './ssh-host.js';

export interface NamedHost extends HostTarget {
  /** The host's own name: the default host override and the inventory's `host`. */
  hostname(): Promise<string>;
}

/** `target` undefined: the local machine. */
export async function openHost(target: string | undefined, options: SshHostOptions = {}): Promise<NamedHost> {
  if (target === undefined) return { ...localHost(new Engine(undefined, undefined, { warn: options.warn })), hostname: async () => hostname() };
  return sshHost(target, options);
}

/** Opens a host, runs `fn` on it, and always closes it (an SSH connection must not outlive the command). */
export async function withHost<T>(target: string | undefined, options: SshHostOptions, fn: (host: NamedHost) => Promise<T>): Promise<T> {
  const host = await openHost(target, options);
  try {
    return await fn(host);
  } finally {
    await host.close().catch(() => undefined);
  }
}
