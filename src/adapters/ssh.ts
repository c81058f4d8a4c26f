/**
 * SSH connections to hosts, with ssh2 (no `ssh` child process): one connection per host carries
 * the engine API (stream-local forwarding to the Docker socket), SFTP for the state directory and
 * exec for compose. Configuration is read the way OpenSSH reads it (~/.ssh/config), host keys are
 * checked against known_hosts, and every failure names the host and says what to do.
 */
import { appendFile, mkdir, readFile } from 'node:fs/promises';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { homedir, userInfo } from 'node:os';
import { basename, dirname, isAbsolute, join } from 'node:path';
import ssh2 from 'ssh2';
import type { AnyAuthMethod, AuthenticationType, Client, ClientChannel, ConnectConfig, NextAuthHandler, ParsedKey, SFTPWrapper } from 'ssh2';
import {
  checkHostKey,
  fingerprint,
  knownHostName,
  knownHostsLine,
  knownKeyTypes,
  parseKnownHosts,
  type KnownHostEntry,
} from '../core/known-hosts.js';
import { matchPattern } from '../core/patterns.js';
import { resolveSshConfig, SshConfigError, type SshConfigFile, type SshHostConfig } from '../core/ssh-config.js';
import { parseSshTarget, TargetError, type SshTarget } from '../core/ssh-target.js';
import { transientSshFailure } from '../core/retry.js';
import { publicKeyType } from '../core/ssh-wire.js';
import { HostPreconditionError, TrustError, UsageError } from '../errors.js';
import { withRetry } from './retry.js';

export interface SshOptions {
  /** --identity: private key files tried first, in order. */
  identities?: string[];
  /** --known-hosts: the only known_hosts file read, and the one --accept-new-host-key appends to. */
  knownHosts?: string;
  /** --accept-new-host-key: trust and record a host seen for the first time (never a changed key). */
  acceptNewHostKey?: boolean;
  /** --ssh-config: default ~/.ssh/config; "none" reads no configuration. */
  configFile?: string;
  /** Connect and handshake (including authentication) must finish within this. */
  timeoutMs?: number;
  keepaliveIntervalMs?: number;
  keepaliveCountMax?: number;
  /** Told when a host key is added to known_hosts: a trust decision the user should see, also under --json. */
  warn?: (warning: { code: string; message: string; subject?: string }) => void;
}

export const DEFAULT_SSH_TIMEOUT_S = 20;
/** A dead peer is noticed after interval × count without an answer: 45 s by default. */
const DEFAULT_KEEPALIVE_MS = 15_000;
const DEFAULT_KEEPALIVE_COUNT = 3;

export interface ExecResult {
  code: number;
  /** Set when the remote process died of a signal. */
  signal?: string;
  stdout: string;
  stderr: string;
}

