/**
 * A Docker engine of the fault campaign's own, so that restarting it, or filling its disk, never
 * disturbs the shared air-gapped engine other test files use. Like that one it lives in its own
 * network namespace (only loopback); its data root is a small ext4 filesystem in a loop file, so
 * "disk full" is real and cheap. Started once per test file; stopped by pid, never by name.
 */
import { spawn } from 'node:child_process';
import { mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run, type RunResult } from '../support/engines.js';

export interface LoopFs {
  image: string;
  mount: string;
  /** Unmounts and deletes the image. */
  remove(): Promise<void>;
}

/** An ext4 filesystem of `megabytes` in a sparse file, mounted at `mount`. */
export async function loopFs(image: string, mount: string, megabytes: number): Promise<LoopFs> {
  await run('truncate', ['-s', `${megabytes}M`, image], { check: true });
  // No reserved blocks: "full" then means full for root too, as on a data disk.
  await run('mkfs.ext4', ['-q', '-F', '-m', '0', image], { check: true });
  await mkdir(mount, { recursive: true });
  await run('mount', ['-o', 'loop', image, mount], { check: true });
  return {
    image,
    mount,
    remove: async () => {
      await run('umount', ['-l', mount]);
      await rm(image, { force: true });
    },
  };
}

/**
 * Fills a filesystem until about `leaveMegabytes` remain free; returns the filler's path. With 0,
 * the last blocks are taken by writing until the filesystem refuses.
 */
export async function fill(mount: string, leaveMegabytes: number, name = 'filler'): Promise<string> {
  const path = join(mount, name);
  const df = await run('df', ['-B1', '--output=avail', mount], { check: true });
  const avail = Number(df.stdout.trim().split('\n').at(-1));
  // fallocate needs a little room for its own metadata, and the filesystem may be filling up
  // under us (that is the point): step down until it fits.
  let size = Math.max(0, avail - Math.max(leaveMegabytes, 8) * 1024 * 1024);
  for (let i = 0; i < 8 && size > 0; i++, size -= 16 * 1024 * 1024) {
    if ((await run('fallocate', ['-l', String(size), path])).code === 0) break;
    await rm(path, { force: true });
  }
  if (leaveMegabytes === 0) {
    // Big blocks first, then small ones for the last few kilobytes dd would otherwise leave.
    await run('dd', ['if=/dev/zero', `of=${path}.rest`, 'bs=64k'], { timeoutMs: 60_000 });
    await run('dd', ['if=/dev/zero', `of=${path}.rest`, 'bs=512', 'oflag=append', 'conv=notrunc'], { timeoutMs: 60_000 });
  }
  return path;
}

/** Removes what fill() wrote. */
export async function unfill(path: string): Promise<void> {
  await rm(path, { force: true });
  await rm(`${path}.rest`, { force: true });
}

export interface ScratchEngine {
  /** unix://… for DOCKER_HOST */
  host: string;
  netns: string;
  dataRoot: LoopFs;
  docker(args: readonly string[]): Promise<RunResult>;
  /** Runs a command inside the engine's network namespace (to reach published ports). */
  inNetns(command: string, args: readonly string[]): Promise<RunResult>;
  /** SIGTERM and wait, then start again on the same data: what an engine upgrade or crash-restart does. */
  restart(): Promise<void>;
  /** SIGKILL, then start again on the same data: an engine crash. Containers keep running under their shims. */
  crashRestart(): Promise<void>;
  stop(): Promise<void>;
}

const answers = async (sock: string) => (await run('docker', ['-H', `unix://${sock}`, 'version', '--format', '{{.Server.Version}}'], { timeoutMs: 10_000, env: { DOCKER_CONTEXT: '' } })).code === 0;

async function pidFrom(file: string): Promise<number | null> {
  const n = Number((await readFile(file, 'utf8').catch(() => '')).trim());
  return Number.isInteger(n) && n > 0 ? n : null;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function waitGone(pid: number, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; ) {
    if (!alive(pid)) return true;
    const state = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
    if (/^State:\s+Z/m.test(state)) return true;
    await new Promise((r) => setTimeout(r, 200));
  }
  return !alive(pid);
}

/**
 * `dir` must be short: containerd puts unix sockets under the exec root (108-byte limit).
 */
