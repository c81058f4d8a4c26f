/**
 * Reading a bundle definition and its compose project on the build server: Compose resolves the
 * model (so interpolation, extends, include, merges and profiles mean what Compose says), the plan
 * in core decides what travels, and this step checks every carried path against the disk and the
 * image of every built service against the engine.
 */
import { basename, dirname, join, posix, resolve } from 'node:path';
import { detectAndResolve } from '../adapters/compose.js';
import type { Engine } from '../adapters/engine.js';
import { exists, isDirectory, listTree, readBounded, readText } from '../adapters/fs.js';
import { analyzeCompose, bindsOfDocument, envFilesOfDocument, type ComposeAnalysis } from '../core/compose.js';
import type { ComposeCommand } from '../core/compose-cli.js';
import { PROJECT_DIR, planProject, ProjectPlanError, type HostPath, type ProjectFileKind, type ProjectPlan } from '../core/compose-project.js';
import { parseDefinition, type BundleDefinition } from '../core/definition.js';
import { MAX_SMALL_FILE } from '../core/manifest.js';
import { safeRelativePathProblem } from '../core/paths.js';
import { parseYaml, toYaml } from '../core/yaml.js';
import { BuildInputError } from '../errors.js';
import type { Reporter } from './reporter.js';

/** Where a host keeps secrets a bundle was made without (--exclude-secrets), per stack. */
export const HOST_SECRETS_DIR = '/etc/ferry/secrets';

/** The shipped model's path in the bundle (and in a release directory on the host). */
export const SHIPPED_COMPOSE = 'compose/compose.yaml';

export interface ProjectFile {
  /** Path in the bundle: compose/project/<rel>. */
  path: string;
  /** Relative to the project directory. */
  rel: string;
  kind: ProjectFileKind;
  services: string[];
  data: Buffer;
}

export interface LoadedDefinition {
  dir: string;
  file: string;
  def: BundleDefinition;
  compose: ComposeAnalysis;
  /** The model the host runs, as YAML text. */
  shipped: string;
  projectFiles: ProjectFile[];
  hostPaths: HostPath[];
  /** Definition-relative paths of the host-side files (overrides, their env files). */
  files: string[];
  hostFiles: Record<string, string[]>;
  extraBinds: ComposeAnalysis['binds'];
}

export interface LoadOptions {
  /** Profiles enabled besides ferry.yaml's. */
  profiles?: string[];
  excludeSecrets?: boolean;
  /** The compose command to read the project with; default: v2 when present, else v1. */
  composeCmd?: string;
}

export async function loadDefinition(path: string, engine: Engine, reporter: Reporter, options: LoadOptions = {}): Promise<LoadedDefinition> {
  const ctx = await readDefinition(path, options);
  const { def, dir } = ctx;
  const { cmd, model } = await resolveModel(ctx);
  const plan = planOf(ctx, cmd, model, await smokeOf(ctx, model));
  await pinBuiltImages(ctx, engine, cmd, plan);
  const projectFiles = await projectFilesOf(ctx, plan, reporter);
  const compose = analyzeCompose(plan.model, def.compose.join(', '));
  const shipped = `# The compose model ferry resolved from ${def.compose.join(', ')} on the build server (${cmd.argv.join(' ')} config);\n# paths under ./${PROJECT_DIR}/ are the project files the bundle carries.\n${await toYaml(plan.model)}`;
  const { files, hostFiles, extraBinds } = await hostOverrides(ctx);
  return { dir, file: ctx.file, def, compose, shipped, projectFiles, hostPaths: plan.hostPaths, files, hostFiles, extraBinds };
}

/** What the steps of loadDefinition share: where the definition is, what it says, and the caller's options. */
interface DefinitionContext {
  dir: string;
  file: string;
  def: BundleDefinition;
  options: LoadOptions;
}

/** Where a definition is: the directory that holds ferry.yaml, or the file itself. */
export async function definitionPaths(path: string): Promise<{ dir: string; file: string; isDir: boolean }> {
  const isDir = await isDirectory(path);
  const dir = resolve(isDir ? path : dirname(path));
  return { dir, file: isDir ? join(dir, 'ferry.yaml') : resolve(path), isDir };
}

