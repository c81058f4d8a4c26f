/**
 * Compose command lines for both dialects, from the flags each real program declares: the help
 * texts under test/fixtures/compose-help were captured from Debian 12's docker-compose 1.29.2 and
 * Debian 13's Compose 2.26.1 (`up --help`, `run --help`).
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { composeArgs, helpFlags, NO_COMPOSE_FEATURES, parseComposeFeatures, renderImageOverride, upWaits, type ComposeCommand } from '../../src/core/compose-cli.js';
import { parseYaml } from '../../src/core/yaml.js';

const help = (name: string) => readFileSync(join(dirname(fileURLToPath(import.meta.url)), '../fixtures/compose-help', name), 'utf8');
const v1Features = parseComposeFeatures(help('v1-1.29.2-up.txt'), help('v1-1.29.2-run.txt'));
const v2Features = parseComposeFeatures(help('v2-2.26.1-up.txt'), help('v2-2.26.1-run.txt'));

const v2: ComposeCommand = { argv: ['docker', 'compose'], version: 2, features: v2Features };
const v1: ComposeCommand = { argv: ['docker-compose'], version: 1, features: v1Features };
const files = ['compose/compose.yaml', 'compose/hosts/edge-1.yaml', 'ferry.override.yaml'];

describe('flags read from --help', () => {
  it('v1 1.29.2: none of the optional flags (its --quiet-pull is not --pull)', () => {
    expect(helpFlags(help('v1-1.29.2-up.txt'))).toContain('--quiet-pull');
    expect(v1Features).toEqual({ upPull: false, upWait: false, upWaitTimeout: false, runPull: false });
  });

  it('v2 2.26.1: up has --pull, --wait and --wait-timeout; run has no --pull', () => {
    expect(v2Features).toEqual({ upPull: true, upWait: true, upWaitTimeout: true, runPull: false });
  });

  it('reads both layouts: docopt (v1, "--user=\\"\\"") and cobra (v2, short and long-only flags)', () => {
    const v1Run = helpFlags(help('v1-1.29.2-run.txt'));
    for (const f of ['--detach', '--rm', '--no-deps', '--user', '--workdir']) expect(v1Run).toContain(f);
    const v2Run = helpFlags(help('v2-2.26.1-run.txt'));
    for (const f of ['--detach', '--rm', '--no-deps', '--no-TTY', '--quiet-pull', '--remove-orphans']) expect(v2Run).toContain(f);
    const v2Up = helpFlags(help('v2-2.26.1-up.txt'));
    for (const f of ['--detach', '--no-build', '--remove-orphans', '--pull', '--wait', '--wait-timeout']) expect(v2Up).toContain(f);
  });

  it('a flag named only at the start of a wrapped description is not declared', () => {
    const text = [
      'Options:',
      '      --no-recreate               If containers already exist, don\'t',
      '                                  recreate them. Incompatible with',
      '                                  --wait.',
      '  -d, --detach                    Detached mode',
    ].join('\n');
    expect([...helpFlags(text)]).toEqual(['--no-recreate', '--detach']);
  });

  it('a help that could not be read means no optional flags', () => {
    expect(parseComposeFeatures('', '')).toEqual(NO_COMPOSE_FEATURES);
  });
});

describe('compose command lines', () => {
  it('v2 2.26: up never pulls, never builds, removes services a release dropped, and waits with a deadline', () => {
    expect(composeArgs(v2, 'shop', files, { kind: 'up', services: ['web', 'worker'], waitSeconds: 120 })).toEqual([
      'compose', '--project-name', 'shop',
      '--file', 'compose/compose.yaml', '--file', 'compose/hosts/edge-1.yaml', '--file', 'ferry.override.yaml',
      'up', '--detach', '--no-build', '--remove-orphans', '--pull', 'never', '--wait', '--wait-timeout', '120', 'web', 'worker',
    ]);
    expect(composeArgs(v2, 'shop', ['c.yaml'], { kind: 'up', services: ['web'] })).toEqual(['compose', '--project-name', 'shop', '--file', 'c.yaml', 'up', '--detach', '--no-build', '--remove-orphans', '--pull', 'never', 'web']);
  });

  it('the wait deadline is whole seconds, rounded up, at least 1', () => {
    expect(composeArgs(v2, 'p', [], { kind: 'up', services: [], waitSeconds: 90.2 })).toContain('91');
    expect(composeArgs(v2, 'p', [], { kind: 'up', services: [], waitSeconds: 0.001 }).slice(-2)).toEqual(['--wait-timeout', '1']);
  });

  it('v1: the same without --pull and --wait, which v1 does not know (pull_policy in the override covers pulls)', () => {
    expect(composeArgs(v1, 'shop', files, { kind: 'up', services: ['web'], waitSeconds: 120 })).toEqual([
      '--project-name', 'shop',
      '--file', 'compose/compose.yaml', '--file', 'compose/hosts/edge-1.yaml', '--file', 'ferry.override.yaml',
      'up', '--detach', '--no-build', '--remove-orphans', 'web',
    ]);
    expect(upWaits(v1)).toBe(false);
  });

  it('a bare --wait (a Compose without --wait-timeout) is not used: it could wait forever', () => {
    const old: ComposeCommand = { ...v2, features: { ...v2Features, upWaitTimeout: false } };
    expect(upWaits(old)).toBe(false);
    expect(composeArgs(old, 'p', [], { kind: 'up', services: ['web'], waitSeconds: 60 })).not.toContain('--wait');
  });

  it('runs the smoke test once, without a TTY and without starting dependencies again; --pull only where run has it', () => {
    expect(composeArgs(v2, 'shop', ['c.yaml'], { kind: 'run-once', service: 'smoke' })).toEqual(['compose', '--project-name', 'shop', '--file', 'c.yaml', 'run', '--rm', '--no-deps', '-T', 'smoke']);
    expect(composeArgs(v1, 'shop', ['c.yaml'], { kind: 'run-once', service: 'smoke' })).toEqual(['--project-name', 'shop', '--file', 'c.yaml', 'run', '--rm', '--no-deps', '-T', 'smoke']);
    const later: ComposeCommand = { ...v2, features: { ...v2Features, runPull: true } };
    expect(composeArgs(later, 'shop', ['c.yaml'], { kind: 'run-once', service: 'smoke' })).toEqual(['compose', '--project-name', 'shop', '--file', 'c.yaml', 'run', '--rm', '--no-deps', '--pull', 'never', '-T', 'smoke']);
  });

  it('takes a stack down with its orphans', () => {
    expect(composeArgs(v2, 'shop', ['c.yaml'], { kind: 'down' })).toEqual(['compose', '--project-name', 'shop', '--file', 'c.yaml', 'down', '--remove-orphans']);
  });
});

describe("ferry's pinning override", () => {
  it('pins every service to its ferry-owned tag and forbids pulling, as valid YAML', async () => {
    const text = renderImageOverride([
      { name: 'web', tag: 'ferry.local/shop:' + 'a'.repeat(64) },
      { name: 'odd: name', tag: 'ferry.local/shop:' + 'b'.repeat(64) },
    ]);
    expect(await parseYaml(text, 'override')).toEqual({
      services: {
        web: { image: 'ferry.local/shop:' + 'a'.repeat(64), pull_policy: 'never' },
        'odd: name': { image: 'ferry.local/shop:' + 'b'.repeat(64), pull_policy: 'never' },
      },
    });
  });
});
