import { describe, expect, it } from 'vitest';
import { analyzeCompose, fieldWarnings } from '../../src/core/compose.js';
import { parseDefinition } from '../../src/core/definition.js';
import { BuildInputError } from '../../src/errors.js';

function definitionError(doc: unknown): BuildInputError {
  try {
    parseDefinition(doc, 'bundles/x/ferry.yaml');
  } catch (e) {
    expect(e).toBeInstanceOf(BuildInputError);
    return e as BuildInputError;
  }
  throw new Error('expected a BuildInputError');
}

describe('bundle definition', () => {
  it('parses the documented shape, host entries short and long', () => {
    const def = parseDefinition(
      { name: 'shop', version: '1.4.2', compose: './compose.yaml', hosts: { 'edge-1': 'hosts/edge-1.yaml', 'edge-2': { compose: 'hosts/edge-2.yaml', env: 'hosts/edge-2.env' } }, images: ['shop/tools:1'] },
      'f',
    );
    expect(def).toEqual({
      name: 'shop',
      version: '1.4.2',
      compose: ['compose.yaml'],
      envFiles: [],
      profiles: [],
      hosts: { 'edge-1': { compose: 'hosts/edge-1.yaml', env: [] }, 'edge-2': { compose: 'hosts/edge-2.yaml', env: ['hosts/edge-2.env'] } },
      images: ['shop/tools:1'],
      strict: false,
    });
  });

  it('takes strict: true (every create warning refuses the bundle), and only a boolean', () => {
    expect(parseDefinition({ name: 'shop', compose: 'compose.yaml', strict: true }, 'f').strict).toBe(true);
    expect(() => parseDefinition({ name: 'shop', compose: 'compose.yaml', strict: 'yes' }, 'f')).toThrow(/strict: must be true or false/);
  });

  it('takes several compose files in -f order, env files and profiles', () => {
    const def = parseDefinition({ name: 'shop', compose: ['compose.yaml', './compose.prod.yaml'], env_files: ['prod.env'], profiles: ['ops', 'debug'] }, 'f');
    expect(def).toMatchObject({ compose: ['compose.yaml', 'compose.prod.yaml'], envFiles: ['prod.env'], profiles: ['ops', 'debug'] });
    expect(() => parseDefinition({ name: 'shop', compose: ['a.yaml', '../b.yaml'], profiles: ['bad name'] }, 'f')).toThrow(/compose\[1\].*profiles\[0\]/s);
  });

  it('names the file and every field at fault', () => {
    const e = definitionError({ name: 'Shop!', compose: '../compose.yaml', hosts: { 'edge 1': 'x.yaml', ok: 5 }, images: 'no', extra: 1 });
    expect(e.exitCode).toBe(10);
    expect(e.message).toContain('bundles/x/ferry.yaml');
    for (const field of ['name:', 'compose:', 'hosts.edge 1:', 'hosts.ok:', 'images:', 'extra: unknown field']) expect(e.message).toContain(field);
  });

  it('requires a mapping', () => {
    expect(definitionError('just text').message).toMatch(/must be a YAML mapping/);
  });
});

describe('compose analysis and field warnings', () => {
  const compose = {
    'x-ferry': { smoke: 'smoke' },
    services: {
      web: { image: 'shop/web:1', restart: 'always', healthcheck: { test: ['CMD', 'true'] }, user: '1000', mem_limit: '256m' },
      worker: { image: 'shop/worker:1', volumes: ['/etc/shop:/config:ro', './logs:/var/log/app', 'data:/data'] },
      smoke: { image: 'shop/smoke:1', restart: 'no' },
    },
  };

  it('finds images, the smoke service and bind mounts', () => {
    const a = analyzeCompose(compose, 'compose.yaml');
    expect(a.services.map((s) => [s.name, s.image])).toEqual([
      ['web', 'shop/web:1'],
      ['worker', 'shop/worker:1'],
      ['smoke', 'shop/smoke:1'],
    ]);
    expect(a.smoke).toBe('smoke');
    expect(a.binds.map((b) => b.source)).toEqual(['/etc/shop', './logs']);
  });

  it('warns about what hurts on hosts, and not about the smoke test', () => {
    const a = analyzeCompose(compose, 'compose.yaml');
    const w = fieldWarnings(a, (svc) => ({ user: svc.name === 'smoke' ? '65534' : '', hasHealthcheck: false }));
    const codes = w.map((x) => `${x.code}:${x.subject}`);
    expect(codes).toEqual(
      expect.arrayContaining(['NO_HEALTHCHECK:worker', 'NO_RESTART_POLICY:worker', 'RUNS_AS_ROOT:worker', 'MOUNTS_CONFIG_DIR:worker', 'MOUNTS_LOG_DIR:worker']),
    );
    expect(codes.filter((c) => c.endsWith(':web'))).toEqual([]);
    expect(codes.filter((c) => c.endsWith(':smoke'))).toEqual([]);
  });

  it('counts a health check the image itself defines', () => {
    const a = analyzeCompose({ services: { w: { image: 'x', restart: 'always', user: '1', mem_limit: 268435456 } } }, 'c');
    expect(fieldWarnings(a, () => ({ user: '', hasHealthcheck: true }))).toEqual([]);
  });

  it('warns about a service without a memory limit, in either spelling Compose writes it', () => {
    const warn = (svc: Record<string, unknown>) =>
      fieldWarnings(analyzeCompose({ services: { w: { image: 'x', restart: 'always', user: '1', ...svc } } }, 'c'), () => ({ user: '', hasHealthcheck: true })).map((w) => w.code);
    expect(warn({})).toEqual(['NO_MEMORY_LIMIT']);
    expect(warn({ mem_limit: '0' })).toEqual(['NO_MEMORY_LIMIT']);
    expect(warn({ mem_limit: '512m' })).toEqual([]);
    expect(warn({ deploy: { resources: { limits: { memory: '536870912' } } } })).toEqual([]);
  });

  it('refuses services without a pinned image and bad x-ferry', () => {
    expect(() => analyzeCompose({ services: { w: { build: '.' } } }, 'c.yaml')).toThrow(/service "w" has no image/);
    expect(() => analyzeCompose({ services: { w: { image: 'x:${TAG}' } } }, 'c.yaml')).toThrow(/interpolation/);
    expect(() => analyzeCompose({ 'x-ferry': { smoke: 'nope' }, services: { w: { image: 'x' } } }, 'c.yaml')).toThrow(/x-ferry.smoke/);
  });
});