/** Finds ferry.yaml (a directory or the file itself), parses it, and checks the files it names exist. */
async function readDefinition(path: string, options: LoadOptions): Promise<DefinitionContext> {
  const { dir, file, isDir } = await definitionPaths(path);
  if (!(await exists(file))) {
    throw new BuildInputError('DEFINITION_NOT_FOUND', `no bundle definition at ${isDir ? join(path, 'ferry.yaml') : path}`, {
      hint: 'Pass the directory that holds ferry.yaml (e.g. bundles/demo), or the ferry.yaml file itself.',
    });
  }
  const ctx = { dir, file, def: parseDefinition(await parseYaml(await readText(file), file), file), options };
  for (const c of ctx.def.compose) await requireFile(ctx, c, 'compose file');
  for (const e of ctx.def.envFiles) await requireFile(ctx, e, 'env file');
  return ctx;
}

async function requireFile({ dir, file }: DefinitionContext, rel: string, what: string): Promise<void> {
  if (!(await exists(join(dir, rel)))) {
    throw new BuildInputError('DEFINITION_FILE_MISSING', `${basename(file)} names ${what} ${rel}, which does not exist in ${dir}`, { details: { file, missing: rel } });
  }
}

/** ferry.yaml's profiles and the caller's, once each. */
const profilesOf = ({ def, options }: DefinitionContext): string[] => [...new Set([...def.profiles, ...(options.profiles ?? [])])];

/** The model as Compose resolves it; a variable Compose found unset is refused, not shipped empty. */
async function resolveModel(ctx: DefinitionContext): Promise<{ cmd: ComposeCommand; model: unknown }> {
  const { dir, def } = ctx;
  // Only `config` runs here: Compose is found and asked at once (what its `up` and `run` accept does not matter).
  const { cmd, resolved } = await detectAndResolve(ctx.options.composeCmd, {
    dir,
    files: def.compose.map((c) => join(dir, c)),
    envFiles: def.envFiles.map((e) => join(dir, e)),
    profiles: profilesOf(ctx),
    project: def.name,
  });
  if (resolved.unsetVariables.length > 0) {
    const names = resolved.unsetVariables.join(', ');
    throw new BuildInputError('COMPOSE_VARIABLE_UNSET', `the compose project uses ${resolved.unsetVariables.length > 1 ? 'variables' : 'variable'} ${names} but ${resolved.unsetVariables.length > 1 ? 'they are' : 'it is'} not set on this build server`, {
      hint: `Set ${names} in the environment or in an env file that ferry.yaml lists (env_files:), so the bundle pins what was tested. A value that differs per host belongs in that host's override (hosts: in ferry.yaml), not in a variable.`,
      details: { variables: resolved.unsetVariables },
    });
  }
  return { cmd, model: resolved.model };
}

/** x-ferry's smoke test, if any. Fills the model's x-ferry in from the files when Compose dropped it. */
async function smokeOf({ dir, def }: DefinitionContext, resolvedModel: unknown): Promise<string[]> {
  // Compose v1's config drops extension fields; x-ferry is then read from the files themselves.
  const model = resolvedModel as Record<string, unknown>;
  if (model && typeof model === 'object' && model['x-ferry'] === undefined) {
    for (const c of def.compose) {
      const doc = (await parseYaml(await readText(join(dir, c)), join(dir, c))) as Record<string, unknown> | null;
      if (doc && typeof doc === 'object' && doc['x-ferry'] !== undefined) model['x-ferry'] = doc['x-ferry'];
    }
  }
  const xFerry = model?.['x-ferry'] as { smoke?: unknown } | undefined;
  return typeof xFerry?.smoke === 'string' ? [xFerry.smoke] : [];
}

/** core's plan of what travels; its refusals become build-input errors naming the compose files. */
function planOf(ctx: DefinitionContext, cmd: ComposeCommand, model: unknown, smoke: string[]): ProjectPlan {
  const { dir, def, options } = ctx;
  try {
    return planProject(model, {
      projectDir: dir,
      project: def.name,
      composeVersion: cmd.version,
      profiles: profilesOf(ctx),
      keep: smoke,
      ...(options.excludeSecrets ? { excludeSecretsTo: posix.join(HOST_SECRETS_DIR, def.name) } : {}),
    });
  } catch (e) {
    if (e instanceof ProjectPlanError) throw new BuildInputError(e.code, `${def.compose.join(', ')}: ${e.message}`, { details: { file: def.compose, subject: e.subject } });
    throw e;
  }
}

