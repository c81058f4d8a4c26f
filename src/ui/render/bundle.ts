/** Text renderings of bundle results, for people. --json output never passes through here. */
import type { CreateResult } from '../../services/create.js';
import type { InspectResult } from '../../services/inspect.js';
import type { VerifyResult } from '../../services/verify.js';
import { NO_HISTORY, shortInstruction } from '../../core/layer-history.js';
import { formatBytes, shortDigest, table } from '../format.js';

export function renderCreate(r: CreateResult): string {
  const rows = r.images.map((im) => [im.refs.join(', '), shortDigest(im.id), `${im.shipped}/${im.layers}`, formatBytes(im.size), formatBytes(im.compressedSize)]);
  return [
    `${r.bundle}`,
    `  ${r.name} ${r.version} (sequence ${r.sequence}), ${r.signed ? `signed by ${r.signer}` : 'UNSIGNED'}`,
    ...(r.bases.length ? [`  built for: ${r.bases.map((b) => b.name).join(', ')}; ${r.totals.leftOutLayers} layers (${formatBytes(r.totals.leftOutBytes)}) left out, held by every base`] : []),
    '',
    table(['IMAGE', 'ID', 'SHIPPED', 'SIZE', 'COMPRESSED'], rows, [2, 3, 4]),
    '',
    `bundle ${formatBytes(r.totals.bundleBytes)} in ${r.totals.files} files for ${formatBytes(r.totals.imageBytes)} of layers (${(r.totals.ratio * 100).toFixed(1)}%), ${(r.durationMs / 1000).toFixed(1)} s`,
    `layers: ${r.layerWork.compressed} compressed, ${r.layerWork.hashedOnly + (r.cache?.hits ?? 0)} only hashed, ${r.layerWork.skippedUnread} skipped unread${r.layerWork.deltas ? `, ${r.layerWork.deltas} shipped as delta${r.layerWork.deltas === 1 ? '' : 's'}` : ''}${r.cache ? `; layer cache ${r.cache.hits} hit${r.cache.hits === 1 ? '' : 's'} of ${r.cache.hits + r.cache.misses}` : '; no layer cache'}`,
  ].join('\n');
}

export function renderVerify(r: VerifyResult): string {
  const who = r.signer ? `signed by ${r.signer.principals.join(', ') || '?'} (${r.signer.fingerprint})` : 'UNSIGNED (accepted with --allow-unsigned)';
  return `OK ${r.name} ${r.version} (sequence ${r.sequence}): ${who}; ${r.files} files, ${formatBytes(r.bytes)} checked${r.expires ? `; expires ${r.expires}` : ''}`;
}

