/**
 * The bundle definition, `bundles/<name>/ferry.yaml`: what a release of a stack consists of.
 * Validation names the file and field of each problem, since people edit this file by hand.
 */
import { BuildInputError } from '../errors.js';
import { safeRelativePathProblem } from './paths.js';

export interface HostDefinition {
  /** Compose override file, relative to the definition directory. */
  compose: string;
  /** Optional env files the override uses, relative to the definition directory. */
  env: string[];
}

export interface BundleDefinition {
  name: string;
  version?: string;
  /** The compose files, in `-f` order, relative to the definition directory. */
  compose: string[];
  /** Env files Compose reads for interpolation (`--env-file`), in order; default: Compose's own `.env`. */
  envFiles: string[];
  /** Compose profiles to enable (`--profile`). */
  profiles: string[];
  hosts: Record<string, HostDefinition>;
  images: string[];
  /** Every create warning refuses the bundle, as `bundle create --strict`. */
  strict: boolean;
}

const NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const VERSION = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/;
const HOST = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/;
/** A name ferry.yaml's `hosts:` accepts: what `--host` picks an override by and an inventory records. */
export function isHostName(name: string): boolean {
  return HOST.test(name);
}

const KNOWN = new Set(['name', 'version', 'compose', 'env_files', 'profiles', 'hosts', 'images', 'strict']);
const PROFILE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

export function parseDefinition(doc: unknown, file: string): BundleDefinition {
  const problems: string[] = [];
  const fail = (field: string, msg: string) => problems.push(`${field}: ${msg}`);
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw new BuildInputError('DEFINITION_INVALID', `${file} must be a YAML mapping with name, compose and hosts`, {
      details: { file },
    });
  }
  const d = doc as Record<string, unknown>;
  for (const key of Object.keys(d)) if (!KNOWN.has(key)) fail(key, `unknown field (known: ${[...KNOWN].join(', ')})`);

  if (typeof d.name !== 'string' || !NAME.test(d.name)) {
    fail('name', 'required; lowercase letters, digits, "-" and "_", starting with a letter or digit (it becomes the compose project name)');
  }
  let version: string | undefined;
  if (d.version !== undefined && d.version !== null) {
    version = String(d.version);
    if (!VERSION.test(version)) fail('version', `${JSON.stringify(version)} is not a valid version (letters, digits, ".", "_", "+", "-")`);
  }
  const relPath = (value: unknown, field: string): string | undefined => {
    if (typeof value !== 'string') return void fail(field, 'must be a path relative to the definition directory');
    const problem = safeRelativePathProblem(value.replace(/^\.\//, ''));
    if (problem) return void fail(field, `${JSON.stringify(value)} ${problem}; use a path inside the definition directory`);
    return value.replace(/^\.\//, '');
  };
  const list = (value: unknown): unknown[] => (value === undefined || value === null ? [] : Array.isArray(value) ? value : [value]);
  const composeList = list(d.compose);
  if (composeList.length === 0) fail('compose', 'required: the compose file, or a list of them in -f order');
  const compose = composeList.map((c, i) => relPath(c, composeList.length > 1 ? `compose[${i}]` : 'compose')).filter((c): c is string => !!c);
  const envFiles = list(d.env_files)
    .map((e, i) => relPath(e, `env_files[${i}]`))
    .filter((e): e is string => !!e);
  const profiles: string[] = [];
  list(d.profiles).forEach((p, i) => {
    if (typeof p === 'string' && PROFILE.test(p)) profiles.push(p);
    else fail(`profiles[${i}]`, 'must be a Compose profile name');
  });

  const hosts: Record<string, HostDefinition> = {};
  if (d.hosts !== undefined && d.hosts !== null) {
    if (typeof d.hosts !== 'object' || Array.isArray(d.hosts)) {
      fail('hosts', 'must map host names to override files, e.g. "edge-1: hosts/edge-1.yaml"');
    } else {
      for (const [host, value] of Object.entries(d.hosts as Record<string, unknown>)) {
        if (!HOST.test(host)) fail(`hosts.${host}`, 'is not a valid host name');
        if (typeof value === 'string') {
          const p = relPath(value, `hosts.${host}`);
          if (p) hosts[host] = { compose: p, env: [] };
        } else if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
          const h = value as Record<string, unknown>;
          const p = relPath(h.compose, `hosts.${host}.compose`);
          const envList = h.env === undefined ? [] : Array.isArray(h.env) ? h.env : [h.env];
          const env = envList.map((e, i) => relPath(e, `hosts.${host}.env[${i}]`)).filter((e): e is string => !!e);
          if (p) hosts[host] = { compose: p, env };
        } else {
          fail(`hosts.${host}`, 'must be an override file path or {compose: FILE, env: [FILES]}');
        }
      }
    }
  }

  const images: string[] = [];
  if (d.images !== undefined && d.images !== null) {
    if (!Array.isArray(d.images)) fail('images', 'must be a list of image references');
    else
      d.images.forEach((ref, i) => {
        if (typeof ref !== 'string' || ref.length === 0) fail(`images[${i}]`, 'must be an image reference such as "shop/tools:1.2"');
        else images.push(ref);
      });
  }

  if (d.strict !== undefined && d.strict !== null && typeof d.strict !== 'boolean') fail('strict', 'must be true or false');
  const strict = d.strict === true;

  if (problems.length > 0 || compose.length === 0) {
    throw new BuildInputError('DEFINITION_INVALID', `${file} is not a valid bundle definition:\n  - ${problems.join('\n  - ')}`, {
      details: { file, problems },
      hint: 'See README.md, "Bundle definitions", for the format.',
    });
  }
  return { name: d.name as string, version, compose, envFiles, profiles, hosts, images, strict };
}
