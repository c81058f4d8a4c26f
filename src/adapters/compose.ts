/** Runs the compose tool as a child process: the only place ferry shells out for compose. */
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { composeArgs, NO_COMPOSE_FEATURES, parseComposeFeatures, type ComposeAction, type ComposeCommand, type ComposeFeatures } from '../core/compose-cli.js';
import { parseYaml } from '../core/yaml.js';
import { BuildInputError, HostPreconditionError } from '../errors.js';

const run = promisify(execFile);

/**
 * `docker compose` (v2) when present, else `docker-compose` (v1); `override` ("docker-compose",
 * "docker compose") wins. Each probe of v1 starts a Python interpreter (~0.7 s here), so the
 * version and `--help` probes run at once.
 */
export async function detectCompose(override?: string): Promise<ComposeCommand> {
  const candidates: string[][] = override ? [override.split(/\s+/).filter(Boolean)] : [['docker', 'compose'], ['docker-compose']];
  for (const argv of candidates) {
    const [version, features] = await Promise.all([versionOf(argv), detectFeatures(argv)]);
    if (version !== null) return { argv, version, features };
  }
  throw noCompose(override);
}

function noCompose(override: string | undefined): HostPreconditionError {
  return new HostPreconditionError('NO_COMPOSE', override ? `the compose command "${override}" does not work here` : 'neither `docker compose` (v2) nor `docker-compose` (v1) works on this host', {
    hint: 'Install Docker Compose, or name the command with --compose-cmd.',
  });
}

/** The major version of the compose at `argv`, or null when it does not run. */
async function versionOf(argv: string[]): Promise<1 | 2 | null> {
  const plugin = argv.length > 1 && argv[1] === 'compose';
  try {
    const { stdout } = await run(argv[0]!, [...argv.slice(1), 'version', '--short'], { timeout: 20_000 });
    return plugin ? 2 : stdout.trim().replace(/^v/, '').startsWith('1.') ? 1 : 2;
  } catch {
    // A compose too old for --short still counts when plain `version` works: read as v1.
    try {
      await run(argv[0]!, [...argv.slice(1), 'version'], { timeout: 20_000 });
      return plugin ? 2 : 1;
    } catch {
      return null;
    }
  }
}

/** What this Compose's `up` and `run` accept, from their `--help` (both at once: v1 starts slowly). */
async function detectFeatures(argv: string[]): Promise<ComposeFeatures> {
  const help = async (sub: string): Promise<string> => {
    try {
      return (await run(argv[0]!, [...argv.slice(1), sub, '--help'], { timeout: 20_000 })).stdout;
    } catch {
      // Read as "no optional flags", which is always safe (see NO_COMPOSE_FEATURES).
      return '';
    }
  };
  const [up, runHelp] = await Promise.all([help('up'), help('run')]);
  return parseComposeFeatures(up, runHelp);
}

export interface ComposeRun {
  code: number;
  output: string;
}

