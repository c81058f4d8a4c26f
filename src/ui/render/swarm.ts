/** What a swarm install shows: one row per node (how it was loaded), then one per service. */
import type { SwarmInventoryResult, SwarmRollbackResult, SwarmStatusResult } from '../../services/swarm-host.js';
import { renderInventory } from './host.js';
import type { SwarmInstallResult, SwarmServiceState } from '../../services/swarm.js';
import { table } from '../format.js';

export function renderSwarmServices(services: SwarmServiceState[]): string {
  const rows = services.map((s) => [
    s.service,
    s.replicas === null ? `${s.running} (global)` : `${s.running}/${s.replicas}`,
    s.pinned ? 'yes' : 'NO',
    Object.entries(s.nodes)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([n, k]) => (k > 1 ? `${n}×${k}` : n))
      .join(', ') || '-',
    s.updateState ?? '-',
  ]);
  return table(['SERVICE', 'RUNNING', 'PINNED', 'NODES', 'UPDATE'], rows);
}

export function renderSwarmInstall(r: SwarmInstallResult): string {
  const nodes = r.nodes.map((n) => [
    n.node,
    n.role,
    n.target,
    n.ok ? (n.outcome === 'loaded' ? 'loaded' : n.outcome) : `FAILED ${n.error?.code ?? ''}`.trim(),
    String(n.exitCode ?? '-'),
    `${(n.durationMs / 1000).toFixed(1)} s`,
  ]);
  const lines = [table(['NODE', 'ROLE', 'TARGET', 'LOAD', 'EXIT', 'TIME'], nodes, [4, 5])];
  for (const n of r.nodes.filter((x) => !x.ok)) lines.push('', `${n.node}: ${n.error?.message ?? 'failed'}`);
  if (r.avoided.length > 0) lines.push('', `kept off ${r.avoided.join(', ')} (--allow-partial-nodes)`);
  lines.push('', renderSwarmServices(r.services), '');
  lines.push(`${r.stack} ${r.version} ${r.outcome} on the swarm (${r.nodes.length} node${r.nodes.length === 1 ? '' : 's'})${r.previous ? `, was ${r.previous}` : ''} in ${(r.durationMs / 1000).toFixed(1)} s`);
  return lines.join('\n');
}

export function renderSwarmStatus(r: SwarmStatusResult): string {
  const lines = [
    `${r.stack}: ${r.current ? `${r.current.version} (${r.current.id}), installed ${r.current.installedAt}` : 'no current release'}; kept: ${r.releases.map((x) => x.version).join(', ') || '-'}`,
    '',
    r.services.length > 0 ? renderSwarmServices(r.services) : 'no services of this stack run on the swarm',
    '',
    table(
      ['NODE', 'ROLE', 'STATE', 'AVAILABILITY', 'ENGINE'],
      r.nodes.map((n) => [n.node, n.role, n.state, n.availability, n.engineVersion]),
    ),
  ];
  return lines.join('\n');
}

export function renderSwarmRollback(r: SwarmRollbackResult): string {
  return `${renderSwarmServices(r.services)}\n\n${r.stack} rolled back to ${r.version} on the swarm${r.from ? ` (from ${r.from})` : ''} in ${(r.durationMs / 1000).toFixed(1)} s`;
}

export function renderSwarmInventory(r: SwarmInventoryResult): string {
  if (r.written === null) return renderInventory(r);
  const nodes = table(['NODE', 'TARGET', 'IMAGES', 'LAYERS'], r.nodes.map((n) => [n.node, n.target, String(n.images), String(n.layers)]), [2, 3]);
  return `${nodes}\n\n${renderInventory(r)}; what every node of the swarm holds`;
}
