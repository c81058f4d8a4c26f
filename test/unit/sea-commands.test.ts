// The executable cannot find commands on disk; its list must name every command file there is.
import { readdir } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { expect, it } from 'vitest';
import { COMMANDS } from '../../src/sea/commands.js';
import { ROOT } from '../support/engines.js';

async function commandIds(dir: string): Promise<string[]> {
  const ids: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile() || !entry.name.endsWith('.ts')) continue;
    const file = relative(join(ROOT, 'src/commands'), join(entry.parentPath, entry.name));
    ids.push(file.replace(/\.ts$/, '').replace(/\/index$/, '').split('/').join(':'));
  }
  return ids.sort();
}

it('lists every command under src/commands, each as the class in its file', async () => {
  expect(Object.keys(COMMANDS).sort()).toEqual(await commandIds(join(ROOT, 'src/commands')));
  for (const [id, command] of Object.entries(COMMANDS)) {
    const file = join(ROOT, 'src/commands', `${id.split(':').join('/')}.ts`);
    expect((await import(file)).default, id).toBe(command);
  }
});
