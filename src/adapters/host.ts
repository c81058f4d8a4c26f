/**
 * A host ferry works on: its engine, the filesystem that holds its state directory, and the way
 * compose runs there. Install, rollback, status and inventory are written against this, so the
 * same services run on the local machine and on one reached over SSH.
 */
import type { ComposeAction, ComposeCommand } from '../core/compose-cli.js';
import type { Engine } from './engine.js';

export interface HostFs {
  /** null when the file does not exist. */
  readFile(path: string): Promise<Buffer | null>;
  /** temp file, fsync, rename, fsync dir: readers see the old or the new content, never a mix. */
  writeFileAtomic(path: string, data: Buffer, mode?: number): Promise<void>;
  mkdirp(path: string): Promise<void>;
  rmrf(path: string): Promise<void>;
  /** Names in a directory; [] when it does not exist. */
  readdir(path: string): Promise<string[]>;
  /** Free bytes and inodes (for an unprivileged user), and the filesystem's totals. */
  statfs(path: string): Promise<{ bytes: number; inodes: number; totalBytes: number; totalInodes: number }>;
  /** Whether something exists at the path (following symbolic links, as a bind mount does). */
  exists(path: string): Promise<boolean>;
  /** Creates a file only if it does not exist; false when it already does. */
  createExclusive(path: string, data: Buffer): Promise<boolean>;
  processAlive(pid: number): Promise<boolean>;
}

export interface ComposeRun {
  code: number;
  output: string;
}

export interface ComposeRunner {
  detect(override?: string): Promise<ComposeCommand>;
  run(
    cmd: ComposeCommand,
    project: string,
    files: string[],
    action: ComposeAction,
    opts: { cwd: string; onLine?: (line: string) => void; timeoutMs?: number },
  ): Promise<ComposeRun>;
}

export interface HostTarget {
  /** How to name this host in messages: "local" or user@host. */
  label: string;
  engine: Engine;
  fs: HostFs;
  compose: ComposeRunner;
  /** Whether a path on the host is a path on this machine (staging off a stick needs that). */
  local: boolean;
  close(): Promise<void>;
}
