/**
 * `ferry bundle inspect --layers` through the built CLI, on bundles made on Docker 20.10 (classic
 * store) and on Docker 26 with the containerd image store: each layer is named by the build
 * instruction that made it, biggest first, shipped or assumed. What the engine itself says about
 * the image (its RootFS layers) is the independent truth the rows are checked against.
 */
import { cp, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ferry, ROOT, run, tmpDir, uniqueName, type DockerClient, type RunResult } from '../support/engines.js';

interface Row {
  diffId: string;
  size: number;
  compressedSize: number | null;
  shipped: boolean;
  images: string[];
  createdBy: string | null;
  history: string;
}

const docker = (host: string): DockerClient => ({ host, run: (args, opts = {}) => run('docker', args, { ...opts, env: { ...opts.env, DOCKER_HOST: host, DOCKER_CONTEXT: '' } }) });
const doc = (r: RunResult) => JSON.parse(r.stdout) as { ok: boolean; result: { layers: Row[] }; warnings: { code: string }[] };

/** 3 MB of random bytes: bigger than the base's busybox layer (about 2 MB), and incompressible. */
const BIG_RUN = 'head -c 3000000 /dev/urandom > /big.bin';

const ENGINES = [
  { name: 'Docker 20.10 (classic store)', host: () => process.env.FERRY_BUILD_DOCKER_HOST!, baseVersion: null as string | null },
  { name: 'Docker 26 (containerd image store)', host: () => process.env.FERRY_D26C_DOCKER_HOST!, baseVersion: '2.6.9-layers' },
];

