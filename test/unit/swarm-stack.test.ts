import { describe, expect, it } from 'vitest';
import type { Inventory } from '../../src/core/inventory.js';
import { clusterInventory } from '../../src/core/swarm-inventory.js';
import { hostModePort, mergeCompose, planSwarmStack, RELEASE_LABEL, stackServicesOf, SwarmStackError, withoutSmokeRun } from '../../src/core/swarm-stack.js';

const compose = {
  'x-ferry': { smoke: 'smoke' },
  services: {
    web: {
      image: 'shop/web:1',
      restart: 'unless-stopped',
      environment: ['A=1', 'B=2'],
      healthcheck: { test: ['CMD', 'true'] },
    },
    worker: { image: 'shop/worker:1', healthcheck: { test: ['CMD', 'true'] }, depends_on: { web: { condition: 'service_healthy' } } },
    smoke: { image: 'shop/smoke:1', profiles: ['smoke'], restart: 'no' },
    debug: { image: 'shop/debug:1', profiles: ['debug'] },
  },
};
const override = { services: { web: { ports: ['8081:8080'], environment: { B: '3', C: '4' } }, worker: { deploy: { update_config: { order: 'stop-first' } } } } };
const images = new Map([
  ['web', 'ferry.local/shop:aaa'],
  ['worker', 'ferry.local/shop:bbb'],
  ['smoke', 'ferry.local/shop:ccc'],
]);

describe('mergeCompose', () => {
  it('merges an override as Compose does: maps deep, environment by key, ports appended', () => {
    const m = mergeCompose([compose, override, { services: { web: { ports: ['9090:9090'] } } }]) as any;
    expect(m.services.web.environment).toEqual({ A: '1', B: '3', C: '4' });
    expect(m.services.web.ports).toEqual(['8081:8080', '9090:9090']);
    expect(m.services.web.image).toBe('shop/web:1');
    expect(m.services.worker.deploy.update_config.order).toBe('stop-first');
  });
});

describe('hostModePort', () => {
  it('publishes short and long forms in mode host', () => {
    expect(hostModePort('8081:8080', 'web')).toEqual([{ target: 8080, published: 8081, protocol: 'tcp', mode: 'host' }]);
    expect(hostModePort('127.0.0.1:53:53/udp', 'dns')).toEqual([{ target: 53, published: 53, protocol: 'udp', mode: 'host' }]);
    expect(hostModePort('8080', 'web')).toEqual([{ target: 8080, protocol: 'tcp', mode: 'host' }]);
    expect(hostModePort('9000-9001:8000-8001', 'web')).toHaveLength(2);
    expect(hostModePort({ target: 80, published: '8080', mode: 'ingress' }, 'web')).toEqual([{ target: 80, published: 8080, protocol: 'tcp', mode: 'host' }]);
  });
  it('refuses what Swarm cannot publish, by code', () => {
    expect(() => hostModePort('9000-9002:8000-8001', 'web')).toThrow(SwarmStackError);
    expect(() => hostModePort('abc', 'web')).toThrow(/not one Swarm can publish/);
  });
});

describe('planSwarmStack', () => {
  const plan = planSwarmStack({ model: mergeCompose([compose, override]), images, smoke: 'smoke', release: '3-1.2.0', avoidNodes: ['n2'] });
  const svc = (n: string) => (plan.doc.services as any)[n];

  it('pins every service to its ferry tag and drops what stacks refuse', () => {
    expect(plan.doc.version).toBe('3.8');
    expect(plan.doc['x-ferry']).toBeUndefined();
    expect(svc('web').image).toBe('ferry.local/shop:aaa');
    expect(svc('worker').depends_on).toBeUndefined();
    expect(svc('web').restart).toBeUndefined();
    expect(svc('web').deploy.restart_policy).toEqual({ condition: 'any' });
  });
  it('needs no IPVS: dnsrr endpoints, host-mode ports', () => {
    expect(svc('web').deploy.endpoint_mode).toBe('dnsrr');
    expect(svc('web').ports).toEqual([{ target: 8080, published: 8081, protocol: 'tcp', mode: 'host' }]);
  });
  it('rolls back failed updates; start-first only where a health check exists, no host port, and the file chose nothing', () => {
    expect(svc('web').deploy.update_config).toEqual({ failure_action: 'rollback' });
    expect(svc('worker').deploy.update_config).toEqual({ failure_action: 'rollback', order: 'stop-first' });
    const p2 = planSwarmStack({ model: compose, images, smoke: 'smoke', release: '1' });
    expect((p2.doc.services as any).worker.deploy.update_config).toEqual({ failure_action: 'rollback', order: 'start-first' });
  });
  it('runs the smoke test once per release, and leaves other profiles out', () => {
    expect(svc('smoke').deploy).toMatchObject({ replicas: 1, restart_policy: { condition: 'none' } });
    expect(svc('smoke').deploy.update_config).toBeUndefined();
    expect(svc('smoke').labels[RELEASE_LABEL]).toBe('3-1.2.0');
    expect(svc('debug')).toBeUndefined();
    expect(plan.services).toEqual(['web', 'worker']);
    expect(plan.smoke).toBe('smoke');
  });
  it('keeps the stack off nodes that could not be loaded', () => {
    expect(svc('web').deploy.placement.constraints).toEqual(['node.id!=n2']);
  });
});

describe('the smoke test runs after the services converged', () => {
  it('deploys the smoke service with no replica first; what must converge is every other service', () => {
    const plan = planSwarmStack({ model: compose, images, smoke: 'smoke', release: '1' });
    const pre = withoutSmokeRun(plan.doc, 'smoke') as any;
    expect(pre.services.smoke.deploy).toMatchObject({ replicas: 0, restart_policy: { condition: 'none' } });
    expect((plan.doc.services as any).smoke.deploy.replicas).toBe(1);
    expect(pre.services.web).toBe((plan.doc.services as any).web);
    expect(stackServicesOf(plan.doc, 'smoke')).toEqual(['web', 'worker']);
    expect(withoutSmokeRun(plan.doc, null)).toBe(plan.doc);
  });
});

describe('clusterInventory', () => {
  const inv = (host: string, images: [string, string[]][]): Inventory => ({
    format: 'ferry.inventory/v1',
    host,
    created: '2026-11-29T00:00:00.000Z',
    tool: { name: 'ferry', version: '0' },
    engine: { serverVersion: '20.10', apiVersion: '1.41', storageDriver: 'overlay2', containerdStore: false, os: 'linux', architecture: 'x86_64', podman: false },
    images: images.map(([id, chainIds]) => ({ id, repoTags: [], diffIds: chainIds, chainIds, size: 1 })),
    layers: [...new Set(images.flatMap(([, c]) => c))].sort(),
    releases: [],
  });
  it('keeps only what every node holds: a bundle built against it may leave out nothing a node lacks', () => {
    const m = inv('swarm-1', [['sha256:a', ['c1', 'c2']], ['sha256:b', ['c1', 'c3']]]);
    const w1 = inv('swarm-2', [['sha256:a', ['c1', 'c2']]]);
    const w2 = inv('swarm-3', [['sha256:x', ['c1', 'c2', 'c9']]]);
    const c = clusterInventory(m, [w1, w2], 'cluster');
    expect(c.host).toBe('cluster');
    expect(c.layers).toEqual(['c1', 'c2']);
    expect(c.images.map((i) => i.id)).toEqual([]);
    expect(clusterInventory(m, [w1], 'cluster').images.map((i) => i.id)).toEqual(['sha256:a']);
    expect(clusterInventory(m, [], 'one-node')).toMatchObject({ layers: m.layers, images: m.images });
  });
});
