/**
 * The pure step between Compose's resolved model and what a bundle carries, on models shaped as
 * Compose v2 (`config --format json`) and v1 (`config`, YAML) really print them.
 */
import { describe, expect, it } from 'vitest';
import { planProject, ProjectPlanError, v1ProjectName } from '../../src/core/compose-project.js';

const v2Model = {
  name: 'shop',
  networks: { default: { name: 'shop_default', ipam: {} } },
  secrets: { dbpw: { name: 'shop_dbpw', file: '/src/shop/db/password.txt' } },
  configs: { cfg: { name: 'shop_cfg', file: '/src/shop/app.cfg' } },
  services: {
    web: {
      command: null,
      entrypoint: null,
      image: 'shop/web:1.2',
      networks: { default: null },
      secrets: [{ source: 'dbpw', target: '/run/secrets/dbpw' }],
      configs: [{ source: 'cfg' }],
      volumes: [
        { type: 'bind', source: '/src/shop/nginx.conf', target: '/etc/nginx/nginx.conf', read_only: true, bind: { create_host_path: true } },
        { type: 'bind', source: '/etc/ssl/certs', target: '/certs', bind: { create_host_path: true } },
        { type: 'volume', source: 'data', target: '/data', volume: {} },
      ],
    },
    worker: { build: { context: '/src/shop/w', dockerfile: 'Dockerfile' }, command: null },
  },
  volumes: { data: { name: 'shop_data' } },
  'x-ferry': { smoke: 'web' },
};

describe('planning a compose project', () => {
  const plan = planProject(v2Model, { projectDir: '/src/shop', project: 'shop', composeVersion: 2 });
  const model = plan.model as any;

  it('carries what the stack reads inside the project and points the model at the copies', () => {
    expect(plan.carried).toEqual([
      { rel: 'app.cfg', kind: 'config', services: ['web'] },
      { rel: 'db/password.txt', kind: 'secret', services: ['web'] },
      { rel: 'nginx.conf', kind: 'bind', services: ['web'] },
    ]);
    expect(model.services.web.volumes[0]).toEqual({ type: 'bind', source: './project/nginx.conf', target: '/etc/nginx/nginx.conf', read_only: true });
    expect(model.secrets.dbpw.file).toBe('./project/db/password.txt');
  });

  it('keeps absolute paths outside the project as host paths, to be checked on the host', () => {
    expect(plan.hostPaths).toEqual([{ path: '/etc/ssl/certs', kind: 'bind', services: ['web'] }]);
    expect(model.services.web.volumes[1].source).toBe('/etc/ssl/certs');
  });

  it('makes a model both Compose versions read: configs as read-only binds, no nulls, no name, no build', () => {
    expect(model.services.web.configs).toBeUndefined();
    expect(model.configs).toBeUndefined();
    expect(model.services.web.volumes.at(-1)).toEqual({ type: 'bind', source: './project/app.cfg', target: '/cfg', read_only: true });
    expect(model.name).toBeUndefined();
    expect('command' in model.services.web).toBe(false);
    expect(model.services.web.networks).toEqual({ default: {} });
    expect(model.services.worker.build).toBeUndefined();
    expect(model['x-ferry']).toEqual({ smoke: 'web' });
  });

  it('names the tags Compose gives built services, this version first', () => {
    expect(plan.services.find((s) => s.name === 'worker')).toEqual({ name: 'worker', image: null, builtTags: ['shop-worker', 'shop_worker'] });
    expect(planProject(v2Model, { projectDir: '/src/shop', project: 'My-Shop', composeVersion: 1 }).services.find((s) => s.name === 'worker')!.builtTags).toEqual(['myshop_worker', 'My-Shop-worker']);
    expect(v1ProjectName('My-Shop_2')).toBe('myshop2');
  });

  it('reads v1 short-syntax volumes', () => {
    const p = planProject({ version: '3.9', services: { web: { image: 'a:1', volumes: ['/src/shop/conf:/conf:ro', '/var/log:/logs:rw', 'data:/data:rw'] } } }, { projectDir: '/src/shop', project: 'shop', composeVersion: 1 });
    expect((p.model as any).services.web.volumes).toEqual([{ type: 'bind', source: './project/conf', target: '/conf', read_only: true }, { type: 'bind', source: '/var/log', target: '/logs' }, 'data:/data:rw']);
    expect((p.model as any).version).toBeUndefined();
  });

  it('with excluded secrets, points the model at the host and asks the host for them', () => {
    const p = planProject(v2Model, { projectDir: '/src/shop', project: 'shop', composeVersion: 2, excludeSecretsTo: '/etc/ferry/secrets/shop' });
    expect(p.carried.map((c) => c.rel)).not.toContain('db/password.txt');
    expect(p.hostPaths).toContainEqual({ path: '/etc/ferry/secrets/shop/db/password.txt', kind: 'secret', services: ['web'], excludedSecret: true });
    expect((p.model as any).secrets.dbpw.file).toBe('/etc/ferry/secrets/shop/db/password.txt');
  });

  it('refuses an image reference a blank variable left incomplete', () => {
    expect(() => planProject({ services: { web: { image: 'shop/web:' } } }, { projectDir: '/p', project: 'p', composeVersion: 2 })).toThrow(ProjectPlanError);
  });
});
