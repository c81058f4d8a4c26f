/**
 * The engine adapter loads dockerode without gRPC, protobuf or ssh2 (src/adapters/dockerode-lazy.ts),
 * through the compiled module the CLI runs, in a fresh process; and the deferred modules still work
 * when called: docker-modem's SSH agent (what `DOCKER_HOST=ssh://…` uses) comes back real.
 */
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const ENGINE_MODULE = pathToFileURL(resolve('dist/adapters/engine.js')).href;

function probe(body: string): Record<string, unknown> {
  const script = `
    import { createRequire } from 'node:module';
    const { Engine } = await import(${JSON.stringify(ENGINE_MODULE)});
    const require = createRequire(${JSON.stringify(ENGINE_MODULE)});
    const loaded = (re) => Object.keys(require.cache).filter((k) => re.test(k)).length;
    ${body}`;
  return JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })) as Record<string, unknown>;
}

describe('dockerode without its unused dependencies', () => {
  it('loads neither gRPC, protobuf nor ssh2 with the engine adapter', () => {
    const r = probe(`
      new Engine();
      console.log(JSON.stringify({ dockerode: loaded(/node_modules[/]dockerode[/]/), grpc: loaded(/@grpc|protobufjs/), ssh2: loaded(/node_modules[/]ssh2[/]/) }));`);
    expect(r.dockerode).toBeGreaterThan(5);
    expect(r.grpc).toBe(0);
    expect(r.ssh2).toBe(0);
  });

  it('loads the real module on first call: docker-modem gets a working SSH agent', () => {
    const r = probe(`
      const sshAgent = require('docker-modem/lib/ssh.js');
      const agent = sshAgent({ host: '127.0.0.1', port: 1 });
      console.log(JSON.stringify({ agent: typeof agent.createConnection, ssh2: loaded(/node_modules[/]ssh2[/]/), again: require('docker-modem/lib/ssh.js') !== sshAgent }));`);
    expect(r).toEqual({ agent: 'function', ssh2: expect.any(Number), again: true });
    expect(r.ssh2).toBeGreaterThan(0);
  });
});
