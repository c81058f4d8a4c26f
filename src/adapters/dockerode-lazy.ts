/**
 * Defers two of dockerode's dependencies until something calls them. dockerode requires gRPC and
 * protobuf (for BuildKit sessions) and docker-modem requires ssh2 (for `DOCKER_HOST=ssh://`) as
 * they load: 11 MB of memory and about 110 ms of every command's start-up, measured here, for code
 * that ferry's own calls never reach (it builds no images, and reaches engines over SSH through its
 * own tunnel). Each is replaced in the require cache by a function that loads the real module on its
 * first call, so a user's `DOCKER_HOST=ssh://…` still works.
 *
 * Must be imported before dockerode. The single executable is one esbuild bundle with no require
 * cache to seed: scripts/package.mjs does the same there with a resolve plugin.
 */
import { createRequire } from 'node:module';

/** Modules with a function as their only export, as dockerode's requirers use them. */
const DEFERRED_MODULES = ['dockerode/lib/session.js', 'docker-modem/lib/ssh.js'] as const;

type CachedModule = NonNullable<NodeJS.Require['cache'][string]>;

function deferAll(): void {
  // Empty inside the esbuild bundle (see above); there is nothing to seed there.
  if (!import.meta.url) return;
  const require = createRequire(import.meta.url);
  for (const name of DEFERRED_MODULES) {
    let path: string;
    try {
      path = require.resolve(name);
    } catch {
      continue; // a dependency update moved it: load it the ordinary way
    }
    if (require.cache[path]) continue;
    const load = function (this: unknown, ...args: unknown[]): unknown {
      delete require.cache[path];
      const real = require(path) as (...a: unknown[]) => unknown;
      return real.apply(this, args);
    };
    require.cache[path] = { id: path, filename: path, loaded: true, exports: load, children: [], paths: [] } as unknown as CachedModule;
  }
}

deferAll();
