/**
 * A host reached over SSH, as a HostTarget: the same install, rollback, status and inventory
 * services run against it as against the local machine. Everything rides on one SSH connection:
 *   engine  - the remote Docker socket through stream-local forwarding (one channel per API
 *             request), so image blobs stream from the local, verified bundle straight into the
 *             remote engine's load endpoint: nothing lands on the remote disk first;
 *   fs      - SFTP for the state directory, writes atomic as locally (temp file, fsync, rename);
 *   compose - exec of `docker compose` / `docker-compose` on the host, in the release directory.
 */
import { randomBytes } from 'node:crypto';
import { Agent, type ClientRequestArgs } from 'node:http';
import { inspect } from 'node:util';
import { posix } from 'node:path';
import type { Duplex } from 'node:stream';
import type { ClientChannel, SFTPWrapper } from 'ssh2';
import { composeArgs, parseComposeFeatures, type ComposeCommand } from '../core/compose-cli.js';
import { shellCommand, shellQuote } from '../core/ssh-target.js';
import { HostPreconditionError } from '../errors.js';
import { Engine } from './engine.js';
import type { ComposeRunner, HostFs, HostTarget } from './host.js';
import { connectSsh, type SshConnection, type SshOptions } from './ssh.js';

export const DEFAULT_REMOTE_DOCKER_SOCKET = '/var/run/docker.sock';
/** RFC 4254's SSH_OPEN_CONNECT_FAILED: the server could not connect where the channel was to go. */
const SSH_OPEN_CONNECT_FAILED = 2;

export interface SshHostOptions extends SshOptions {
  /** --remote-docker-socket: the engine's unix socket on the host. */
  remoteDockerSocket?: string;
}

export interface SshHostTarget extends HostTarget {
  connection: SshConnection;
  /** The host's own name (`hostname`), the default for which host override to use. */
  hostname(): Promise<string>;
}

export async function sshHost(target: string, options: SshHostOptions = {}): Promise<SshHostTarget> {
  const conn = await connectSsh(target, options);
  // The state directory is reached over SFTP by nearly every command: its subsystem (a process the
  // host starts) opens now, beside the first exec (`hostname`), not after it. A failure here is
  // not reported: the first real use opens it again and says why.
  conn.sftp().catch(() => undefined);
  const socket = options.remoteDockerSocket ?? DEFAULT_REMOTE_DOCKER_SOCKET;
  const engine = new Engine(`ssh://${conn.label}${socket}`, {
    agent: new SshSocketAgent(conn, socket),
    socketPath: socket,
    // Whatever DOCKER_HOST says locally (tcp, TLS, a timeout) is about another engine.
    host: undefined,
    port: undefined,
    protocol: 'http',
    ca: undefined,
    cert: undefined,
    key: undefined,
    timeout: undefined,
  }, { warn: options.warn });
  return {
    label: conn.label,
    connection: conn,
    engine,
    fs: sftpFs(conn),
    compose: remoteCompose(conn, socket),
    local: false,
    hostname: async () => {
      const r = await conn.exec('hostname 2>/dev/null || uname -n');
      const name = r.stdout.trim().split('\n')[0]?.trim() ?? '';
      if (r.code !== 0 || !name) throw new HostPreconditionError('HOSTNAME_UNKNOWN', `cannot read the host name of ${conn.label}: ${r.stderr.trim() || (r.signal ? `killed by ${r.signal}` : `exit ${r.code}`)}`, { hint: 'Name its host override with --host.' });
      return name;
    },
    close: () => conn.close(),
  };
}

// ---------------------------------------------------------------------------------------------
// Engine transport

/**
 * An http.Agent whose "sockets" are SSH channels to the remote Docker socket. Without keep-alive:
 * a channel is one round trip to open, and a fresh one per request keeps a failed request from
 * poisoning the next.
 */
class SshSocketAgent extends Agent {
  constructor(
    private readonly conn: SshConnection,
    private readonly socketPath: string,
  ) {
    super({ keepAlive: false });
  }

  // docker-modem formats every request's options (this agent among them) with util.inspect at
  // unlimited depth even when its debug output is off: without this it walks the whole SSH
  // client, tens of milliseconds per request.
  [inspect.custom](): string {
    return `SshSocketAgent(${this.conn.label}:${this.socketPath})`;
  }

