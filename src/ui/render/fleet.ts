/** The summary of a fleet install: one row per host, then what went wrong where. */
import type { FleetResult } from '../../services/fleet.js';
import { table } from '../format.js';

export function renderFleet(r: FleetResult): string {
  const rows = r.hosts.map((h) => [
    h.target,
    h.host ?? '-',
    h.outcome === 'failed' ? `FAILED ${h.error?.code ?? ''}`.trim() : h.outcome === 'skipped' ? 'not started' : `${h.outcome} ${h.result?.version ?? ''}`.trim(),
    h.exitCode === null ? '-' : String(h.exitCode),
    h.outcome === 'skipped' ? '-' : `${(h.durationMs / 1000).toFixed(1)} s`,
  ]);
  const ok = r.hosts.filter((h) => h.ok).length;
  const lines = [table(['TARGET', 'HOST', 'RESULT', 'EXIT', 'TIME'], rows, [3, 4])];
  const failures = r.hosts.filter((h) => h.outcome === 'failed');
  if (failures.length > 0) {
    lines.push('');
    for (const h of failures) {
      lines.push(`${h.target}: ${h.error?.message ?? 'failed'}`);
      if (h.error?.hint) lines.push(`  ${h.error.hint.replace(/\n/g, '\n  ')}`);
    }
  }
  lines.push('', `${ok} of ${r.hosts.length} hosts ok in ${(r.durationMs / 1000).toFixed(1)} s (up to ${r.parallel} at a time)`);
  return lines.join('\n');
}
