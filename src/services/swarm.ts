/**
 * `ferry bundle install --swarm`: a Docker Swarm gets a release the way a single host does, but
 * ferry only loads and Swarm schedules.
 *   1. the bundle is checked once, here (signature, every file);
 *   2. the manager lists the nodes; every node is loaded in parallel by the same install service
 *      a fleet uses, with --no-up semantics (policy, preflight, delta/splice against what THAT
 *      node holds, every layer re-checked): the manager over the connection ferry already has,
 *      the others over SSH (their swarm address, or --node-ssh NODE=TARGET);
 *   3. a node that failed to load stops the rollout before anything is deployed (exit 6, naming
 *      it), unless --allow-partial-nodes: then the stack is kept off it by placement;
 *   4. `docker stack deploy` of ferry's stack file (core/swarm-stack.ts), on the manager;
 *   5. every service must have its desired replicas running the pinned image (Swarm counts a task
 *      with a health check as running only once healthy), and the smoke task must complete,
 *      within --wait-timeout; otherwise the previous release's stack file is deployed again
 *      (exit 7) or, if that does not settle either, exit 8;
 *   6. the release is recorded in the manager's state directory, and releases beyond --keep are
 *      pruned as on one host: their directories, and the images no kept release uses, on every
 *      node that was loaded (the node connections stay open until then).
 */
import { posix } from 'node:path';
import type { NamedHost } from '../adapters/host-factory.js';
import { StateStore } from '../adapters/state-store.js';
import { dockerCliFor, listSwarmNodes, removeStackImage, type DockerCli, stackDeploy, stackRemove, stackServices, swarmSelf, type SwarmNode, type SwarmSelf, type SwarmService } from '../adapters/swarm.js';
import type { FerryManifest } from '../core/manifest.js';
import { currentRelease, ferryTag, imagesToRemove, recordInstalled, releaseId, type ReleaseRecord, type StackState } from '../core/state.js';
import { mergeCompose, planSwarmStack, RELEASE_LABEL, STACK_FILE, stackServicesOf, SwarmStackError, swarmServiceName, withoutSmokeRun } from '../core/swarm-stack.js';
import { parseYaml, toYaml } from '../core/yaml.js';
import { DeployFailedError, DeployRestoredError, HostPreconditionError } from '../errors.js';
import { openChecked, type OpenedBundle } from './bundle.js';
import { hostFailure, type FleetHostResult, type FleetReporter } from './fleet.js';
import { installBundle, type InstallOptions } from './install.js';
import { silentReporter, type Reporter } from './reporter.js';
import { sharedLayers, sharedLayersReport, type SharedLayersStats } from './shared-layers.js';
import type { LayerFanout } from '../adapters/layer-fanout.js';

export interface SwarmInstallOptions {
  install: Omit<InstallOptions, 'host' | 'up' | 'checked'>;
  /** Host override for the whole stack; default: the manager's hostname. */
  hostName?: string;
  /** Node (hostname or ID) → SSH target; others are reached at their swarm address. */
  nodeSsh: ReadonlyMap<string, string>;
  /** The SSH user for nodes reached at their address: the manager's, when it was given. */
  sshUser?: string;
  allowPartialNodes: boolean;
  /** Nodes loaded at the same time. */
  parallel: number;
}

export interface SwarmDeps {
  /** The manager: this machine or the --ssh target. */
  manager: NamedHost;
  open(target: string): Promise<NamedHost>;
  /** One reporter per node, once the nodes are known. */
  nodeReporters(labels: string[]): (label: string) => FleetReporter;
  overall: Reporter;
  install?: typeof installBundle;
  /** Between polls of the swarm's state (tests shorten it). */
  pollMs?: number;
}

export interface SwarmNodeResult extends FleetHostResult {
  node: string;
  nodeId: string;
  role: 'manager' | 'worker';
  /** When this node's load started, from the start of the install (the timeline). */
  startedMs: number;
  /** Images of pruned releases removed from this node (tags); those still in use stay. */
  prunedImages?: string[];
}