  override createConnection(_options: ClientRequestArgs, callback?: (err: Error | null, stream: Duplex) => void): Duplex | null | undefined {
    this.conn.openSocket(this.socketPath).then(
      (ch) => callback?.(null, asSocket(ch)),
      (e: Error) => {
        const err = e instanceof HostPreconditionError ? e : new Error(`cannot open ${this.socketPath} on ${this.conn.label} over SSH: ${e.message} (is the engine running there, and does sshd allow AllowStreamLocalForwarding?)`);
        // sshd says "connect failed" when the engine's socket is absent or refuses, as while it restarts: worth a retry.
        if ((e as { reason?: unknown }).reason === SSH_OPEN_CONNECT_FAILED) Object.assign(err, { code: 'ECONNREFUSED' });
        callback?.(err, undefined as unknown as Duplex);
      },
    );
    return undefined;
  }
}

/**
 * http's client calls a few net.Socket methods that an SSH channel lacks; none matter for it.
 * It also writes each chunk of a request body as three writes (size line, data, CRLF) under
 * cork(): the small ones are gathered so that they do not each travel as a tiny SSH packet, and a
 * big one goes as it is (ssh2 copies it into packets anyway: one more copy of every layer byte
 * cost a fleet's install 0.13 s of ferry's busiest thread).
 */
function asSocket(ch: ClientChannel): Duplex {
  const s = ch as unknown as Record<string, unknown> & { _write(chunk: Buffer, enc: string, cb: (e?: Error | null) => void): void };
  for (const m of ['setKeepAlive', 'setNoDelay', 'setTimeout', 'ref', 'unref']) {
    if (typeof s[m] !== 'function') s[m] = () => ch;
  }
  s._writev = (chunks: { chunk: Buffer | string }[], cb: (e?: Error | null) => void) => {
    const pieces = gatherSmall(chunks.map((c) => (typeof c.chunk === 'string' ? Buffer.from(c.chunk) : c.chunk)));
    // One piece at a time: the channel takes the next write only once it called back for the last.
    const next = (i: number) => (i === pieces.length ? cb() : s._write(pieces[i]!, 'buffer', (e) => (e ? cb(e) : next(i + 1))));
    next(0);
  };
  return ch;
}

/** Runs of small buffers joined, buffers of BIG_WRITE or more left alone, order kept. */
export function gatherSmall(buffers: Buffer[]): Buffer[] {
  const out: Buffer[] = [];
  let run: Buffer[] = [];
  const flush = () => {
    if (run.length > 0) out.push(run.length === 1 ? run[0]! : Buffer.concat(run));
    run = [];
  };
  for (const b of buffers) {
    if (b.length >= BIG_WRITE) {
      flush();
      out.push(b);
    } else run.push(b);
  }
  flush();
  return out;
}

/** A quarter of an SSH packet: below this, joining costs less than a packet of its own. */
const BIG_WRITE = 8 * 1024;

// ---------------------------------------------------------------------------------------------
// State directory over SFTP

const SFTP_NO_SUCH_FILE = 2;
const WRITE_CHUNK = 32 * 1024;

type Cb<T> = (err: Error | null | undefined, value: T) => void;