export function renderInspect(r: InspectResult, opts: { layers: boolean; width?: number | undefined }): string {
  const sig = r.signature;
  const signer = !sig.present
    ? 'none (UNSIGNED)'
    : `${sig.fingerprint ?? 'unreadable signature'}${sig.trusted === true ? ` — trusted: ${sig.principals.join(', ')}` : sig.trusted === false ? ` — NOT TRUSTED (${sig.code}, verify and install refuse it): ${sig.problem}` : ' — not checked (no trust file)'}`;
  const lines = [
    `bundle    ${r.bundle}`,
    `stack     ${r.name} ${r.version} (sequence ${r.sequence})`,
    `created   ${r.created} by ${r.tool}${r.expires ? `, expires ${r.expires}` : ''}`,
    `signer    ${signer}`,
    `hosts     ${r.hosts.length ? r.hosts.join(', ') : '(none defined: any host)'}`,
    ...(r.bases.length ? [`built for ${r.bases.map((b) => `${b.name} (${b.kind})`).join(', ')}: layers they all hold are assumed, not shipped`] : []),
    `services  ${r.services.map((s) => (s.name === r.smoke ? `${s.name} (smoke test)` : s.name)).join(', ')}`,
    ...(r.projectFiles.length ? [`files     ${r.projectFiles.length} project file${r.projectFiles.length > 1 ? 's' : ''} carried (${formatBytes(r.projectFiles.reduce((n, f) => n + f.size, 0))}): ${r.projectFiles.map((f) => `${f.path.replace(/^compose\/project\//, '')} (${f.kind}${f.kind === 'secret' ? ', IN THE CLEAR' : ''})`).join(', ')}`] : []),
    ...(r.ferry ? [`ferry     ./${r.ferry.path}: the ferry executable ${r.ferry.version} (${formatBytes(r.ferry.size)}, ${shortDigest(r.ferry.sha256)}), for host setup on a first visit`] : []),
    ...(r.hostPaths.length ? [`host      paths read on the host, checked at install: ${r.hostPaths.map((h) => `${h.path} (${h.excludedSecret ? 'secret left out' : h.kind} of ${h.services.join(', ') || 'the project'})`).join(', ')}`] : []),
    '',
    table(
      ['IMAGE', 'ID', 'PLATFORM', 'SHIPPED', 'ASSUMED', 'SIZE', 'COMPRESSED'],
      r.images.map((im) => {
        const shipped = im.layers.filter((l) => l.included).length;
        const deltas = im.layers.filter((l) => l.shipping === 'delta').length;
        return [im.refs.join(', ') || '(no ref)', shortDigest(im.id), im.platform, deltas ? `${shipped} (${deltas} as delta${deltas > 1 ? 's' : ''})` : String(shipped), String(im.layers.length - shipped), formatBytes(im.size), formatBytes(im.compressedSize)];
      }),
      [3, 4, 5, 6],
    ),
    ...deltaLines(r),
  ];
  if (opts.layers && r.layers) lines.push('', renderLayers(r.layers, opts.width));
  const t = r.totals;
  lines.push(
    '',
    `total     bundle ${formatBytes(t.bundleBytes)} in ${t.files} files; layers ${formatBytes(t.uniqueLayerBytes)} unique (${formatBytes(t.imageBytes)} summed over images), ${formatBytes(t.compressedBytes)} compressed (${t.uniqueLayerBytes ? ((t.compressedBytes / t.uniqueLayerBytes) * 100).toFixed(1) : '0'}%)`,
  );
  return lines.join('\n');
}

/** Each layer that travels as a delta: what it is rebuilt from on the host, and what it saves. */
function deltaLines(r: InspectResult): string[] {
  const seen = new Set<string>();
  const lines: string[] = [];
  for (const im of r.images) {
    for (const l of im.layers) {
      if (!l.delta || seen.has(l.diffId)) continue;
      seen.add(l.diffId);
      const whole = l.delta.wholeSize !== null ? `, ${formatBytes(l.delta.wholeSize)} whole: ${(100 * (1 - l.delta.size / l.delta.wholeSize)).toFixed(1)}% saved` : '';
      lines.push(`delta     layer ${shortDigest(l.diffId)} of ${im.refs[0] ?? shortDigest(im.id)} (${formatBytes(l.size)}): ${formatBytes(l.delta.size)} against ${shortDigest(l.delta.reference)} (${formatBytes(l.delta.referenceSize)}, which the host must hold)${whole}`);
    }
  }
  return lines.length ? ['', ...lines] : [];
}

/** Without a terminal (a pipe, a log) the instruction is cut here. */
const DEFAULT_INSTRUCTION_WIDTH = 60;
const HISTORY_LABEL: Record<NonNullable<InspectResult['layers']>[number]['history'], string> = {
  ok: '',
  none: NO_HISTORY,
  unmatched: '(no history entry for this layer)',
  unreadable: '(config unreadable)',
};

/** One table of every layer, biggest first; the instruction column takes what the terminal leaves. */
function renderLayers(layers: NonNullable<InspectResult['layers']>, width: number | undefined): string {
  const headers = ['SIZE', 'IN BUNDLE', 'SHIPPED', 'DIFFID', 'IMAGES', 'CREATED BY'];
  const rows = layers.map((l) => [
    formatBytes(l.size),
    l.compressedSize === null ? '-' : `${formatBytes(l.compressedSize)}${l.parts > 1 ? ` (${l.parts} parts)` : ''}`,
    l.shipping === 'delta' ? `delta vs ${shortDigest(l.delta!.reference)}` : l.shipped ? 'shipped' : 'assumed',
    shortDigest(l.diffId),
    l.images.join(', '),
  ]);
  const used = headers.slice(0, -1).reduce((n, h, i) => n + Math.max(h.length, ...rows.map((r) => r[i]!.length)) + 2, 0);
  const room = width && width > 0 ? width - used : DEFAULT_INSTRUCTION_WIDTH;
  layers.forEach((l, i) => rows[i]!.push(l.createdBy === null || l.history !== 'ok' ? HISTORY_LABEL[l.history] || NO_HISTORY : shortInstruction(l.createdBy, Math.max(20, room))));
  return `layers, biggest first:\n${table(headers, rows, [0, 1])}`;
}