export interface SshConnection {
  /** user@host[:port], as messages name it. */
  label: string;
  target: SshTarget;
  /** The address connected to (HostName) and the accepted key. */
  hostName: string;
  port: number;
  user: string;
  hostKey: { type: string; fingerprint: string };
  /** Runs a command through the remote user's shell; rejects only when the connection fails. */
  exec(command: string, opts?: { onData?: (chunk: string) => void; timeoutMs?: number }): Promise<ExecResult>;
  /**
   * A raw exec channel (for a process whose lifetime is tied to this connection). `onOpen` runs
   * the moment the channel opens, before any later message from the server is handled: ssh2 emits
   * events as it parses, and a command that ends at once can have its exit status parsed in the
   * same read as the channel's confirmation, before a caller awaiting this promise could listen.
   */
  execChannel(command: string, onOpen?: (ch: ClientChannel) => void): Promise<ClientChannel>;
  sftp(): Promise<SFTPWrapper>;
  /** A byte stream to a unix socket on the host (OpenSSH's direct-streamlocal). */
  openSocket(path: string): Promise<ClientChannel>;
  /** Throws SSH_CONNECTION_LOST once the connection is gone; otherwise returns. */
  assertOpen(): void;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Configuration

interface ResolvedTarget {
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

export function resolveTarget(spec: string, options: Pick<SshOptions, 'configFile'> = {}): ResolvedTarget {
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

// ---------------------------------------------------------------------------------------------
// Host keys

/** Host key algorithms per known_hosts key type: an RSA key is offered under three names. */
function algorithmsFor(keyType: string): string[] {
  return keyType === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [keyType];
}

const SUPPORTED_HOST_KEY_ALGOS = new Set(['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa']);

interface KnownHostsSet {
  entries: KnownHostEntry[];
  /** Files read (for messages) and the one new keys are appended to. */
  files: string[];
  appendTo: string;
}

async function loadKnownHosts(options: SshOptions, config: SshHostConfig): Promise<KnownHostsSet> {
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

// ---------------------------------------------------------------------------------------------
// Authentication

interface Credentials {
  methods: AnyAuthMethod[];
  /** What was tried, in order, for the message when the host refuses them all. */
  tried: string[];
  skipped: string[];
}

function loadKey(path: string, explicit: boolean, skipped: string[]): ParsedKey | null {
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch (e) {
    if (explicit) throw new UsageError('IDENTITY_UNREADABLE', `cannot read the identity file ${path}: ${(e as Error).message}`, { hint: 'Pass --identity with the path of an OpenSSH private key.' });
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') skipped.push(`${path} (${(e as Error).message})`);
    return null;
  }
  const parsed = ssh2.utils.parseKey(data);
  const key = Array.isArray(parsed) ? (parsed[0] as ParsedKey | Error | undefined) : parsed;
  if (!key || key instanceof Error || !key.isPrivateKey()) {
    const why = key instanceof Error && /encrypted|passphrase/i.test(key.message) ? 'encrypted: load it into ssh-agent instead' : `not a usable private key${key instanceof Error ? `: ${key.message}` : ''}`;
    if (explicit) throw new UsageError('IDENTITY_UNUSABLE', `the identity file ${path} is ${why}`, { hint: 'ferry cannot ask for passphrases; add the key to ssh-agent (ssh-add) and drop --identity.' });
    skipped.push(`${path} (${why})`);
    return null;
  }
  return key;
}

function credentials(options: SshOptions, resolved: ResolvedTarget): Credentials {
  const { config, user } = resolved;
  const home = homedir();
  const methods: AnyAuthMethod[] = [];
  const tried: string[] = [];
  const skipped: string[] = [];
  for (const path of options.identities ?? []) {
    const key = loadKey(path, true, skipped);
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
    const key = loadKey(path, false, skipped);
    if (key) {
      methods.push({ type: 'publickey', username: user, key });
      tried.push(path);
    }
  }
  return { methods, tried, skipped };
}

// ---------------------------------------------------------------------------------------------
// Connecting

export async function connectSsh(spec: string, options: SshOptions = {}): Promise<SshConnection> {
  const resolved = resolveTarget(spec, options);
  const { hostName, port, user, label, config } = resolved;
  const creds = credentials(options, resolved);
  if (creds.methods.length === 0) {
    throw new HostPreconditionError('SSH_NO_IDENTITY', `no key to log in to ${label} with: no --identity, no SSH agent (SSH_AUTH_SOCK), no IdentityFile and no ~/.ssh/id_ed25519 or id_rsa`, {
      hint: `Pass --identity KEYFILE, start ssh-agent and ssh-add a key, or name an IdentityFile for ${resolved.target.host} in ~/.ssh/config.${creds.skipped.length ? ` Skipped: ${creds.skipped.join('; ')}.` : ''}`,
      details: { host: label, skipped: creds.skipped },
    });
  }
  const known = await loadKnownHosts(options, config);
  const khName = knownHostName(hostName, port);
  const preferred = knownKeyTypes(known.entries, khName).flatMap(algorithmsFor).filter((a) => SUPPORTED_HOST_KEY_ALGOS.has(a));

  const timeoutMs = options.timeoutMs ?? (config.connectTimeoutS ? config.connectTimeoutS * 1000 : DEFAULT_SSH_TIMEOUT_S * 1000);
  const keepaliveIntervalMs = options.keepaliveIntervalMs ?? (config.serverAliveIntervalS ? config.serverAliveIntervalS * 1000 : DEFAULT_KEEPALIVE_MS);
  const keepaliveCountMax = options.keepaliveCountMax ?? config.serverAliveCountMax ?? DEFAULT_KEEPALIVE_COUNT;

  // One attempt: a fresh client and a fresh verdict each time, so nothing of a failed one leaks into the next.
  const attempt = async (): Promise<{ client: Client; presented: { type: string; fingerprint: string } | undefined }> => {
    // The verifier's verdict, kept so that ssh2's generic "Host denied" becomes a precise error.
    let keyError: Error | undefined;
    let presented: { type: string; fingerprint: string } | undefined;
    const hostVerifier = (key: Buffer, verify: (ok: boolean) => void): void => {
      const type = safeKeyType(key);
      const fp = fingerprint(key);
      presented = { type, fingerprint: fp };
      const verdict = checkHostKey(known.entries, khName, key);
      switch (verdict.kind) {
        case 'trusted':
          verify(true);
          return;
        case 'revoked':
          keyError = new TrustError('HOST_KEY_REVOKED', `${label} presented the ${type} key ${fp}, which ${verdict.entry.where} marks as REVOKED: refusing to connect`, {
            details: { host: label, keyType: type, fingerprint: fp, entry: verdict.entry.where },
            hint: 'Ask the host\'s administrator for its current key.',
          });
          verify(false);
          return;
        case 'changed': {
          const listed = verdict.known.map((e) => `${e.keyType} ${fingerprint(e.key)} (${e.where})`);
          keyError = new TrustError(
            'HOST_KEY_CHANGED',
            `WARNING: THE HOST KEY OF ${label} HAS CHANGED. It presented ${type} ${fp}, but known_hosts lists ${listed.join(', ')}. ` +
              'Someone may be intercepting this connection (man-in-the-middle), or the host was reinstalled. ferry refuses to connect; --accept-new-host-key never accepts a changed key.',
            {
              details: { host: label, knownHostsName: khName, keyType: type, fingerprint: fp, known: verdict.known.map((e) => ({ keyType: e.keyType, fingerprint: fingerprint(e.key), where: e.where })) },
              hint: `Confirm the new fingerprint with the host's administrator (ssh-keygen -lf /etc/ssh/ssh_host_${type.replace(/^ssh-/, '').replace(/-.*$/, '')}_key.pub on the host). If it is right, remove the old entry with \`ssh-keygen -R '${khName}' -f ${verdict.known[0]!.where.replace(/ line \d+$/, '')}\` and connect again.`,
            },
          );
          verify(false);
          return;
        }
        case 'unknown':
          if (!options.acceptNewHostKey) {
            keyError = new HostPreconditionError('HOST_KEY_UNKNOWN', `the host key of ${label} is not known: it presented ${type} ${fp}, and ${known.files.filter((f) => !f.startsWith('/etc/')).join(' and ')} list no key for ${khName}`, {
              details: { host: label, knownHostsName: khName, keyType: type, fingerprint: fp, knownHosts: known.appendTo },
              hint: `Check that fingerprint with the host's administrator, then re-run with --accept-new-host-key to add it to ${known.appendTo}, or add the host's key there yourself (ssh-keyscan, checked against the host).`,
            });
            verify(false);
            return;
          }
          appendKnownHost(known.appendTo, knownHostsLine(khName, key)).then(
            () => {
              options.warn?.({ code: 'HOST_KEY_ADDED', subject: label, message: `added ${khName} (${type} ${fp}) to ${known.appendTo} (--accept-new-host-key)` });
              verify(true);
            },
            (e: Error) => {
              keyError = new HostPreconditionError('KNOWN_HOSTS_UNWRITABLE', `cannot add the host key of ${label} to ${known.appendTo}: ${e.message}`, { cause: e });
              verify(false);
            },
          );
          return;
      }
    };

    let methodIndex = 0;
    const authHandler = (_left: AuthenticationType[], _partial: boolean, next: NextAuthHandler): void => {
      const m = creds.methods[methodIndex++];
      // ssh2 takes `false` for "no more methods"; its typings only list the method shapes.
      next((m ?? false) as AnyAuthMethod);
    };

    const client: Client = new ssh2.Client();
    const connectConfig: ConnectConfig = {
      host: hostName,
      port,
      username: user,
      readyTimeout: timeoutMs,
      keepaliveInterval: keepaliveIntervalMs,
      keepaliveCountMax,
      hostVerifier,
      authHandler,
      ...(preferred.length > 0 ? { algorithms: { serverHostKey: { prepend: preferred } as unknown as NonNullable<ConnectConfig['algorithms']>['serverHostKey'] } } : {}),
      ...(process.env.FERRY_SSH_DEBUG === '1' ? { debug: (m: string) => process.stderr.write(`ssh2 ${label}: ${m}\n`) } : {}),
    };

    await new Promise<void>((resolvePromise, reject) => {
      let settled = false;
      // readyTimeout covers the handshake; this also bounds a TCP connect that hangs on a dropped SYN.
      const guard = setTimeout(() => fail(Object.assign(new Error('Timed out while waiting for handshake'), { level: 'client-timeout' })), timeoutMs + 1000);
      const fail = (err: Error & { level?: string; code?: string }) => {
        if (settled) return;
        settled = true;
        clearTimeout(guard);
        client.end();
        reject(mapConnectError(err, { label, hostName, port, timeoutMs, keyError, creds }));
      };
      client.once('ready', () => {
        if (settled) return;
        settled = true;
        clearTimeout(guard);
        // Every API call is a small request and answer: Nagle's algorithm would hold each back
        // for the peer's delayed ACK (about 40 ms a round trip).
        client.setNoDelay(true);
        resolvePromise();
      });
      client.once('error', fail);
      client.once('close', () => fail(new Error('the connection closed during the handshake')));
      try {
        client.connect(connectConfig);
      } catch (e) {
        fail(e as Error);
      }
    });
    return { client, presented };
  };

  const { client, presented } = await withRetry(
    {
      subject: `SSH host ${label} (${hostName}:${port})`,
      // Only "cannot reach": a refused key or a host key problem is final.
      transient: (e) => (e instanceof HostPreconditionError && e.code === 'SSH_UNREACHABLE' ? transientSshFailure(e.cause) : null),
      onRetry: (message) => options.warn?.({ code: 'SSH_RETRY', subject: label, message }),
    },
    attempt,
  );
  return openConnection(client, resolved, presented ?? { type: '?', fingerprint: '?' });
}

function safeKeyType(key: Buffer): string {
  try {
    return publicKeyType(key);
  } catch {
    return 'unknown';
  }
}

function mapConnectError(
  err: Error & { level?: string; code?: string },
  ctx: { label: string; hostName: string; port: number; timeoutMs: number; keyError?: Error; creds: Credentials },
): Error {
  const { label } = ctx;
  if (ctx.keyError) return ctx.keyError;
  const where = `${ctx.hostName}:${ctx.port}`;
  if (err.level === 'client-authentication') {
    return new HostPreconditionError('SSH_AUTH_FAILED', `${label} refused every key ferry offered: ${ctx.creds.tried.join(', ')}`, {
      details: { host: label, tried: ctx.creds.tried, skipped: ctx.creds.skipped },
      hint: `Check that the key's public half is in ~/.ssh/authorized_keys of that user on the host, or pass --identity.${ctx.creds.skipped.length ? ` Skipped: ${ctx.creds.skipped.join('; ')}.` : ''}`,
      cause: err,
    });
  }
  if (err.level === 'client-timeout' || /Timed out while waiting for handshake/.test(err.message)) {
    return new HostPreconditionError('SSH_UNREACHABLE', `cannot connect to ${label} (${where}): no SSH handshake within ${Math.round(ctx.timeoutMs / 1000)} s`, {
      details: { host: label, address: where },
      hint: 'Check the address, that sshd runs there and that the network lets you through; --ssh-timeout gives slow links longer.',
      cause: err,
    });
  }
  if (/Connection lost before handshake|closed during the handshake/i.test(err.message)) {
    return new HostPreconditionError('SSH_UNREACHABLE', `cannot connect to ${label} (${where}): the connection closed before the SSH handshake (no sshd there, or a firewall in between)`, {
      details: { host: label, address: where },
      hint: 'Check the address and that sshd runs there; names from ~/.ssh/config (HostName, Port) are used.',
      cause: err,
    });
  }
  const code = err.code ?? '';
  if (['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'ECONNRESET'].includes(code)) {
    const what = code === 'ECONNREFUSED' ? 'connection refused (is sshd running there?)' : code === 'ENOTFOUND' || code === 'EAI_AGAIN' ? 'no such host name' : err.message;
    return new HostPreconditionError('SSH_UNREACHABLE', `cannot connect to ${label} (${where}): ${what}`, {
      details: { host: label, address: where, code },
      hint: 'Check the address and that sshd runs there; names from ~/.ssh/config (HostName, Port) are used.',
      cause: err,
    });
  }
  return new HostPreconditionError('SSH_FAILED', `SSH connection to ${label} (${where}) failed: ${err.message}`, { details: { host: label, address: where }, cause: err });
}

function openConnection(client: Client, resolved: ResolvedTarget, hostKey: { type: string; fingerprint: string }): SshConnection {
  const { label } = resolved;
  let lost: string | undefined;
  let closing = false;
  const closed = new Promise<void>((r) => client.once('close', () => r()));
  client.on('error', (e: Error) => {
    lost ??= e.message;
  });
  client.on('close', () => {
    lost ??= closing ? 'closed by ferry' : 'the connection closed';
  });
  const lostError = (cause?: unknown) =>
    new HostPreconditionError('SSH_CONNECTION_LOST', `the SSH connection to ${label} was lost (${lost ?? (cause as Error)?.message ?? 'unknown reason'})`, {
      details: { host: label },
      hint: 'Nothing half-done stays switched: re-run the same command once the host is reachable; it converges.',
      cause,
    });
  const assertOpen = () => {
    if (lost !== undefined) throw lostError();
  };
  /** ssh2 calls its callbacks with an Error; after a loss, every such error is the loss. */
  const wrap = (e: Error) => (lost !== undefined ? lostError(e) : e);

  let sftpPromise: Promise<SFTPWrapper> | undefined;

  const conn: SshConnection = {
    label,
    target: resolved.target,
    hostName: resolved.hostName,
    port: resolved.port,
    user: resolved.user,
    hostKey,
    assertOpen,
    execChannel(command, onOpen) {
      assertOpen();
      return new Promise((resolvePromise, reject) => {
        try {
          client.exec(command, (err, ch) => {
            if (err) return reject(wrap(err));
            onOpen?.(ch);
            resolvePromise(ch);
          });
        } catch (e) {
          reject(wrap(e as Error));
        }
      });
    },
    async exec(command, opts = {}) {
      let code: number | undefined;
      let signal: string | undefined;
      // Listening from the channel's first moment: a fast command's exit status can arrive with
      // the confirmation (seen in CI: `hostname` read as "exit -1" while it had succeeded).
      const ch = await conn.execChannel(command, (opened) =>
        opened.on('exit', (c: number | null, sig?: string) => {
          if (typeof c === 'number') code = c;
          if (sig) signal = sig;
        }),
      );
      return new Promise((resolvePromise, reject) => {
        const out: Buffer[] = [];
        const err: Buffer[] = [];
        const timer = opts.timeoutMs
          ? setTimeout(() => {
              signal = 'TIMEOUT';
              try {
                ch.signal('KILL');
              } catch {
                // Older servers do not take signals: closing the channel ends the process's I/O.
              }
              ch.close();
            }, opts.timeoutMs)
          : undefined;
        ch.on('data', (b: Buffer) => {
          out.push(b);
          opts.onData?.(b.toString('utf8'));
        });
        ch.stderr.on('data', (b: Buffer) => {
          err.push(b);
          opts.onData?.(b.toString('utf8'));
        });
        ch.on('close', () => {
          if (timer) clearTimeout(timer);
          if (code === undefined && signal === undefined && lost !== undefined) {
            reject(lostError());
            return;
          }
          resolvePromise({ code: code ?? -1, ...(signal ? { signal } : {}), stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
        });
      });
    },
    sftp() {
      assertOpen();
      sftpPromise ??= new Promise<SFTPWrapper>((resolvePromise, reject) => {
        client.sftp((err, sftp) => {
          if (err) {
            sftpPromise = undefined;
            reject(wrap(err));
            return;
          }
          sftp.on('close', () => {
            sftpPromise = undefined;
          });
          resolvePromise(sftp);
        });
      });
      return sftpPromise;
    },
    openSocket(path) {
      assertOpen();
      return new Promise((resolvePromise, reject) => {
        try {
          client.openssh_forwardOutStreamLocal(path, (err, ch) => (err ? reject(wrap(err)) : resolvePromise(ch)));
        } catch (e) {
          reject(wrap(e as Error));
        }
      });
    },
    async close() {
      if (closing) return closed;
      closing = true;
      client.end();
      // A peer that vanished never answers the disconnect: do not wait on it for long.
      await Promise.race([closed, new Promise((r) => setTimeout(r, 2000).unref())]);
      client.destroy();
    },
  };
  return conn;
}