function sftpFs(conn: SshConnection): HostFs {
  /** One SFTP call; after a lost connection its error becomes SSH_CONNECTION_LOST. */
  const call = async <T>(fn: (sftp: SFTPWrapper, cb: Cb<T>) => void): Promise<T> => {
    const sftp = await conn.sftp();
    try {
      return await new Promise<T>((resolve, reject) => {
        try {
          fn(sftp, (err, value) => (err ? reject(err) : resolve(value)));
        } catch (e) {
          reject(e as Error);
        }
      });
    } catch (e) {
      conn.assertOpen();
      throw e;
    }
  };
  const missing = (e: unknown) => (e as { code?: number }).code === SFTP_NO_SUCH_FILE;
  const lstat = async (path: string) => {
    try {
      return await call<{ isDirectory(): boolean }>((s, cb) => s.lstat(path, cb as never));
    } catch (e) {
      if (missing(e)) return null;
      throw e;
    }
  };

  const mkdirp = async (path: string, mode = 0o750): Promise<void> => {
    const st = await lstat(path);
    if (st?.isDirectory()) return;
    if (st) throw new Error(`${path} exists on ${conn.label} and is not a directory`);
    const parent = posix.dirname(path);
    if (parent !== path) await mkdirp(parent, mode);
    try {
      await call<void>((s, cb) => s.mkdir(path, { mode }, cb as never));
    } catch (e) {
      // Created meanwhile by someone else: fine, if it is a directory.
      if (!(await lstat(path))?.isDirectory()) throw new Error(`cannot create ${path} on ${conn.label}: ${(e as Error).message}`);
    }
  };

  const rmrf = async (path: string): Promise<void> => {
    const st = await lstat(path);
    if (!st) return;
    if (st.isDirectory()) {
      const names = await list(path);
      await Promise.all(names.map((n) => rmrf(posix.join(path, n))));
      await call<void>((s, cb) => s.rmdir(path, cb as never));
    } else {
      await call<void>((s, cb) => s.unlink(path, cb as never));
    }
  };

  const list = async (path: string): Promise<string[]> => {
    const entries = await call<{ filename: string }[]>((s, cb) => s.readdir(path, cb as never));
    return entries.map((e) => e.filename).filter((n) => n !== '.' && n !== '..').sort();
  };

  const writeAll = async (handle: Buffer, data: Buffer): Promise<void> => {
    for (let off = 0; off < data.length; off += WRITE_CHUNK) {
      const n = Math.min(WRITE_CHUNK, data.length - off);
      await call<void>((s, cb) => s.write(handle, data, off, n, off, cb as never));
    }
  };

  const writeFile = async (path: string, data: Buffer, flags: 'w' | 'wx', mode = 0o640): Promise<void> => {
    const handle = await call<Buffer>((s, cb) => s.open(path, flags, { mode }, cb));
    let failed = true;
    try {
      // The server's umask applies to open's mode; the bits a container needs must not depend on it.
      await call<void>((s, cb) => s.fchmod(handle, mode, cb as never));
      await writeAll(handle, data);
      try {
        await call<void>((s, cb) => s.ext_openssh_fsync(handle, cb as never));
      } catch (e) {
        // fsync@openssh.com is missing only on non-OpenSSH servers; the rename still never tears.
        conn.assertOpen();
        if (!/does not support/i.test((e as Error).message)) throw e;
      }
      failed = false;
    } finally {
      await call<void>((s, cb) => s.close(handle, cb as never)).catch((e) => {
        if (!failed) throw e;
      });
    }
  };

  return {
    async readFile(path) {
      try {
        return await call<Buffer>((s, cb) => s.readFile(path, cb));
      } catch (e) {
        if (missing(e)) return null;
        throw e;
      }
    },
    async writeFileAtomic(path, data, mode) {
      // A file others may read (a project file a container reads) sits in directories they may enter.
      await mkdirp(posix.dirname(path), mode !== undefined && (mode & 0o004) !== 0 ? 0o755 : 0o750);
      const tmp = `${path}.tmp-${randomBytes(6).toString('hex')}`;
      try {
        await writeFile(tmp, data, 'w', mode);
        try {
          // posix-rename@openssh.com is rename(2): atomic and replacing. Plain SFTP rename refuses an
          // existing target, so without the extension the old file goes first (a window without it).
          await call<void>((s, cb) => s.ext_openssh_rename(tmp, path, cb as never));
        } catch (e) {
          conn.assertOpen();
          if (!/does not support/i.test((e as Error).message)) throw e;
          await call<void>((s, cb) => s.unlink(path, cb as never)).catch((u) => {
            if (!missing(u)) throw u;
          });
          await call<void>((s, cb) => s.rename(tmp, path, cb as never));
        }
        // The directory itself cannot be fsynced over SFTP; the file's content is durable before
        // the rename, so a crash leaves the old or the new file, never a torn one.
      } catch (e) {
        await call<void>((s, cb) => s.unlink(tmp, cb as never)).catch(() => undefined);
        throw e;
      }
    },
    mkdirp,
    rmrf,
    async readdir(path) {
      try {
        return await list(path);
      } catch (e) {
        conn.assertOpen();
        return [];
      }
    },
    async exists(path) {
      try {
        await call((s, cb) => s.stat(path, cb as never));
        return true;
      } catch {
        conn.assertOpen();
        return false;
      }
    },
    async statfs(path) {
      const st = await call<Record<string, number | bigint>>((s, cb) => s.ext_openssh_statvfs(path, cb as never));
      const unit = Number(st.f_frsize ?? st.f_bsize ?? 0);
      return { bytes: Number(st.f_bavail ?? 0) * unit, inodes: Number(st.f_ffree ?? 0), totalBytes: Number(st.f_blocks ?? 0) * unit, totalInodes: Number(st.f_files ?? 0) };
    },
    async createExclusive(path, data) {
      try {
        await writeFile(path, await lockOwnerHere(conn, data), 'wx');
        return true;
      } catch (e) {
        conn.assertOpen();
        // OpenSSH's sftp-server answers an O_EXCL clash with a generic FAILURE: look.
        if (await lstat(path)) return false;
        throw e;
      }
    },
    async processAlive(pid) {
      if (!Number.isSafeInteger(pid) || pid <= 0) return false;
      // A zombie answers kill -0, and where pid 1 does not reap (containers, some VMs) the lock's
      // session process stays one after its connection died: it counts as gone.
      const r = await conn.exec(`if [ -r /proc/${pid}/status ]; then ! grep -q '^State:[[:space:]]*Z' /proc/${pid}/status; else kill -0 ${pid}; fi`);
      return r.code === 0 || /not permitted/i.test(r.stderr);
    },
  };
}

