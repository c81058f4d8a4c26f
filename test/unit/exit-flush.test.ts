/**
 * A finished command's output reaches a slow reader whole (src/ui/exit.ts), through the compiled
 * module the entries use. The control case shows the setup can tell: a bare process.exit after the
 * same write loses the part the pipe could not take yet.
 */
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const EXIT_MODULE = pathToFileURL(resolve('dist/ui/exit.js')).href;
const SIZE = 4 * 1024 * 1024;

/** Runs `script` as an ES module, starts reading its stdout only after 300 ms, returns what arrived. */
function readSlowly(script: string): Promise<{ bytes: number; code: number | null }> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let bytes = 0;
    child.stdout.pause();
    setTimeout(() => {
      child.stdout.on('data', (chunk: Buffer) => (bytes += chunk.length));
      child.stdout.resume();
    }, 300);
    child.on('error', fail);
    child.on('close', (code) => done({ bytes, code }));
  });
}

const write = `process.stdout.write('x'.repeat(${SIZE}));`;

describe('exit after output', () => {
  it('delivers everything written to a pipe before exiting, with the exit code asked for', async () => {
    const r = await readSlowly(`import { exitWhenFlushed } from ${JSON.stringify(EXIT_MODULE)}; ${write} await exitWhenFlushed(3);`);
    expect(r).toEqual({ bytes: SIZE, code: 3 });
  });

  it('(control) a bare process.exit after the same write loses output', async () => {
    const r = await readSlowly(`${write} process.exit(0);`);
    expect(r.code).toBe(0);
    expect(r.bytes).toBeLessThan(SIZE);
  });
});
