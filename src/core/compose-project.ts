/**
 * From the model the build server's Compose resolved (`config`) to the project a bundle carries:
 * which images the services run, which project files the stack reads (carried, signed, staged on
 * the host), which host paths it reads (checked on the host), and the model the host runs, with
 * every carried path pointing into the bundle's copy and everything only one Compose version
 * understands taken out. Pure: the caller reads files and asks the engine.
 */
import { posix } from 'node:path';

/** Where carried project files live, relative to the shipped compose file's directory. */
export const PROJECT_DIR = 'project';

/** 'source': a file Compose read to build the model (compose, extends, include and env files), carried for review. */
export type ProjectFileKind = 'bind' | 'secret' | 'config' | 'env_file' | 'source';

export interface CarriedPath {
  /** Relative to the project directory on the build server (and to PROJECT_DIR in the bundle). */
  rel: string;
  kind: ProjectFileKind;
  /** The services that read it. */
  services: string[];
}

export interface HostPath {
  path: string;
  kind: ProjectFileKind;
  services: string[];
  /** A secret left out with --exclude-secrets: the host must provide it at `path`. */
  excludedSecret?: boolean;
}

export interface PlannedService {
  name: string;
  /** The image reference the model names, or null for a service Compose builds. */
  image: string | null;
  /** Tags Compose gives a built service's image, most likely first (v2 PROJECT-SERVICE, v1 PROJECT_SERVICE). */
  builtTags: string[];
}

export interface ProjectPlan {
  services: PlannedService[];
  carried: CarriedPath[];
  hostPaths: HostPath[];
  /** The model the host runs (before the host override and ferry's pins). */
  model: Record<string, unknown>;
}

export interface PlanOptions {
  /** Absolute project directory on the build server: paths inside it are carried. */
  projectDir: string;
  project: string;
  composeVersion: 1 | 2;
  /** Leave secret files out; the host must hold them under this directory (per stack). */
  excludeSecretsTo?: string;
  /**
   * Profiles enabled. The model is resolved with every profile (Compose v1's config ignores
   * --profile anyway), and services of other profiles are dropped here, the same for both.
   */
  profiles?: string[];
  /** Services kept whatever their profiles (the smoke test, run once by name). */
  keep?: string[];
}

export class ProjectPlanError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly subject: string,
  ) {
    super(message);
  }
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Compose v1 normalizes a project name for its container and image names: lower case, [a-z0-9] only. */
export function v1ProjectName(project: string): string {
  return project.toLowerCase().replace(/[^a-z0-9]/g, '');
}

