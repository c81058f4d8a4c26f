/**
 * An error's next steps (issue 19: hints are a list, rendered by ui): each on its own line under
 * the message, and as `nextSteps` in the --json error document, through the built CLI.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BuildInputError } from '../../src/errors.js';
import { ferry, tmpDir } from '../support/engines.js';

describe('next steps of an error', () => {
  it('keeps one hint or several, in order, and joins them where one text is needed', () => {
    expect(new BuildInputError('X', 'm').nextSteps).toEqual([]);
    expect(new BuildInputError('X', 'm', { hint: 'one' }).nextSteps).toEqual(['one']);
    const e = new BuildInputError('X', 'm', { hint: ['first', 'second'] });
    expect([e.nextSteps, e.hint]).toEqual([['first', 'second'], 'first\nsecond']);
  });

  it('prints each step on its own line, and lists them under --json', async () => {
    const key = join(await tmpDir(), 'k');
    expect((await ferry(['keys', 'generate', '--out', key])).code).toBe(0);
    const text = await ferry(['keys', 'generate', '--out', key]);
    expect(text.code).toBe(10);
    expect(text.stderr).toMatch(/already exists\n {2}Pass --force to replace it\.\n {2}Hosts that trust the old key/);
    const json = await ferry(['keys', 'generate', '--out', key, '--json']);
    const doc = JSON.parse(json.stdout) as { error: { code: string; nextSteps: string[] } };
    expect(doc.error.code).toBe('KEY_EXISTS');
    expect(doc.error.nextSteps).toEqual(['Pass --force to replace it.', 'Hosts that trust the old key will refuse bundles signed by the new one until their trust file lists it.']);
  });
});
