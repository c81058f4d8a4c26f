/**
 * create reading the build engine's store (src/adapters/store-archive.ts) when the store lies: a
 * layer whose files were changed under the engine no longer hashes to its diffID. The create must
 * refuse (exit 4, ENGINE_ARCHIVE_INVALID, naming the store and --from-save) and leave no bundle;
 * --from-save then reads what the engine exports. Real engine, real files, a scratch image.
 */
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/adapters/engine.js';
import { storedLayerPaths } from '../../src/adapters/layer-store.js';
import { buildDocker, ferry, tmpDir, uniqueName } from '../support/engines.js';

let work: string;
let ref: string;

beforeAll(async () => {
  work = await tmpDir('ferry-store-create-');
  ref = `${uniqueName('ferry-store')}:1`;
  const ctx = join(work, 'ctx');
  await mkdir(ctx, { recursive: true });
  await writeFile(join(ctx, 'Dockerfile'), 'FROM scratch\nCOPY app.txt /app.txt\n');
  await writeFile(join(ctx, 'app.txt'), 'the tested release\n');
  const built = await buildDocker().run(['build', '-q', '-t', ref, ctx], { env: { DOCKER_BUILDKIT: '0' } });
  expect(built.code, built.stderr).toBe(0);
  const def = join(work, 'def');
  await mkdir(def, { recursive: true });
  await writeFile(join(def, 'ferry.yaml'), 'name: storelie\nversion: 1.0.0\ncompose: compose.yaml\n');
  await writeFile(join(def, 'compose.yaml'), `services:\n  app:\n    image: ${ref}\n`);
}, 120_000);

afterAll(async () => {
  await buildDocker().run(['rmi', '-f', ref]);
});

describe('create from a store whose files were changed under the engine', () => {
  it('refuses with exit 4 and leaves no bundle; --from-save reads what the engine exports', async () => {
    const engine = new Engine(buildDocker().host);
    const info = await engine.info();
    const image = (await engine.inspectImage(ref))!;
    const paths = await storedLayerPaths(info.dataRoot, info.storageDriver, image.diffIds, image.diffIds[0]!);
    expect(paths).not.toBeNull();
    // Same size, other bytes: the tar-split still fits, the hash does not.
    await writeFile(join(paths!.diffDir, 'app.txt'), 'THE TESTED RELEASE\n');

    const out = join(work, 'lie.ferry');
    const r = await ferry(['bundle', 'create', join(work, 'def'), '--out', out, '--no-cache', '--json'], { env: { DOCKER_HOST: buildDocker().host } });
    expect(r.code, r.stderr).toBe(4);
    const doc = JSON.parse(r.stdout) as { error: { code: string; message: string; nextSteps?: string[] } };
    expect(doc.error.code).toBe('ENGINE_ARCHIVE_INVALID');
    expect(doc.error.message).toContain("layer store");
    expect(JSON.stringify(doc.error)).toContain('--from-save');
    expect((await readdir(work)).filter((n) => n.startsWith('lie.ferry'))).toEqual([]);

    // The engine's own export is made from the same files: it carries the changed bytes under
    // the old diffID, which the pass's hash catches as well — the bundle is never written wrong.
    const saved = await ferry(['bundle', 'create', join(work, 'def'), '--out', join(work, 'saved.ferry'), '--no-cache', '--from-save', '--json'], { env: { DOCKER_HOST: buildDocker().host } });
    expect(saved.code).not.toBe(0);
    expect((await readdir(work)).filter((n) => n.startsWith('saved.ferry'))).toEqual([]);
  });
});
