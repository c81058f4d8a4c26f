/** `bundle diff` as text, for the people who review a change. --json carries the whole result. */
import { formatHunks } from '../../core/line-diff.js';
import type { LayerFile } from '../../core/tar-files.js';
import type { DiffBundleSide, DiffImage, DiffInventorySide, DiffLayer, DiffResult, SignatureVerdict } from '../../services/diff.js';
import type { TextDiff } from '../../core/bundle-diff.js';
import { formatBytes, shortDigest } from '../format.js';

/** File lines shown per layer; the rest are counted ("… and N more"), --json has them all. */
export const TEXT_FILES_PER_LAYER = 200;

export function renderDiff(r: DiffResult, opts: { filesPerLayer?: number } = {}): string {
  const perLayer = opts.filesPerLayer ?? TEXT_FILES_PER_LAYER;
  const s = r.summary;
  const lines = [
    `old  ${side(r.old)}`,
    `new  ${side(r.new)}`,
    '',
    `images  ${counts(s.images)}`,
    `layers  ${counts(s.layers)}`,
    `files   ${s.files.added} added, ${s.files.changed} changed, ${s.files.removed} removed in the layers compared${s.truncated ? ' (some lists cut at their limit)' : ''}`,
  ];
  for (const im of r.images) lines.push('', ...image(im, r.old.kind === 'inventory', perLayer));
  lines.push('');
  if (!r.compose) {
    lines.push(`compose: not compared: ${r.composeUnknown}`);
  } else {
    const c = r.compose;
    lines.push(...textDiff('compose', c.file));
    for (const h of c.hosts) {
      lines.push('', `host ${h.host}: ${h.status === 'added' ? 'added (a new host override)' : h.status === 'removed' ? 'removed (no override for it any more)' : h.status}`);
      for (const f of h.files) if (f.status !== 'unchanged') lines.push(...textDiff('  file', f));
    }
    if (c.projectFiles.length || c.projectFilesUnchanged) {
      lines.push('', `project files: ${c.projectFiles.length} differ, ${c.projectFilesUnchanged} unchanged`);
      for (const p of c.projectFiles) {
        const mark = p.status === 'added' ? '+' : p.status === 'removed' ? '-' : '~';
        const what = p.status === 'changed' ? `${formatBytes(p.old!.size)} → ${formatBytes(p.new!.size)}, sha256 ${shortDigest(p.old!.sha256)} → ${shortDigest(p.new!.sha256)}` : `${formatBytes((p.new ?? p.old)!.size)}, sha256 ${shortDigest((p.new ?? p.old)!.sha256)}`;
        lines.push(`  ${mark} ${p.path} (${p.kind}${p.kind === 'secret' ? ', IN THE CLEAR' : ''}): ${what}`);
      }
    }
  }
  return lines.join('\n');
}

function side(s: DiffBundleSide | DiffInventorySide): string {
  if (s.kind === 'inventory') {
    const stacks = s.stacks.length ? `; runs ${s.stacks.map((x) => `${x.stack} ${x.current ?? '(none current)'}`).join(', ')}` : '';
    return `inventory of host ${s.host} (${s.path}), taken ${s.created}${stacks}`;
  }
  return `${s.name} ${s.version} (sequence ${s.sequence}), created ${s.created}, ${s.path}\n     signer ${signer(s.signature)}`;
}

function signer(sig: SignatureVerdict): string {
  if (!sig.present) return sig.trusted === false ? `none (UNSIGNED: ${sig.code}, verify and install refuse it)` : 'none (UNSIGNED, accepted with --allow-unsigned)';
  const who = sig.fingerprint ?? 'unreadable signature';
  if (sig.trusted === true) return `${who} — trusted: ${sig.principals.join(', ')}`;
  if (sig.trusted === false) return `${who} — NOT TRUSTED (${sig.code}, verify and install refuse it): ${sig.problem}`;
  return `${who} — not checked (no trust file)`;
}

function counts(c: { unchanged: number; changed: number; added: number; removed: number }): string {
  return `${c.changed} changed, ${c.added} added, ${c.removed} removed, ${c.unchanged} unchanged`;
}

function name(i: { refs: string[]; id: string } | null): string {
  return i ? i.refs[0] ?? shortDigest(i.id) : '?';
}

function image(im: DiffImage, inventory: boolean, perLayer: number): string[] {
  const services = (im.new ?? im.old)!.services;
  const svc = services.length ? ` (service${services.length > 1 ? 's' : ''} ${services.join(', ')})` : '';
  const names = name(im.old) === name(im.new) ? name(im.new) : `${name(im.old)} → ${name(im.new)}`;
  const title = im.status === 'added' ? `image ${name(im.new)}${svc}: added` : im.status === 'removed' ? `image ${name(im.old)}${svc}: removed` : `image ${names}${svc}: ${im.status}`;
  const heldNote = im.held === null ? '' : im.held ? ' — the host holds it already' : '';
  const out = [`${title}${heldNote}`];
  if (im.status === 'unchanged') return [`${title} (${shortDigest(im.new!.id)})${heldNote}`];
  out.push(`  id      ${im.old ? im.old.id : '(none)'} → ${im.new ? im.new.id : '(none)'}`);
  out.push(`  layers  ${counts(im.counts)}${inventory ? `; ${im.layers.filter((l) => l.held).length} of ${im.layers.filter((l) => l.newDiffId).length} held by the host` : ''}`);
  for (const l of im.layers) if (l.status !== 'unchanged') out.push(...layer(l, inventory, perLayer));
  return out;
}

