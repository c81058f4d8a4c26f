/**
 * SSH connections to hosts, with ssh2 (no `ssh` child process): one connection per host carries
 * the engine API (stream-local forwarding to the Docker socket), SFTP for the state directory and
 * exec for compose. Configuration is read the way OpenSSH reads it (~/.ssh/config), host keys are
 * checked against known_hosts, and every failure names the host and says what to do.
 */
import { Socket } from 'node:net';
import type { AnyAuthMethod, AuthenticationType, Client, ClientChannel, ConnectConfig, NextAuthHandler, SFTPWrapper } from 'ssh2';
import { knownHostName, knownKeyTypes } from '../core/known-hosts.js';
import { transientSshFailure } from '../core/retry.js';
import type { SshTarget } from '../core/ssh-target.js';
import { HostPreconditionError } from '../errors.js';
import { withRetry } from './retry.js';
import { credentials } from './ssh-auth.js';
import { mapConnectError, noIdentity } from './ssh-errors.js';
import { algorithmsFor, hostKeyVerifier, loadKnownHosts, SUPPORTED_HOST_KEY_ALGOS } from './ssh-host-keys.js';
import { resolveTarget, type ResolvedTarget } from './ssh-target.js';

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
// Connecting

export async function connectSsh(spec: string, options: SshOptions = {}): Promise<SshConnection> {
  const resolved = resolveTarget(spec, options);
  const { hostName, port, user, label, config } = resolved;
  // ssh2 is 12 MB of modules: loaded by the commands that open a connection, not by every command.
  const { default: ssh2 } = await import('ssh2');
  const creds = credentials(ssh2.utils, options, resolved);
  if (creds.methods.length === 0) throw noIdentity(label, resolved.target.host, creds.skipped);
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
    const hostVerifier = hostKeyVerifier({ known, khName, label, acceptNewHostKey: options.acceptNewHostKey === true, warn: options.warn }, (error, key) => {
      keyError = error;
      presented = key;
    });

    let methodIndex = 0;
    const authHandler = (_left: AuthenticationType[], _partial: boolean, next: NextAuthHandler): void => {
      const m = creds.methods[methodIndex++];
      // ssh2 takes `false` for "no more methods"; its typings only list the method shapes.
      next((m ?? false) as AnyAuthMethod);
    };

    const client: Client = new ssh2.Client();
    // Our own socket, so that its writes can be gathered. Connecting before ssh2 takes it: ssh2
    // waits for `connect` only on a socket still connecting (its events come a tick later at
    // the earliest, once ssh2 listens).
    const sock = new Socket();
    sock.once('connect', () => coalesceWrites(sock));
    sock.connect({ host: hostName, port });
    const connectConfig: ConnectConfig = {
      sock,
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
        // The socket is ours: a connect still waiting on a dropped SYN would otherwise outlive the attempt.
        sock.destroy();
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

/**
 * ssh2 writes every SSH packet (at most 32 KiB) to the socket as its own write: a bundle's
 * layers become tens of thousands of send calls, the busiest part of ferry's one thread when it
 * feeds a fleet. Writes made in one tick are gathered under cork() and leave as one writev.
 * Installed once connected, because net.Socket's connect() puts its own `write` on the instance.
 */
function coalesceWrites(sock: Socket): void {
  const write = sock.write;
  let gathering = false;
  sock.write = function (this: Socket, ...args: unknown[]): boolean {
    if (!gathering) {
      gathering = true;
      sock.cork();
      process.nextTick(() => {
        gathering = false;
        sock.uncork();
      });
    }
    return (write as (...a: unknown[]) => boolean).apply(this, args);
  } as Socket['write'];
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
