/**
 * The Docker Engine API, through dockerode. The only module that speaks to an engine; services see
 * the narrow methods below. Honours DOCKER_HOST: unix:// and ssh:// read here, anything else as
 * dockerode reads it when given no options.
 */
import { Agent as HttpAgent, request, type Agent } from 'node:http';
import { userInfo } from 'node:os';
import type { Duplex, Readable } from 'node:stream';
import './dockerode-lazy.js';
import Docker from 'dockerode';
import type { InventoryEngine } from '../core/inventory.js';
import { transientEngineFailure } from '../core/retry.js';
import { HostPreconditionError } from '../errors.js';
import { withRetry, type RetryWarning } from './retry.js';

export interface ImageDetails {
  id: string;
  repoTags: string[];
  os: string;
  architecture: string;
  user: string;
  hasHealthcheck: boolean;
  diffIds: string[];
  /** Uncompressed size as the engine reports it. */
  size: number;
}

/** What an inventory records of its engine (all but Podman, told apart by a separate probe), and where it keeps its data. */
export interface EngineInfo extends Omit<InventoryEngine, 'podman'> {
  dataRoot: string;
}

export function describeDockerHost(host = process.env.DOCKER_HOST): string {
  return host && host.length > 0 ? host : 'unix:///var/run/docker.sock';
}

/** dockerode's options plus docker-modem's `agent`, which its typings leave out. */
export type EngineOptions = Docker.DockerOptions & { agent?: Agent };

/**
 * DOCKER_HOST=ssh://[user@]host[:port], as docker-modem would reach it (its SSH agent: the user's
 * ssh-agent, `docker system dial-stdio` on the host), but addressed as plain http: docker-modem
 * builds an `ssh:host:port/path` URL for its own ssh protocol, which Node 20 warns about (DEP0170)
 * and Node 26, the single executable's, refuses ("Invalid port in url"). One SSH connection per
 * HTTP connection, as docker-modem makes them. null for any other DOCKER_HOST.
 */
export function sshDockerHostOptions(host: string): EngineOptions | null {
  let url: URL;
  try {
    url = new URL(host);
  } catch {
    return null;
  }
  if (url.protocol !== 'ssh:' || !url.hostname) return null;
  const port = url.port ? Number(url.port) : 22;
  const ssh = {
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port,
    // As the docker CLI and ssh do: no user in the address means this machine's user.
    username: url.username ? decodeURIComponent(url.username) : userInfo().username,
    ...(process.env.SSH_AUTH_SOCK ? { agent: process.env.SSH_AUTH_SOCK } : {}),
  };
  const agent = new HttpAgent();
  // Loaded on the first request only: it brings ssh2 (src/adapters/dockerode-lazy.ts).
  agent.createConnection = ((_options: unknown, done: (e: Error | null, socket?: Duplex) => void) => {
    import('docker-modem/lib/ssh.js').then(
      (m) => m.default(ssh).createConnection({}, done),
      (e: unknown) => done(e as Error),
    );
    return undefined;
  }) as unknown as HttpAgent['createConnection'];
  return { protocol: 'http', host: ssh.host, port, agent };
}

export interface EngineRetryOptions {
  /** Told before each pause of a retried call (ENGINE_RETRY). */
  warn?: ((w: RetryWarning) => void) | undefined;
}

export class Engine {
  private readonly docker: Docker;
  private readonly socketPath: string | undefined;

  /**
   * `host` names the engine in messages. Without `options` it is also the address (unix://… or
   * whatever DOCKER_HOST says); with them, dockerode/docker-modem options decide how to connect,
   * e.g. an http agent whose connections are channels of an SSH connection.
   */
  constructor(
    readonly host: string = describeDockerHost(),
    options?: EngineOptions,
    private readonly retry: EngineRetryOptions = {},
  ) {
    const viaSsh = options ? null : sshDockerHostOptions(host);
    this.docker = options ? new Docker(options) : host.startsWith('unix://') ? new Docker({ socketPath: host.slice('unix://'.length) }) : viaSsh ? new Docker(viaSsh) : new Docker();
    this.socketPath = !options && host.startsWith('unix://') ? host.slice('unix://'.length) : undefined;
  }

  /** Whether the engine runs on this machine (its unix socket is here), so its store may be too. */
  get local(): boolean {
    return this.socketPath !== undefined;
  }

