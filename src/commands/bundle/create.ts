import { availableParallelism } from 'node:os';
import { Args, Flags } from '@oclif/core';
import { Engine } from '../../adapters/engine.js';
import { defaultLayerCacheDir } from '../../adapters/layer-cache.js';
import { DEFAULT_CACHE_MAX } from '../../core/layer-cache.js';
import { defaultExecutable } from '../../adapters/tool-version.js';
import { DEFAULT_MAX_PART_SIZE } from '../../core/manifest.js';
import { createBundle, type CreateResult } from '../../services/create.js';
import { FerryCommand } from '../../ui/base-command.js';
import { parseExpiry, parseSize } from '../../ui/flags.js';
import { exitOnInterrupt } from '../../ui/interrupt.js';
import { renderCreate } from '../../ui/render/bundle.js';
import { HOST_SECRETS_DIR } from '../../services/project.js';

export default class BundleCreate extends FerryCommand {
  static override summary = 'Save a compose stack\'s tested images into a signed bundle directory.';
  static override description = FerryCommand.describe(`Reads the bundle definition (DEFINITION/ferry.yaml) and asks this machine's Compose for the
project's resolved model (\`config\`): its compose files in order, .env and env_files
interpolation, extends, include, anchors and profiles, exactly as Compose reads them. A
variable that is unset is refused (exit 10): per-host values belong in host overrides.

Pins every image the model names by image ID on the local engine (DOCKER_HOST is honoured); a
service with build: and no image: runs the image Compose tagged for it (PROJECT-SERVICE), which
must be built already. Exports them all in one engine save and streams each layer through
sha256 and zstd into a content-addressed blob.

Carries the project files the stack reads: relative bind mount sources (files and
directories), secrets and configs files, signed like every file and staged on the host; the
model the host runs points at those copies. A path that does not exist is refused here rather
than becoming an empty directory on the host. Absolute paths stay host paths: inspect lists
them and install checks they exist (exit 6). Secret files travel in the clear and are warned
about (SECRET_IN_BUNDLE); --exclude-secrets leaves them out.

Writes each host's override beside it, a manifest listing the size and sha256 of every file,
and an OpenSSH signature of that manifest (namespace "ferry-bundle"). The bundle is also a
valid OCI image layout, so skopeo can read it.

The bundle is built in a temporary sibling directory and renamed into place only when
complete: an interrupted create never leaves a bundle that looks whole.

Before saving, the output medium's free space is compared with what the bundle will need
(the layers still to ship at a zstd ratio of one half): too little is refused (exit 10,
NO_SPACE_ON_OUTPUT, needed vs free and the mount point) unless --force. A write that fails on
the medium ends in exit 10 with a code per cause (NO_SPACE_ON_OUTPUT, OUTPUT_READ_ONLY,
OUTPUT_IO_ERROR, OUTPUT_GONE, OUTPUT_FILE_TOO_BIG, OUTPUT_NOT_WRITABLE), the file being written
and the bytes written so far; the partial directory is removed, or named when it cannot be.

No file is larger than --max-part-size (default just under 4 GiB, FAT32's limit):
a bigger layer blob is cut into parts, each with its own digest.

With --base, layers that every base holds (matched by chain ID) are left out; the manifest
records the chain ID each host must have, and install checks it before loading anything.

With --base, a changed layer may also travel as a delta against a layer every base holds (the
same repository's previous image, same position first): the tar entries it shares with that
layer are copied from it on the host, only new bytes travel. Deltas are made where they pay (at
most half the whole blob) and rebuilt here once, byte for byte, before the bundle carries them.
The reference's bytes come from the layer cache, a --base bundle, or an image on this engine;
where none has them the layer ships whole (-v says why). --no-delta ships changed layers whole.

A layer cache on this machine ($XDG_CACHE_HOME/ferry or ~/.cache/ferry; --cache DIR,
--no-cache) keeps each compressed layer by diffID and compressor settings, and remembers what
earlier saves named each layer. A layer known before it is read (cached, or held by every base)
is only hashed on its way through, never compressed; its cached blob is checked by digest as it
is copied in. The bundle is byte for byte the one a create without the cache makes. A guess the
hash contradicts is repaired by a second save of the images holding that layer
(LAYER_GUESS_WRONG); a damaged cache entry is dropped and compressed again
(CACHE_ENTRY_CORRUPT). See \`ferry cache ls\` and \`ferry cache prune\`.`);

  static override examples = [
    { description: 'Create and sign the demo bundle', command: '<%= config.bin %> bundle create bundles/demo --out /media/usb/demo-1.0.0.ferry --sign-key ~/.ssh/ferry_ed25519' },
    { description: 'A fast, larger bundle with an explicit version', command: '<%= config.bin %> bundle create bundles/shop --out shop.ferry --version 1.4.2 --level 1 --sign-key k' },
    { description: 'Only what edge-1 and edge-2 lack (their inventories came back on the stick)', command: '<%= config.bin %> bundle create bundles/shop --out shop-1.4.3.ferry --base edge-1.json --base edge-2.json --sign-key k' },
    { description: 'No inventory at hand: assume the host installed the previous bundle', command: '<%= config.bin %> bundle create bundles/shop --out shop-1.4.3.ferry --base shop-1.4.2.ferry --sign-key k' },
    { description: 'Machine-readable result', command: '<%= config.bin %> bundle create bundles/demo --out demo.ferry --sign-key k --json | jq .result.totals' },
  ];