const SHIPPING: Record<string, string> = { whole: 'shipped whole', delta: 'shipped as a delta', assumed: 'assumed on the host' };

function layer(l: DiffLayer, inventory: boolean, perLayer: number): string[] {
  const ids = l.status === 'changed' ? `${shortDigest(l.oldDiffId!)} → ${shortDigest(l.newDiffId!)}` : shortDigest((l.newDiffId ?? l.oldDiffId)!);
  const how = l.shipping ? `, ${SHIPPING[l.shipping]}${l.shipping === 'delta' ? ` against ${shortDigest(l.reference!)}` : ''}` : '';
  const held = inventory && l.held !== null ? (l.held ? ', held by the host' : ', not on the host') : '';
  const out = [`  layer ${l.index + 1} ${l.status}: ${ids} (${formatBytes(l.size)}${how}${held})`];
  if (l.filesUnavailable) out.push(`    files: ${l.filesUnavailable}`);
  const f = l.files;
  if (!f) return out;
  const basis =
    f.basis === 'old-layer'
      ? ` against the old layer: ${f.counts.added} added, ${f.counts.changed} changed, ${f.counts.removed} removed`
      : f.basis === 'none'
        ? `: ${f.counts.added}, all new`
        : f.basis === 'delta'
          ? ` as the delta records them against ${l.reference === l.oldDiffId ? 'the old layer' : `layer ${shortDigest(l.reference!)}, which the host holds`}: ${f.counts.added} added, ${f.counts.changed} changed (in content or tar header alone, e.g. mtime), ${f.counts.removed} removed`
        : `: the old layer's contents are unknown (${inventory ? 'a host inventory lists layers, not files' : 'the old bundle does not ship it whole'}); its ${f.newEntries} entries are listed as added`;
  out.push(`    files${basis}${f.truncated ? ' (lists cut at their limit, see --json)' : ''}`);
  const rows = [
    ...f.added.map((x) => `    + ${x.path}  ${fileFacts(x)}${whiteout(x.path)}`),
    ...f.changed.map((x) => `    ~ ${x.path}  ${x.old ? changeFacts(x.old, x.new) : `now ${fileFacts(x.new)}`}`),
    ...f.removed.map((x) => `    - ${x.path}  ${fileFacts(x)}`),
  ].map((row) => row.trimEnd());
  out.push(...rows.slice(0, perLayer));
  if (rows.length > perLayer) out.push(`    … and ${rows.length - perLayer} more (see --json)`);
  return out;
}

/** An overlay whiteout is how a layer deletes what the layers below it hold: say so. */
function whiteout(path: string): string {
  const slash = path.lastIndexOf('/');
  const dir = path.slice(0, slash + 1);
  const base = path.slice(slash + 1);
  if (base === '.wh..wh..opq') return `  (opaque: hides everything below in ${dir || '/'})`;
  return base.startsWith('.wh.') ? `  (whiteout: deletes ${dir}${base.slice(4)})` : '';
}

const mode = (m: number) => m.toString(8).padStart(4, '0');

function fileFacts(f: Omit<LayerFile, 'path'>): string {
  if (f.type === 'unknown') return '';
  if (f.type === 'symlink' || f.type === 'hardlink') return f.link === undefined ? f.type : `${f.type} → ${f.link}`;
  if (f.type === 'dir') return `dir ${mode(f.mode)}`;
  return `${f.type === 'file' ? '' : `${f.type} `}${formatBytes(f.size)} ${mode(f.mode)}${privileged(f)}`;
}

/** A file that runs with its owner's or group's rights whoever starts it: what a review must not miss. */
function privileged(f: Omit<LayerFile, 'path'>): string {
  if (f.type !== 'file') return '';
  const bits = [f.mode & 0o4000 ? 'SETUID' : '', f.mode & 0o2000 ? 'SETGID' : ''].filter(Boolean);
  return bits.length ? ` ${bits.join(' ')}` : '';
}

function changeFacts(a: Omit<LayerFile, 'path'>, b: Omit<LayerFile, 'path'>): string {
  const parts: string[] = [];
  if (a.type !== b.type) return `${fileFacts(a)} → ${fileFacts(b)}`;
  if (a.link !== b.link) parts.push(`${a.link ?? '?'} → ${b.link ?? '?'}`);
  if (a.size !== b.size) parts.push(`${formatBytes(a.size)} → ${formatBytes(b.size)}`);
  else if (a.type === 'file') parts.push(formatBytes(b.size));
  parts.push(a.mode !== b.mode ? `${mode(a.mode)} → ${mode(b.mode)}${privileged(b)}` : `${mode(b.mode)}${privileged(b)}`);
  if (a.type === 'file' && a.size === b.size && a.digest !== b.digest) parts.push('content changed');
  return parts.join('  ');
}

function textDiff(label: string, d: TextDiff): string[] {
  const stat = d.hunks ? ` (+${d.linesAdded} -${d.linesRemoved}${d.approximate ? ', not minimal' : ''})` : '';
  const head = `${label} ${d.path}: ${d.status}${stat}`;
  if (d.status === 'unchanged') return [head];
  if (d.notDiffed) {
    const why = d.notDiffed === 'too-large' ? 'too large to diff' : 'not text, not diffed';
    return [`${head}: ${why}; sha256 ${d.old?.sha256 ?? '(none)'} → ${d.new?.sha256 ?? '(none)'}`];
  }
  return [head, `--- ${d.old ? `old/${d.old.path}` : '/dev/null'}`, `+++ ${d.new ? `new/${d.new.path}` : '/dev/null'}`, ...formatHunks(d.hunks ?? [])];
}
