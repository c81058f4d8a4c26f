/**
 * Compose command lines for v2 (`docker compose`) and v1 (`docker-compose`). Pure, so both dialects
 * are unit-tested even on machines that have only one of them.
 */

export interface ComposeCommand {
  /** argv[0] and the fixed leading args: ["docker", "compose"] or ["docker-compose"]. */
  argv: string[];
  version: 1 | 2;
}

export type ComposeAction =
  | { kind: 'up'; services: string[] }
  | { kind: 'run-once'; service: string }
  | { kind: 'down' }
  | { kind: 'ps' };

export function composeArgs(cmd: ComposeCommand, project: string, files: string[], action: ComposeAction): string[] {
  const base = [...cmd.argv.slice(1), '--project-name', project, ...files.flatMap((f) => ['--file', f])];
  switch (action.kind) {
    case 'up':
      // --no-build: a host never builds; --remove-orphans: services a release dropped go away.
      return [...base, 'up', '--detach', '--no-build', '--remove-orphans', ...(cmd.version === 2 ? ['--pull', 'never'] : []), ...action.services];
    case 'run-once':
      return [...base, 'run', '--rm', '--no-deps', ...(cmd.version === 2 ? ['--pull', 'never'] : []), '-T', action.service];
    case 'down':
      return [...base, 'down', '--remove-orphans'];
    case 'ps':
      return [...base, 'ps'];
  }
}

/** The override ferry adds last: every service runs exactly the pinned image, never pulled. */
export function renderImageOverride(services: { name: string; tag: string }[]): string {
  const lines = ['# Written by ferry: pins each service to the image ID of the signed manifest.', 'services:'];
  for (const s of services) {
    lines.push(`  ${JSON.stringify(s.name)}:`, `    image: ${JSON.stringify(s.tag)}`, '    pull_policy: never');
  }
  return `${lines.join('\n')}\n`;
}
