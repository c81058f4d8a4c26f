/** Compose command lines for both dialects: v1 is what these machines run, v2 is tested here. */
import { describe, expect, it } from 'vitest';
import { composeArgs, renderImageOverride } from '../../src/core/compose-cli.js';
import { parseYaml } from '../../src/core/yaml.js';

const v2 = { argv: ['docker', 'compose'], version: 2 as const };
const v1 = { argv: ['docker-compose'], version: 1 as const };
const files = ['compose/compose.yaml', 'compose/hosts/edge-1.yaml', 'ferry.override.yaml'];

describe('compose command lines', () => {
  it('v2: up never pulls and never builds, and removes services a release dropped', () => {
    expect(composeArgs(v2, 'shop', files, { kind: 'up', services: ['web', 'worker'] })).toEqual([
      'compose', '--project-name', 'shop',
      '--file', 'compose/compose.yaml', '--file', 'compose/hosts/edge-1.yaml', '--file', 'ferry.override.yaml',
      'up', '--detach', '--no-build', '--remove-orphans', '--pull', 'never', 'web', 'worker',
    ]);
  });

  it('v1: the same without --pull, which v1 does not know (pull_policy in the override covers it)', () => {
    expect(composeArgs(v1, 'shop', files, { kind: 'up', services: ['web'] })).toEqual([
      '--project-name', 'shop',
      '--file', 'compose/compose.yaml', '--file', 'compose/hosts/edge-1.yaml', '--file', 'ferry.override.yaml',
      'up', '--detach', '--no-build', '--remove-orphans', 'web',
    ]);
  });

  it('runs the smoke test once, without a TTY and without starting dependencies again', () => {
    expect(composeArgs(v2, 'shop', ['c.yaml'], { kind: 'run-once', service: 'smoke' })).toEqual(['compose', '--project-name', 'shop', '--file', 'c.yaml', 'run', '--rm', '--no-deps', '--pull', 'never', '-T', 'smoke']);
    expect(composeArgs(v1, 'shop', ['c.yaml'], { kind: 'run-once', service: 'smoke' })).toEqual(['--project-name', 'shop', '--file', 'c.yaml', 'run', '--rm', '--no-deps', '-T', 'smoke']);
  });

  it('takes a stack down with its orphans', () => {
    expect(composeArgs(v2, 'shop', ['c.yaml'], { kind: 'down' })).toEqual(['compose', '--project-name', 'shop', '--file', 'c.yaml', 'down', '--remove-orphans']);
  });
});

describe("ferry's pinning override", () => {
  it('pins every service to its ferry-owned tag and forbids pulling, as valid YAML', () => {
    const text = renderImageOverride([
      { name: 'web', tag: 'ferry.local/shop:' + 'a'.repeat(64) },
      { name: 'odd: name', tag: 'ferry.local/shop:' + 'b'.repeat(64) },
    ]);
    expect(parseYaml(text, 'override')).toEqual({
      services: {
        web: { image: 'ferry.local/shop:' + 'a'.repeat(64), pull_policy: 'never' },
        'odd: name': { image: 'ferry.local/shop:' + 'b'.repeat(64), pull_policy: 'never' },
      },
    });
  });
});