export async function startScratchEngine(dir: string, dataRootMegabytes: number): Promise<ScratchEngine> {
  const name = `ferry-faults-${process.pid}`;
  const netns = `/var/run/netns/${name}`;
  await mkdir(dir, { recursive: true });
  const dataRoot = await loopFs(join(dir, 'root.img'), join(dir, 'root'), dataRootMegabytes);
  await run('ip', ['netns', 'add', name], { check: true });
  await run('nsenter', [`--net=${netns}`, 'ip', 'link', 'set', 'lo', 'up'], { check: true });
  await writeFile(join(dir, 'daemon.json'), '{}');
  const sock = join(dir, 'docker.sock');
  const pidfile = join(dir, 'docker.pid');
  const args = [
    `--net=${netns}`,
    'dockerd',
    '--config-file', join(dir, 'daemon.json'),
    '--data-root', dataRoot.mount,
    '--exec-root', join(dir, 'exec'),
    '--pidfile', pidfile,
    '-H', `unix://${sock}`,
    '--containerd-namespace', name,
    '--containerd-plugins-namespace', `${name}-plugins`,
  ];

  const start = async () => {
    const log = await open(join(dir, 'dockerd.log'), 'a');
    const child = spawn('nsenter', args, { detached: true, stdio: ['ignore', log.fd, log.fd] });
    child.unref();
    await log.close();
    for (let i = 0; i < 120; i++) {
      if (await answers(sock)) return;
      await new Promise((r) => setTimeout(r, 500));
    }
    throw new Error(`scratch engine did not start: ${(await readFile(join(dir, 'dockerd.log'), 'utf8')).slice(-2000)}`);
  };

  const stopDaemon = async () => {
    const pid = await pidFrom(pidfile);
    if (pid && alive(pid)) {
      process.kill(pid, 'SIGTERM');
      if (!(await waitGone(pid, 60_000))) process.kill(pid, 'SIGKILL');
      await waitGone(pid, 10_000);
    }
  };

  await start();
  const host = `unix://${sock}`;
  return {
    host,
    netns,
    dataRoot,
    docker: (a) => run('docker', ['-H', host, ...a], { env: { DOCKER_CONTEXT: '' }, timeoutMs: 120_000 }),
    inNetns: (command, a) => run('nsenter', [`--net=${netns}`, command, ...a]),
    restart: async () => {
      await stopDaemon();
      await start();
    },
    crashRestart: async () => {
      // The engine as a whole dies: dockerd and the containerd it runs. The containers' shims live
      // on, and the new containerd picks them up again.
      for (const file of [pidfile, join(dir, 'exec', 'containerd', 'containerd.pid')]) {
        const pid = await pidFrom(file);
        if (pid && alive(pid)) {
          process.kill(pid, 'SIGKILL');
          await waitGone(pid, 10_000);
        }
      }
      // A dead containerd can stay a zombie (pid 1 here does not reap); its pid file would make the
      // new dockerd wait for it instead of starting a fresh one.
      await rm(join(dir, 'exec', 'containerd', 'containerd.pid'), { force: true });
      await rm(sock, { force: true });
      await start();
    },
    stop: async () => {
      await stopDaemon();
      // The containerd and shims dockerd started may outlive it; ours are the ones under our exec root.
      const cpid = await pidFrom(join(dir, 'exec', 'containerd', 'containerd.pid'));
      if (cpid && alive(cpid)) {
        process.kill(cpid, 'SIGTERM');
        await waitGone(cpid, 10_000);
      }
      const ps = await run('ps', ['-eo', 'pid=,args=']);
      for (const line of ps.stdout.split('\n')) {
        const m = /^\s*(\d+)\s+(.*)$/.exec(line);
        if (m && m[2]!.includes('containerd-shim') && m[2]!.includes(join(dir, 'exec'))) {
          try {
            process.kill(Number(m[1]), 'SIGKILL');
          } catch {
            // gone already
          }
        }
      }
      const mounts = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').map((l) => l.split(' ')[4] ?? '').filter((m) => m.startsWith(`${dir}/`));
      for (const m of mounts.sort().reverse()) await run('umount', ['-l', m]);
      await dataRoot.remove();
      await run('ip', ['netns', 'delete', name]);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
