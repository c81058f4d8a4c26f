/**
 * Entry of the single executable (scripts/package.mjs bundles this file with everything it imports
 * into one CommonJS script). Differences from bin/ferry, all because nothing outside the
 * executable may be needed: package.json comes in as a build-time constant, and commands come from
 * an explicit list rather than from files found on disk.
 */
import './oclif-env.js';
import { dirname } from 'node:path';
import { Config, Plugin, execute, handle } from '@oclif/core';
import { exitWhenFlushed } from '../ui/exit.js';
import { COMMANDS } from './commands.js';

declare const FERRY_PJSON: Record<string, unknown>;

// oclif 4 loads an explicit command list with a path `import()`, which a single executable cannot
// do (it has no files to import). The list is already in memory, so hand it over instead; the
// executable's smoke test (test/e2e/executable.test.ts) runs every command's help to catch an oclif
// upgrade that stops going through this method.
(Plugin.prototype as unknown as { loadCommandsFromTarget: () => Promise<typeof COMMANDS> }).loadCommandsFromTarget = async () => COMMANDS;

async function main(): Promise<void> {
  const pjson = {
    ...FERRY_PJSON,
    oclif: {
      ...(FERRY_PJSON.oclif as Record<string, unknown>),
      commands: { strategy: 'explicit', target: './sea-commands', identifier: 'COMMANDS' },
    },
  };
  const config = await Config.load({ root: dirname(process.execPath), pjson: pjson as never, ignoreManifest: true } as never);
  await execute({ loadOptions: config, args: process.argv.slice(2) }).catch(async (error: unknown) => {
    await handle(error as Error);
  });
  // As bin/ferry: a finished command exits even if a socket or worker lingers.
  await exitWhenFlushed(Number(process.exitCode ?? 0));
}

void main();
