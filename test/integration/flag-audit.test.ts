/**
 * Every flag a command declares reaches the code: each built command is run in-process with a
 * flags object that records what is read, and a declared flag nobody reads fails the test. This is
 * the check that would have caught `bundle install --revoked` being accepted and then dropped.
 *
 * The commands run against nothing (a bundle path that does not exist, an engine socket that does
 * not answer): every command turns all its flags into options before it touches anything, so the
 * run fails after every flag was read. A command that reads a flag only on some path, or spreads
 * the flags object instead of naming what it reads, fails here.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Config, type Command } from '@oclif/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from '../support/engines.js';

/** Flags the base command handles for every command (oclif's --json, read from argv). */
const BASE_FLAGS = new Set(['json']);

interface Audit {
  declared: string[];
  read: Set<string>;
  enumerated: boolean;
}

let config: Config;
let work: string;
const saved = { docker: process.env.DOCKER_HOST, state: process.env.FERRY_STATE_DIR, exitCode: process.exitCode };

beforeAll(async () => {
  config = await Config.load(ROOT);
  work = await mkdtemp(join(tmpdir(), 'ferry-flag-audit-'));
  // Nothing answers here: a command that got as far as the engine fails at once.
  process.env.DOCKER_HOST = `unix://${join(work, 'no-engine.sock')}`;
  process.env.FERRY_STATE_DIR = join(work, 'state');
});

afterAll(() => {
  process.env.DOCKER_HOST = saved.docker;
  if (saved.state === undefined) delete process.env.FERRY_STATE_DIR;
  else process.env.FERRY_STATE_DIR = saved.state;
  process.exitCode = saved.exitCode;
});

/** A value for every required argument and flag, so that parsing succeeds and run() starts. */
function argvFor(cmd: Command.Class): string[] {
  const argv: string[] = [];
  for (const [name, arg] of Object.entries(cmd.args ?? {})) if (arg.required) argv.push(join(work, `no-such-${name}`));
  for (const [name, flag] of Object.entries(cmd.flags ?? {})) {
    if (!flag.required) continue;
    argv.push(`--${name}`, flag.type === 'boolean' ? '' : join(work, `out-${name}-${Math.random().toString(36).slice(2)}`));
  }
  return argv.filter(Boolean).concat('--json');
}

async function audit(id: string): Promise<Audit> {
  const Cmd = await config.findCommand(id)!.load();
  const result: Audit = { declared: Object.keys(Cmd.flags ?? {}).filter((f) => !BASE_FLAGS.has(f)), read: new Set(), enumerated: false };
  const Base = Cmd as unknown as new (argv: string[], config: Config) => Command;
  class Audited extends Base {
    protected override async parse(...args: Parameters<Command['parse']>): Promise<any> {
      const parsed = await super.parse(...args);
      parsed.flags = new Proxy(parsed.flags as object, {
        get(target, key, receiver) {
          if (typeof key === 'string') result.read.add(key);
          return Reflect.get(target, key, receiver);
        },
        ownKeys(target) {
          result.enumerated = true;
          return Reflect.ownKeys(target);
        },
      });
      return parsed;
    }
  }
  const writes = { out: process.stdout.write, err: process.stderr.write };
  // The commands' own output (a JSON error document each) is not what this test reads.
  process.stdout.write = (() => true) as typeof process.stdout.write;
  process.stderr.write = (() => true) as typeof process.stderr.write;
  try {
    await new Audited(argvFor(Cmd), config).run().catch(() => undefined);
  } finally {
    process.stdout.write = writes.out;
    process.stderr.write = writes.err;
    process.exitCode = undefined;
  }
  return result;
}

describe('flag audit: every declared flag reaches the code', () => {
  it('finds the commands', () => {
    expect(config.commands.map((c) => c.id).sort()).toEqual(
      expect.arrayContaining(['bundle:create', 'bundle:inspect', 'bundle:install', 'bundle:verify', 'host:inventory', 'host:rollback', 'host:status', 'keys:generate']),
    );
  });

  it('every command reads every flag it declares, by name', async () => {
    const unread: Record<string, string[]> = {};
    const spread: string[] = [];
    for (const { id } of config.commands) {
      const a = await audit(id);
      expect(a.read.size, `${id}: no flag was read at all — did the command run?`).toBeGreaterThan(0);
      const missing = a.declared.filter((f) => !a.read.has(f));
      if (missing.length) unread[id] = missing;
      if (a.enumerated) spread.push(id);
    }
    expect(unread, 'declared flags that no code reads (accepted from the user, then dropped)').toEqual({});
    expect(spread, 'commands that enumerate their flags object instead of reading each flag by name').toEqual([]);
  });

  it('would catch a dropped flag (the check itself can fail)', async () => {
    // verify with its trust group, minus the code that reads --revoked: the revoked-key bug.
    const Verify = await config.findCommand('bundle:verify')!.load();
    const flags = { ...Verify.flags, dropped: Verify.flags!.revoked! };
    const original = Verify.flags;
    try {
      Verify.flags = flags;
      const a = await audit('bundle:verify');
      expect(a.declared).toContain('dropped');
      expect(a.read.has('dropped')).toBe(false);
    } finally {
      Verify.flags = original;
    }
  });
});
