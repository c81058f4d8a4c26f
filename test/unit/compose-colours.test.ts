import { describe, expect, it } from 'vitest';
import { analyzeCompose } from '../../src/core/compose.js';
import { checkBlueGreen, colouredServices, colourProject, hostOverridePorts, nextColour, parseSwitch, renderColourOverride, sameStableDefinitions, stableServices, SwitchSpecError } from '../../src/core/compose-colours.js';
import { composeArgs, NO_COMPOSE_FEATURES } from '../../src/core/compose-cli.js';
import { parseYaml } from '../../src/core/yaml.js';

const model = (xFerry: unknown, services: Record<string, unknown> = { proxy: { image: 'p', ports: ['80:8080'] }, web: { image: 'w' }, db: { image: 'd', volumes: ['data:/var/lib/db'] }, smoke: { image: 's' } }) => ({
  'x-ferry': xFerry,
  services,
  volumes: { data: {} },
});
const code = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    return e instanceof SwitchSpecError ? e.code : String(e);
  }
  return 'none';
};

describe('x-ferry switch', () => {
  it('defaults to in place', () => {
    expect(parseSwitch(model({ smoke: 'smoke' }))).toEqual({ mode: 'in-place' });
    expect(parseSwitch({ services: {} })).toEqual({ mode: 'in-place' });
  });

  it('reads blue-green with its front and shared services', () => {
    const spec = parseSwitch(model({ smoke: 'smoke', switch: 'blue-green', front: ['proxy'], shared: 'db' }));
    expect(spec).toEqual({ mode: 'blue-green', front: ['proxy'], shared: ['db'] });
    expect(colouredServices(spec, ['proxy', 'web', 'db', 'smoke'], 'smoke')).toEqual(['web']);
    expect(stableServices(spec)).toEqual(['proxy', 'db']);
  });

  it('refuses what cannot work, naming it', () => {
    expect(code(() => parseSwitch(model({ switch: 'rolling' })))).toBe('BLUE_GREEN_INVALID');
    expect(code(() => parseSwitch(model({ switch: 'blue-green' })))).toBe('BLUE_GREEN_INVALID');
    expect(code(() => parseSwitch(model({ switch: 'blue-green', front: ['nginx'] })))).toBe('BLUE_GREEN_INVALID');
    expect(code(() => parseSwitch(model({ switch: 'blue-green', front: ['proxy'], shared: ['proxy'] })))).toBe('BLUE_GREEN_INVALID');
    expect(code(() => parseSwitch(model({ front: ['proxy'] })))).toBe('BLUE_GREEN_INVALID');
  });

  it('refuses a coloured service with a host port, a container name or a named volume', () => {
    const x = { switch: 'blue-green', front: ['proxy'] };
    const spec = parseSwitch(model(x));
    // db is coloured here (not shared) and mounts the named volume.
    expect(code(() => checkBlueGreen(model(x), spec, null))).toBe('BLUE_GREEN_VOLUME');
    const withShared = { ...x, shared: ['db'] };
    expect(code(() => checkBlueGreen(model(withShared), parseSwitch(model(withShared)), null))).toBe('none');
    const ported = model(withShared, { proxy: { image: 'p' }, web: { image: 'w', ports: [{ target: 8080, published: '8080' }] }, db: { image: 'd' } });
    expect(code(() => checkBlueGreen(ported, parseSwitch(ported), null))).toBe('BLUE_GREEN_PORT');
    // A container port without a host port is no conflict between colours.
    const exposed = model(withShared, { proxy: { image: 'p' }, web: { image: 'w', ports: ['8080', { target: 9090 }] }, db: { image: 'd' } });
    expect(code(() => checkBlueGreen(exposed, parseSwitch(exposed), null))).toBe('none');
    const named = model(withShared, { proxy: { image: 'p' }, web: { image: 'w', container_name: 'web' }, db: { image: 'd' } });
    expect(code(() => checkBlueGreen(named, parseSwitch(named), null))).toBe('BLUE_GREEN_INVALID');
    // Binds and anonymous volumes are per container: fine.
    const binds = model(withShared, { proxy: { image: 'p' }, web: { image: 'w', volumes: ['./conf:/conf', '/cache', { type: 'bind', source: '/etc/x', target: '/x' }] }, db: { image: 'd' } });
    expect(code(() => checkBlueGreen(binds, parseSwitch(binds), null))).toBe('none');
  });

  it('create refuses through analyzeCompose with the build-input exit code', () => {
    const m = model({ switch: 'blue-green', front: ['proxy'], shared: ['db'], smoke: 'smoke' }, { proxy: { image: 'p' }, web: { image: 'w', ports: ['80:80'] }, db: { image: 'd' }, smoke: { image: 's' } });
    expect(() => analyzeCompose(m, 'compose.yaml')).toThrow(expect.objectContaining({ code: 'BLUE_GREEN_PORT', exitCode: 10 }));
    const ok = model({ switch: 'blue-green', front: ['proxy'], shared: ['db'], smoke: 'smoke' }, { proxy: { image: 'p', ports: ['80:80'] }, web: { image: 'w' }, db: { image: 'd' }, smoke: { image: 's' } });
    expect(analyzeCompose(ok, 'compose.yaml').switch).toEqual({ mode: 'blue-green', front: ['proxy'], shared: ['db'] });
    const smokeInFront = model({ switch: 'blue-green', front: ['smoke'], smoke: 'smoke' }, { web: { image: 'w' }, smoke: { image: 's' } });
    expect(() => analyzeCompose(smokeInFront, 'compose.yaml')).toThrow(expect.objectContaining({ code: 'BLUE_GREEN_INVALID' }));
  });

  it('refuses a shared service on no network a coloured service joins, naming it', () => {
    const x = { switch: 'blue-green', front: ['proxy'], shared: ['db', 'cache'], smoke: 'smoke' };
    // web and worker on "front", api bridging to "back": db is reached through api, cache by no colour.
    const cut = model(x, {
      proxy: { image: 'p', ports: ['80:80'], networks: ['front'] },
      web: { image: 'w', networks: ['front'] },
      api: { image: 'a', networks: { front: {}, back: { aliases: ['api'] } } },
      db: { image: 'd', networks: ['back'] },
      cache: { image: 'c', networks: ['cachenet'] },
      smoke: { image: 's', networks: ['cachenet'] },
    });
    expect(() => analyzeCompose(cut, 'compose.yaml')).toThrow(expect.objectContaining({ code: 'BLUE_GREEN_INVALID', exitCode: 10, details: expect.objectContaining({ service: 'cache' }) }));
    expect(() => analyzeCompose(cut, 'compose.yaml')).toThrow(/shared service "cache" is on network cachenet, which no coloured service \(web, api\) joins/);
    // Segmented tiers are fine: a shared service needs one colour that reaches it, not every one.
    const tiers = structuredClone(cut);
    (tiers.services as Record<string, { networks: unknown }>).cache!.networks = ['back'];
    expect(code(() => checkBlueGreen(tiers, parseSwitch(tiers), 'smoke'))).toBe('none');
    // No networks at all: every service is on the default network.
    const plain = model(x, { proxy: { image: 'p' }, web: { image: 'w' }, db: { image: 'd' }, cache: { image: 'c' }, smoke: { image: 's' } });
    expect(code(() => checkBlueGreen(plain, parseSwitch(plain), 'smoke'))).toBe('none');
    const defaultOnly = model(x, { proxy: { image: 'p' }, web: { image: 'w' }, db: { image: 'd', networks: ['back'] }, cache: { image: 'c' }, smoke: { image: 's' } });
    expect(code(() => checkBlueGreen(defaultOnly, parseSwitch(defaultOnly), 'smoke'))).toBe('BLUE_GREEN_INVALID');
    // network_mode is not judged by compose networks.
    const hostDb = model(x, { proxy: { image: 'p' }, web: { image: 'w' }, db: { image: 'd', network_mode: 'host' }, cache: { image: 'c' }, smoke: { image: 's' } });
    expect(code(() => checkBlueGreen(hostDb, parseSwitch(hostDb), 'smoke'))).toBe('none');
  });

  it('two releases define the stable services alike only when their files do', () => {
    const a = { services: { proxy: { image: 'p:1', ports: ['80:80'] }, web: { image: 'w:1' } }, networks: { default: {} } };
    const b = { networks: { default: {} }, services: { web: { image: 'w:2' }, proxy: { ports: ['80:80'], image: 'p:1' } } };
    expect(sameStableDefinitions([a, { services: { proxy: { image: 'p@x' } } }], [b, { services: { proxy: { image: 'p@x' } } }], ['proxy'])).toBe(true);
    expect(sameStableDefinitions([a], [b], ['proxy', 'web'])).toBe(false);
    expect(sameStableDefinitions([a], [{ ...b, networks: { default: { internal: true } } }], ['proxy'])).toBe(false);
    expect(sameStableDefinitions([a], [b, {}], ['proxy'])).toBe(false);
  });

  it('a host override that publishes a coloured service is found', () => {
    expect(hostOverridePorts({ services: { web: { ports: ['8081:8080'] }, proxy: { ports: ['80:80'] } } }, ['web'])).toBe('web');
    expect(hostOverridePorts({ services: { proxy: { ports: ['80:80'] } } }, ['web'])).toBeNull();
  });
});

