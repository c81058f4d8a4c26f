/**
 * What a bundle directory must hold, compared with what it does hold. Pure: the listing comes
 * from the filesystem adapter, the file list from the (already authenticated) manifest.
 */
import type { Problem } from '../errors.js';
import { MANIFEST_FILE, SIGNATURE_FILE, type FileEntry } from './manifest.js';
import { SUMS_FILE, SUMS_SIGNATURE_FILE } from './sha256sums.js';

/**
 * The files a bundle holds besides those its manifest lists: the manifest, its signature, and the
 * SHA256SUMS pair that lists the manifest. Their content is checked when the bundle is opened.
 */
export const OUTSIDE_LISTING: ReadonlySet<string> = new Set([MANIFEST_FILE, SIGNATURE_FILE, SUMS_FILE, SUMS_SIGNATURE_FILE]);

export interface ListingEntry {
  path: string;
  kind: 'file' | 'directory' | 'symlink' | 'other' | 'unreadable';
  size: number;
  /** Names the inode has; more than one is a hard link. Unknown when absent. */
  links?: number;
}

/**
 * Problems visible from names and sizes alone, and the files whose content must still be hashed.
 * Directories are allowed only where they lead to listed files. A listed file must be a plain
 * file with one name: a symlink, device, FIFO or hard link is never followed or trusted, since
 * its content can come from, or change through, a place the manifest does not cover.
 */
export function compareListing(expected: FileEntry[], listing: ListingEntry[]): { problems: Problem[]; toHash: FileEntry[] } {
  const problems: Problem[] = [];
  const toHash: FileEntry[] = [];
  const present = new Map(listing.map((e) => [e.path, e]));
  const expectedPaths = new Set(expected.map((f) => f.path));
  const neededDirs = new Set<string>();
  for (const f of expected) {
    const parts = f.path.split('/');
    for (let i = 1; i < parts.length; i++) neededDirs.add(parts.slice(0, i).join('/'));
  }
  for (const f of expected) {
    const got = present.get(f.path);
    if (!got) problems.push({ file: f.path, kind: 'missing', message: `${f.path} is missing` });
    else if (got.kind === 'unreadable') problems.push({ file: f.path, kind: 'unreadable', message: `${f.path} cannot be examined` });
    else if (got.kind !== 'file') problems.push({ file: f.path, kind: 'not-regular', message: `${f.path} is a ${describeKind(got.kind)}, not a regular file (links are never followed)` });
    else if ((got.links ?? 1) > 1) problems.push({ file: f.path, kind: 'not-regular', message: `${f.path} is a hard link (${got.links} names), not a plain file` });
    else if (got.size !== f.size) problems.push({ file: f.path, kind: 'size', message: `${f.path} has ${got.size} bytes, the manifest says ${f.size}` });
    else toHash.push(f);
  }
  for (const e of listing) {
    if (expectedPaths.has(e.path) || OUTSIDE_LISTING.has(e.path)) continue;
    if (e.kind === 'directory' && neededDirs.has(e.path)) continue;
    problems.push({ file: e.path, kind: 'extra', message: `${e.path} is not listed in the manifest (${e.kind === 'file' ? 'extra file' : `extra ${describeKind(e.kind)}`})` });
  }
  return { problems, toHash };
}

function describeKind(kind: ListingEntry['kind']): string {
  switch (kind) {
    case 'other':
      return 'device, FIFO or socket';
    case 'symlink':
      return 'symbolic link';
    case 'unreadable':
      return 'entry that cannot be examined';
    default:
      return kind;
  }
}
