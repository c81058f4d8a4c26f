/**
 * The stack file ferry hands to `docker stack deploy`: the bundle's compose file and the host
 * override merged here (the docker CLI refuses much of what Compose accepts, e.g. depends_on with
 * conditions, profiles), then made fit for a Swarm without a registry or IPVS:
 *   - every service runs the image of the signed manifest by its ferry tag (each node holds it:
 *     ferry loaded it there), deployed with --resolve-image never;
 *   - ports are published in `mode: host` and services use `endpoint_mode: dnsrr`: the ingress
 *     routing mesh and virtual IPs need IPVS, which not every kernel has;
 *   - update_config rolls back a failed update; services with a health check start the new task
 *     first, unless the compose file chose an order or the service publishes host ports (a second
 *     task on the same node could not bind them);
 *   - the smoke service runs once per release, after the others converged: one replica, never
 *     restarted, labelled with the release so that an unchanged image still gets a new task.
 * Pure: documents in, document out.
 */

export const STACK_FILE = 'ferry.stack.yaml';
export const RELEASE_LABEL = 'ferry.release';
/** The compose format version every stack deploy we meet accepts with all keys used here. */
const STACK_VERSION = '3.8';

type Doc = Record<string, unknown>;

const isMap = (v: unknown): v is Doc => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Keys the Swarm stack format rejects or ignores; Swarm has its own words for what matters of them. */
const NOT_IN_STACKS = ['build', 'depends_on', 'profiles', 'restart', 'container_name', 'pull_policy', 'links', 'external_links', 'scale', 'extends', 'mem_limit', 'memswap_limit', 'cpus', 'cpu_shares', 'network_mode'];
/** Lists an override adds to rather than replaces (as Compose merges them). */
const APPENDED = new Set(['ports', 'expose', 'volumes', 'dns', 'dns_search', 'extra_hosts', 'secrets', 'configs', 'cap_add', 'cap_drop', 'devices', 'tmpfs', 'env_file']);
/** Lists or maps of KEY=VALUE that Compose merges key by key. */
const KEYED = new Set(['environment', 'labels']);

export class SwarmStackError extends Error {
  constructor(
    readonly code: 'SWARM_PORT_UNSUPPORTED',
    message: string,
    readonly subject: string,
  ) {
    super(message);
  }
}

function keyed(v: unknown): Record<string, string | null> {
  if (isMap(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, x === null || x === undefined ? null : String(x)]));
  if (Array.isArray(v)) {
    const out: Record<string, string | null> = {};
    for (const item of v) {
      const s = String(item);
      const eq = s.indexOf('=');
      if (eq < 0) out[s] = null;
      else out[s.slice(0, eq)] = s.slice(eq + 1);
    }
    return out;
  }
  return {};
}

function mergeValue(key: string, base: unknown, over: unknown): unknown {
  if (over === undefined) return base;
  if (KEYED.has(key)) return { ...keyed(base), ...keyed(over) };
  if (APPENDED.has(key) && Array.isArray(base) && Array.isArray(over)) {
    const seen = new Set(base.map((x) => JSON.stringify(x)));
    return [...base, ...over.filter((x) => !seen.has(JSON.stringify(x)))];
  }
  if (isMap(base) && isMap(over)) {
    const out: Doc = { ...base };
    for (const [k, v] of Object.entries(over)) out[k] = mergeValue(k, base[k], v);
    return out;
  }
  return over;
}

/** Compose files in -f order, merged as Compose merges an override into its base. */
export function mergeCompose(docs: readonly unknown[]): Doc {
  let out: Doc = {};
  for (const d of docs) if (isMap(d)) out = mergeValue('', out, d) as Doc;
  return out;
}

export interface SwarmPort {
  target: number;
  published?: number;
  protocol: 'tcp' | 'udp';
  mode: 'host';
}

/** A port in Compose's short or long form, published on the node that runs the task. */
export function hostModePort(p: unknown, service: string): SwarmPort[] {
  if (isMap(p)) {
    const target = Number(p.target);
    if (!Number.isInteger(target)) throw new SwarmStackError('SWARM_PORT_UNSUPPORTED', `service "${service}" has a port without a numeric target`, service);
    const published = p.published === undefined || p.published === null || p.published === '' ? undefined : Number(p.published);
    return [{ target, ...(published !== undefined ? { published } : {}), protocol: p.protocol === 'udp' ? 'udp' : 'tcp', mode: 'host' }];
  }
  const s = String(p);
  // [IP:][PUBLISHED:]TARGET[/PROTO]; an IPv6 address to bind to comes in brackets.
  const [spec, proto] = s.replace(/^\[[^\]]*\]:/, '0.0.0.0:').split('/');
  const parts = (spec ?? '').split(':');
  const ok = parts.length >= 1 && parts.length <= 3 && parts.slice(-2).every((x, i, a) => /^\d+(?:-\d+)?$/.test(x) || (a.length === 2 && i === 0 && x === '')) && (proto === undefined || proto === 'tcp' || proto === 'udp');
  if (!ok) throw new SwarmStackError('SWARM_PORT_UNSUPPORTED', `service "${service}": port "${s}" is not one Swarm can publish`, service);
  const m = [s, parts.length >= 2 && parts[parts.length - 2] !== '' ? parts[parts.length - 2] : undefined, parts[parts.length - 1], proto] as const;
  const protocol = m[3] === 'udp' ? 'udp' : 'tcp';
  const range = (r: string | undefined) => (r === undefined ? undefined : r.split('-').map(Number));
  const targets = range(m[2])!;
  const published = range(m[1]);
  const span = (r: number[]) => (r.length === 2 ? Array.from({ length: r[1]! - r[0]! + 1 }, (_, i) => r[0]! + i) : [r[0]!]);
  const ts = span(targets);
  const ps = published ? span(published) : undefined;
  if (ps && ps.length !== ts.length) throw new SwarmStackError('SWARM_PORT_UNSUPPORTED', `service "${service}": port range "${s}" maps ranges of different lengths`, service);
  // An address to bind to ("127.0.0.1:8080:80") has no Swarm equivalent: the port is published on every address of the node.
  return ts.map((target, i) => ({ target, ...(ps ? { published: ps[i]! } : {}), protocol, mode: 'host' as const }));
}

