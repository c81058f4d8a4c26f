/**
 * What changes between two releases, for `ferry bundle diff`: images matched across the two sides,
 * their layers compared by diffID, the files of changed layers compared by path, and the
 * compose-side texts compared line by line. Pure: the service reads the bundles and hands the
 * layer listings and texts in; everything here is bounded so that a hostile bundle cannot make
 * the report itself unbounded.
 */
import { lineDiff, splitLines, type Hunk } from './line-diff.js';
import type { Inventory } from './inventory.js';
import type { DeltaChanges } from './layer-delta.js';
import type { FerryManifest, FileEntry } from './manifest.js';
import { kindOf, normalizeTarPath, type LayerFile, type LayerListing } from './tar-files.js';

/** Texts larger than this are not diffed, only named with both sha256. */
export const MAX_DIFF_BYTES = 1024 * 1024;
export const MAX_DIFF_LINES = 20_000;
/** Files kept per layer listing and per change list: past this a report says "truncated". */
export const MAX_LISTED_FILES = 100_000;

export type LayerShipping = 'whole' | 'delta' | 'assumed';

export interface SideLayer {
  diffId: string;
  chainId: string;
  size: number;
  /** How the bundle carries it; null for an inventory (the host holds it). */
  shipping: LayerShipping | null;
  /** For a delta: the diffID of the layer it is rebuilt from. */
  reference: string | null;
}

export interface SideImage {
  refs: string[];
  id: string;
  /** Compose services running it (none for an inventory, which does not know them). */
  services: string[];
  layers: SideLayer[];
}

/** A delta manifest layer, as the layer-delta format adds it; read loosely so older manifests fit. */
interface DeltaField {
  delta?: { reference?: unknown } | null;
}

export function imagesOfManifest(m: FerryManifest): SideImage[] {
  return m.images.map((im) => ({
    refs: im.refs,
    id: im.id,
    services: m.compose.services.filter((s) => s.imageId === im.id).map((s) => s.name),
    layers: im.layers.map((l) => {
      const delta = (l as DeltaField).delta;
      const reference = delta && typeof delta.reference === 'string' ? delta.reference : null;
      return { diffId: l.diffId, chainId: l.chainId, size: l.size, shipping: reference ? 'delta' : l.included && l.blob ? 'whole' : 'assumed', reference };
    }),
  }));
}

export function imagesOfInventory(inv: Inventory): SideImage[] {
  return inv.images.map((im) => ({
    refs: im.repoTags,
    id: im.id,
    services: [],
    layers: im.diffIds.map((d, i) => ({ diffId: d, chainId: im.chainIds[i]!, size: 0, shipping: null, reference: null })),
  }));
}

/** The repository of a reference: `shop/web:1.4.2` and `shop/web@sha256:…` are both `shop/web`. */
export function repositoryOf(ref: string): string {
  const at = ref.indexOf('@');
  const noDigest = at >= 0 ? ref.slice(0, at) : ref;
  const colon = noDigest.lastIndexOf(':');
  return colon > noDigest.lastIndexOf('/') ? noDigest.slice(0, colon) : noDigest;
}

function shared(a: SideImage, b: SideImage): number {
  const ids = new Set(a.layers.map((l) => l.diffId));
  return b.layers.filter((l) => ids.has(l.diffId)).length;
}

/**
 * Pairs each new image with the old image it replaces: the same ID first, then an image run by the
 * same compose service, then one of the same repository. Each old image is used once; new images
 * without a partner are added, old ones left over removed.
 */
export function matchImages(olds: SideImage[], news: SideImage[]): { old: SideImage | null; new: SideImage | null }[] {
  const free = new Set(olds);
  const pairs = news.map((n) => ({ old: null as SideImage | null, new: n as SideImage | null }));
  const rules: ((o: SideImage, n: SideImage) => boolean)[] = [
    (o, n) => o.id === n.id,
    (o, n) => n.services.some((s) => o.services.includes(s)),
    (o, n) => n.refs.some((r) => o.refs.some((q) => repositoryOf(q) === repositoryOf(r))),
  ];
  for (const rule of rules) {
    for (const p of pairs) {
      if (p.old) continue;
      // Of several candidates (an inventory may hold three releases of web), the closest one.
      const hit = [...free].filter((o) => rule(o, p.new!)).sort((a, b) => shared(b, p.new!) - shared(a, p.new!))[0];
      if (hit) {
        p.old = hit;
        free.delete(hit);
      }
    }
  }
  return [...pairs, ...[...free].map((o) => ({ old: o, new: null }))];
}