export interface SwarmServiceState {
  service: string;
  image: string;
  pinned: boolean;
  replicas: number | null;
  running: number;
  /** Running tasks per node hostname. */
  nodes: Record<string, number>;
  updateState: string | null;
}

export interface SwarmInstallResult {
  stack: string;
  release: string;
  version: string;
  host: string;
  outcome: 'installed' | 'already-current' | 'loaded';
  previous: string | null;
  /** Releases pruned beyond --keep. */
  pruned: string[];
  nodes: SwarmNodeResult[];
  /** Nodes the stack was kept off (--allow-partial-nodes). */
  avoided: string[];
  services: SwarmServiceState[];
  /** Nodes loading at once read each bundle layer once between them: how many, fed to how many loads. */
  sharedLayers: SharedLayersStats | null;
  durationMs: number;
}

const DEPLOY_TIMEOUT_MS = 120_000;

export async function installSwarm(options: SwarmInstallOptions, deps: SwarmDeps): Promise<SwarmInstallResult> {
  const started = Date.now();
  const self = await requireManager(deps.manager);
  // 1. once, before any node is touched: a bad bundle fails with its own code (3, 4).
  const opened = await openChecked(options.install.bundle, options.install.trust, deps.overall);
  const hostName = options.hostName ?? (await deps.manager.hostname());

  // 2. every node loads, in parallel.
  const nodes = await listSwarmNodes(deps.manager.engine);
  const run: SwarmRun = {
    options,
    deps,
    started,
    self,
    opened,
    m: opened.manifest,
    id: releaseId(opened.manifest.sequence, opened.manifest.version),
    hostName,
    nodes,
    reporterFor: deps.nodeReporters(nodes.map(labelOf)),
    results: new Array(nodes.length),
    connected: new Map(),
    // Only when every node loads at once: a node waiting for a free slot would hold the others.
    ...(nodes.length > 1 && options.parallel >= nodes.length ? { fanout: sharedLayers(opened.dir, opened.manifest, nodes.length) } : {}),
  };
  deps.overall.log(`${nodes.length} node${nodes.length === 1 ? '' : 's'} in the swarm: ${nodes.map((n) => `${n.hostname} (${n.role}${n.id === self.nodeId ? ', this manager' : ''})`).join(', ')}`);
  try {
    await loadNodes(run);
    return await deployLoaded(run);
  } finally {
    await Promise.all([...run.connected.values()].filter((h) => h !== deps.manager).map((h) => h.close().catch(() => undefined)));
  }
}

/** What one `install --swarm` carries from step to step. */
interface SwarmRun {
  options: SwarmInstallOptions;
  deps: SwarmDeps;
  started: number;
  self: SwarmSelf;
  opened: OpenedBundle;
  m: FerryManifest;
  id: string;
  hostName: string;
  nodes: SwarmNode[];
  reporterFor: (label: string) => FleetReporter;
  /** Per node, in the order of `nodes`. */
  results: SwarmNodeResult[];
  /** Loaded nodes stay connected until the end: pruning after the deploy reaches them again. */
  connected: Map<string, NamedHost>;
  /** Nodes loading at once read each bundle layer once between them. */
  fanout?: LayerFanout;
  /** What that saved, once every node was tried. */
  sharedLayers?: SharedLayersStats | null;
}

const labelOf = (n: SwarmNode) => n.hostname;

async function requireManager(manager: NamedHost): Promise<SwarmSelf> {
  const self = await swarmSelf(manager.engine);
  if (self.state !== 'active' || !self.manager) {
    throw new HostPreconditionError('SWARM_NOT_MANAGER', `${manager.label === 'local' ? 'this engine' : manager.label} is ${self.state === 'active' ? 'a swarm worker, not a manager' : `not in a swarm (${self.state})`}: --swarm works through a manager`, {
      hint: 'Run it on a manager, or point --ssh at one (docker node ls there lists the nodes).',
      details: { state: self.state, manager: self.manager },
    });
  }
  return self;
}

