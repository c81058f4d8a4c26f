import { Flags } from '@oclif/core';
import { defaultLayerCacheDir } from '../../adapters/layer-cache.js';
import { listCache, type CacheLsResult } from '../../services/cache.js';
import { FerryCommand } from '../../ui/base-command.js';
import { renderCacheLs } from '../../ui/render/cache.js';

export default class CacheLs extends FerryCommand {
  static override summary = 'Show the build server\'s layer cache: size, entries, and the hit rate of the last creates.';
  static override description = FerryCommand.describe(`The layer cache keeps the compressed blob of every layer bundle create shipped, by diffID
and compressor settings (level, single- or multi-threaded), so the next create copies it
instead of compressing again. Lists the cache's size and entries per compressor settings and,
for the last creates that used it, their cache hits and misses.`);

  static override examples = [
    { description: 'The default cache', command: '<%= config.bin %> <%= command.id %>' },
    { description: 'Hit rate as a number', command: '<%= config.bin %> <%= command.id %> --json | jq .result.hitRate' },
  ];

  static override flags = {
    cache: Flags.string({ description: 'the layer cache directory (default $XDG_CACHE_HOME/ferry, else ~/.cache/ferry)' }),
  };

  async run(): Promise<CacheLsResult> {
    const { flags } = await this.parse(CacheLs);
    const result = await listCache(flags.cache ?? defaultLayerCacheDir());
    this.out.result(renderCacheLs(result));
    return result;
  }
}