export interface FileChange {
  path: string;
  /** null when only the new side is known (a delta records the new entry of a changed file). */
  old: Omit<LayerFile, 'path'> | null;
  new: Omit<LayerFile, 'path'>;
}

/** What a layer's files are compared with, and what is known of them. */
export type FilesBasis =
  /** The old image's layer at the same position, read from the old bundle. */
  | 'old-layer'
  /** No old layer at that position (a layer or image the old side did not have): every file is added. */
  | 'none'
  /** The old layer's contents are not at hand (an inventory, or the old bundle left it out): listed as added. */
  | 'unknown'
  /** The changes a layer delta records against its reference layer (LayerRow.reference). */
  | 'delta';

export interface LayerFiles {
  basis: FilesBasis;
  added: LayerFile[];
  changed: FileChange[];
  removed: LayerFile[];
  counts: { added: number; changed: number; removed: number };
  /** A side had more entries than MAX_LISTED_FILES: the lists (and counts) cover only those kept. */
  truncated: boolean;
  /** With basis `unknown`: entries in the new layer, all listed as added. */
  newEntries: number;
}

function strip(f: LayerFile): Omit<LayerFile, 'path'> {
  const { path: _path, ...rest } = f;
  return rest;
}

/** Files added, changed (type, size, mode or content) and removed from one layer to the other, by path. */
export function compareLayerFiles(oldListing: LayerListing | null, newListing: LayerListing, basis: FilesBasis): LayerFiles {
  const old = new Map((oldListing?.files ?? []).map((f) => [f.path, f]));
  const added: LayerFile[] = [];
  const changed: FileChange[] = [];
  const removed: LayerFile[] = [];
  const seen = new Set<string>();
  for (const f of newListing.files) {
    seen.add(f.path);
    const o = old.get(f.path);
    if (!o) added.push(f);
    else if (o.type !== f.type || o.size !== f.size || o.mode !== f.mode || o.digest !== f.digest) changed.push({ path: f.path, old: strip(o), new: strip(f) });
  }
  for (const o of old.values()) if (!seen.has(o.path)) removed.push(o);
  const byPath = (a: { path: string }, b: { path: string }) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);
  added.sort(byPath);
  changed.sort(byPath);
  removed.sort(byPath);
  return {
    basis,
    added,
    changed,
    removed,
    counts: { added: added.length, changed: changed.length, removed: removed.length },
    truncated: newListing.truncated || (oldListing?.truncated ?? false),
    newEntries: newListing.entries,
  };
}

/**
 * What a delta's header says it changed against its reference: added and changed entries with the
 * new side's facts (no content digest: the delta records ranges, not file hashes), removed paths
 * only. The header was cut at its own limit when `omitted` is set.
 */
export function layerFilesFromDelta(changes: DeltaChanges): LayerFiles {
  const file = (f: { path: string; size: number; mode: number; type: string }): LayerFile => {
    const type = kindOf(f.type);
    return { path: normalizeTarPath(f.path), type, size: type === 'file' ? f.size : 0, mode: f.mode & 0o7777, digest: null };
  };
  const cap = <T>(list: T[]) => list.slice(0, MAX_LISTED_FILES);
  const added = cap(changes.added).map(file);
  const changed: FileChange[] = cap(changes.changed).map((f) => {
    const { path, ...rest } = file(f);
    return { path, old: null, new: rest };
  });
  const removed: LayerFile[] = cap(changes.removed).map((p) => ({ path: normalizeTarPath(p), type: 'unknown', size: 0, mode: 0, digest: null }));
  const truncated = changes.omitted > 0 || changes.added.length > MAX_LISTED_FILES || changes.changed.length > MAX_LISTED_FILES || changes.removed.length > MAX_LISTED_FILES;
  return {
    basis: 'delta',
    added,
    changed,
    removed,
    counts: { added: added.length, changed: changed.length, removed: removed.length },
    truncated,
    newEntries: 0,
  };
}

