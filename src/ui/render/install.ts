/** Text renderings of install and rollback results. */
import type { InstallResult } from '../../services/install.js';
import { shortDigest } from '../format.js';

export function renderInstall(r: InstallResult): string {
  const head =
    r.outcome === 'already-current'
      ? `${r.stack} ${r.version} is already current and healthy on ${r.host}: nothing to do`
      : r.outcome === 'loaded'
        ? `${r.stack} ${r.version}: images loaded on ${r.host} (stack not switched: --no-up)`
        : `${r.stack} ${r.version} installed on ${r.host}${r.previous ? ` (previous: ${r.previous})` : ''} in ${(r.durationMs / 1000).toFixed(1)} s`;
  const images = r.images.map((i) => `  ${shortDigest(i.id)}  ${i.loaded ? 'loaded' : 'already present'}  ${i.tag}`);
  return [head, ...images, ...(r.pruned.length ? [`pruned releases: ${r.pruned.join(', ')}`] : [])].join('\n');
}