async function loadNodes(run: SwarmRun): Promise<void> {
  const { nodes, results } = run;
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < nodes.length; i = next++) {
      results[i] = await loadNode(run, nodes[i]!);
      try {
        run.reporterFor(labelOf(nodes[i]!)).finish(results[i]!);
      } catch {
        // A display problem must not change a node's outcome.
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(run.options.parallel, nodes.length)) }, worker));
  run.sharedLayers = sharedLayersReport(run.fanout, run.deps.overall);
}

/** One node loaded with --no-up semantics; a failure is its result, not a throw. */
async function loadNode(run: SwarmRun, n: SwarmNode): Promise<SwarmNodeResult> {
  const { manager } = run.deps;
  const t0 = Date.now();
  const reporter = run.reporterFor(labelOf(n));
  const isSelf = n.id === run.self.nodeId;
  const target = isSelf ? manager.label : nodeTarget(n, run.options.nodeSsh, run.options.sshUser);
  const base = { node: n.hostname, nodeId: n.id, role: n.role, target: target ?? n.hostname, host: run.hostName, startedMs: t0 - run.started };
  let host: NamedHost | undefined;
  try {
    if (n.state !== 'ready') throw new HostPreconditionError('SWARM_NODE_NOT_READY', `node ${n.hostname} is ${n.state} in the swarm`, { details: { node: n.hostname, state: n.state } });
    if (!target) throw new HostPreconditionError('SWARM_NODE_NO_ADDRESS', `node ${n.hostname} has no address: name its SSH target with --node-ssh ${n.hostname}=TARGET`);
    reporter.log(isSelf ? 'loading on the manager' : `connecting to ${target}`);
    host = isSelf ? manager : await run.deps.open(target);
    const install = run.deps.install ?? installBundle;
    const fanout = run.fanout ? { fanout: { hub: run.fanout, load: n.id } } : {};
    const result = await install({ ...run.options.install, host: run.hostName, up: false, checked: run.opened, ...fanout }, host, reporter);
    run.connected.set(n.id, host);
    return { ...base, ok: true, outcome: result.outcome, exitCode: 0, result, durationMs: Date.now() - t0 };
  } catch (e) {
    if (host && host !== manager) await host.close().catch(() => undefined);
    const err = hostFailure(e);
    return { ...base, ok: false, outcome: 'failed', exitCode: err.exitCode, error: err.error, durationMs: Date.now() - t0 };
  } finally {
    run.fanout?.leave(n.id);
  }
}

/** Steps 3-6, once every node was tried. */
async function deployLoaded(run: SwarmRun): Promise<SwarmInstallResult> {
  const failed = requireLoaded(run);
  // 4-6. deploy under the manager's install lock.
  const { manager, overall } = run.deps;
  const store = new StateStore(run.options.install.stateDir, manager.fs);
  await store.ensure();
  const ctx: SwarmDeployContext = { manager, cli: dockerCliFor(manager), store, stack: run.m.name, waitTimeoutMs: run.options.install.waitTimeoutMs, pollMs: run.deps.pollMs ?? 1000, reporter: overall };
  return store.withLock(`swarm install ${run.m.name} ${run.id}`, async () => {
    const state = await store.load(run.m.name);
    return deployUnderLock({ ...run, ctx, failed, state, previous: currentRelease(state) ?? null });
  });
}

/**
 * 3. a node without the images would fail its tasks over and over: stop before deploying. Returns
 * the nodes the stack is kept off (--allow-partial-nodes).
 */
function requireLoaded(run: SwarmRun): SwarmNodeResult[] {
  const { results } = run;
  const failed = results.filter((r) => !r.ok);
  const managerFailed = failed.find((r) => r.nodeId === run.self.nodeId);
  if (failed.length > 0 && (!run.options.allowPartialNodes || managerFailed || failed.length === results.length)) {
    const lines = failed.map((r) => `  - ${r.node}: ${r.error?.code ?? 'UNEXPECTED'}: ${r.error?.message ?? ''}`);
    throw new HostPreconditionError('SWARM_NODE_FAILED', `${failed.length} of ${results.length} swarm node${results.length > 1 ? 's' : ''} could not be loaded: ${failed.map((r) => r.node).join(', ')}. Nothing was deployed.\n${lines.join('\n')}`, {
      hint: managerFailed
        ? 'The manager itself must hold the images (its state records the release). Fix it and run install again.'
        : 'Fix those nodes (or drain them: docker node update --availability drain NODE) and run install again; --allow-partial-nodes deploys while keeping the stack off them.',
      details: { nodes: results },
    });
  }
  for (const r of failed) run.deps.overall.warn({ code: 'SWARM_NODE_AVOIDED', subject: r.node, message: `node ${r.node} could not be loaded (${r.error?.code}): the stack is kept off it (--allow-partial-nodes)` });
  return failed;
}