  static override args = {
    definition: Args.string({ description: 'bundle definition directory (holding ferry.yaml) or the ferry.yaml file', required: true }),
  };

  static override flags = {
    out: Flags.string({ char: 'o', description: 'directory to create (must not exist), e.g. /media/usb/shop-1.4.2.ferry', required: true }),
    'sign-key': Flags.string({ description: 'OpenSSH ed25519 private key to sign with (see `ferry keys generate`); without it the bundle is unsigned', env: 'FERRY_SIGN_KEY' }),
    version: Flags.string({ description: 'release version; default: ferry.yaml\'s, else from git (tag-commits-gsha), else a timestamp' }),
    sequence: Flags.integer({ description: 'monotonic release number hosts use to refuse downgrades; default: creation time in Unix seconds', min: 0 }),
    expires: Flags.string({ description: 'hosts refuse the bundle after this date (2027-01-31) or duration (90d, 12h, 2w)' }),
    level: Flags.integer({ description: 'zstd compression level (1 fastest … 19 smallest)', default: 3, min: 1, max: 19 }),
    workers: Flags.integer({ description: 'zstd worker threads; default: the number of CPUs', min: 0, max: 64 }),
    base: Flags.string({
      description: 'what the targets hold: a host inventory (ferry host inventory --out) or a previous bundle directory; repeatable — a layer is left out only when every base holds it',
      multiple: true,
    }),
    'max-part-size': Flags.string({ description: 'largest file in the bundle; larger blobs are split (bytes or K/M/G)', default: String(DEFAULT_MAX_PART_SIZE) }),
    profile: Flags.string({ description: 'enable this Compose profile, besides those ferry.yaml lists (repeatable), as `docker compose --profile`', multiple: true }),
    'exclude-secrets': Flags.boolean({
      description: `leave the project's secret files out of the bundle (bundles are signed, not encrypted); each host must then hold them under ${HOST_SECRETS_DIR}/STACK/, which install checks`,
      default: false,
    }),
    'compose-cmd': Flags.string({ description: 'the Compose that reads the project, e.g. "docker compose" or "docker-compose" (default: v2 when present, else v1)' }),
    force: Flags.boolean({ description: 'write even when the output medium looks too small for the bundle (see NO_SPACE_ON_OUTPUT)', default: false }),
    verbose: Flags.boolean({ char: 'v', description: 'a line per layer on stderr: its diffID, the images holding it, its size, shipped (compressed size) or left out', default: false }),
    'with-ferry': Flags.boolean({
      description: 'carry the ferry executable in the bundle (./ferry on the stick; listed and signed like any file): the running one, or under node the one npm run package built. Left out when every --base is an inventory taken with that same executable',
      default: false,
    }),
    'ferry-executable': Flags.string({ description: 'the ferry executable to carry (implies --with-ferry)' }),
    cache: Flags.string({ description: 'the layer cache directory (default $XDG_CACHE_HOME/ferry, else ~/.cache/ferry)', exclusive: ['no-cache'] }),
    'no-cache': Flags.boolean({ description: 'use no layer cache: every shipped layer is compressed, nothing is remembered', default: false }),
    'cache-max': Flags.string({ description: 'after the create, evict least recently used cache entries until the cache holds at most this much (bytes or K/M/G)', default: DEFAULT_CACHE_MAX }),
    delta: Flags.boolean({
      description: 'with --base, ship a changed layer as a delta against a layer every base holds where that pays (--no-delta: whole)',
      default: true,
      allowNo: true,
    }),
    'from-save': Flags.boolean({
      description: "read the images from a docker save even when the engine's layer store is on this machine (by default, a classic overlay2 store there is read directly: the same bytes, no export)",
      default: false,
    }),
    strict: Flags.boolean({
      description: 'every warning refuses the bundle (exit 10, STRICT_WARNINGS, nothing written): setuid files, no memory limit, no health check, unsigned, …; ferry.yaml\'s strict: true does the same',
      default: false,
    }),
  };

  async run(): Promise<CreateResult> {
    const { args, flags } = await this.parse(BundleCreate);
    const result = await createBundle(
      {
        definition: args.definition,
        out: flags.out,
        version: flags.version,
        sequence: flags.sequence,
        signKey: flags['sign-key'],
        level: flags.level,
        workers: flags.workers ?? availableParallelism(),
        maxPartSize: parseSize('--max-part-size', flags['max-part-size']),
        expires: flags.expires ? parseExpiry('--expires', flags.expires) : undefined,
        bases: flags.base ?? [],
        profiles: flags.profile ?? [],
        excludeSecrets: flags['exclude-secrets'],
        composeCmd: flags['compose-cmd'],
        force: flags.force,
        verbose: flags.verbose,
        withFerry: flags['ferry-executable'] ?? (flags['with-ferry'] ? defaultExecutable() : null),
        strict: flags.strict,
        delta: flags.delta,
        fromSave: flags['from-save'],
        cache: flags['no-cache'] ? null : { dir: flags.cache ?? defaultLayerCacheDir(), max: parseSize('--cache-max', flags['cache-max']) },
        // SIGINT/SIGTERM while the bundle is written: remove the partial directory, exit 130.
        onInterrupt: exitOnInterrupt,
      },
      new Engine(undefined, undefined, { warn: (w) => this.out.warn(w) }),
      this.out,
    );
    this.out.result(renderCreate(result));
    return result;
  }
}
