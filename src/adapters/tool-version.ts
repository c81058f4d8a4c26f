/** ferry's own version, recorded in every manifest it writes. */
import { createRequire } from 'node:module';

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
