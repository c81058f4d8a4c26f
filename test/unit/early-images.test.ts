/**
 * The guess at a stack's images from its compose files (core/early-images.ts), and the early save
 * built on it (services/create-early.ts) taken only for exactly its images, aborted otherwise.
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { Engine, ImageDetails } from '../../src/adapters/engine.js';
import { saveOrder } from '../../src/core/create-plan.js';
import { literalImageRefs } from '../../src/core/early-images.js';
import { startEarlySave } from '../../src/services/create-early.js';

describe('literalImageRefs', () => {
  it('takes each service image, a later file overriding an earlier one', () => {
    const docs = [{ services: { web: { image: 'shop/web:1' }, db: { image: 'postgres:16' } } }, { services: { web: { image: 'shop/web:2', ports: ['80:80'] } } }];
    expect(literalImageRefs(docs, []).sort()).toEqual(['postgres:16', 'shop/web:2']);
  });

  it('leaves out services of profiles not enabled, keeps those enabled and x-ferry\'s smoke service', () => {
    const docs = [
      {
        'x-ferry': { smoke: 'smoke' },
        services: { web: { image: 'w:1' }, debug: { image: 'd:1', profiles: ['debug'] }, extra: { image: 'e:1', profiles: ['extra'] }, smoke: { image: 's:1', profiles: ['smoke'] } },
      },
    ];
    expect(literalImageRefs(docs, ['extra']).sort()).toEqual(['e:1', 's:1', 'w:1']);
  });

  it('answers null where only Compose can tell', () => {
    expect(literalImageRefs([{ services: { web: { image: '${REPO}/web:1' } } }], [])).toBeNull();
    expect(literalImageRefs([{ services: { web: { build: '.' } } }], [])).toBeNull();
    expect(literalImageRefs([{ services: { web: { image: 'w:1', extends: { service: 'base' } } } }], [])).toBeNull();
    expect(literalImageRefs([{ include: ['other.yaml'], services: { web: { image: 'w:1' } } }], [])).toBeNull();
    expect(literalImageRefs([{ services: { web: { image: 'w:1' } } }], ['*'])).toBeNull();
    expect(literalImageRefs([{ services: 'web' }], [])).toBeNull();
    expect(literalImageRefs([{ version: '3' }], [])).toBeNull();
  });
});

/** An engine with two images whose save is a stream that records being aborted or destroyed. */
function fakeEngine() {
  const ids: Record<string, string> = { 'a:1': 'sha256:bbb', 'b:1': 'sha256:aaa' };
  const calls: { ids: string[]; signal: AbortSignal | undefined; stream: PassThrough }[] = [];
  const engine = {
    inspectImage: async (ref: string) => (ids[ref] ? ({ id: ids[ref] } as ImageDetails) : null),
    save: async (imageIds: string[], options: { signal?: AbortSignal } = {}): Promise<Readable> => {
      const stream = new PassThrough();
      calls.push({ ids: imageIds, signal: options.signal, stream });
      return stream;
    },
  } as unknown as Engine;
  return { engine, calls };
}

async function definition(compose: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-early-'));
  await writeFile(join(dir, 'ferry.yaml'), 'name: s\nversion: 1.0.0\ncompose: compose.yaml\n');
  await writeFile(join(dir, 'compose.yaml'), compose);
  return dir;
}

describe('startEarlySave', () => {
  it('saves the images the compose file names, in save order, and hands the stream over for exactly those', async () => {
    const { engine, calls } = fakeEngine();
    const early = await startEarlySave(engine, await definition('services:\n  a:\n    image: a:1\n  b:\n    image: b:1\n'), []);
    expect(early).not.toBeNull();
    expect(calls.map((c) => c.ids)).toEqual([['sha256:aaa', 'sha256:bbb']]);
    expect(early!.ids).toEqual(saveOrder(['sha256:bbb', 'sha256:aaa']));
    const stream = await early!.take(['sha256:aaa', 'sha256:bbb']);
    expect(stream).toBe(calls[0]!.stream);
    early!.cancel();
    expect(calls[0]!.signal!.aborted).toBe(false);
  });

  it('aborts the save when the images Compose resolved differ, and when create ends without taking it', async () => {
    const { engine, calls } = fakeEngine();
    const def = await definition('services:\n  a:\n    image: a:1\n  b:\n    image: b:1\n');
    const wrong = await startEarlySave(engine, def, []);
    expect(await wrong!.take(['sha256:aaa'])).toBeNull();
    expect(calls[0]!.signal!.aborted).toBe(true);
    const unused = await startEarlySave(engine, def, []);
    unused!.cancel();
    expect(calls[1]!.signal!.aborted).toBe(true);
    await new Promise((r) => setImmediate(r));
    expect(calls[1]!.stream.destroyed).toBe(true);
  });

  it('asks nothing when the files leave the images to Compose, or an image is not on the engine', async () => {
    const { engine, calls } = fakeEngine();
    expect(await startEarlySave(engine, await definition('services:\n  a:\n    image: ${A}\n'), [])).toBeNull();
    expect(await startEarlySave(engine, await definition('services:\n  a:\n    image: missing:1\n'), [])).toBeNull();
    expect(await startEarlySave(engine, join(tmpdir(), 'no-such-definition'), [])).toBeNull();
    expect(calls).toEqual([]);
  });
});
