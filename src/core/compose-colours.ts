/**
 * Blue/green on one host (`x-ferry: {switch: blue-green, front: [...], shared: [...]}`): which
 * services run where, which colour comes next, and the override that gives a colour project its
 * own networks. Pure: the deploy service asks the engine and runs compose.
 *
 * A stack then runs as up to three compose projects: STACK holds the front (owns the published
 * ports) and the shared services (state, never run twice); STACK-blue and STACK-green each hold
 * every other service. The front reaches the live colour by service name: ferry gives the live
 * colour's containers the service names as aliases on the front's networks, so a proxy that
 * resolves its upstream by DNS name follows the switch.
 */

export type Colour = 'blue' | 'green';
export const COLOURS: readonly Colour[] = ['blue', 'green'];

export type SwitchSpec = { mode: 'in-place' } | { mode: 'blue-green'; front: string[]; shared: string[] };

export const IN_PLACE: SwitchSpec = Object.freeze({ mode: 'in-place' });

/** Default grace period between the switch and stopping the old colour (`--drain`). */
export const DEFAULT_DRAIN_SECONDS = 10;

export class SwitchSpecError extends Error {
  constructor(
    readonly code: 'BLUE_GREEN_INVALID' | 'BLUE_GREEN_PORT' | 'BLUE_GREEN_VOLUME',
    message: string,
    readonly subject: string,
  ) {
    super(message);
  }
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Reads `switch`, `front` and `shared` of a model's x-ferry; the model's services are the names allowed. */
export function parseSwitch(model: unknown): SwitchSpec {
  const m = isObj(model) ? model : {};
  const x = isObj(m['x-ferry']) ? m['x-ferry'] : {};
  const services = isObj(m.services) ? Object.keys(m.services) : [];
  const mode = x.switch ?? 'in-place';
  if (mode !== 'in-place' && mode !== 'blue-green') {
    throw new SwitchSpecError('BLUE_GREEN_INVALID', `x-ferry.switch is ${JSON.stringify(mode)}; it must be "in-place" (the default) or "blue-green"`, 'x-ferry.switch');
  }
  if (mode === 'in-place') {
    if (x.front !== undefined || x.shared !== undefined) {
      throw new SwitchSpecError('BLUE_GREEN_INVALID', 'x-ferry.front and x-ferry.shared mean something only with "switch: blue-green"', 'x-ferry.switch');
    }
    return IN_PLACE;
  }
  const list = (key: 'front' | 'shared'): string[] => {
    const v = x[key] ?? [];
    const names = typeof v === 'string' ? [v] : v;
    if (!Array.isArray(names) || names.some((n) => typeof n !== 'string')) {
      throw new SwitchSpecError('BLUE_GREEN_INVALID', `x-ferry.${key} must be a list of service names`, `x-ferry.${key}`);
    }
    for (const n of names as string[]) {
      if (!services.includes(n)) throw new SwitchSpecError('BLUE_GREEN_INVALID', `x-ferry.${key} names service "${n}", which the stack does not have`, n);
    }
    return [...new Set(names as string[])];
  };
  const front = list('front');
  const shared = list('shared');
  if (front.length === 0) {
    throw new SwitchSpecError('BLUE_GREEN_INVALID', 'switch: blue-green needs x-ferry.front: the services that own the published ports and reach the others by name (a proxy)', 'x-ferry.front');
  }
  const both = front.find((f) => shared.includes(f));
  if (both) throw new SwitchSpecError('BLUE_GREEN_INVALID', `service "${both}" is in both x-ferry.front and x-ferry.shared`, both);
  return { mode: 'blue-green', front, shared };
}

/** The services that run once per colour: all but front, shared and the smoke test (run apart). */
export function colouredServices(spec: SwitchSpec, services: readonly string[], smoke: string | null): string[] {
  if (spec.mode !== 'blue-green') return [];
  return services.filter((s) => !spec.front.includes(s) && !spec.shared.includes(s) && s !== smoke);
}

/** The services of the stable project (STACK): the front and the shared services. */
export function stableServices(spec: SwitchSpec): string[] {
  return spec.mode === 'blue-green' ? [...spec.front, ...spec.shared] : [];
}

export function colourProject(stack: string, colour: Colour): string {
  return `${stack}-${colour}`;
}

/** The colour an install or rollback starts: the one that is not live. */
export function nextColour(live: Colour | null | undefined): Colour {
  return live === 'blue' ? 'green' : 'blue';
}

/**
 * Refusals at create time, so that a bundle never reaches a host where two colours would collide:
 * a coloured service publishing a host port (both colours would bind it), a fixed container name
 * (both would claim it), a named volume (with Compose's resolved names both colours would write
 * the same one at once; state belongs to a shared service), a shared service no colour can reach.
 */
export function checkBlueGreen(model: unknown, spec: SwitchSpec, smoke: string | null): void {
  if (spec.mode !== 'blue-green' || !isObj(model) || !isObj(model.services)) return;
  const services = model.services;
  for (const name of colouredServices(spec, Object.keys(services), smoke)) {
    const s = isObj(services[name]) ? services[name] : {};
    const published = (Array.isArray(s.ports) ? s.ports : []).filter(publishesHostPort);
    if (published.length > 0) {
      throw new SwitchSpecError('BLUE_GREEN_PORT', `service "${name}" runs once per colour (blue/green) and publishes host port ${published.map(portText).join(', ')}: both colours cannot bind it. Publish it from a front service (x-ferry.front), or make "${name}" a front service`, name);
    }
    if (typeof s.container_name === 'string') {
      throw new SwitchSpecError('BLUE_GREEN_INVALID', `service "${name}" runs once per colour (blue/green) and sets container_name "${s.container_name}": both colours cannot have it. Remove container_name`, name);
    }
    for (const v of Array.isArray(s.volumes) ? s.volumes : []) {
      const source = namedVolume(v);
      if (source) {
        throw new SwitchSpecError('BLUE_GREEN_VOLUME', `service "${name}" runs once per colour (blue/green) and mounts named volume "${source}": both colours would use it at once. Keep state in a service listed in x-ferry.shared`, name);
      }
    }
  }
  const cut = unreachableShared(model, spec, smoke);
  if (cut) {
    throw new SwitchSpecError('BLUE_GREEN_INVALID', `shared service "${cut.service}" is on network${cut.networks.length === 1 ? '' : 's'} ${cut.networks.join(', ') || '(none)'}, which no coloured service (${cut.coloured.join(', ')}) joins: the colours could not reach it. Put it on a network they share, or leave it out of x-ferry.shared`, cut.service);
  }
}

/**
 * A shared service no coloured service has a network in common with: the colours could never reach
 * it by name, so declaring it shared (run once, for the colours) cannot be what was meant. Services
 * with a network_mode are left out: their reach is not a matter of compose networks.
 */
export function unreachableShared(model: unknown, spec: SwitchSpec, smoke: string | null): { service: string; networks: string[]; coloured: string[] } | null {
  if (spec.mode !== 'blue-green' || !isObj(model) || !isObj(model.services)) return null;
  const services = model.services;
  const coloured = colouredServices(spec, Object.keys(services), smoke).filter((n) => networkMode(services[n]) === undefined);
  if (coloured.length === 0) return null;
  const reachable = new Set(coloured.flatMap((n) => serviceNetworks(services[n])));
  for (const name of spec.shared) {
    if (networkMode(services[name]) !== undefined) continue;
    const nets = serviceNetworks(services[name]);
    if (!nets.some((n) => reachable.has(n))) return { service: name, networks: nets, coloured };
  }
  return null;
}

const networkMode = (s: unknown): string | undefined => (isObj(s) && typeof s.network_mode === 'string' ? s.network_mode : undefined);

/** The networks a service joins: its `networks` list or map, or the project's default network. */
function serviceNetworks(s: unknown): string[] {
  const nets = isObj(s) ? s.networks : undefined;
  if (Array.isArray(nets)) return nets.filter((n): n is string => typeof n === 'string');
  if (isObj(nets)) return Object.keys(nets);
  return ['default'];
}

/**
 * Whether compose files of two releases (parsed, in -f order) define the stable services, and the
 * networks and volumes they may use, identically: then bringing the stable project to the other
 * release changes nothing, and a rollback may leave it as it runs. Any doubt answers false.
 */
export function sameStableDefinitions(a: readonly unknown[], b: readonly unknown[], stable: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  return a.every((ma, i) => {
    const mb = b[i];
    const pick = (m: unknown) => {
      const o = isObj(m) ? m : {};
      const svc = isObj(o.services) ? o.services : {};
      return { services: stable.map((s) => svc[s] ?? null), networks: o.networks ?? null, volumes: o.volumes ?? null };
    };
    return canonical(pick(ma)) === canonical(pick(mb));
  });
}

function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (isObj(v)) return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(',')}}`;
  return JSON.stringify(v) ?? 'null';
}

/** The named volume a service's volume entry mounts; undefined for binds, tmpfs and anonymous volumes. */
function namedVolume(v: unknown): string | undefined {
  if (typeof v === 'string') {
    const [source, target] = v.split(':');
    return target !== undefined && source && !/^[/.~]/.test(source) ? source : undefined;
  }
  return isObj(v) && v.type === 'volume' && typeof v.source === 'string' && v.source !== '' ? v.source : undefined;
}

function publishesHostPort(p: unknown): boolean {
  if (typeof p === 'number') return false;
  if (typeof p === 'string') return p.split('/')[0]!.split(':').length > 1;
  if (isObj(p)) return p.published !== undefined && p.published !== '' && p.published !== null;
  return false;
}

function portText(p: unknown): string {
  return isObj(p) ? `${String(p.published)}:${String(p.target)}` : String(p);
}

/**
 * The override a colour project adds last: its networks get names of their own (Compose's
 * resolved model names them after the stack), so a colour starts and is tested on networks no
 * other colour and no front shares. External networks keep their names.
 */
export function renderColourOverride(model: unknown, stack: string, colour: Colour): string {
  const m = isObj(model) ? model : {};
  const networks = isObj(m.networks) ? m.networks : {};
  const keys = new Set(['default', ...Object.keys(networks).filter((k) => !(isObj(networks[k]) && networks[k].external))]);
  const project = colourProject(stack, colour);
  const lines = [`# Written by ferry: the ${colour} colour of ${stack} runs on networks of its own.`, 'networks:'];
  for (const k of [...keys].sort()) lines.push(`  ${JSON.stringify(k)}:`, `    name: ${JSON.stringify(`${project}_${k}`)}`);
  return `${lines.join('\n')}\n`;
}

/** A host override giving a coloured service a host port: refused as at create. */
export function hostOverridePorts(override: unknown, coloured: readonly string[]): string | null {
  const services = isObj(override) && isObj(override.services) ? override.services : {};
  for (const name of coloured) {
    const s = services[name];
    if (isObj(s) && Array.isArray(s.ports) && s.ports.some(publishesHostPort)) return name;
  }
  return null;
}