/** The deploy's view of the run: the manager's context, the nodes kept off, the release it replaces. */
interface SwarmDeployRun extends SwarmRun {
  ctx: SwarmDeployContext;
  failed: SwarmNodeResult[];
  /** The manager's state, read under the lock. */
  state: StackState;
  previous: ReleaseRecord | null;
}

async function deployUnderLock(run: SwarmDeployRun): Promise<SwarmInstallResult> {
  const { m, id, ctx, state, previous } = run;
  const { manager, overall } = run.deps;
  const { store } = ctx;
  const docs = await readComposeDocs(run);
  const release = releaseRecord(run);
  const avoided = run.failed.map((r) => r.nodeId);
  const plan = planStack(run, docs, release, avoided);

  // As on one host: the current release, running as it should, is not deployed again.
  if (previous?.id === id && avoided.length === 0 && (await runsOnSwarm(run, previous))) {
    overall.log(`${m.name} ${m.version} is already the current release and runs on the swarm: nothing to deploy`);
    return resultOf(run, 'already-current', await serviceStates(manager, m.name, pinnedImages(m.name, previous), run.nodes));
  }

  overall.log(`deploying ${m.name} ${m.version} to the swarm (docker stack deploy on ${manager.label === 'local' ? 'this manager' : manager.label})`);
  const outcome = await deployStack(ctx, release, plan.doc, true);
  if (!outcome.ok) {
    const why = `${m.name} ${m.version} failed on the swarm: ${outcome.why}`;
    overall.log(why);
    throw await restoreStack(ctx, previous, why);
  }

  const { state: nextState, pruned } = recordInstalled(state, release, run.options.install.keep);
  await store.save(nextState);
  for (const r of pruned) await store.fs.rmrf(store.releaseDir(m.name, r.id));
  overall.log(`${m.name} ${m.version} runs on the swarm${previous ? ` (was ${previous.version})` : ''}`);
  if (pruned.length > 0) await pruneNodes(run, imagesToRemove(nextState, pruned).map((i) => i.tag), pruned);
  return resultOf(run, 'installed', await serviceStates(manager, m.name, pinnedImages(m.name, release), run.nodes), pruned);
}

/** The compose file and this host's YAML files, as the manager's release directory holds them. */
async function readComposeDocs(run: SwarmDeployRun): Promise<unknown[]> {
  const { m, ctx } = run;
  const dir = ctx.store.releaseDir(m.name, run.id);
  const hostFiles = (m.hosts[run.hostName]?.files ?? []).filter((p) => /\.ya?ml$/.test(p));
  const docs: unknown[] = [];
  for (const f of [m.compose.file, ...hostFiles]) docs.push(await parseYaml(((await ctx.store.fs.readFile(posix.join(dir, f))) ?? Buffer.from('')).toString('utf8'), f));
  return docs;
}

function releaseRecord(run: SwarmRun): ReleaseRecord {
  const { m, opened } = run;
  return {
    id: run.id,
    version: m.version,
    sequence: m.sequence,
    created: m.created,
    installedAt: (run.options.install.now ?? new Date()).toISOString(),
    host: run.hostName,
    images: m.images.map((im) => ({ id: im.id, tag: ferryTag(m.name, im.id) })),
    services: m.compose.services.map((s) => ({ name: s.name, imageId: s.imageId })),
    composeFiles: [STACK_FILE],
    smoke: m.compose.smoke,
    signer: opened.signer ? { fingerprint: opened.signer.fingerprint, principals: opened.signer.principals } : null,
    result: 'installed',
  };
}

