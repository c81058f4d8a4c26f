/**
 * What ferry needs from a compose file: each service's image, the smoke-test service, files the
 * stack refers to, and the lessons from the field that become create-time warnings. Only reads
 * the parsed document; the compose tool itself stays the authority on running it.
 */
import { BuildInputError } from '../errors.js';
import { checkBlueGreen, parseSwitch, SwitchSpecError, type SwitchSpec } from './compose-colours.js';

export interface ComposeService {
  name: string;
  image: string;
  hasHealthcheck: boolean;
  /** Explicitly disabled (`disable: true` or test NONE): the image's own check is off too. */
  healthcheckDisabled: boolean;
  restart?: string;
  user?: string;
  envFiles: string[];
  /** A memory limit is set (mem_limit, or deploy.resources.limits.memory as Compose v2 writes it). */
  hasMemoryLimit: boolean;
}

export interface ComposeAnalysis {
  services: ComposeService[];
  smoke: string | null;
  /** x-ferry's switch: in place (default) or blue/green with its front and shared services. */
  switch: SwitchSpec;
  binds: { service: string; source: string; target: string }[];
}

export interface FieldWarning {
  code: string;
  message: string;
  subject: string;
}

export function analyzeCompose(doc: unknown, file: string): ComposeAnalysis {
  const bad = (msg: string) => new BuildInputError('COMPOSE_INVALID', `${file}: ${msg}`, { details: { file } });
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw bad('must be a YAML mapping with a services: section');
  const d = doc as Record<string, unknown>;
  const servicesDoc = d.services;
  if (typeof servicesDoc !== 'object' || servicesDoc === null || Array.isArray(servicesDoc)) throw bad('has no services: mapping');

  const services: ComposeService[] = [];
  const binds: ComposeAnalysis['binds'] = [];
  for (const [name, raw] of Object.entries(servicesDoc as Record<string, unknown>)) {
    const s = (typeof raw === 'object' && raw !== null ? raw : {}) as Record<string, unknown>;
    if (typeof s.image !== 'string' || s.image.length === 0) {
      throw bad(`service "${name}" has no image:. ferry ships images: build them first and name each service's image (a build: section alone cannot travel)`);
    }
    if (s.image.includes('${') || s.image.includes('$')) {
      throw bad(`service "${name}" image ${JSON.stringify(s.image)} uses variable interpolation; name the exact image so the bundle pins it`);
    }
    const hc = s.healthcheck as Record<string, unknown> | undefined;
    const test = hc?.test;
    const disabled =
      hc?.disable === true || test === 'NONE' || (Array.isArray(test) && test[0] === 'NONE');
    services.push({
      name,
      image: s.image,
      hasHealthcheck: hc !== undefined && test !== undefined && !disabled,
      healthcheckDisabled: disabled,
      restart: typeof s.restart === 'string' ? s.restart : undefined,
      user: s.user === undefined ? undefined : String(s.user),
      envFiles: envFilesOf(s.env_file),
      hasMemoryLimit: hasMemoryLimit(s),
    });
    binds.push(...bindsOf(name, s.volumes));
  }

  let smoke: string | null = null;
  const x = d['x-ferry'];
  if (x !== undefined) {
    if (typeof x !== 'object' || x === null) throw bad('x-ferry must be a mapping, e.g. "x-ferry: {smoke: smoke}"');
    const s = (x as Record<string, unknown>).smoke;
    if (s !== undefined && s !== null) {
      if (typeof s !== 'string' || !services.some((svc) => svc.name === s)) {
        throw bad(`x-ferry.smoke names ${JSON.stringify(s)}, which is not a service of this file`);
      }
      smoke = s;
    }
  }
  let switchSpec: SwitchSpec;
  try {
    switchSpec = parseSwitch(d);
    checkBlueGreen(d, switchSpec, smoke);
  } catch (e) {
    if (e instanceof SwitchSpecError) throw new BuildInputError(e.code, `${file}: ${e.message}`, { details: { file, service: e.subject } });
    throw e;
  }
  if (switchSpec.mode === 'blue-green' && smoke && switchSpec.front.concat(switchSpec.shared).includes(smoke)) {
    throw new BuildInputError('BLUE_GREEN_INVALID', `${file}: the smoke test "${smoke}" runs against the new colour and cannot be a front or shared service`, { details: { file, service: smoke } });
  }
  return { services, smoke, switch: switchSpec, binds };
}

/** Volumes of an override file: only the bind mounts matter, for the warnings. */
export function bindsOfDocument(doc: unknown): ComposeAnalysis['binds'] {
  const services = (doc as { services?: unknown } | null)?.services;
  if (typeof services !== 'object' || services === null) return [];
  return Object.entries(services as Record<string, unknown>).flatMap(([name, s]) =>
    bindsOf(name, (s as { volumes?: unknown } | null)?.volumes),
  );
}

