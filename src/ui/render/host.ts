/** Text renderings of host results, for people. --json output never passes through here. */
import { serializeInventory } from '../../core/inventory.js';
import type { InventoryResult } from '../../services/inventory.js';
import type { FleetStatusResult, StatusResult } from '../../services/status.js';
import { formatBytes, shortDigest, table } from '../format.js';

/**
 * Without --out the document itself is the output, so `ferry host inventory > host.json` works;
 * with --out a one-line summary says what went where.
 */
export function renderInventory(r: InventoryResult): string {
  if (r.written === null) return serializeInventory(r.inventory);
  const inv = r.inventory;
  const e = inv.engine;
  const stacks = inv.releases.length;
  return (
    `wrote ${r.written}: ${inv.images.length} images, ${inv.layers.length} layers, ` +
    `engine ${e.podman ? 'Podman' : 'Docker'} ${e.serverVersion} (API ${e.apiVersion}, ${e.storageDriver}${e.containerdStore ? ', containerd store' : ''}, ${e.os}/${e.architecture}), ` +
    `${stacks} stack${stacks === 1 ? '' : 's'} installed`
  );
}

export function renderStatus(r: StatusResult): string {
  const disks = r.disks.length
    ? table(
        ['ROOM', 'PATH', 'FREE', 'FREE INODES', ''],
        r.disks.map((d) => [d.what, d.path, `${formatBytes(d.freeBytes)} (${pct(d.freeBytes, d.totalBytes)})`, `${d.freeInodes} (${pct(d.freeInodes, d.totalInodes)})`, d.low ? 'LOW' : '']),
        [2, 3],
      )
    : '';
  if (r.stacks.length === 0) return [`no stacks installed (state directory ${r.stateDir})`, disks].filter(Boolean).join('\n\n');
  return [...r.stacks.map(renderStack), disks].filter(Boolean).join('\n\n');
}

const pct = (part: number, whole: number) => (whole > 0 ? `${((part / whole) * 100).toFixed(0)}%` : '?');

function renderStack(s: StatusResult['stacks'][number]): string {
  const c = s.current;
  const signer = c?.signer ? `${c.signer.principals.join(', ') || '?'} (${c.signer.fingerprint})` : 'unsigned';
  const lines = [
    `stack     ${s.stack}`,
    c ? `current   ${c.version} (release ${c.id}, sequence ${c.sequence}${c.colour ? `, live colour ${c.colour}` : ''}), installed ${c.installedAt}, signed by ${signer}` : 'current   none',
  ];
  if (s.releases.length > 0) {
    lines.push(
      '',
      table(
        ['', 'RELEASE', 'VERSION', 'SEQUENCE', 'INSTALLED', 'RESULT'],
        s.releases.map((r) => [r.current ? '*' : '', r.id, r.version, String(r.sequence), r.installedAt, r.result]),
        [3],
      ),
    );
  }
  if (s.reclaimable.releases > 0) {
    lines.push(`prunable  ${s.reclaimable.releases} older release${s.reclaimable.releases > 1 ? 's' : ''}, ${s.reclaimable.images} image${s.reclaimable.images === 1 ? '' : 's'} no current service uses (${formatBytes(s.reclaimable.bytes)} as the engine counts them): install --keep 1 frees them`);
  }
  lines.push('');
  if (s.services.length === 0) {
    lines.push('no containers');
  } else {
    lines.push(
      table(
        ['SERVICE', 'CONTAINER', 'STATE', 'HEALTH', 'IMAGE', 'PINNED'],
        s.services.map((v) => [
          v.oneOff ? `${v.service} (run)` : v.service,
          v.name ?? '-',
          v.exitCode !== null && v.state !== 'missing' ? `${v.state} (${v.exitCode})` : v.state,
          v.health,
          v.imageId ? shortDigest(v.imageId) : '-',
          v.imageMatches === null ? (v.expectedImageId ? `expects ${shortDigest(v.expectedImageId)}` : '-') : v.imageMatches ? 'yes' : `NO: expects ${shortDigest(v.expectedImageId ?? '')}`,
        ]),
      ),
    );
  }
  return lines.join('\n');
}

/** Several hosts: one table, a row per host, stack and service; a host that failed is one row with its code. */
export function renderFleetStatus(r: FleetStatusResult, stack: string | undefined): string {
  const rows: string[][] = [];
  for (const h of r.hosts) {
    if (!h.ok || !h.status) {
      rows.push([h.target, '-', '-', '-', '-', `FAILED ${h.error?.code ?? '?'}`, '']);
      continue;
    }
    if (h.status.stacks.length === 0) {
      rows.push([h.target, stack ?? '-', '-', '-', '-', h.stackMissing ? 'not installed' : 'no stacks installed', '']);
      continue;
    }
    for (const s of h.status.stacks) {
      const release = s.current?.version ?? 'none';
      if (s.services.length === 0) rows.push([h.target, s.stack, release, '-', '-', 'no containers', '']);
      for (const v of s.services) {
        rows.push([
          h.target,
          s.stack,
          release,
          v.oneOff ? `${v.service} (run)` : v.service,
          v.imageMatches === null ? '-' : v.imageMatches ? 'yes' : 'NO',
          v.exitCode !== null && v.state !== 'missing' ? `${v.state} (${v.exitCode})` : v.state,
          v.health,
        ]);
      }
    }
  }
  const failed = r.hosts.filter((h) => !h.ok);
  const lines = [table(['HOST', 'STACK', 'RELEASE', 'SERVICE', 'PINNED', 'STATE', 'HEALTH'], rows)];
  for (const h of failed) lines.push('', `${h.target}: ${h.error?.message ?? 'failed'}`, ...(h.error?.hint ? [`  ${h.error.hint}`] : []));
  const low = r.hosts.flatMap((h) => (h.status?.disks ?? []).filter((d) => d.low).map((d) => `${h.target}: ${d.what} ${d.path} LOW (${formatBytes(d.freeBytes)}, ${d.freeInodes} inodes free)`));
  if (low.length) lines.push('', ...low);
  lines.push('', `${r.hosts.length - failed.length} of ${r.hosts.length} hosts read in ${(r.durationMs / 1000).toFixed(1)} s`);
  return lines.join('\n');
}
