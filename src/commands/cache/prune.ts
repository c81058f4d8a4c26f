import { Flags } from '@oclif/core';
import { defaultLayerCacheDir } from '../../adapters/layer-cache.js';
import { pruneCache, type CachePruneResult } from '../../services/cache.js';
import { FerryCommand } from '../../ui/base-command.js';
import { parseSize } from '../../ui/flags.js';
import { renderCachePrune } from '../../ui/render/cache.js';
import { UsageError } from '../../errors.js';

export default class CachePrune extends FerryCommand {
  static override summary = 'Shrink the layer cache: least recently used entries first, or all of it.';
  static override description = FerryCommand.describe(`With --max SIZE, removes the least recently used entries (by the last create that used them)
until the cache holds at most SIZE; with --all, empties it (entries, remembered layer names,
hit counts). Safe while a create runs: it copies each blob whole into its bundle or not at all,
and a blob it misses is compressed again.`);

  static override examples = [
    { description: 'Keep at most 5 GB', command: '<%= config.bin %> <%= command.id %> --max 5G' },
    { description: 'Empty the cache', command: '<%= config.bin %> <%= command.id %> --all' },
  ];

  static override flags = {
    cache: Flags.string({ description: 'the layer cache directory (default $XDG_CACHE_HOME/ferry, else ~/.cache/ferry)' }),
    max: Flags.string({ description: 'evict least recently used entries until the cache holds at most this much (bytes or K/M/G)', exclusive: ['all'] }),
    all: Flags.boolean({ description: 'remove everything', default: false }),
  };

  async run(): Promise<CachePruneResult> {
    const { flags } = await this.parse(CachePrune);
    const dir = flags.cache ?? defaultLayerCacheDir();
    const max = flags.max === undefined ? undefined : parseSize('--max', flags.max);
    if (max === undefined && !flags.all) throw new UsageError('BAD_FLAG', 'ferry cache prune needs --max SIZE or --all');
    const result = await pruneCache(dir, max === undefined ? { all: true } : { max });
    this.out.result(renderCachePrune(result));
    return result;
  }
}