function planStack(run: SwarmRun, docs: unknown[], release: ReleaseRecord, avoidNodes: string[]): ReturnType<typeof planSwarmStack> {
  const { m } = run;
  try {
    return planSwarmStack({ model: mergeCompose(docs), images: pinnedImages(m.name, release), smoke: m.compose.smoke, release: run.id, avoidNodes });
  } catch (e) {
    if (e instanceof SwarmStackError) throw new HostPreconditionError(e.code, `${m.name} cannot run on a swarm: ${e.message}`, { details: { service: e.subject } });
    throw e;
  }
}

/** Whether the current release runs as its stack file says, right now (no waiting). */
async function runsOnSwarm(run: SwarmDeployRun, previous: ReleaseRecord): Promise<boolean> {
  const { m, id, ctx } = run;
  const doc = await readStackFile(ctx, previous);
  const now = doc ? await waitConverged(ctx.manager, m.name, { services: stackServicesOf(doc, previous.smoke), smoke: null, release: id, images: pinnedImages(m.name, previous) }, 0, 0, silentReporter) : { ok: false };
  return now.ok;
}

function resultOf(run: SwarmDeployRun, outcome: SwarmInstallResult['outcome'], services: SwarmServiceState[], pruned: ReleaseRecord[] = []): SwarmInstallResult {
  const { m } = run;
  return {
    stack: m.name,
    release: run.id,
    version: m.version,
    host: run.hostName,
    outcome,
    previous: run.previous?.id ?? null,
    pruned: pruned.map((r) => r.id),
    nodes: run.results,
    avoided: run.failed.map((r) => r.node),
    services,
    sharedLayers: run.sharedLayers ?? null,
    durationMs: Date.now() - run.started,
  };
}

/**
 * As one host prunes (the images no kept release uses), on every node that was loaded; each
 * worker also drops its copy of the pruned releases' directories, written when it loaded them.
 * A node that cannot be pruned keeps them and does not change the outcome: the release runs.
 */
async function pruneNodes(run: SwarmRun, tags: string[], pruned: ReleaseRecord[]): Promise<void> {
  const { m } = run;
  const inUse: string[] = [];
  await Promise.all(
    run.results.map(async (r) => {
      const host = run.connected.get(r.nodeId);
      if (!host) return;
      const removed: string[] = [];
      try {
        for (const tag of tags) {
          const outcome = await removeStackImage(host.engine, m.name, tag);
          if (outcome === 'removed') removed.push(tag);
          if (outcome === 'in-use' && !inUse.includes(r.node)) inUse.push(r.node);
        }
        if (host !== run.deps.manager) {
          const nodeStore = new StateStore(run.options.install.stateDir, host.fs);
          for (const p of pruned) await nodeStore.fs.rmrf(nodeStore.releaseDir(m.name, p.id));
        }
      } catch (e) {
        run.deps.overall.log(`pruning on ${r.node} stopped: ${(e as Error).message}`);
      }
      r.prunedImages = removed;
    }),
  );
  run.deps.overall.log(`pruned ${pruned.map((r) => r.version).join(', ')} and ${tags.length} image${tags.length === 1 ? '' : 's'} no kept release uses${inUse.length > 0 ? ` (some still in use on ${inUse.join(', ')})` : ''}`);
}

/** Where ferry reaches a node over SSH: --node-ssh by hostname or ID, else its swarm address as the manager's SSH user. */
export function nodeTarget(n: SwarmNode, nodeSsh: ReadonlyMap<string, string>, sshUser: string | undefined): string | null {
  return nodeSsh.get(n.hostname) ?? nodeSsh.get(n.id) ?? (n.addr ? `${sshUser ? `${sshUser}@` : ''}${n.addr}` : null);
}

export interface SwarmDeployContext {
  manager: NamedHost;
  cli: DockerCli;
  store: StateStore;
  stack: string;
  waitTimeoutMs: number;
  pollMs: number;
  reporter: Reporter;
}