  /**
   * The hot path — gigabytes of `docker save` — is read with node:http straight off the unix
   * socket: measured on the bench, docker-modem's stream handling cost 0.5–1 CPU-s and ~18 MB more
   * for a 660 MB save. Every other call goes through dockerode.
   */
  private saveOverSocket(socketPath: string, imageIds: string[], signal: AbortSignal | undefined): Promise<Readable> {
    const query = imageIds.map((id) => `names=${encodeURIComponent(id)}`).join('&');
    return new Promise((resolve, reject) => {
      const req = request({ socketPath, path: `/images/get?${query}`, method: 'GET', ...(signal ? { signal } : {}) }, (res) => {
        if (res.statusCode === 200) return resolve(res);
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body = (body + d).slice(0, 4096)));
        res.on('end', () => reject(new Error(`the engine refused to save the images (HTTP ${res.statusCode}): ${body.trim()}`)));
      });
      req.on('error', (e) => reject(this.unreachable(e)));
      req.end();
    });
  }

  /** The raw client, for other engine adapters only (services never see it). */
  get api(): Docker {
    return this.docker;
  }

  /**
   * Runs a call that changes nothing on the engine (ping, info, version, inspect, list) again
   * while the engine is not answering, as during its restart; see core/retry.ts for how long.
   * Never for load, tag, remove or container changes: a failed one may have happened.
   */
  idempotent<T>(call: () => Promise<T>): Promise<T> {
    const subject = `engine at ${this.host}`;
    return withRetry({ subject, transient: transientEngineFailure, onRetry: (message) => this.retry.warn?.({ code: 'ENGINE_RETRY', subject, message }) }, call);
  }

  private unreachable(e: unknown): HostPreconditionError {
    return new HostPreconditionError('ENGINE_UNREACHABLE', `cannot reach the Docker engine at ${this.host}: ${(e as Error).message}`, {
      hint: this.host.startsWith('ssh://')
        ? 'Check that the engine runs on that host and listens on that socket (--remote-docker-socket names another one), and that the SSH user may use it.'
        : 'Start the engine, or point DOCKER_HOST at it (e.g. DOCKER_HOST=unix:///var/run/docker.sock).',
      details: { host: this.host },
      cause: e,
    });
  }

  async info(): Promise<EngineInfo> {
    let info: Record<string, unknown>;
    let version: Record<string, unknown>;
    try {
      [info, version] = await this.idempotent(() => Promise.all([this.docker.info(), this.docker.version() as Promise<unknown> as Promise<Record<string, unknown>>]));
    } catch (e) {
      throw this.unreachable(e);
    }
    const driverStatus = (info.DriverStatus as [string, string][] | null) ?? [];
    return {
      serverVersion: String(info.ServerVersion ?? version.Version ?? ''),
      apiVersion: String(version.ApiVersion ?? ''),
      storageDriver: String(info.Driver ?? ''),
      containerdStore: driverStatus.some(([k, v]) => k === 'driver-type' && v === 'io.containerd.snapshotter.v1'),
      os: String(info.OSType ?? ''),
      architecture: String(info.Architecture ?? ''),
      dataRoot: String(info.DockerRootDir ?? ''),
    };
  }

  /** null when the engine does not know the reference. */
  async inspectImage(ref: string): Promise<ImageDetails | null> {
    let raw: Docker.ImageInspectInfo;
    try {
      raw = await this.idempotent(() => this.docker.getImage(ref).inspect());
    } catch (e) {
      const status = (e as { statusCode?: number }).statusCode;
      if (status === 404) return null;
      if (status === undefined) throw this.unreachable(e);
      throw e;
    }
    const config = (raw.Config ?? {}) as { User?: string; Healthcheck?: { Test?: string[] } };
    const hcTest = config.Healthcheck?.Test;
    return {
      id: raw.Id,
      repoTags: raw.RepoTags ?? [],
      os: raw.Os,
      architecture: raw.Architecture,
      user: config.User ?? '',
      hasHealthcheck: Array.isArray(hcTest) && hcTest.length > 0 && hcTest[0] !== 'NONE',
      diffIds: raw.RootFS?.Layers ?? [],
      size: raw.Size,
    };
  }

  /**
   * One save call for all images, so layers they share come once. The caller must consume it, or
   * abort `signal` (then the engine stops its export; over a unix socket even before it answers).
   */
  async save(imageIds: string[], options: { signal?: AbortSignal } = {}): Promise<Readable> {
    if (this.socketPath) return this.saveOverSocket(this.socketPath, imageIds, options.signal);
    try {
      // Typed loosely upstream: GET /images/get?names=…, one archive for all images.
      const docker = this.docker as unknown as { getImages(opts: { names: string[]; abortSignal?: AbortSignal }): Promise<Readable> };
      return await docker.getImages({ names: imageIds, ...(options.signal ? { abortSignal: options.signal } : {}) });
    } catch (e) {
      if ((e as { statusCode?: number }).statusCode === undefined) throw this.unreachable(e);
      throw e;
    }
  }

  /**
   * Streams an archive into the engine's load endpoint. The engine answers 200 even when the load
   * fails, so every message is read: an error/errorDetail or "Error unpacking image" is failure.
   */
  async load(archive: Readable): Promise<string[]> {
    let response: Readable;
    try {
      response = (await this.docker.loadImage(archive, { quiet: true })) as unknown as Readable;
    } catch (e) {
      if ((e as { statusCode?: number }).statusCode === undefined) throw this.unreachable(e);
      throw new Error(`the engine refused the load: ${(e as Error).message}`);
    }
    const messages: string[] = [];
    let buffered = '';
    for await (const chunk of response) buffered += (chunk as Buffer).toString('utf8');
    const failures: string[] = [];
    for (const line of buffered.split('\n')) {
      if (!line.trim()) continue;
      let msg: { stream?: string; error?: string; errorDetail?: { message?: string } };
      try {
        msg = JSON.parse(line);
      } catch {
        msg = { stream: line };
      }
      if (msg.error || msg.errorDetail) failures.push(msg.error ?? msg.errorDetail?.message ?? line);
      if (msg.stream) {
        messages.push(msg.stream.trim());
        if (/Error unpacking image/i.test(msg.stream)) failures.push(msg.stream.trim());
      }
    }
    if (failures.length > 0) throw new Error(`the engine failed to load the images: ${failures.join('; ')}`);
    return messages;
  }

  async tag(imageId: string, ref: string): Promise<void> {
    const i = ref.lastIndexOf(':');
    await this.docker.getImage(imageId).tag({ repo: ref.slice(0, i), tag: ref.slice(i + 1) });
  }

  /** Removes a tag or an image; an image still used by a container stays (the engine refuses). */
  async removeImage(ref: string): Promise<boolean> {
    try {
      await this.docker.getImage(ref).remove({ noprune: false });
      return true;
    } catch {
      return false;
    }
  }
}