/** A service Compose builds runs the image Compose tagged for it: pinned like any other. */
async function pinBuiltImages({ def }: DefinitionContext, engine: Engine, cmd: ComposeCommand, plan: ProjectPlan): Promise<void> {
  const services = plan.model.services as Record<string, Record<string, unknown>>;
  for (const s of plan.services.filter((x) => x.image === null)) {
    let found: string | undefined;
    for (const tag of s.builtTags) if (await engine.inspectImage(tag)) found ??= tag;
    if (!found) {
      const build = cmd.version === 2 ? 'docker compose build' : 'docker-compose build';
      throw new BuildInputError('IMAGE_NOT_BUILT', `service "${s.name}" is built by Compose (build:) but no image ${s.builtTags.join(' or ')} is on the engine at ${engine.host}`, {
        hint: `Run \`${build}\` for this project (project name ${def.name}) on this build server first, test it, then create the bundle.`,
        details: { service: s.name, looked: s.builtTags },
      });
    }
    services[s.name]!.image = found;
  }
}

/** The files the bundle carries for the project, read now; a secret among them is warned about. */
async function projectFilesOf({ dir, def }: DefinitionContext, plan: ProjectPlan, reporter: Reporter): Promise<ProjectFile[]> {
  // Compose reads the project directory's .env unless env files are named.
  const sources = await composeSources(dir, def.compose, def.envFiles.length > 0 ? def.envFiles : ['.env']);
  const projectFiles = await carriedFiles(dir, [...plan.carried, ...sources.filter((s) => !plan.carried.some((c) => c.rel === s.rel))]);
  for (const f of projectFiles.filter((x) => x.kind === 'secret')) {
    reporter.warn({ code: 'SECRET_IN_BUNDLE', subject: f.rel, message: `secret file ${f.rel} (used by ${f.services.join(', ') || 'no service'}) travels in the bundle in the clear: bundles are signed, not encrypted. --exclude-secrets leaves secrets out; the host then provides them under ${posix.join(HOST_SECRETS_DIR, def.name)}/` });
  }
  return projectFiles;
}

/** Each host's override, its env files and extra env files: checked to exist and listed per host. */
async function hostOverrides(ctx: DefinitionContext): Promise<Pick<LoadedDefinition, 'files' | 'hostFiles' | 'extraBinds'>> {
  const { dir, def } = ctx;
  const files = new Set<string>();
  const hostFiles: Record<string, string[]> = {};
  const extraBinds: ComposeAnalysis['binds'] = [];
  for (const [host, h] of Object.entries(def.hosts)) {
    await requireFile(ctx, h.compose, `host override for ${host}:`);
    const doc = await parseYaml(await readText(join(dir, h.compose)), join(dir, h.compose));
    extraBinds.push(...bindsOfDocument(doc));
    const envFiles = await overrideEnvFiles(dir, doc, h.compose);
    // Listed ahead of the override itself, as they always were: `files` keeps its order.
    envFiles.forEach((f) => files.add(f));
    const list = [h.compose, ...envFiles];
    for (const env of h.env) {
      if (!(await exists(join(dir, env)))) throw new BuildInputError('DEFINITION_FILE_MISSING', `hosts.${host}.env names ${env}, which does not exist`);
      list.push(env);
    }
    list.forEach((f) => files.add(f));
    hostFiles[host] = [...new Set(list)];
  }
  return { files: [...files], hostFiles, extraBinds };
}

/** A host override's env_file paths, definition-relative: they are relative to it, and the bundle keeps the layout. */
async function overrideEnvFiles(dir: string, doc: unknown, ofFile: string): Promise<string[]> {
  const added: string[] = [];
  for (const env of envFilesOfDocument(doc)) {
    const rel = posix.normalize(posix.join(posix.dirname(ofFile), env));
    const problem = safeRelativePathProblem(rel);
    if (problem) throw new BuildInputError('DEFINITION_INVALID', `${ofFile}: env_file ${env} ${problem}; keep env files inside the definition directory`);
    if (!(await exists(join(dir, rel)))) throw new BuildInputError('DEFINITION_FILE_MISSING', `${ofFile}: env_file ${env} does not exist`);
    added.push(rel);
  }
  return added;
}

/**
 * The files Compose read to resolve the model: the compose files, env files for interpolation, and
 * the extends and include files they name (followed from each file's own directory). The host runs
 * the resolved model, so these travel for review and audit, not to be read again there.
 */