export type LayerStatus = 'unchanged' | 'changed' | 'added' | 'removed';

export interface LayerRow {
  /** Position in the image, base first, from 0. */
  index: number;
  status: LayerStatus;
  oldDiffId: string | null;
  newDiffId: string | null;
  /** Uncompressed size of the new layer (of the old one for a removed layer; 0 when an inventory does not say). */
  size: number;
  /** How the new bundle carries the layer; null for a removed layer. */
  shipping: LayerShipping | null;
  /** For a delta layer: the diffID it is rebuilt from. */
  reference: string | null;
  /** Against an inventory: the host already holds the new layer (by chain ID). Null against a bundle. */
  held: boolean | null;
}

/** Layers compared position by position, base first: the same diffID is unchanged, another is changed. */
export function compareLayers(old: SideImage | null, next: SideImage | null, heldChains: ReadonlySet<string> | null): LayerRow[] {
  const a = old?.layers ?? [];
  const b = next?.layers ?? [];
  const rows: LayerRow[] = [];
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const o = a[i];
    const n = b[i];
    const status: LayerStatus = !n ? 'removed' : !o ? 'added' : o.diffId === n.diffId ? 'unchanged' : 'changed';
    rows.push({
      index: i,
      status,
      oldDiffId: o?.diffId ?? null,
      newDiffId: n?.diffId ?? null,
      size: n ? n.size : (o?.size ?? 0),
      shipping: n?.shipping ?? null,
      reference: n?.reference ?? null,
      held: heldChains && n ? heldChains.has(n.chainId) : null,
    });
  }
  return rows;
}

/** A compose-side file on one side: its manifest entry and, when it was read, its text. */
export interface TextSide {
  path: string;
  size: number;
  sha256: string;
  /** null when not read: too large, or not text. */
  text: string | null;
}

export interface TextDiff {
  /** The file's path in the new bundle (in the old one for a removed file). */
  path: string;
  status: 'unchanged' | 'changed' | 'added' | 'removed';
  old: { path: string; size: number; sha256: string } | null;
  new: { path: string; size: number; sha256: string } | null;
  /** Why no line diff is given for a changed file: larger than MAX_DIFF_BYTES or MAX_DIFF_LINES, or not UTF-8 text. */
  notDiffed: 'too-large' | 'binary' | null;
  /** Unified-diff hunks; null when unchanged or not diffed. An added or removed file is one hunk of all its lines. */
  hunks: Hunk[] | null;
  linesAdded: number;
  linesRemoved: number;
  /** The diff search stopped at its bound: correct, perhaps not the smallest. */
  approximate: boolean;
}

/** Whether the service should read a file's text for a diff: only small files are. */
export function worthReading(entry: FileEntry): boolean {
  return entry.size <= MAX_DIFF_BYTES;
}

export function compareText(old: TextSide | null, next: TextSide | null): TextDiff {
  const meta = (s: TextSide | null) => (s ? { path: s.path, size: s.size, sha256: s.sha256 } : null);
  const base = { path: (next ?? old)!.path, old: meta(old), new: meta(next), linesAdded: 0, linesRemoved: 0, approximate: false };
  if (old && next && old.sha256 === next.sha256) return { ...base, status: 'unchanged', notDiffed: null, hunks: null };
  const status = !old ? 'added' : !next ? 'removed' : 'changed';
  const sides = [old, next].filter((s): s is TextSide => s !== null);
  if (sides.some((s) => s.size > MAX_DIFF_BYTES)) return { ...base, status, notDiffed: 'too-large', hunks: null };
  if (sides.some((s) => s.text === null)) return { ...base, status, notDiffed: 'binary', hunks: null };
  if (sides.some((s) => splitLines(s.text!).length > MAX_DIFF_LINES)) return { ...base, status, notDiffed: 'too-large', hunks: null };
  const d = lineDiff(old?.text ?? '', next?.text ?? '');
  return { ...base, status, notDiffed: null, hunks: d.hunks, linesAdded: d.added, linesRemoved: d.removed, approximate: d.approximate };
}