/**
 * The state store writes "PID what" into its lock file so that a lock whose owner died can be
 * taken over. Over SSH the local pid means nothing on the host (processAlive looks there), so it
 * is replaced by the pid of a process on the host that lives exactly as long as this connection:
 * a killed ferry or a dropped link frees the lock for the next run.
 */
const anchors = new WeakMap<SshConnection, Promise<number>>();

async function lockOwnerHere(conn: SshConnection, data: Buffer): Promise<Buffer> {
  const text = data.toString('utf8');
  const prefix = `${process.pid} `;
  if (!text.startsWith(prefix)) return data;
  let anchor = anchors.get(conn);
  if (!anchor) {
    anchor = startAnchor(conn);
    anchors.set(conn, anchor);
  }
  const pid = await anchor;
  return Buffer.from(`${pid} ${text.slice(prefix.length).replace(/\n$/, '')} (ferry over SSH from ${process.pid})\n`);
}

async function startAnchor(conn: SshConnection): Promise<number> {
  // cat ends when its stdin (this channel) closes: with the connection, however that ends.
  const ch = await conn.execChannel('echo $$; exec cat >/dev/null');
  return new Promise<number>((resolve, reject) => {
    let buf = '';
    ch.on('data', (b: Buffer) => {
      buf += b.toString('utf8');
      const line = buf.split('\n')[0];
      if (buf.includes('\n') && line && /^\d+$/.test(line.trim())) resolve(Number(line.trim()));
    });
    ch.on('close', () => reject(new Error(`the session process on ${conn.label} ended early`)));
  });
}

// ---------------------------------------------------------------------------------------------
// Compose on the host

function remoteCompose(conn: SshConnection, socket: string): ComposeRunner {
  // The same engine as the API calls, whatever the remote user's environment says.
  const env = `export DOCKER_HOST=${shellQuote(`unix://${socket}`)} COMPOSE_INTERACTIVE_NO_CLI=1`;
  const works = async (argv: string[]) => (await conn.exec(`${env}; ${shellCommand([...argv, 'version'])} >/dev/null 2>&1`, { timeoutMs: 30_000 })).code === 0;
  const majorVersion = async (argv: string[]): Promise<1 | 2> => {
    const r = await conn.exec(`${env}; ${shellCommand([...argv, 'version', '--short'])}`, { timeoutMs: 30_000 });
    return r.code === 0 && r.stdout.trim().replace(/^v/, '').startsWith('1.') ? 1 : r.code === 0 ? 2 : 1;
  };
  // As locally (adapters/compose.ts): a failed help reads as "no optional flags", which is safe.
  const help = async (argv: string[], sub: string) => {
    const r = await conn.exec(`${env}; ${shellCommand([...argv, sub, '--help'])} 2>/dev/null`, { timeoutMs: 30_000 });
    return r.code === 0 ? r.stdout : '';
  };
  return {
    async detect(override) {
      const candidates: string[][] = override ? [override.split(/\s+/).filter(Boolean)] : [['docker', 'compose'], ['docker-compose']];
      for (const argv of candidates) {
        if (await works(argv)) {
          const [version, upHelp, runHelp] = await Promise.all([argv.length > 1 && argv[1] === 'compose' ? (2 as const) : majorVersion(argv), help(argv, 'up'), help(argv, 'run')]);
          return { argv, version, features: parseComposeFeatures(upHelp, runHelp) } satisfies ComposeCommand;
        }
      }
      throw new HostPreconditionError('NO_COMPOSE', override ? `the compose command "${override}" does not work on ${conn.label}` : `neither \`docker compose\` (v2) nor \`docker-compose\` (v1) works on ${conn.label}`, {
        hint: 'Install Docker Compose on that host, or name the command with --compose-cmd.',
        details: { host: conn.label },
      });
    },
    async run(cmd, project, files, action, opts) {
      const argv = [cmd.argv[0]!, ...composeArgs(cmd, project, files, action)];
      const command = `cd ${shellQuote(opts.cwd)} && ${env} && exec ${shellCommand(argv)} </dev/null`;
      let output = '';
      let partial = '';
      const r = await conn.exec(command, {
        ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
        onData: (text) => {
          output = (output + text).slice(-64 * 1024);
          const lines = (partial + text).split('\n');
          partial = lines.pop() ?? '';
          for (const line of lines) if (line.trim()) opts.onLine?.(line.trimEnd());
        },
      });
      if (partial.trim()) opts.onLine?.(partial.trimEnd());
      return { code: r.code === -1 ? 1 : r.code, output: r.signal ? `${output}\n[${r.signal === 'TIMEOUT' ? `killed after ${opts.timeoutMs} ms` : `killed by SIG${r.signal}`}]` : output };
    },
  };
}
