/** ferry's own version, recorded in every manifest it writes. */
import { createRequire } from 'node:module';
import { hashFile } from './fs.js';

// The single executable is built with this constant defined (scripts/package.mjs): inside it there
// is no package.json to read, and import.meta.url is empty.
declare const FERRY_BUILD_VERSION: string | undefined;

function fromPackageJson(): string {
  // Read from package.json, so the version ferry records in manifests is the one it was released as.
  const require = createRequire(import.meta.url);
  return (require('../../package.json') as { version: string }).version;
}

export const TOOL_VERSION: string = typeof FERRY_BUILD_VERSION === 'string' ? FERRY_BUILD_VERSION : fromPackageJson();

/** True inside the single executable; lets a command say which ferry is running. */
export const IS_EXECUTABLE: boolean = typeof FERRY_BUILD_VERSION === 'string';

/** The running executable's file: null under `node bin/ferry`. */
export function runningExecutable(): string | null {
  return IS_EXECUTABLE ? process.execPath : null;
}

/** sha256 digest of the running executable, or null under `node bin/ferry`. */
export async function runningExecutableDigest(): Promise<string | null> {
  const path = runningExecutable();
  if (path === null) return null;
  const { sha256 } = await hashFile(path, Number.MAX_SAFE_INTEGER);
  return `sha256:${sha256}`;
}