export interface HostDiff {
  host: string;
  status: 'unchanged' | 'changed' | 'added' | 'removed';
  files: TextDiff[];
}

export interface ProjectFileDiff {
  path: string;
  status: 'changed' | 'added' | 'removed';
  kind: string;
  old: { size: number; sha256: string } | null;
  new: { size: number; sha256: string } | null;
}

export interface ComposeDiff {
  file: TextDiff;
  hosts: HostDiff[];
  /** Project files carried in the bundle (bind sources, secrets, configs) that differ, by sha256. */
  projectFiles: ProjectFileDiff[];
  /** Project files the same on both sides. */
  projectFilesUnchanged: number;
}

/** Compose-side paths whose text the service should read for compareCompose (small ones only). */
export function composeTexts(m: FerryManifest): FileEntry[] {
  const paths = new Set([m.compose.file, ...Object.values(m.hosts).flatMap((h) => h.files)]);
  return m.files.filter((f) => paths.has(f.path));
}

/** `texts`: path → text for the files composeTexts named that were read and are UTF-8. */
export function compareCompose(old: FerryManifest, next: FerryManifest, oldTexts: ReadonlyMap<string, string>, newTexts: ReadonlyMap<string, string>): ComposeDiff {
  const side = (m: FerryManifest, texts: ReadonlyMap<string, string>, path: string): TextSide | null => {
    const f = m.files.find((x) => x.path === path);
    return f ? { path, size: f.size, sha256: f.sha256, text: texts.get(path) ?? null } : null;
  };
  const file = compareText(side(old, oldTexts, old.compose.file), side(next, newTexts, next.compose.file));
  const hostNames = [...new Set([...Object.keys(next.hosts), ...Object.keys(old.hosts)])].sort();
  const hosts = hostNames.map((host): HostDiff => {
    const o = old.hosts[host]?.files ?? [];
    const n = next.hosts[host]?.files ?? [];
    // A host's files pair up by name within the host (its compose override, its env file).
    const key = (p: string) => p.slice(p.lastIndexOf('/') + 1);
    const names = [...new Set([...n.map(key), ...o.map(key)])];
    const files = names.map((name) => {
      const op = o.find((p) => key(p) === name);
      const np = n.find((p) => key(p) === name);
      return compareText(op ? side(old, oldTexts, op) : null, np ? side(next, newTexts, np) : null);
    });
    const status = !(host in old.hosts) ? 'added' : !(host in next.hosts) ? 'removed' : files.every((f) => f.status === 'unchanged') ? 'unchanged' : 'changed';
    return { host, status, files };
  });
  const projectOf = (m: FerryManifest) => new Map((m.compose.projectFiles ?? []).map((p) => [p.path, { kind: p.kind, entry: m.files.find((f) => f.path === p.path) }]));
  const po = projectOf(old);
  const pn = projectOf(next);
  const projectFiles: ProjectFileDiff[] = [];
  let projectFilesUnchanged = 0;
  for (const path of [...new Set([...pn.keys(), ...po.keys()])].sort()) {
    const o = po.get(path);
    const n = pn.get(path);
    const meta = (x: typeof o) => (x?.entry ? { size: x.entry.size, sha256: x.entry.sha256 } : null);
    if (o && n && o.entry?.sha256 === n.entry?.sha256) {
      projectFilesUnchanged++;
      continue;
    }
    projectFiles.push({ path, status: !o ? 'added' : !n ? 'removed' : 'changed', kind: (n ?? o)!.kind, old: meta(o), new: meta(n) });
  }
  return { file, hosts, projectFiles, projectFilesUnchanged };
}