type Outcome = { ok: true } | { ok: false; why: string };

export const pinnedImages = (stack: string, release: Pick<ReleaseRecord, 'services'>): Map<string, string> => new Map(release.services.map((s) => [s.name, ferryTag(stack, s.imageId)]));

const writeStackFile = async (ctx: SwarmDeployContext, dir: string, doc: Record<string, unknown>) =>
  ctx.store.fs.writeFileAtomic(posix.join(dir, STACK_FILE), Buffer.from(`# Written by ferry: the stack docker stack deploy runs (images pinned, ports in mode host).\n${await toYaml(doc)}`));

/**
 * Deploys a release's stack and waits for it. With `smokeTest`, the services first with the smoke
 * service at no replica, then the smoke task: the smoke test must see the release it tests (run
 * alongside an upgrade, it met the old web). The release's stack file ends as `doc`.
 */
export async function deployStack(ctx: SwarmDeployContext, release: ReleaseRecord, doc: Record<string, unknown>, smokeTest: boolean): Promise<Outcome> {
  const dir = ctx.store.releaseDir(ctx.stack, release.id);
  const smoke = release.smoke && stackServicesOf(doc, null).includes(release.smoke) ? release.smoke : null;
  const want = { services: stackServicesOf(doc, smoke), smoke: null as string | null, release: release.id, images: pinnedImages(ctx.stack, release) };
  const deployAndWait = async (w: typeof want): Promise<Outcome> => {
    const r = await stackDeploy(ctx.cli, ctx.stack, STACK_FILE, dir, DEPLOY_TIMEOUT_MS);
    if (r.code !== 0) return { ok: false, why: `docker stack deploy failed (exit ${r.code}): ${lastLines(r.output)}` };
    return waitConverged(ctx.manager, ctx.stack, w, ctx.waitTimeoutMs, ctx.pollMs, ctx.reporter);
  };
  if (smoke && smokeTest) {
    await writeStackFile(ctx, dir, withoutSmokeRun(doc, smoke));
    const first = await deployAndWait(want);
    if (!first.ok) return first;
  }
  await writeStackFile(ctx, dir, doc);
  return deployAndWait({ ...want, smoke: smokeTest ? smoke : null });
}

/** A release's stack file as ferry wrote it; null when it was not installed onto a swarm. */
export async function readStackFile(ctx: SwarmDeployContext, release: ReleaseRecord): Promise<Record<string, unknown> | null> {
  const bytes = await ctx.store.fs.readFile(posix.join(ctx.store.releaseDir(ctx.stack, release.id), STACK_FILE));
  if (!bytes) return null;
  const doc = await parseYaml(bytes.toString('utf8'), STACK_FILE);
  return typeof doc === 'object' && doc !== null && !Array.isArray(doc) ? (doc as Record<string, unknown>) : null;
}

/** After a failed deploy: the previous release's stack again (exit 7), or exit 8 when it does not settle. */
export async function restoreStack(ctx: SwarmDeployContext, prev: ReleaseRecord | null, why: string): Promise<Error> {
  if (!prev) {
    await stackRemove(ctx.cli, ctx.stack, ctx.store.root, DEPLOY_TIMEOUT_MS).catch(() => undefined);
    return new DeployRestoredError('DEPLOY_FAILED_NO_PREVIOUS', `${why}. There was no previous release; the stack was removed.`, { details: { restored: null } });
  }
  const doc = await readStackFile(ctx, prev);
  if (!doc) return new DeployFailedError('RESTORE_FAILED', `${why}. The previous release ${prev.version} was not installed onto the swarm: there is no stack file to restore.`, { details: { restored: null } });
  ctx.reporter.log(`restoring ${prev.version}`);
  const back = await deployStack(ctx, prev, doc, false);
  if (!back.ok) {
    return new DeployFailedError('RESTORE_FAILED', `${why}. Restoring ${prev.version} failed too: ${back.why}`, { details: { restored: null }, hint: 'Look at `docker service ps` on the manager; `ferry host status STACK --swarm` shows what runs where.' });
  }
  return new DeployRestoredError('DEPLOY_FAILED_RESTORED', `${why}. ${prev.version} was deployed again and runs.`, { details: { restored: prev.id } });
}

