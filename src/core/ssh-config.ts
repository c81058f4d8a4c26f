/**
 * The part of OpenSSH's client configuration (ssh_config(5)) that decides where and as whom ferry
 * connects: Host blocks with `*`, `?` and `!` patterns, HostName, User, Port, IdentityFile,
 * IdentitiesOnly, IdentityAgent, UserKnownHostsFile, ConnectTimeout, ServerAliveInterval and
 * ServerAliveCountMax, plus Include. Pure: the adapter reads the files and hands in their text.
 *
 * Semantics follow OpenSSH, because an operator's existing ~/.ssh/config must mean the same thing
 * to ferry as to `ssh`: the first value obtained for an option wins (so specific Host blocks go
 * first in the file), except IdentityFile, which accumulates; options before the first Host line
 * apply to every host; `Host` patterns match the name given on the command line, not HostName.
 * `Match` blocks other than `Match all` are not evaluated, so their options never apply.
 */

import { matchHostPatternList } from './patterns.js';

export interface SshConfigFile {
  path: string;
  text: string;
}

export interface SshConfigEnv {
  /** Local home directory, for `~` and `%d`. */
  home: string;
  /** Local user name, for `%u`. */
  localUser: string;
  /** Files an `Include` pattern names (absolute, globs resolved); [] when none. */
  include(pattern: string): SshConfigFile[];
}

/** What the configuration says about one host alias; absent fields were not set. */
export interface SshHostConfig {
  hostName?: string;
  user?: string;
  port?: number;
  identityFiles: string[];
  identitiesOnly?: boolean;
  /** A socket path, or "none"; "SSH_AUTH_SOCK" means the environment variable. */
  identityAgent?: string;
  userKnownHostsFiles?: string[];
  connectTimeoutS?: number;
  serverAliveIntervalS?: number;
  serverAliveCountMax?: number;
}

export class SshConfigError extends Error {}

interface Directive {
  keyword: string;
  args: string[];
  where: string;
}

/** Splits a config line into words; double quotes group words, as OpenSSH's argv_split does. */
export function splitConfigLine(line: string): string[] {
  const words: string[] = [];
  let cur = '';
  let inWord = false;
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quoted) {
      if (c === '"') quoted = false;
      else cur += c;
      continue;
    }
    if (c === '"') {
      quoted = true;
      inWord = true;
    } else if (c === ' ' || c === '\t') {
      if (inWord) words.push(cur);
      cur = '';
      inWord = false;
    } else if (c === '#' && !inWord) {
      break;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (quoted) throw new SshConfigError('unterminated quote');
  if (inWord) words.push(cur);
  return words;
}

function parseLine(raw: string): { keyword: string; args: string[] } | null {
  const line = raw.trim();
  if (!line || line.startsWith('#')) return null;
  // "Keyword=value" and "Keyword = value" are both allowed.
  const m = /^([A-Za-z][A-Za-z0-9]*)\s*(?:=\s*|\s+|$)(.*)$/.exec(line);
  if (!m) throw new SshConfigError(`cannot parse "${line}"`);
  return { keyword: m[1]!.toLowerCase(), args: splitConfigLine(m[2]!) };
}

/** The directives of a file, Includes expanded in place (depth-limited, as OpenSSH does). */
function directives(file: SshConfigFile, env: SshConfigEnv, depth: number): Directive[] {
  if (depth > 16) throw new SshConfigError(`${file.path}: Include nested too deeply`);
  const out: Directive[] = [];
  const lines = file.text.split(/\r?\n/);
  lines.forEach((raw, i) => {
    const where = `${file.path} line ${i + 1}`;
    let parsed;
    try {
      parsed = parseLine(raw);
    } catch (e) {
      throw new SshConfigError(`${where}: ${(e as Error).message}`);
    }
    if (!parsed) return;
    if (parsed.keyword === 'include') {
      // An Include inside a Host block belongs to that block: its directives follow the block header.
      for (const pattern of parsed.args) {
        const abs = pattern.startsWith('~/') ? `${env.home}${pattern.slice(1)}` : pattern;
        for (const inc of env.include(abs)) out.push(...directives(inc, env, depth + 1));
      }
      return;
    }
    out.push({ ...parsed, where });
  });
  return out;
}

