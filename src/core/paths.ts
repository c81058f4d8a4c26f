/**
 * Bundle-relative paths come from untrusted manifests. They are only ever used after passing
 * this check, so no file name from a bundle can escape the bundle directory or the state
 * directory on a host, whatever the platform's path rules.
 */

const SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9._+=@-]{0,254}$/;

export function safeRelativePathProblem(path: unknown): string | undefined {
  if (typeof path !== 'string') return 'is not a string';
  if (path.length === 0) return 'is empty';
  if (path.length > 1024) return 'is longer than 1024 characters';
  if (path.includes('\\')) return 'contains a backslash';
  if (path.startsWith('/')) return 'is absolute';
  for (const segment of path.split('/')) {
    if (segment === '' || segment === '.' || segment === '..') return `has a "${segment || '//'}" segment`;
    if (!SEGMENT.test(segment)) return `has a segment with characters outside [A-Za-z0-9._+=@-]: ${JSON.stringify(segment)}`;
  }
  return undefined;
}

export function isSafeRelativePath(path: unknown): path is string {
  return safeRelativePathProblem(path) === undefined;
}