async function composeSources(dir: string, composeFiles: string[], envFiles: string[]): Promise<{ rel: string; kind: ProjectFileKind; services: string[] }[]> {
  const seen = new Set<string>();
  const visit = async (rel: string, compose: boolean): Promise<void> => {
    const norm = posix.normalize(rel);
    if (seen.has(norm) || safeRelativePathProblem(norm) || !(await exists(join(dir, norm)))) return;
    seen.add(norm);
    if (!compose) return;
    const doc = (await parseYaml(await readText(join(dir, norm)), join(dir, norm))) as Record<string, unknown> | null;
    const here = posix.dirname(norm);
    const at = (p: unknown) => (typeof p === 'string' ? posix.join(here, p) : null);
    const services = doc && typeof doc.services === 'object' && doc.services !== null ? Object.values(doc.services as Record<string, unknown>) : [];
    for (const s of services) {
      const ext = (s as { extends?: { file?: unknown } } | null)?.extends;
      const f = at(ext?.file);
      if (f) await visit(f, true);
    }
    for (const inc of Array.isArray(doc?.include) ? (doc!.include as unknown[]) : []) {
      const entry = typeof inc === 'string' ? { path: inc } : ((inc ?? {}) as { path?: unknown; env_file?: unknown; project_directory?: unknown });
      for (const p of Array.isArray(entry.path) ? entry.path : [entry.path]) {
        const f = at(p);
        if (!f) continue;
        await visit(f, true);
        // An included project reads its own .env, beside its file unless it names another directory.
        const envDir = typeof entry.project_directory === 'string' ? posix.join(here, entry.project_directory) : posix.dirname(f);
        await visit(posix.join(envDir, '.env'), false);
      }
      for (const e of Array.isArray(entry.env_file) ? entry.env_file : [entry.env_file]) {
        const f = at(e);
        if (f) await visit(f, false);
      }
    }
  };
  for (const f of composeFiles) await visit(f, true);
  for (const f of envFiles) await visit(f, false);
  return [...seen].map((rel) => ({ rel, kind: 'source' as const, services: [] }));
}

/**
 * Every file under each carried path, read now. A path that does not exist is refused here: on the
 * host Docker would make an empty directory in its place and the stack would start misconfigured.
 */
async function carriedFiles(dir: string, carried: { rel: string; kind: ProjectFileKind; services: string[] }[]): Promise<ProjectFile[]> {
  const out = new Map<string, ProjectFile>();
  const add = async (rel: string, c: { kind: ProjectFileKind; services: string[] }) => {
    const problem = safeRelativePathProblem(rel);
    if (problem) throw new BuildInputError('PROJECT_FILE_INVALID', `project file ${rel} ${problem}`);
    let data: Buffer | null;
    try {
      data = await readBounded(join(dir, rel), MAX_SMALL_FILE);
    } catch (e) {
      throw new BuildInputError('PROJECT_FILE_UNREADABLE', `project file ${rel} (${c.kind} of ${c.services.join(', ') || 'the project'}) cannot be carried: ${(e as Error).message}`, {
        hint: 'ferry carries regular files (not symbolic links or devices) of at most 16 MiB: configuration, not data. Put data in an image or a volume.',
        details: { file: rel },
      });
    }
    if (!data) throw new BuildInputError('PROJECT_FILE_MISSING', `project file ${rel} vanished while being read`);
    out.set(rel, { path: `compose/${PROJECT_DIR}/${rel}`, rel, kind: c.kind, services: c.services, data });
  };
  for (const c of carried) {
    const full = join(dir, c.rel);
    if (!(await exists(full))) {
      throw new BuildInputError('PROJECT_FILE_MISSING', `${c.kind === 'bind' ? 'bind mount source' : `${c.kind} file`} ./${c.rel} (used by ${c.services.join(', ') || 'the project'}) does not exist in ${dir}`, {
        hint: 'Create it, or fix the path in the compose file: Docker would otherwise create an empty directory there on the host. For data the stack writes, use a named volume or an absolute host path; carried files are a copy per release.',
        details: { file: c.rel, services: c.services },
      });
    }
    if (await isDirectory(full)) {
      for (const entry of await listTree(full)) {
        const rel = posix.join(c.rel, entry.path);
        if (entry.kind === 'directory') continue;
        if (entry.kind !== 'file') throw new BuildInputError('PROJECT_FILE_UNREADABLE', `project file ${rel} is a ${entry.kind}: ferry carries regular files only`, { details: { file: rel } });
        await add(rel, c);
      }
    } else {
      await add(c.rel, c);
    }
  }
  return [...out.values()].sort((a, b) => a.path.localeCompare(b.path));
}
