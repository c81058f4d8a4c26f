/**
 * `ferry host status STACK --swarm` and `ferry host rollback STACK --swarm`: the stack as Swarm runs
 * it, read through a manager, and a kept release's stack file deployed again. Releases and their
 * stack files are in the manager's state directory (written by `bundle install --swarm`).
 */
import { StateStore } from '../adapters/state-store.js';
import type { NamedHost } from '../adapters/host-factory.js';
import { dockerCliFor, listSwarmNodes, swarmSelf } from '../adapters/swarm.js';
import { currentRelease, type ReleaseRecord, type StackState } from '../core/state.js';
import { HostPreconditionError, UsageError } from '../errors.js';
import type { Reporter } from './reporter.js';
import { clusterInventory } from '../core/swarm-inventory.js';
import { validateInventory } from '../core/inventory.js';
import { hostInventory, writeInventory, type InventoryResult } from './inventory.js';
import { pickTarget } from './rollback.js';
import { deployStack, nodeTarget, pinnedImages, readStackFile, restoreStack, serviceStates, type SwarmDeployContext, type SwarmServiceState } from './swarm.js';

export interface SwarmStatusResult {
  stack: string;
  current: { id: string; version: string; installedAt: string } | null;
  releases: { id: string; version: string; current: boolean }[];
  nodes: { node: string; role: string; state: string; availability: string; engineVersion: string }[];
  services: SwarmServiceState[];
}

export interface SwarmRollbackResult {
  stack: string;
  from: string | null;
  to: string;
  version: string;
  services: SwarmServiceState[];
  durationMs: number;
}

async function requireManager(manager: NamedHost): Promise<void> {
  const self = await swarmSelf(manager.engine);
  if (self.state !== 'active' || !self.manager) {
    throw new HostPreconditionError('SWARM_NOT_MANAGER', `${manager.label === 'local' ? 'this engine' : manager.label} is ${self.state === 'active' ? 'a swarm worker, not a manager' : `not in a swarm (${self.state})`}: --swarm works through a manager`, {
      hint: 'Run it on a manager, or point --ssh at one.',
    });
  }
}

async function loadKnown(store: StateStore, stack: string, stateDir: string): Promise<StackState> {
  const known = await store.stacks();
  // Checked against the directory listing before the name is used in any path.
  if (!known.includes(stack)) {
    throw new UsageError('STACK_UNKNOWN', `no stack ${JSON.stringify(stack)} is installed on this manager (state directory ${stateDir})`, {
      details: { stack, known, stateDir },
      hint: known.length > 0 ? `Known stacks: ${known.join(', ')}.` : 'Nothing has been installed with this --state-dir.',
    });
  }
  return store.load(stack);
}

export async function swarmStatus(options: { stack: string; stateDir: string }, manager: NamedHost): Promise<SwarmStatusResult> {
  await requireManager(manager);
  const store = new StateStore(options.stateDir, manager.fs);
  const state = await loadKnown(store, options.stack, options.stateDir);
  const current = currentRelease(state) ?? null;
  const nodes = await listSwarmNodes(manager.engine);
  return {
    stack: options.stack,
    current: current ? { id: current.id, version: current.version, installedAt: current.installedAt } : null,
    releases: state.releases.map((r) => ({ id: r.id, version: r.version, current: r.id === current?.id })),
    nodes: nodes.map((n) => ({ node: n.hostname, role: n.role, state: n.state, availability: n.availability, engineVersion: n.engineVersion })),
    services: await serviceStates(manager, options.stack, current ? pinnedImages(options.stack, current) : new Map(), nodes),
  };
}