export async function runCompose(
  cmd: ComposeCommand,
  project: string,
  files: string[],
  action: ComposeAction,
  opts: { cwd: string; dockerHost?: string; onLine?: (line: string) => void; timeoutMs?: number },
): Promise<ComposeRun> {
  const args = composeArgs(cmd, project, files, action);
  return new Promise((resolve, reject) => {
    const child = spawn(cmd.argv[0]!, args, {
      cwd: opts.cwd,
      env: { ...process.env, ...(opts.dockerHost ? { DOCKER_HOST: opts.dockerHost } : {}), COMPOSE_INTERACTIVE_NO_CLI: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    const onData = (b: Buffer) => {
      const text = b.toString('utf8');
      output = (output + text).slice(-64 * 1024);
      for (const line of text.split('\n')) if (line.trim()) opts.onLine?.(line.trimEnd());
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    const timer = opts.timeoutMs ? setTimeout(() => child.kill('SIGTERM'), opts.timeoutMs) : undefined;
    child.on('error', reject);
    child.on('close', (code) => {
      if (timer) clearTimeout(timer);
      resolve({ code: code ?? 1, output });
    });
  });
}

export interface ComposeProjectSpec {
  /** Project directory: relative paths in the compose files resolve against it. */
  dir: string;
  /** Compose files, absolute, in -f order. */
  files: string[];
  /** Env files for interpolation (--env-file), absolute. */
  envFiles: string[];
  profiles: string[];
  project: string;
}

type ConfigOutput = { stdout: string; stderr: string };

/** `config` of the project as Compose of that major version is asked for it. */
function runConfig(argv: string[], version: 1 | 2, spec: ComposeProjectSpec): Promise<ConfigOutput> {
  const args = [
    ...argv.slice(1),
    '--project-directory',
    spec.dir,
    '--project-name',
    spec.project,
    ...spec.files.flatMap((f) => ['--file', f]),
    ...spec.envFiles.flatMap((f) => ['--env-file', f]),
    // Every profile: ferry drops the services of profiles not enabled itself (core/compose-project),
    // since Compose v1's config ignores --profile and the smoke test may sit in a profile of its own.
    ...(version === 2 ? ['--profile', '*'] : spec.profiles.flatMap((p) => ['--profile', p])),
    'config',
    ...(version === 2 ? ['--format', 'json'] : []),
  ];
  return run(argv[0]!, args, { cwd: spec.dir, timeout: 60_000, maxBuffer: 64 * 1024 * 1024 });
}

/**
 * Which Compose, and the project as it reads it, for a caller that only needs `config` (bundle
 * create). docker-compose v1 starts a Python interpreter for each command (~0.7 s here), so its
 * `config` starts beside the version probe, guessing v1 for `docker-compose` (v2 for the plugin);
 * a standalone docker-compose v2 is asked again with v2's arguments.
 */
export async function detectAndResolve(override: string | undefined, spec: ComposeProjectSpec): Promise<{ cmd: ComposeCommand; resolved: ResolvedModel }> {
  const candidates: string[][] = override ? [override.split(/\s+/).filter(Boolean)] : [['docker', 'compose'], ['docker-compose']];
  for (const argv of candidates) {
    const guess = argv.length > 1 && argv[1] === 'compose' ? 2 : 1;
    const early = guess === 1 && spec.envFiles.length > 1 ? undefined : runConfig(argv, guess, spec);
    early?.catch(() => undefined);
    const version = await versionOf(argv);
    if (version === null) continue;
    const cmd: ComposeCommand = { argv, version, features: { ...NO_COMPOSE_FEATURES } };
    return { cmd, resolved: await resolveComposeModel(cmd, spec, version === guess ? early : undefined) };
  }
  throw noCompose(override);
}

export interface ResolvedModel {
  model: unknown;
  /** Variables Compose found unset and replaced with an empty string. */
  unsetVariables: string[];
}

/**
 * The project as this Compose reads it (`config`): interpolation, extends, include, anchors, merges
 * of several files and profiles, all done by Compose itself rather than guessed. `early`: the same
 * `config` already started (see detectAndResolve).
 */
export async function resolveComposeModel(cmd: ComposeCommand, spec: ComposeProjectSpec, early?: Promise<ConfigOutput>): Promise<ResolvedModel> {
  if (cmd.version === 1 && spec.envFiles.length > 1) {
    throw new BuildInputError('COMPOSE_ENV_FILES', `Compose v1 reads one --env-file; ferry.yaml lists ${spec.envFiles.length}: ${spec.envFiles.join(', ')}`, {
      hint: 'Merge them into one env file, or build with Compose v2 (docker compose).',
    });
  }
  let stdout: string;
  let stderr: string;
  try {
    ({ stdout, stderr } = await (early ?? runConfig(cmd.argv, cmd.version, spec)));
  } catch (e) {
    const err = e as { stderr?: string; code?: number };
    const said = (err.stderr ?? (e as Error).message).trim().split('\n').slice(-8).join('\n');
    // ${VAR:?message}: Compose refuses by itself; the variable is named as for one merely unset.
    const required = /required variable ([A-Za-z_][A-Za-z0-9_]*) is missing a value/.exec(said) ?? /Missing mandatory value for .* interpolating \$\{([A-Za-z_][A-Za-z0-9_]*):\?/.exec(said);
    if (required) {
      throw new BuildInputError('COMPOSE_VARIABLE_UNSET', `the compose project requires variable ${required[1]}, which is not set on this build server: ${said.split('\n').at(-1)}`, {
        hint: `Set ${required[1]} in the environment or in an env file that ferry.yaml lists (env_files:). A value that differs per host belongs in that host's override.`,
        details: { variables: [required[1]] },
      });
    }
    throw new BuildInputError('COMPOSE_INVALID', `${cmd.argv.join(' ')} config could not read the project in ${spec.dir}:\n${said}`, {
      hint: 'Compose itself refused the project: fix what it says, then create again.',
      details: { dir: spec.dir, files: spec.files },
    });
  }
  const unsetVariables = [...new Set([...stderr.matchAll(/The \\?"?([A-Za-z_][A-Za-z0-9_]*)\\?"? variable is not set/g)].map((m) => m[1]!))];
  let model: unknown;
  try {
    model = cmd.version === 2 ? JSON.parse(stdout) : await parseYaml(stdout, `${cmd.argv.join(' ')} config`);
  } catch (e) {
    throw new BuildInputError('COMPOSE_INVALID', `${cmd.argv.join(' ')} config printed no model ferry can read: ${(e as Error).message}`);
  }
  return { model, unsetVariables };
}