export function planProject(resolved: unknown, options: PlanOptions): ProjectPlan {
  if (!isObj(resolved) || !isObj(resolved.services)) throw new ProjectPlanError('COMPOSE_INVALID', 'Compose resolved no services: mapping', 'services');
  const model = dropNulls(structuredClone(resolved)) as Obj;
  const carried = new Map<string, CarriedPath>();
  const hostPaths = new Map<string, HostPath>();
  const root = posix.normalize(options.projectDir);
  const outside = posix.dirname(root) === '/' ? null : `${posix.dirname(root)}/`;
  if (options.profiles !== undefined) dropOtherProfiles(model.services as Obj, new Set(options.profiles), new Set(options.keep ?? []));

  /** A path the stack reads: carried (and rewritten) when inside the project, else a host path. */
  const place = (source: string, kind: ProjectFileKind, service: string | null): string => {
    const abs = posix.normalize(posix.isAbsolute(source) ? source : posix.join(root, source));
    const rel = posix.relative(root, abs);
    if (rel === '' || rel.startsWith('..') || posix.isAbsolute(rel)) {
      // Compose makes every path absolute, so "../x" and "/etc/x" look alike here. A path beside
      // the project on the build server was meant relative: it cannot be a host path.
      if (outside && abs.startsWith(outside)) {
        throw new ProjectPlanError('PROJECT_FILE_INVALID', `${kind} ${abs}${service ? ` of service "${service}"` : ''} is outside the project directory ${root}: only files inside it travel, and a host does not have that path`, abs);
      }
      const h = hostPaths.get(abs) ?? { path: abs, kind, services: [] };
      if (service && !h.services.includes(service)) h.services.push(service);
      hostPaths.set(abs, h);
      return abs;
    }
    if (kind === 'secret' && options.excludeSecretsTo !== undefined) {
      const at = posix.join(options.excludeSecretsTo, rel);
      const h = hostPaths.get(at) ?? { path: at, kind, services: [], excludedSecret: true };
      if (service && !h.services.includes(service)) h.services.push(service);
      hostPaths.set(at, h);
      return at;
    }
    const c = carried.get(rel) ?? { rel, kind, services: [] };
    if (service && !c.services.includes(service)) c.services.push(service);
    carried.set(rel, c);
    return `./${posix.join(PROJECT_DIR, rel)}`;
  };

  // Top-level secrets and configs with a file: their users are found through the services below.
  const topFiles = (key: 'secrets' | 'configs') => {
    const out = new Map<string, string>();
    const section = model[key];
    if (!isObj(section)) return out;
    for (const [name, def] of Object.entries(section)) if (isObj(def) && typeof def.file === 'string') out.set(name, def.file);
    return out;
  };
  const secretFiles = topFiles('secrets');
  const configFiles = topFiles('configs');
  const secretUsers = new Map<string, string[]>();

  const services: PlannedService[] = [];
  for (const [name, raw] of Object.entries(model.services as Obj)) {
    if (!isObj(raw)) throw new ProjectPlanError('COMPOSE_INVALID', `service "${name}" is not a mapping`, name);
    const svc = raw;
    const image = typeof svc.image === 'string' && svc.image.length > 0 ? svc.image : null;
    if (!image && svc.build === undefined) throw new ProjectPlanError('COMPOSE_NO_IMAGE', `service "${name}" has neither image: nor build:`, name);
    if (image !== null && /(^|[/:])$|\s/.test(image)) {
      throw new ProjectPlanError('COMPOSE_IMAGE_INVALID', `service "${name}" resolves to image ${JSON.stringify(image)}, which is not a complete reference (a variable empty?)`, name);
    }
    const v2 = `${options.project}-${name}`;
    const v1 = `${v1ProjectName(options.project)}_${name}`;
    services.push({ name, image, builtTags: image ? [] : options.composeVersion === 2 ? [v2, v1] : [v1, v2] });
    // A host never builds: what it runs is the image ferry pinned.
    delete svc.build;

    if (Array.isArray(svc.volumes)) {
      svc.volumes = svc.volumes.map((vol) => {
        if (typeof vol === 'string') {
          const [src, ...rest] = vol.split(':');
          if (src && rest.length > 0 && (src.startsWith('/') || src.startsWith('.') || src.startsWith('~'))) {
            return { type: 'bind', source: place(src, 'bind', name), target: rest[0], ...(rest[1]?.split(',').includes('ro') ? { read_only: true } : {}) };
          }
          return vol;
        }
        if (isObj(vol) && vol.type === 'bind' && typeof vol.source === 'string') {
          const out: Obj = { ...vol, source: place(vol.source, 'bind', name) };
          // v2 writes create_host_path: true for short-syntax binds (Docker then makes an empty
          // directory where a file is missing); v1 rejects the key. Missing paths are caught earlier.
          if (isObj(out.bind)) {
            const { create_host_path: _drop, ...bind } = out.bind;
            if (Object.keys(bind).length > 0) out.bind = bind;
            else delete out.bind;
          }
          return out;
        }
        return vol;
      });
    }

    for (const entry of Array.isArray(svc.secrets) ? svc.secrets : []) {
      const source = typeof entry === 'string' ? entry : isObj(entry) && typeof entry.source === 'string' ? entry.source : null;
      if (source && secretFiles.has(source)) secretUsers.set(source, [...(secretUsers.get(source) ?? []), name]);
    }

    // Compose v1 ignores configs outside a swarm; v2 bind-mounts their files. A read-only bind of
    // the same file at the same target means the same to both.
    if (Array.isArray(svc.configs)) {
      const kept: unknown[] = [];
      const binds: Obj[] = [];
      for (const entry of svc.configs) {
        const source = typeof entry === 'string' ? entry : isObj(entry) && typeof entry.source === 'string' ? entry.source : null;
        const file = source ? configFiles.get(source) : undefined;
        if (!source || file === undefined) {
          kept.push(entry);
          continue;
        }
        const target = isObj(entry) && typeof entry.target === 'string' ? entry.target : `/${source}`;
        binds.push({ type: 'bind', source: place(file, 'config', name), target, read_only: true });
      }
      if (kept.length > 0) svc.configs = kept;
      else delete svc.configs;
      if (binds.length > 0) svc.volumes = [...(Array.isArray(svc.volumes) ? svc.volumes : []), ...binds];
    }

    // v2's config folds env files into environment; v1 may leave some (required: false, say).
    if (svc.env_file !== undefined) {
      const list = (Array.isArray(svc.env_file) ? svc.env_file : [svc.env_file]).map((e) => (isObj(e) ? e : { path: e }));
      svc.env_file = list.map((e) => (typeof e.path === 'string' ? { ...e, path: place(e.path, 'env_file', name) } : e)).map((e) => (Object.keys(e).length === 1 ? e.path : e));
    }
  }

  if (isObj(model.secrets)) {
    for (const [secret, def] of Object.entries(model.secrets)) {
      if (isObj(def) && typeof def.file === 'string') {
        const file = def.file;
        const users = secretUsers.get(secret) ?? [];
        for (const user of users.length > 0 ? users : [null]) def.file = place(file, 'secret', user);
      }
    }
  }
  if (isObj(model.configs)) {
    for (const name of configFiles.keys()) delete model.configs[name];
    if (Object.keys(model.configs).length === 0) delete model.configs;
  }
  // The host names the project itself (--project-name); v1 rejects a top-level name.
  delete model.name;
  // v1's config adds a file format version; v2 warns that it is obsolete.
  delete model.version;

  return { services, carried: [...carried.values()].sort((a, b) => a.rel.localeCompare(b.rel)), hostPaths: [...hostPaths.values()].sort((a, b) => a.path.localeCompare(b.path)), model };
}