export async function swarmRollback(options: { stack: string; to: string | undefined; stateDir: string; waitTimeoutMs: number }, manager: NamedHost, reporter: Reporter, pollMs = 1000): Promise<SwarmRollbackResult> {
  const started = Date.now();
  await requireManager(manager);
  const store = new StateStore(options.stateDir, manager.fs);
  await store.ensure();
  await loadKnown(store, options.stack, options.stateDir);
  const ctx: SwarmDeployContext = { manager, cli: dockerCliFor(manager), store, stack: options.stack, waitTimeoutMs: options.waitTimeoutMs, pollMs, reporter };
  return store.withLock(`swarm rollback ${options.stack}`, async () => {
    // Read again under the lock: an install may have finished in between.
    const state = await store.load(options.stack);
    const current = currentRelease(state) ?? null;
    const target: ReleaseRecord = pickTarget(state.releases, current, options.to);
    const doc = await readStackFile(ctx, target);
    if (!doc) {
      throw new HostPreconditionError('SWARM_NOT_SWARM_RELEASE', `release ${target.version} (${target.id}) of ${options.stack} was not installed onto a swarm: it has no stack file`, {
        hint: 'Roll back on the host it was installed on (without --swarm), or install its bundle with --swarm.',
      });
    }
    // Its images are still on every node: ferry prunes only the images of releases it no longer keeps.
    reporter.log(`deploying ${target.version} to the swarm`);
    const outcome = await deployStack(ctx, target, doc, true);
    if (!outcome.ok) throw await restoreStack(ctx, current, `rollback to ${target.version} failed: ${outcome.why}`);
    await store.save({ ...state, current: target.id });
    reporter.log(`${options.stack} rolled back to ${target.version}`);
    return {
      stack: options.stack,
      from: current?.id ?? null,
      to: target.id,
      version: target.version,
      services: await serviceStates(manager, options.stack, pinnedImages(options.stack, target)),
      durationMs: Date.now() - started,
    };
  });
}

export interface SwarmInventoryResult extends InventoryResult {
  nodes: { node: string; target: string; images: number; layers: number }[];
}

/**
 * `host inventory --swarm`: every node's inventory (the manager's over the connection ferry has,
 * the others over SSH), reduced to what every node holds. A node that cannot be read fails the
 * whole: an inventory without it would let a bundle leave out layers that node lacks.
 */
export async function swarmInventory(
  options: { stateDir: string; out: string | undefined; host: string | undefined; nodeSsh: ReadonlyMap<string, string>; sshUser: string | undefined },
  deps: { manager: NamedHost; open(target: string): Promise<NamedHost>; reporter: Reporter },
): Promise<SwarmInventoryResult> {
  const { manager, reporter } = deps;
  await requireManager(manager);
  const self = await swarmSelf(manager.engine);
  const nodes = await listSwarmNodes(manager.engine);
  const read = await Promise.all(
    nodes.map(async (n) => {
      const isSelf = n.id === self.nodeId;
      const target = isSelf ? manager.label : nodeTarget(n, options.nodeSsh, options.sshUser);
      let host: NamedHost | undefined;
      try {
        if (!target) throw new HostPreconditionError('SWARM_NODE_NO_ADDRESS', `node ${n.hostname} has no address: name its SSH target with --node-ssh ${n.hostname}=TARGET`);
        host = isSelf ? manager : await deps.open(target);
        const r = await hostInventory({ stateDir: options.stateDir, host: n.hostname }, host, reporter);
        return { node: n, target, isSelf, inventory: r.inventory, error: null };
      } catch (e) {
        return { node: n, target: target ?? n.hostname, isSelf, inventory: null, error: e as Error };
      } finally {
        if (host && host !== manager) await host.close().catch(() => undefined);
      }
    }),
  );
  const failed = read.filter((r) => r.error);
  if (failed.length > 0) {
    throw new HostPreconditionError('SWARM_NODE_FAILED', `${failed.length} of ${read.length} swarm node${read.length > 1 ? 's' : ''} could not be read: ${failed.map((r) => r.node.hostname).join(', ')}. No inventory was written.\n${failed.map((r) => `  - ${r.node.hostname}: ${(r.error as { code?: string }).code ?? 'UNEXPECTED'}: ${r.error!.message}`).join('\n')}`, {
      hint: ['An inventory without a node would let a bundle leave out layers that node lacks.', 'Fix the node (or remove it from the swarm), then run again.'],
      details: { nodes: failed.map((r) => ({ node: r.node.hostname, target: r.target, code: (r.error as { code?: string }).code ?? 'UNEXPECTED', message: r.error!.message })) },
    });
  }
  const mine = read.find((r) => r.isSelf)!;
  const inventory = clusterInventory(mine.inventory!, read.filter((r) => !r.isSelf).map((r) => r.inventory!), options.host ?? (await manager.hostname()));
  // What is written must be what `bundle create --base` reads.
  validateInventory(JSON.parse(JSON.stringify(inventory)));
  const written = options.out !== undefined ? await writeInventory(inventory, options.out) : null;
  return {
    inventory,
    written,
    nodes: read.map((r) => ({ node: r.node.hostname, target: r.target, images: r.inventory!.images.length, layers: r.inventory!.layers.length })),
  };
}
