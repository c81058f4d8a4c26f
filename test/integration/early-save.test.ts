/**
 * create asks the engine for its save while Compose reads the project (services/create-early.ts),
 * through the built CLI on the real build engine: used when the compose files name the images
 * plainly, not tried when they leave the names to Compose (a variable), and either way the same
 * image content in the bundle, blob for blob.
 */
import { createHash } from 'node:crypto';
import { cp, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ROOT, ferry, tmpDir } from '../support/engines.js';

let work: string;

interface Created {
  result: { layerWork: { earlySave: string } };
}

// --from-save: the build engine's store is on this machine, which a create would read instead.
async function create(def: string, out: string, env: NodeJS.ProcessEnv = {}): Promise<Created> {
  const r = await ferry(['bundle', 'create', def, '--out', out, '--no-cache', '--from-save', '--json'], { env });
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Created;
}

/** Every blob by name and content, and the manifest's images. */
async function imageContent(bundle: string): Promise<{ blobs: Record<string, string>; images: unknown }> {
  const blobs: Record<string, string> = {};
  for (const name of await readdir(join(bundle, 'blobs', 'sha256'))) {
    blobs[name] = createHash('sha256').update(await readFile(join(bundle, 'blobs', 'sha256', name))).digest('hex');
  }
  const manifest = JSON.parse(await readFile(join(bundle, 'ferry.json'), 'utf8')) as { images: unknown };
  return { blobs, images: manifest.images };
}

beforeAll(async () => {
  work = await tmpDir('ferry-early-save-');
});

describe('the save asked for while Compose reads the project', () => {
  it('is used when the compose file names its images, and gives the bundle the same images as a create that waits for Compose', async () => {
    const literal = join(work, 'literal');
    const variable = join(work, 'variable');
    await cp(join(ROOT, 'bundles', 'demo'), literal, { recursive: true });
    await cp(join(ROOT, 'bundles', 'demo'), variable, { recursive: true });
    const compose = await readFile(join(variable, 'compose.yaml'), 'utf8');
    expect(compose).toContain('image: ferry-demo/');
    await writeFile(join(variable, 'compose.yaml'), compose.replaceAll('image: ferry-demo/', 'image: ${DEMO_REPO}/'));

    const early = await create(literal, join(work, 'literal.ferry'));
    expect(early.result.layerWork.earlySave).toBe('used');
    const late = await create(variable, join(work, 'variable.ferry'), { DEMO_REPO: 'ferry-demo' });
    expect(late.result.layerWork.earlySave).toBe('none');

    const a = await imageContent(join(work, 'literal.ferry'));
    const b = await imageContent(join(work, 'variable.ferry'));
    expect(Object.keys(a.blobs).length).toBeGreaterThan(3);
    expect(a).toEqual(b);
  });
});