export interface SwarmStackInput {
  /** The merged compose model (mergeCompose of the compose file and the host override). */
  model: unknown;
  /** The image each service runs: its ferry tag, naming the pinned image ID. */
  images: ReadonlyMap<string, string>;
  smoke: string | null;
  release: string;
  /** Node IDs the stack must stay off (nodes that could not be loaded, --allow-partial-nodes). */
  avoidNodes?: readonly string[];
  /**
   * false: the smoke service is deployed with no replica. The smoke test must see the release it
   * tests, so it runs in a second deploy, once the services have converged (default true).
   */
  smokeRuns?: boolean;
}

export interface SwarmStackPlan {
  doc: Doc;
  /** Long-running services, whose replicas must all run (and be healthy) before the release is accepted. */
  services: string[];
  smoke: string | null;
}

function hasHealthcheck(svc: Doc): boolean {
  const hc = svc.healthcheck;
  if (!isMap(hc)) return false;
  if (hc.disable === true) return false;
  const test = hc.test;
  return !(Array.isArray(test) && test[0] === 'NONE');
}

function restartCondition(restart: unknown): string | undefined {
  if (restart === undefined || restart === null) return undefined;
  const r = String(restart);
  if (r === 'no') return 'none';
  if (r.startsWith('on-failure')) return 'on-failure';
  return 'any';
}

export function planSwarmStack(input: SwarmStackInput): SwarmStackPlan {
  const model = isMap(input.model) ? input.model : {};
  const doc: Doc = { version: STACK_VERSION };
  for (const key of ['networks', 'volumes', 'secrets', 'configs']) if (isMap(model[key])) doc[key] = model[key];
  const services: Doc = {};
  const longRunning: string[] = [];
  for (const [name, raw] of Object.entries(isMap(model.services) ? model.services : {})) {
    if (!isMap(raw)) continue;
    // As `compose up` does: a service behind a profile does not run (the smoke test often is one).
    if (Array.isArray(raw.profiles) && raw.profiles.length > 0 && name !== input.smoke) continue;
    const svc: Doc = { ...raw };
    const restart = restartCondition(svc.restart);
    for (const k of NOT_IN_STACKS) delete svc[k];
    const image = input.images.get(name);
    if (image) svc.image = image;
    if (Array.isArray(svc.ports)) svc.ports = svc.ports.flatMap((p) => hostModePort(p, name));
    const publishes = Array.isArray(svc.ports) && svc.ports.length > 0;
    for (const k of KEYED) if (svc[k] !== undefined) svc[k] = keyed(svc[k]);
    const deploy: Doc = isMap(svc.deploy) ? { ...svc.deploy } : {};
    deploy.endpoint_mode ??= 'dnsrr';
    if (input.avoidNodes && input.avoidNodes.length > 0) {
      const placement: Doc = isMap(deploy.placement) ? { ...deploy.placement } : {};
      const constraints = Array.isArray(placement.constraints) ? [...(placement.constraints as unknown[])] : [];
      for (const n of input.avoidNodes) constraints.push(`node.id!=${n}`);
      deploy.placement = { ...placement, constraints };
    }
    if (name === input.smoke) {
      deploy.mode = 'replicated';
      deploy.replicas = input.smokeRuns === false ? 0 : 1;
      deploy.restart_policy = { condition: 'none' };
      delete deploy.update_config;
      svc.labels = { ...keyed(svc.labels), [RELEASE_LABEL]: input.release };
    } else {
      longRunning.push(name);
      if (restart && !isMap(deploy.restart_policy)) deploy.restart_policy = { condition: restart };
      const update: Doc = isMap(deploy.update_config) ? { ...deploy.update_config } : {};
      update.failure_action ??= 'rollback';
      if (update.order === undefined && hasHealthcheck(svc) && !publishes) update.order = 'start-first';
      deploy.update_config = update;
    }
    svc.deploy = deploy;
    services[name] = svc;
  }
  doc.services = services;
  return { doc, services: longRunning, smoke: input.smoke && services[input.smoke] ? input.smoke : null };
}

/** Swarm's name for a stack's service. */
export const swarmServiceName = (stack: string, service: string): string => `${stack}_${service}`;

/** The long-running services of a stack file (what must converge): all but the smoke service. */
export function stackServicesOf(doc: unknown, smoke: string | null): string[] {
  const services = isMap(doc) && isMap(doc.services) ? doc.services : {};
  return Object.keys(services).filter((s) => s !== smoke);
}

/** The same stack with the smoke service at no replica: the services converge before it tests them. */
export function withoutSmokeRun(doc: Doc, smoke: string | null): Doc {
  const services = isMap(doc.services) ? doc.services : {};
  const svc = smoke ? services[smoke] : undefined;
  if (!smoke || !isMap(svc)) return doc;
  return { ...doc, services: { ...services, [smoke]: { ...svc, deploy: { ...(isMap(svc.deploy) ? svc.deploy : {}), replicas: 0 } } } };
}