function positiveInt(d: Directive, max = 65535): number {
  const v = d.args[0] ?? '';
  if (!/^\d+$/.test(v) || Number(v) < 0 || Number(v) > max) throw new SshConfigError(`${d.where}: ${d.keyword} needs a number, got "${v}"`);
  return Number(v);
}

/**
 * Resolves the options for `alias` (the host as typed) from the files in order, e.g. the user's
 * ~/.ssh/config. Tokens: %h (remote host), %r (remote user), %u (local user), %d (home), %%.
 */
export function resolveSshConfig(alias: string, files: SshConfigFile[], env: SshConfigEnv, remoteUserFromTarget?: string): SshHostConfig {
  const all = files.flatMap((f) => directives(f, env, 0));
  const out: SshHostConfig = { identityFiles: [] };
  const rawIdentity: string[] = [];
  let active = true;
  for (const d of all) {
    if (d.keyword === 'host') {
      if (d.args.length === 0) throw new SshConfigError(`${d.where}: Host needs a pattern`);
      active = matchHostPatternList(alias, d.args);
      continue;
    }
    if (d.keyword === 'match') {
      active = d.args.length === 1 && d.args[0]!.toLowerCase() === 'all';
      continue;
    }
    if (!active) continue;
    const first = d.args[0];
    switch (d.keyword) {
      case 'hostname':
        out.hostName ??= first;
        break;
      case 'user':
        out.user ??= first;
        break;
      case 'port':
        if (out.port === undefined) {
          const p = positiveInt(d);
          if (p === 0) throw new SshConfigError(`${d.where}: Port 0`);
          out.port = p;
        }
        break;
      case 'identityfile':
        if (first) rawIdentity.push(first);
        break;
      case 'identitiesonly':
        out.identitiesOnly ??= first?.toLowerCase() === 'yes';
        break;
      case 'identityagent':
        out.identityAgent ??= first;
        break;
      case 'userknownhostsfile':
        out.userKnownHostsFiles ??= d.args;
        break;
      case 'connecttimeout':
        out.connectTimeoutS ??= positiveInt(d, 86400);
        break;
      case 'serveraliveinterval':
        out.serverAliveIntervalS ??= positiveInt(d, 86400);
        break;
      case 'serveralivecountmax':
        out.serverAliveCountMax ??= positiveInt(d, 1000);
        break;
      default:
        // Every other option (ProxyJump, Ciphers, ...) is OpenSSH's business, not ferry's.
        break;
    }
  }
  const hostName = out.hostName ? expandTokens(out.hostName, { h: alias }) : alias;
  out.hostName = hostName;
  const remoteUser = remoteUserFromTarget ?? out.user ?? env.localUser;
  const tokens = { h: hostName, r: remoteUser, u: env.localUser, d: env.home };
  out.identityFiles = rawIdentity.map((p) => expandPath(p, env.home, tokens));
  if (out.userKnownHostsFiles) out.userKnownHostsFiles = out.userKnownHostsFiles.map((p) => expandPath(p, env.home, tokens));
  if (out.identityAgent && out.identityAgent !== 'none' && out.identityAgent !== 'SSH_AUTH_SOCK') {
    out.identityAgent = expandPath(out.identityAgent, env.home, tokens);
  }
  return out;
}

export function expandTokens(value: string, tokens: Record<string, string>): string {
  return value.replace(/%(.)/g, (whole, t: string) => {
    if (t === '%') return '%';
    const v = tokens[t];
    if (v === undefined) throw new SshConfigError(`unsupported token ${whole} in "${value}"`);
    return v;
  });
}

export function expandPath(value: string, home: string, tokens: Record<string, string>): string {
  const expanded = expandTokens(value, tokens);
  if (expanded === '~') return home;
  if (expanded.startsWith('~/')) return `${home}${expanded.slice(1)}`;
  return expanded;
}
