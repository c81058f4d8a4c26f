/** ferry's own version, recorded in every manifest it writes. */
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { hashFile } from './fs.js';

const execFileAsync = promisify(execFile);

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

/**
 * The executable `bundle create --with-ferry` carries when none is named: the running one, or under
 * `node bin/ferry` the one `npm run package` built for this version.
 */
export function defaultExecutable(): string {
  return runningExecutable() ?? fileURLToPath(new URL(`../../release/ferry-${TOOL_VERSION}-linux-x64`, import.meta.url));
}

/** What an executable says it is (`ferry/0.1.0 linux-x64 node-v26.12.1`): null when it is not a ferry that runs here. */
export async function executableVersion(path: string): Promise<{ version: string; platform: string } | null> {
  try {
    const { stdout } = await execFileAsync(path, ['--version'], { timeout: 60_000, env: { ...process.env, NO_COLOR: '1' } });
    const m = /^ferry\/(\S+) (\S+)/.exec(stdout.trim());
    return m ? { version: m[1]!, platform: m[2]! } : null;
  } catch {
    return null;
  }
}
