/** ferry's own version, recorded in every manifest it writes. */
import { createRequire } from 'node:module';

// Read from package.json, so the version ferry records in manifests is the one it was released as.
const require = createRequire(import.meta.url);
export const TOOL_VERSION: string = (require('../../package.json') as { version: string }).version;
