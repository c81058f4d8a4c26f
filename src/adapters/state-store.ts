/**
 * The host's state directory. Every write is atomic (temp file, fsync, rename, fsync dir), so a
 * crash at any point leaves either the old or the new state, never a torn one.
 *
 *   <root>/stacks/<stack>/state.json
 *   <root>/stacks/<stack>/releases/<release-id>/{ferry.json, ferry.json.sig, compose/…, ferry.override.yaml}
 *   <root>/staging/<stack>/<release-id>/…   staged bundle files, removed after install
 *   <root>/lock                             one install at a time per host
 */
import { constants } from 'node:fs';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { noSpace } from './fs.js';
import { dirname, posix } from 'node:path';
import { emptyStackState, validateStackState, type StackState } from '../core/state.js';
import { HostPreconditionError } from '../errors.js';
import type { HostFs } from './host.js';

const join = posix.join;

export class StateStore {
  constructor(
    readonly root: string,
    readonly fs: HostFs,
  ) {}

  stackDir(stack: string): string {
    return join(this.root, 'stacks', stack);
  }

  releaseDir(stack: string, id: string): string {
    return join(this.stackDir(stack), 'releases', id);
  }

  stagingDir(stack: string, id: string): string {
    return join(this.root, 'staging', stack, id);
  }

  async ensure(): Promise<void> {
    try {
      await this.fs.mkdirp(join(this.root, 'stacks'));
      await this.fs.mkdirp(join(this.root, 'staging'));
    } catch (e) {
      throw new HostPreconditionError('STATE_DIR_UNWRITABLE', `cannot create the state directory ${this.root}: ${(e as Error).message}`, {
        hint: 'Run as root, or pass --state-dir (env FERRY_STATE_DIR) pointing at a writable directory.',
      });
    }
  }

  async stacks(): Promise<string[]> {
    return this.fs.readdir(join(this.root, 'stacks'));
  }

  async load(stack: string): Promise<StackState> {
    const bytes = await this.fs.readFile(join(this.stackDir(stack), 'state.json'));
    if (!bytes) return emptyStackState(stack);
    return validateStackState(JSON.parse(bytes.toString('utf8')), stack);
  }

  async save(state: StackState): Promise<void> {
    await this.fs.writeFileAtomic(join(this.stackDir(state.stack), 'state.json'), Buffer.from(`${JSON.stringify(state, null, 2)}\n`));
  }

  async free(path = this.root): Promise<{ bytes: number; inodes: number }> {
    return this.fs.statfs(path);
  }

  /**
   * Exclusive per-host lock for installs and rollbacks. O_EXCL creation; a lock whose owner pid is
   * gone (killed install) is taken over, so a crash never blocks the next run.
   */
  async lock(what: string): Promise<() => Promise<void>> {
    const path = join(this.root, 'lock');
    for (let attempt = 0; attempt < 2; attempt++) {
      if (await this.fs.createExclusive(path, Buffer.from(`${process.pid} ${what}\n`))) {
        return async () => {
          await this.fs.rmrf(path);
        };
      }
      const owner = (await this.fs.readFile(path))?.toString('utf8') ?? '';
      const pid = Number(owner.split(' ')[0]);
      if (Number.isInteger(pid) && pid > 0 && (await this.fs.processAlive(pid))) {
        throw new HostPreconditionError('HOST_BUSY', `another ferry (pid ${pid}: ${owner.trim().split(' ').slice(1).join(' ')}) is working on this host`, {
          hint: `Wait for it to finish. If no ferry runs, remove ${path}.`,
        });
      }
      await this.fs.rmrf(path);
    }
    throw new HostPreconditionError('HOST_BUSY', `could not take the lock ${path}`);
  }

  /**
   * Runs `fn` holding the lock. When `fn` failed, a failure to release the lock (the link to a
   * remote host went down with it) does not replace `fn`'s error, which says what went wrong; the
   * lock's owner is gone then, so the next run takes it over anyway.
   */
  async withLock<T>(what: string, fn: () => Promise<T>): Promise<T> {
    const unlock = await this.lock(what);
    let result: T;
    try {
      result = await fn();
    } catch (e) {
      await unlock().catch(() => undefined);
      throw e;
    }
    await unlock();
    return result;
  }
}

/** `mode` is set exactly, whatever the umask: a file a container reads through a bind mount needs its read bits. */
export async function writeFileAtomic(path: string, data: Buffer, mode = 0o640): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    await mkdir(dirname(path), { recursive: true });
    const fh = await open(tmp, 'w', mode);
    try {
      await fh.chmod(mode);
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (e) {
    // A full disk leaves no temp file behind and is a host precondition (exit 6), named.
    await rm(tmp, { force: true }).catch(() => undefined);
    throw (await noSpace(e, path)) ?? e;
  }
  const dir = await open(dirname(path), constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