export function envFilesOfDocument(doc: unknown): string[] {
  const services = (doc as { services?: unknown } | null)?.services;
  if (typeof services !== 'object' || services === null) return [];
  return Object.values(services as Record<string, unknown>).flatMap((s) => envFilesOf((s as { env_file?: unknown } | null)?.env_file));
}

function envFilesOf(value: unknown): string[] {
  const list = value === undefined || value === null ? [] : Array.isArray(value) ? value : [value];
  return list
    .map((e) => (typeof e === 'string' ? e : typeof e === 'object' && e !== null ? (e as { path?: unknown }).path : undefined))
    .filter((e): e is string => typeof e === 'string');
}

function bindsOf(service: string, volumes: unknown): ComposeAnalysis['binds'] {
  if (!Array.isArray(volumes)) return [];
  const out: ComposeAnalysis['binds'] = [];
  for (const v of volumes) {
    if (typeof v === 'string') {
      const [source, target] = v.split(':');
      if (source && target && /^[/.~]/.test(source)) out.push({ service, source, target });
    } else if (typeof v === 'object' && v !== null) {
      const o = v as Record<string, unknown>;
      if (o.type === 'bind' && typeof o.source === 'string') out.push({ service, source: o.source, target: String(o.target ?? '') });
    }
  }
  return out;
}

const CONFIG_DIR = /(^|\/)(etc|conf|config|configs|cfg|settings)(\/|$)/i;
const LOG_DIR = /(^|\/)(log|logs)(\/|$)/i;

export interface ImageFacts {
  /** `User` from the image config ("" means root). */
  user: string;
  hasHealthcheck: boolean;
}

/**
 * Lessons from the field, turned into warnings at create time when they are cheap to fix:
 * an unconfirmable deploy (no health check), a stack that stays down after a reboot (no restart
 * policy), root containers, and host directories that tie a stack to one machine's layout.
 */
function hasMemoryLimit(s: Record<string, unknown>): boolean {
  const set = (v: unknown) => (typeof v === 'string' && v.trim() !== '' && v.trim() !== '0') || (typeof v === 'number' && v > 0);
  const deploy = s.deploy as { resources?: { limits?: { memory?: unknown } } } | undefined;
  return set(s.mem_limit) || set(deploy?.resources?.limits?.memory);
}

export function fieldWarnings(
  analysis: ComposeAnalysis,
  imageFacts: (service: ComposeService) => ImageFacts,
  extraBinds: ComposeAnalysis['binds'] = [],
): FieldWarning[] {
  const warnings: FieldWarning[] = [];
  for (const svc of analysis.services) {
    const facts = imageFacts(svc);
    const isSmoke = svc.name === analysis.smoke;
    if (!isSmoke && !svc.hasHealthcheck && (svc.healthcheckDisabled || !facts.hasHealthcheck)) {
      warnings.push({
        code: 'NO_HEALTHCHECK',
        subject: svc.name,
        message: `service "${svc.name}" has no health check: the host cannot confirm it came up, only that it started`,
      });
    }
    if (!isSmoke && (svc.restart === undefined || svc.restart === 'no')) {
      warnings.push({
        code: 'NO_RESTART_POLICY',
        subject: svc.name,
        message: `service "${svc.name}" has no restart policy: it stays down after a crash or a reboot (add restart: unless-stopped)`,
      });
    }
    if (!isSmoke && !svc.hasMemoryLimit) {
      warnings.push({
        code: 'NO_MEMORY_LIMIT',
        subject: svc.name,
        message: `service "${svc.name}" has no memory limit: a runaway container can take the whole host down (set mem_limit, or deploy.resources.limits.memory)`,
      });
    }
    const user = (svc.user ?? facts.user).trim();
    if (user === '' || user === 'root' || user === '0' || user.startsWith('0:') || user.startsWith('root:')) {
      warnings.push({
        code: 'RUNS_AS_ROOT',
        subject: svc.name,
        message: `service "${svc.name}" runs as root (image ${svc.image}${svc.user === undefined ? ' sets no USER' : ''}): set a non-root user`,
      });
    }
  }
  for (const b of [...analysis.binds, ...extraBinds]) {
    if (LOG_DIR.test(b.source) || LOG_DIR.test(b.target)) {
      warnings.push({
        code: 'MOUNTS_LOG_DIR',
        subject: b.service,
        message: `service "${b.service}" mounts host directory ${b.source} for logs: log to stdout and let the engine keep them`,
      });
    } else if (CONFIG_DIR.test(b.source)) {
      warnings.push({
        code: 'MOUNTS_CONFIG_DIR',
        subject: b.service,
        message: `service "${b.service}" mounts host config directory ${b.source}: config belongs in env (per-host overrides), not in files only one host has`,
      });
    }
  }
  return dedupe(warnings);
}

function dedupe(warnings: FieldWarning[]): FieldWarning[] {
  const seen = new Set<string>();
  return warnings.filter((w) => {
    const key = `${w.code}|${w.subject}|${w.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
