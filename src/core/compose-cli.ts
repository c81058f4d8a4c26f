/**
 * Compose command lines for v2 (`docker compose`) and v1 (`docker-compose`). Pure, so both dialects
 * are unit-tested even on machines that have only one of them.
 *
 * Flags beyond what v1 1.29 has differ between Compose releases (2.26's `run` has no `--pull`, its
 * `up` has), so which ones a command line may use is read from the program's own `--help`, not
 * inferred from its major version.
 */

/** Optional flags ferry uses when the installed Compose lists them; each is named for its flag. */
export interface ComposeFeatures {
  /** `up --pull never` */
  upPull: boolean;
  /** `up --wait` */
  upWait: boolean;
  /** `up --wait-timeout SECONDS` */
  upWaitTimeout: boolean;
  /** `run --pull never` */
  runPull: boolean;
}

/**
 * None of the optional flags. Always a safe answer: the pinning override already says
 * `pull_policy: never` for every service, and deploy waits for health itself.
 */
export const NO_COMPOSE_FEATURES: Readonly<ComposeFeatures> = Object.freeze({ upPull: false, upWait: false, upWaitTimeout: false, runPull: false });

export interface ComposeCommand {
  /** argv[0] and the fixed leading args: ["docker", "compose"] or ["docker-compose"]. */
  argv: string[];
  version: 1 | 2;
  features: ComposeFeatures;
}

export type ComposeAction =
  | {
      kind: 'up';
      services: string[];
      /** Let `up` itself wait this long for running|healthy, where this Compose can. */
      waitSeconds?: number;
      /** Start only the services named, not what they depend on (blue/green splits a stack in projects). */
      noDeps?: boolean;
    }
  | { kind: 'run-once'; service: string }
  | { kind: 'down' }
  | { kind: 'stop'; services: string[] }
  | { kind: 'rm'; services: string[] }
  | { kind: 'ps' };

/** The long flags (`--name`) that a `--help` text declares, without those its descriptions mention. */
export function helpFlags(help: string): Set<string> {
  const flags = new Set<string>();
  for (const line of help.split('\n')) {
    // A declaration starts near the left margin ("  -d, --detach", "      --wait", v1's "    --no-deps");
    // a wrapped description that begins with a flag ("--force-recreate.") sits at the description
    // column, which is further right than any declaration in v1 1.29 or v2 help.
    const m = /^( *)(?:-[A-Za-z0-9], *)?(--[A-Za-z0-9][A-Za-z0-9-]*)(?=[\s=]|$)/.exec(line);
    if (m && m[1]!.length < 12) flags.add(m[2]!);
  }
  return flags;
}

/** Features from the texts of `<compose> up --help` and `<compose> run --help` ('' when one failed). */
export function parseComposeFeatures(upHelp: string, runHelp: string): ComposeFeatures {
  const up = helpFlags(upHelp);
  const run = helpFlags(runHelp);
  return { upPull: up.has('--pull'), upWait: up.has('--wait'), upWaitTimeout: up.has('--wait-timeout'), runPull: run.has('--pull') };
}

/**
 * Whether `up` waits for health itself. Only with a deadline: a bare `--wait` (Compose before
 * --wait-timeout existed) can wait forever for a service that never turns healthy.
 */
export function upWaits(cmd: ComposeCommand): boolean {
  return cmd.features.upWait && cmd.features.upWaitTimeout;
}

export function composeArgs(cmd: ComposeCommand, project: string, files: string[], action: ComposeAction): string[] {
  const base = [...cmd.argv.slice(1), '--project-name', project, ...files.flatMap((f) => ['--file', f])];
  switch (action.kind) {
    case 'up': {
      const pull = cmd.features.upPull ? ['--pull', 'never'] : [];
      const wait = action.waitSeconds !== undefined && upWaits(cmd) ? ['--wait', '--wait-timeout', String(Math.max(1, Math.ceil(action.waitSeconds)))] : [];
      // --no-build: a host never builds; --remove-orphans: services a release dropped go away.
      return [...base, 'up', '--detach', '--no-build', '--remove-orphans', ...(action.noDeps ? ['--no-deps'] : []), ...pull, ...wait, ...action.services];
    }
    case 'run-once':
      return [...base, 'run', '--rm', '--no-deps', ...(cmd.features.runPull ? ['--pull', 'never'] : []), '-T', action.service];
    case 'down':
      return [...base, 'down', '--remove-orphans'];
    case 'stop':
      return [...base, 'stop', ...action.services];
    case 'rm':
      return [...base, 'rm', '--stop', '--force', ...action.services];
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