describe('colours', () => {
  it('alternate, starting blue', () => {
    expect(nextColour(null)).toBe('blue');
    expect(nextColour('blue')).toBe('green');
    expect(nextColour('green')).toBe('blue');
    expect(colourProject('shop', 'green')).toBe('shop-green');
  });

  it('give a colour project networks of its own, external ones kept', async () => {
    const m = { services: {}, networks: { default: { name: 'shop_default' }, back: { name: 'shop_back' }, outside: { external: true, name: 'corp' } } };
    const doc = (await parseYaml(renderColourOverride(m, 'shop', 'blue'), 'override')) as { networks: Record<string, { name: string }> };
    expect(doc.networks).toEqual({ back: { name: 'shop-blue_back' }, default: { name: 'shop-blue_default' } });
    // Compose v1's model lists no default network: it is renamed all the same.
    expect(await parseYaml(renderColourOverride({ services: {} }, 'shop', 'green'), 'o')).toEqual({ networks: { default: { name: 'shop-green_default' } } });
  });

  it('compose command lines for the split projects', () => {
    const v1 = { argv: ['docker-compose'], version: 1 as const, features: NO_COMPOSE_FEATURES };
    expect(composeArgs(v1, 'shop', ['c.yaml'], { kind: 'up', services: ['proxy'], noDeps: true })).toEqual(['--project-name', 'shop', '--file', 'c.yaml', 'up', '--detach', '--no-build', '--remove-orphans', '--no-deps', 'proxy']);
    expect(composeArgs(v1, 'shop-blue', ['c.yaml'], { kind: 'stop', services: [] })).toEqual(['--project-name', 'shop-blue', '--file', 'c.yaml', 'stop']);
    expect(composeArgs(v1, 'shop', ['c.yaml'], { kind: 'rm', services: ['web'] })).toEqual(['--project-name', 'shop', '--file', 'c.yaml', 'rm', '--stop', '--force', 'web']);
  });
});
