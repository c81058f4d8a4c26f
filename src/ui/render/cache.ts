import { formatBytes } from '../../core/format.js';
import type { CacheLsResult, CachePruneResult } from '../../services/cache.js';

export function renderCacheLs(r: CacheLsResult): string {
  if (!r.exists) return `${r.dir}: no layer cache yet (bundle create makes it)`;
  const last = r.runs.at(-1);
  return [
    `${r.dir}: ${formatBytes(r.bytes)} in ${r.entries} entr${r.entries === 1 ? 'y' : 'ies'}`,
    ...r.settings.map((s) => `  ${s.tag}: ${s.entries} (${formatBytes(s.bytes)})`),
    r.hitRate === null ? 'hit rate: no create has used it yet' : `hit rate of the last ${r.runs.length} create${r.runs.length === 1 ? '' : 's'}: ${(r.hitRate * 100).toFixed(0)}%${last ? ` (last, ${last.at}: ${last.hits} hit${last.hits === 1 ? '' : 's'}, ${last.misses} compressed)` : ''}`,
  ].join('\n');
}

export function renderCachePrune(r: CachePruneResult): string {
  return `${r.dir}: removed ${r.removedEntries} entr${r.removedEntries === 1 ? 'y' : 'ies'} (${formatBytes(r.removedBytes)}); ${r.entries} left (${formatBytes(r.bytes)})`;
}
