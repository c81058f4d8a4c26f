/**
 * How hosts are named on ferry's command line: `--ssh [user@]host[:port]` (or ssh://user@host:port,
 * or [v6addr]:port), `--host TARGET=NAME` mappings for a fleet, and POSIX shell quoting for the
 * commands ferry runs on a remote host. Pure.
 */

export interface SshTarget {
  /** The target as the user typed it: the key of --host mappings and of fleet results. */
  spec: string;
  user?: string;
  /** The host as typed (an ssh_config alias or a real name/address). */
  host: string;
  port?: number;
}

export class TargetError extends Error {}

export function parseSshTarget(spec: string): SshTarget {
  let rest = spec.trim();
  if (rest.startsWith('ssh://')) rest = rest.slice('ssh://'.length).replace(/\/$/, '');
  if (!rest) throw new TargetError('an empty --ssh target');
  let user: string | undefined;
  const at = rest.lastIndexOf('@');
  if (at >= 0) {
    user = rest.slice(0, at);
    rest = rest.slice(at + 1);
    if (!user) throw new TargetError(`"${spec}" has an empty user name`);
  }
  let host = rest;
  let port: number | undefined;
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(rest);
  if (v6) {
    host = v6[1]!;
    if (v6[2] !== undefined) port = Number(v6[2]);
  } else if ((rest.match(/:/g) ?? []).length === 1) {
    const i = rest.indexOf(':');
    host = rest.slice(0, i);
    const p = rest.slice(i + 1);
    if (!/^\d+$/.test(p)) throw new TargetError(`"${spec}": the port "${p}" is not a number`);
    port = Number(p);
  }
  if (port !== undefined && (port < 1 || port > 65535)) throw new TargetError(`"${spec}": port ${port} is out of range`);
  // A leading dash would read as an option to anything that passes the name on; no shell metacharacters.
  if (!host || host.startsWith('-') || /[\s'"`$;&|<>\\/]/.test(host)) throw new TargetError(`"${spec}" is not a host name or address`);
  if (user !== undefined && (user.startsWith('-') || /[\s'"`$;&|<>\\/:@]/.test(user))) throw new TargetError(`"${spec}": "${user}" is not a user name`);
  return { spec, host, ...(user !== undefined ? { user } : {}), ...(port !== undefined ? { port } : {}) };
}

/**
 * `--host` values for a fleet: `TARGET=NAME` entries name each host's override; a bare NAME is
 * allowed only with a single target (with several it would silently give them all one identity).
 */
export function hostNames(targets: string[], values: string[]): Map<string, string> {
  const out = new Map<string, string>();
  const bare = values.filter((v) => !v.includes('='));
  if (bare.length > 0) {
    if (targets.length !== 1 || bare.length > 1 || values.length > 1) {
      throw new TargetError(`--host ${bare[0]}: with several hosts, name each one's override as --host TARGET=NAME (e.g. --host ${targets[0] ?? 'deploy@edge-1'}=edge-1)`);
    }
    out.set(targets[0]!, bare[0]!);
    return out;
  }
  for (const v of values) {
    const i = v.lastIndexOf('=');
    const target = v.slice(0, i);
    const name = v.slice(i + 1);
    if (!name) throw new TargetError(`--host ${v}: the name after "=" is empty`);
    if (!targets.includes(target)) throw new TargetError(`--host ${v}: "${target}" is not one of the --ssh targets (${targets.join(', ')})`);
    if (out.has(target)) throw new TargetError(`--host names ${target} twice`);
    out.set(target, name);
  }
  return out;
}

/** One word for a POSIX shell, whatever it contains. */
export function shellQuote(word: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

export function shellCommand(argv: readonly string[]): string {
  return argv.map(shellQuote).join(' ');
}
