/** The machine ferry runs on, as a HostTarget. */
import { constants } from 'node:fs';
import { mkdir, open, readdir, readFile, rm, stat, statfs } from 'node:fs/promises';
import { detectCompose, runCompose } from './compose.js';
import { Engine } from './engine.js';
import type { HostFs, HostTarget } from './host.js';
import { noSpace } from './fs.js';
import { writeFileAtomic } from './state-store.js';

export const localFs: HostFs = {
  async readFile(path) {
    try {
      return await readFile(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
  },
  writeFileAtomic,
  async mkdirp(path) {
    try {
      await mkdir(path, { recursive: true, mode: 0o750 });
    } catch (e) {
      throw (await noSpace(e, path)) ?? e;
    }
  },
  async rmrf(path) {
    await rm(path, { recursive: true, force: true });
  },
  async readdir(path) {
    try {
      return (await readdir(path)).sort();
    } catch {
      return [];
    }
  },
  async exists(path) {
    return stat(path).then(
      () => true,
      () => false,
    );
  },
  async statfs(path) {
    const s = await statfs(path);
    return { bytes: s.bavail * s.bsize, inodes: s.ffree, totalBytes: s.blocks * s.bsize, totalInodes: s.files };
  },
  async createExclusive(path, data) {
    try {
      const fh = await open(path, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o640);
      await fh.writeFile(data);
      await fh.close();
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw (await noSpace(e, path)) ?? e;
    }
  },
  async processAlive(pid) {
    try {
      process.kill(pid, 0);
      return true;
    } catch (e) {
      return (e as NodeJS.ErrnoException).code === 'EPERM';
    }
  },
};

export function localHost(engine: Engine = new Engine()): HostTarget {
  return {
    label: 'local',
    engine,
    fs: localFs,
    local: true,
    compose: {
      detect: (override) => detectCompose(override),
      run: (cmd, project, files, action, opts) => runCompose(cmd, project, files, action, { ...opts, dockerHost: engine.host }),
    },
    close: async () => {},
  };
}
