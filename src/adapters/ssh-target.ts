/**
 * Where an --ssh target really goes: the target as typed ([user@]host[:port]) resolved through the
 * user's OpenSSH client configuration (~/.ssh/config with its Includes), as `ssh` would resolve it.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { homedir, userInfo } from 'node:os';
import { basename, dirname, isAbsolute, join } from 'node:path';
import { matchPattern } from '../core/patterns.js';
import { resolveSshConfig, SshConfigError, type SshConfigFile, type SshHostConfig } from '../core/ssh-config.js';
import { parseSshTarget, TargetError, type SshTarget } from '../core/ssh-target.js';
import { UsageError } from '../errors.js';


export interface ResolvedTarget {
  target: SshTarget;
  config: SshHostConfig;
  hostName: string;
  port: number;
  user: string;
  label: string;
}

function readConfigFiles(path: string): SshConfigFile[] {
  try {
    return [{ path, text: readFileSync(path, 'utf8') }];
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}

/** Include: relative to ~/.ssh, `*` and `?` in the last path component, as OpenSSH (glob(3)) does. */
function includeFiles(pattern: string, home: string): SshConfigFile[] {
  const abs = isAbsolute(pattern) ? pattern : join(home, '.ssh', pattern);
  const dir = dirname(abs);
  const base = basename(abs);
  let names: string[];
  if (/[*?]/.test(base)) {
    try {
      names = readdirSync(dir).filter((n) => matchPattern(n, base) && !n.startsWith('.')).sort();
    } catch {
      return [];
    }
  } else {
    names = [base];
  }
  return names.flatMap((n) => {
    const p = join(dir, n);
    try {
      return statSync(p).isFile() ? [{ path: p, text: readFileSync(p, 'utf8') }] : [];
    } catch {
      return [];
    }
  });
}

export function resolveTarget(spec: string, options: { configFile?: string | undefined } = {}): ResolvedTarget {
  let target: SshTarget;
  try {
    target = parseSshTarget(spec);
  } catch (e) {
    if (e instanceof TargetError) throw new UsageError('BAD_SSH_TARGET', `--ssh ${e.message}`, { hint: 'Write targets as [user@]host[:port], e.g. deploy@edge-1 or root@10.0.0.5:2222.' });
    throw e;
  }
  const home = homedir();
  const localUser = safeLocalUser();
  const configPath = options.configFile ?? join(home, '.ssh', 'config');
  let config: SshHostConfig;
  try {
    const files = configPath === 'none' ? [] : readConfigFiles(configPath);
    config = resolveSshConfig(target.host, files, { home, localUser, include: (p) => includeFiles(p, home) }, target.user);
  } catch (e) {
    if (e instanceof SshConfigError) throw new UsageError('SSH_CONFIG_INVALID', `cannot use the SSH configuration ${configPath}: ${e.message}`, { hint: 'Fix that line, or pass --ssh-config none to ignore the file.' });
    throw new UsageError('SSH_CONFIG_UNREADABLE', `cannot read the SSH configuration ${configPath}: ${(e as Error).message}`, { cause: e });
  }
  const hostName = config.hostName ?? target.host;
  // The command line wins over the configuration, as with `ssh -p` and user@.
  const port = target.port ?? config.port ?? 22;
  const user = target.user ?? config.user ?? localUser;
  return { target, config, hostName, port, user, label: `${user}@${target.host}${port !== 22 ? `:${port}` : ''}` };
}

function safeLocalUser(): string {
  try {
    return userInfo().username;
  } catch {
    return process.env.USER ?? 'root';
  }
}
