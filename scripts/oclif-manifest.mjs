#!/usr/bin/env node
// Writes oclif.manifest.json after `tsc` (npm run build). Without it oclif imports every command
// module on each start, to learn the commands and their flags, and with them all of ferry: a
// `ferry bundle create` loaded 312 modules instead of 159, and `--version` took twice as long.
// oclif reads the manifest from the package root and ignores one whose version is not
// package.json's; it is generated, never committed (.gitignore). What `oclif manifest` does,
// without the oclif CLI and its dependencies.
import { rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Config } from '@oclif/core';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const target = join(root, 'oclif.manifest.json');
// A manifest left by an earlier build would be read instead of the commands just compiled.
rmSync(target, { force: true });
const config = await Config.load({ root });
const manifest = config.plugins.get(config.pjson.name)?.manifest;
const count = Object.keys(manifest?.commands ?? {}).length;
if (count === 0) throw new Error('oclif found no commands under dist/: run tsc first');
writeFileSync(target, `${JSON.stringify(manifest)}\n`);
process.stderr.write(`oclif.manifest.json: ${count} commands\n`);