describe.each(ENGINES)('inspect --layers on a bundle made on $name', (e) => {
  let work: string;
  let engine: DockerClient;
  let base: string;
  let app: string;
  /** The app image's layers as the engine reports them. */
  let layers: string[];
  let full: string;
  let delta: string;
  const env = () => ({ DOCKER_HOST: e.host() });

  async function definition(name: string, image: string): Promise<string> {
    const dir = join(work, `def-${name}`);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'ferry.yaml'), `name: ${name}\nversion: 1.0.0\ncompose: compose.yaml\n`);
    await writeFile(join(dir, 'compose.yaml'), `services:\n  app:\n    image: ${image}\n`);
    return dir;
  }

  async function create(def: string, out: string, extra: string[] = []): Promise<string> {
    const path = join(work, out);
    const r = await ferry(['bundle', 'create', def, '--out', path, '--sequence', '1', ...extra], { env: env(), timeoutMs: 300_000 });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    return path;
  }

  beforeAll(async () => {
    work = await tmpDir('ferry-layers-');
    engine = docker(e.host());
    base = 'ferry-demo/base:1.0.0';
    if (e.baseVersion) {
      // The 20.10 build engine has the demo images from global setup; this engine builds its own.
      const built = await run('bash', [join(ROOT, 'scripts/build-demo-images.sh'), '--version', e.baseVersion], { env: env(), timeoutMs: 300_000 });
      expect(built.code, built.stderr).toBe(0);
    }
    app = `ferry-test/${uniqueName('layers')}:1`;
    const ctx = join(work, 'ctx');
    await mkdir(ctx, { recursive: true });
    await writeFile(join(ctx, 'note.txt'), 'where does the size come from?\n');
    await writeFile(join(ctx, 'Dockerfile'), `FROM ${base}\nRUN ${BIG_RUN}\nENV MARK=layers\nLABEL purpose=inspect-layers\nCOPY note.txt /note.txt\n`);
    const b = await engine.run(['build', '-q', '-t', app, ctx], { env: { DOCKER_BUILDKIT: '0' }, timeoutMs: 300_000 });
    expect(b.code, b.stderr).toBe(0);
    layers = JSON.parse((await engine.run(['image', 'inspect', '--format', '{{json .RootFS.Layers}}', app])).stdout) as string[];
    // busybox COPY, busybox --install, rootfs COPY; then RUN and COPY (ENV and LABEL make none).
    expect(layers).toHaveLength(5);
    full = await create(await definition('layersfull', app), 'full.ferry');
    const baseBundle = await create(await definition('layersbase', base), 'base.ferry');
    delta = await create(await definition('layersdelta', app), 'delta.ferry', ['--base', baseBundle]);
  }, 600_000);

  it('names each layer by the instruction that made it, biggest first, with the full text in --json', async () => {
    const r = await ferry(['bundle', 'inspect', full, '--layers', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const rows = doc(r).result.layers;
    expect(rows.map((x) => x.diffId).sort()).toEqual([...layers].sort());
    const sizes = rows.map((x) => x.size);
    expect(sizes).toEqual([...sizes].sort((a, b) => b - a));
    const by = (diffId: string) => rows.find((x) => x.diffId === diffId)!;
    // The RUN layer is the biggest, and its instruction is the one the Dockerfile gave.
    expect(rows[0]!.diffId).toBe(layers[3]);
    expect(rows[0]!.createdBy).toContain(BIG_RUN);
    expect(rows[0]!.size).toBeGreaterThanOrEqual(3_000_000);
    // ENV and LABEL made no layer: the COPY after them still pairs with the last layer.
    expect(by(layers[4]!).createdBy).toMatch(/COPY .*\/note\.txt/);
    expect(by(layers[0]!).createdBy).toMatch(/COPY .*\/bin\/busybox/);
    expect(by(layers[1]!).createdBy).toContain('/bin/busybox --install -s /bin');
    // --json carries the text in full, shell wrapper and all.
    expect(by(layers[0]!).createdBy).toMatch(/^\/bin\/sh -c #\(nop\) +COPY file:[0-9a-f]{64} in \/bin\/busybox/);
    for (const row of rows) expect(row).toMatchObject({ shipped: true, history: 'ok', images: [app] });

    const text = await ferry(['bundle', 'inspect', full, '--layers']);
    expect(text.code, text.stderr).toBe(0);
    const table = text.stdout.slice(text.stdout.indexOf('layers, biggest first:')).split('\n');
    expect(table[1]).toMatch(/^\s*SIZE\s+IN BUNDLE\s+SHIPPED\s+DIFFID\s+IMAGES\s+CREATED BY$/);
    expect(table[2]).toContain(layers[3]!.slice(7, 19));
    expect(table[2]).toMatch(/shipped .* head -c 3000000 \/dev\/urandom > \/big\.bin$/);
    // Shortened: no shell wrapper, the COPY source digest cut so the destination shows.
    const busybox = table.find((l) => l.includes(layers[0]!.slice(7, 19)))!;
    expect(busybox).toMatch(/ COPY file:[0-9a-f]{12} in \/bin\/busybox$/);
    expect(busybox).not.toContain('/bin/sh -c');
  });

  it('marks the layers --base left out as assumed, still biggest first', async () => {
    const r = await ferry(['bundle', 'inspect', delta, '--layers', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const rows = doc(r).result.layers;
    expect(rows.map((x) => x.diffId)).toEqual([layers[3], layers[0], layers[1], ...rows.slice(3).map((x) => x.diffId)]);
    const by = (diffId: string) => rows.find((x) => x.diffId === diffId)!;
    for (const i of [0, 1, 2]) expect(by(layers[i]!), `layer ${i}`).toMatchObject({ shipped: false, compressedSize: null });
    for (const i of [3, 4]) expect(by(layers[i]!).shipped, `layer ${i}`).toBe(true);
    expect(by(layers[3]!).compressedSize).toBeGreaterThan(2_900_000);
    expect(by(layers[0]!).createdBy).toMatch(/COPY .*\/bin\/busybox/);

    const text = await ferry(['bundle', 'inspect', delta, '--layers']);
    const line = (diffId: string) => text.stdout.split('\n').find((l) => l.includes(diffId.slice(7, 19)))!;
    expect(line(layers[0]!)).toMatch(/^\s*\S+ \S+\s+-\s+assumed\s/);
    expect(line(layers[3]!)).toMatch(/\sshipped\s/);
  });

  it('a config that does not match the manifest: layers without instructions, a warning, exit 0', async () => {
    const copy = join(work, 'damaged.ferry');
    await cp(full, copy, { recursive: true });
    const m = JSON.parse(await readFile(join(copy, 'ferry.json'), 'utf8')) as { images: { config: { path: string } }[] };
    const config = join(copy, m.images[0]!.config.path);
    await writeFile(config, (await readFile(config, 'utf8')).replace('/big.bin', '/BIG.bin'));
    const r = await ferry(['bundle', 'inspect', copy, '--layers', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const d = doc(r);
    expect(d.warnings.map((w) => w.code)).toContain('CONFIG_UNREADABLE');
    for (const row of d.result.layers) expect(row).toMatchObject({ createdBy: null, history: 'unreadable' });
    const text = await ferry(['bundle', 'inspect', copy, '--layers']);
    expect(text.stdout).toContain('(config unreadable)');
    expect(text.stdout).not.toContain('/BIG.bin');
    expect(text.stderr).toMatch(/CONFIG_UNREADABLE|cannot be read/);
  });
});