function dropOtherProfiles(services: Obj, enabled: Set<string>, keep: Set<string>): void {
  const inProfile = (svc: unknown) => {
    const p = isObj(svc) && Array.isArray(svc.profiles) ? svc.profiles.map(String) : [];
    return p.length === 0 || p.some((x) => enabled.has(x));
  };
  const dropped = Object.keys(services).filter((name) => !keep.has(name) && !inProfile(services[name]));
  for (const name of dropped) delete services[name];
  for (const [name, svc] of Object.entries(services)) {
    if (!isObj(svc)) continue;
    const deps = Array.isArray(svc.depends_on) ? svc.depends_on.map(String) : isObj(svc.depends_on) ? Object.keys(svc.depends_on) : [];
    const missing = deps.find((d) => dropped.includes(d));
    if (missing) throw new ProjectPlanError('COMPOSE_PROFILE_DEPENDENCY', `service "${name}" depends on "${missing}", whose profile is not enabled; enable it (profiles: in ferry.yaml or --profile)`, name);
  }
}

/** v2's config writes `command: null`, `networks: {default: null}`; v1 rejects nulls where a value is expected. */
function dropNulls(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(dropNulls);
  if (!isObj(value)) return value;
  const out: Obj = {};
  for (const [k, v] of Object.entries(value)) {
    if (v === null) {
      // A service's network listed without options is `name: null` in v2's output: keep the name.
      if (k !== 'command' && k !== 'entrypoint') out[k] = {};
      continue;
    }
    out[k] = dropNulls(v);
  }
  return out;
}
