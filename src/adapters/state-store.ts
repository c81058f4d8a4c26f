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
import { mkdir, open, readdir, readFile, rename, rm, statfs } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { emptyStackState, validateStackState, type StackState } from '../core/state.js';
import { HostPreconditionError } from '../errors.js';

export class StateStore {
  constructor(readonly root: string) {}

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
      await mkdir(join(this.root, 'stacks'), { recursive: true, mode: 0o750 });
      await mkdir(join(this.root, 'staging'), { recursive: true, mode: 0o750 });
    } catch (e) {
      throw new HostPreconditionError('STATE_DIR_UNWRITABLE', `cannot create the state directory ${this.root}: ${(e as Error).message}`, {
        hint: 'Run as root, or pass --state-dir (env FERRY_STATE_DIR) pointing at a writable directory.',
      });
    }
  }

  async stacks(): Promise<string[]> {
    try {
      return (await readdir(join(this.root, 'stacks'))).sort();
    } catch {
      return [];
    }
  }

  async load(stack: string): Promise<StackState> {
    let text: string;
    try {
      text = await readFile(join(this.stackDir(stack), 'state.json'), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return emptyStackState(stack);
      throw e;
    }
    return validateStackState(JSON.parse(text), stack);
  }

  async save(state: StackState): Promise<void> {
    await writeFileAtomic(join(this.stackDir(state.stack), 'state.json'), Buffer.from(`${JSON.stringify(state, null, 2)}\n`));
  }

  async free(path = this.root): Promise<{ bytes: number; inodes: number }> {
    const s = await statfs(path);
    return { bytes: s.bavail * s.bsize, inodes: s.ffree };
  }

  /**
   * Exclusive per-host lock for installs and rollbacks. O_EXCL creation; a lock whose owner pid is
   * gone (killed install) is taken over, so a crash never blocks the next run.
   */
  async lock(what: string): Promise<() => Promise<void>> {
    const path = join(this.root, 'lock');
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fh = await open(path, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o640);
        await fh.writeFile(`${process.pid} ${what}\n`);
        await fh.close();
        return async () => {
          await rm(path, { force: true });
        };
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        const owner = await readFile(path, 'utf8').catch(() => '');
        const pid = Number(owner.split(' ')[0]);
        if (Number.isInteger(pid) && pid > 0 && isAlive(pid)) {
          throw new HostPreconditionError('HOST_BUSY', `another ferry (pid ${pid}: ${owner.trim().split(' ').slice(1).join(' ')}) is working on this host`, {
            hint: `Wait for it to finish. If no ferry runs, remove ${path}.`,
          });
        }
        await rm(path, { force: true });
      }
    }
    throw new HostPreconditionError('HOST_BUSY', `could not take the lock ${path}`);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export async function writeFileAtomic(path: string, data: Buffer): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  const fh = await open(tmp, 'w', 0o640);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  const dir = await open(dirname(path), constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