/**
 * Converged: every long-running service has as many running tasks of the pinned image as it
 * wants, no update rolled back or paused, and the smoke task of this release completed.
 */
async function waitConverged(
  manager: NamedHost,
  stack: string,
  want: { services: string[]; smoke: string | null; release: string; images: ReadonlyMap<string, string> },
  timeoutMs: number,
  pollMs: number,
  reporter: Reporter,
): Promise<{ ok: true } | { ok: false; why: string }> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    const services = await stackServices(manager.engine, stack);
    const byName = new Map(services.map((s) => [s.name, s]));
    const waiting: string[] = [];
    let failure: string | null = null;
    for (const name of want.services) {
      const s = byName.get(swarmServiceName(stack, name));
      if (!s) {
        waiting.push(`${name} (not created yet)`);
        continue;
      }
      if (s.updateState && /^(rollback_|paused)/.test(s.updateState)) {
        failure = `${name}: update ${s.updateState.replace(/_/g, ' ')}${s.updateMessage ? ` (${s.updateMessage})` : ''}`;
        break;
      }
      const image = want.images.get(name);
      const running = s.tasks.filter((t) => t.state === 'running' && t.desiredState === 'running' && (!image || t.image === image)).length;
      const desired = s.replicas ?? Math.max(1, s.tasks.filter((t) => t.desiredState === 'running').length);
      if (running < desired || s.updateState === 'updating') waiting.push(`${name} ${running}/${desired}${lastError(s)}`);
    }
    if (!failure && want.smoke) {
      const s = byName.get(swarmServiceName(stack, want.smoke));
      const task = s?.tasks.find((t) => t.labels[RELEASE_LABEL] === want.release);
      if (task && ['failed', 'rejected', 'shutdown', 'orphaned'].includes(task.state)) failure = `smoke test ${want.smoke} ${task.state}${task.exitCode !== null ? ` (exit ${task.exitCode})` : ''}${task.error ? `: ${task.error}` : ''}`;
      else if (task?.state !== 'complete') waiting.push(`smoke ${want.smoke} ${task?.state ?? 'not started'}`);
    }
    if (failure) return { ok: false, why: failure };
    if (waiting.length === 0) return { ok: true };
    const line = `waiting for ${waiting.join(', ')}`;
    if (line !== last) reporter.log(line);
    last = line;
    if (Date.now() >= deadline) return { ok: false, why: `not converged within ${Math.round(timeoutMs / 1000)} s: ${waiting.join(', ')}` };
    await new Promise((r) => setTimeout(r, Math.min(pollMs, Math.max(0, deadline - Date.now()))));
  }
}

function lastError(s: SwarmService): string {
  const failed = s.tasks.filter((t) => t.error && t.desiredState !== 'running');
  const e = failed[failed.length - 1];
  return e ? ` (last task: ${e.state}: ${e.error})` : '';
}

export async function serviceStates(manager: NamedHost, stack: string, images: ReadonlyMap<string, string>, nodes?: SwarmNode[]): Promise<SwarmServiceState[]> {
  const hostnames = new Map((nodes ?? (await listSwarmNodes(manager.engine))).map((n) => [n.id, n.hostname]));
  return (await stackServices(manager.engine, stack)).map((s) => {
    const name = s.name.startsWith(`${stack}_`) ? s.name.slice(stack.length + 1) : s.name;
    const running = s.tasks.filter((t) => t.state === 'running');
    const perNode: Record<string, number> = {};
    for (const t of running) {
      const h = hostnames.get(t.nodeId) ?? t.nodeId;
      perNode[h] = (perNode[h] ?? 0) + 1;
    }
    return { service: name, image: s.image, pinned: images.get(name) === s.image, replicas: s.replicas, running: running.length, nodes: perNode, updateState: s.updateState };
  });
}

function lastLines(text: string): string {
  return text.trim().split('\n').slice(-5).join('\n');
}

