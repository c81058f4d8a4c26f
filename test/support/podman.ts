/**
 * Podman's Docker-compatible API on a socket of the test's own: the engine that refuses partial
 * archives and regenerates layers from its own storage.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { run } from './engines.js';

export interface PodmanService {
  /** DOCKER_HOST for ferry. */
  host: string;
  stop(): void;
}

export async function startPodmanService(dir: string): Promise<PodmanService> {
  const sock = join(dir, 'podman.sock');
  const service = spawn('podman', ['system', 'service', '--time=0', `unix://${sock}`], { stdio: 'ignore' });
  for (let i = 0; i < 100; i++) {
    if ((await run('curl', ['-s', '--unix-socket', sock, 'http://d/_ping'])).stdout === 'OK') break;
    await new Promise((r) => setTimeout(r, 200));
  }
  return { host: `unix://${sock}`, stop: () => void service.kill('SIGTERM') };
}
