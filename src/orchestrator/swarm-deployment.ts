// Deploys on the swarm scheduler: each process type of a release is one Swarm service
// (PREFIX-INSTANCE-APP-TYPE-rN-XXXX, berth's labels, replicas = the formation, web publishing $PORT
// in host mode on a port the engine picks, dnsrr endpoints), and its tasks are the dynos.
//
// The seam is small on purpose: a task looks like a container to the deploy path (SwarmDynos
// answers inspect/list/logs/stopAndRemove with ContainerStates whose `ip` is the task's node
// address and whose `port` is its published port), so deployRelease and retireOthers
// (deployment.ts) hand over here when the DeployContext carries a SwarmDeploy, and everything
// else is shared with the docker scheduler: the gate (every new task checked from berth at its
// node's address and published port), the swap in one publish, probation, the drain of the old
// targets, then the removal of the old services. A gate that fails removes the new services; the
// old ones keep serving. Swarm has no task events: the orchestrator polls tasks and nodes
// (TaskWatcher below) to take a task that stopped, or whose node is not ready, out of the route.
//
// What differs from containers: a task that exits is replaced by Swarm with a new task (a new id
// and target) rather than restarted, so `restartCount` is always 0 and "restarted" shows as the
// task no longer running; removing one task means removing its service (stopAndRemove), which is
// only ever asked of tasks of services this deploy made; checks:disable does not stop the old
// services first (they serve until the new ones passed, as with checks on).
import { randomBytes } from 'node:crypto';
import type { Output } from '../ui/output.ts';
import { UserError } from '../errors.ts';
import { log } from '../log.ts';
import { sleep } from '../sleep.ts';
import type { ResolvedChecks } from '../state/check-settings.ts';
import {
  checkSettingsOf,
  commandFor,
  dynosOf,
  gateAll,
  keepRunning,
  limitFor,
  processContainers,
  swapRoutes,
  WEB_PORT,
  type DeployContext,
  type Deployed,
  type DynoEngine,
  type Dyno,
  type ProcessPlan,
  type Started,
} from './deployment.ts';
import { APP_CAPABILITIES, LABEL, NotFoundError, type ContainerEvent, type ContainerState, type Engine } from './engine.ts';
import type { Target } from '../proxy/route-table.ts';
import type { ImageDistributor, Swarm, SwarmNode, SwarmService, SwarmServiceSpec, SwarmTask } from './swarm.ts';

/** How long a new service's tasks may take to run (a pull on a node included) before the deploy fails. */
export const TASK_START_TIMEOUT_MS = 120_000;
/** How often a new service's tasks are looked at while they start. */
export const TASK_POLL_MS = 250;
/** A task Swarm cannot place anywhere (its constraints match no node) fails the deploy after this long. */
export const UNPLACEABLE_MS = 3_000;
/** How long one look at the Swarm (services, tasks, nodes) is reused by the gates, probation and the watcher. */
export const SNAPSHOT_TTL_MS = 200;

/** Task states after which a task never runs again. */
const ENDED = new Set(['complete', 'failed', 'rejected', 'shutdown', 'orphaned', 'remove']);

/** Where a process type's tasks may run: Swarm's constraints and spread preferences (ps:set APP TYPE placement). */
export interface Placement {
  constraints: string[];
  spread: string[];
}

/** An app's processes as Swarm services: what deployRelease and retireOthers hand over to. */
export class SwarmDeploy {
  readonly swarm: Swarm;
  readonly dynos: SwarmDynos;
  readonly distributor: ImageDistributor;
  /** PREFIX-INSTANCE: the start of every service name, as the app's network's. */
  readonly #prefix: string;
  readonly #placement: (app: string, type: string) => Placement;

  constructor(deps: { swarm: Swarm; distributor: ImageDistributor; prefix: string; placement?: (app: string, type: string) => Placement }) {
    this.swarm = deps.swarm;
    this.dynos = new SwarmDynos(deps.swarm);
    this.distributor = deps.distributor;
    this.#prefix = deps.prefix;
    this.#placement = deps.placement ?? (() => ({ constraints: [], spread: [] }));
  }

  /** PREFIX-INSTANCE-APP-TYPE-rN-XXXX, within Swarm's 63 characters. */
  serviceName(app: string, type: string, release: number): string {
    const tail = `-r${release}-${randomBytes(2).toString('hex')}`;
    const head = `${this.#prefix}-${app}-${type.toLowerCase().replace(/[^a-z0-9-]/g, '-')}`;
    return `${head.slice(0, 63 - tail.length).replace(/-+$/, '')}${tail}`;
  }

  placement(app: string, type: string): Placement {
    return this.#placement(app, type);
  }


  /** The app's process services, newest release first. */
  async services(app: string): Promise<SwarmService[]> {
    return (await this.swarm.services({ [LABEL.app]: app, [LABEL.role]: 'process' })).sort((a, b) => Number(b.labels[LABEL.release]) - Number(a.labels[LABEL.release]));
  }

  /** After the swap and the drain: removes every process service of the app but those `keep`'s tasks belong to. */
  async retire(ctx: DeployContext, plan: ProcessPlan, keep: readonly ContainerState[], checks: ResolvedChecks): Promise<void> {
    const kept = new Set(keep.map((c) => this.dynos.serviceOf(c.id)));
    const old = (await this.services(plan.name)).filter((s) => !kept.has(s.id));
    if (old.length === 0) return;
    const seconds = Math.ceil(checks.stopTimeoutMs / 1000);
    ctx.out.step(`Removing ${old.length} old Swarm service${old.length === 1 ? '' : 's'} (SIGTERM, then SIGKILL after ${seconds}s)`);
    await this.removeServices(plan.name, old, ctx.out);
  }

  /** Removes services (their tasks stop with the stop grace period they were made with). */
  async removeServices(app: string, services: readonly SwarmService[], out?: Output): Promise<void> {
    await Promise.all(
      services.map((s) =>
        this.swarm.removeService(s.id).catch((e) => {
          log.warn('swarm_service_remove_failed', { app, service: s.name, error: e });
          out?.error(`could not remove ${s.name}: ${(e as Error).message}`);
        }),
      ),
    );
    this.dynos.invalidate();
    log.info('swarm_services_removed', { app, services: services.map((s) => s.name) });
  }
}

/**
 * Until the cluster has a registry: a release is named by its image id, which Swarm runs without
 * pulling on a node that has it (loaded there, or the manager that built it). Every node runs the
 * same bytes; a node without the image rejects the task, and the deploy fails saying so.
 */
export class LocalImageDistributor implements ImageDistributor {
  readonly #engine: Pick<Engine, 'imageIdentity'>;

  constructor(engine: Pick<Engine, 'imageIdentity'>) {
    this.#engine = engine;
  }

  async distribute(image: string): Promise<string> {
    const identity = await this.#engine.imageIdentity(image);
    if (!identity) throw new UserError('image_not_found', `the Docker engine has no image ${image}`, { hint: 'push again to build it' });
    return identity.id;
  }

  async prune(): Promise<void> {}
}

/**
 * Deploys `plan` as Swarm services up to the swap (see deployRelease): with `reuse`, a process type
 * whose service of this release runs the wanted count of tasks that pass their checks once is
 * kept; every other type gets a new service, all of whose tasks are gated before the one publish.
 * A failure removes the new services and leaves the route alone.
 */
export async function deployOnSwarm(ctx: DeployContext, sw: SwarmDeploy, plan: ProcessPlan, options: { reuse: boolean }): Promise<Deployed> {
  const app = plan.name;
  const release = plan.release;
  const checks = checkSettingsOf(ctx, plan);
  const dynos = dynosOf(release, plan.formation);
  const types = [...new Set(dynos.map((d) => d.type))];
  const kept: ContainerState[] = [];
  if (options.reuse) {
    sw.dynos.invalidate();
    const existing = (await processContainers(sw.dynos, app)).filter((c) => c.labels[LABEL.release] === String(release.number));
    const passed = await keepRunning(ctx, plan, checks, dynos, existing);
    for (const type of types) {
      const wanted = dynos.filter((d) => d.type === type);
      const tasks = wanted.map((d) => passed.get(d.name));
      const services = new Set(tasks.map((t) => t && sw.dynos.serviceOf(t.id)));
      const [service] = [...services];
      // All of one service, and it asks for no more tasks than the formation wants.
      if (tasks.every((t) => t) && services.size === 1 && service && sw.dynos.replicasOf(service) === wanted.length) kept.push(...(tasks as ContainerState[]));
    }
  }
  const keptTypes = new Set(kept.map((c) => c.labels[LABEL.process]));
  const toStart = types.filter((t) => !keptTypes.has(t));
  const created: SwarmService[] = [];
  try {
    let started: Started[] = [];
    if (toStart.length > 0) {
      await ctx.prepare?.(ctx.out);
      // The app's own network (ctx.network), an attachable overlay on the swarm scheduler: its linked services are on it.
      await ctx.engine.ensureNetwork(ctx.network, { [LABEL.app]: app }, ctx.networkOptions ?? { driver: 'overlay' });
      const image = await sw.distributor.distribute(release.image, ctx.out);
      const needsEntrypoint = toStart.some((t) => release.processTypes[t] !== '');
      const entrypoint = needsEntrypoint ? ((await ctx.engine.imageConfig(release.image))?.entrypoint ?? []) : [];
      for (const type of toStart) {
        const count = dynos.filter((d) => d.type === type).length;
        const spec = serviceSpec(ctx, sw, plan, type, count, image, entrypoint, checks);
        ctx.out.step(`Starting ${type} ×${count} (release v${release.number}) as Swarm service ${spec.name}`);
        created.push(await sw.swarm.createService(spec));
      }
      started = (await Promise.all(created.map((s) => runningTasks(ctx, sw, s, dynos.filter((d) => d.type === s.labels[LABEL.process]))))).flat();
    }
    const ready = await gateAll(ctx, plan, checks, started);
    return swapRoutes(ctx, plan, [...kept, ...ready], ready, 'task');
  } catch (e) {
    if (created.length) await sw.removeServices(app, created);
    throw e;
  }
}

/** The spec of one process type's service. */
function serviceSpec(ctx: DeployContext, sw: SwarmDeploy, plan: ProcessPlan, type: string, replicas: number, image: string, entrypoint: readonly string[], checks: ResolvedChecks): SwarmServiceSpec {
  const release = plan.release;
  const limit = limitFor(plan.limits, type, ctx.defaultLimit);
  // The app's own limits are reserved too, so Swarm places tasks where they fit; the server's default is only a ceiling.
  const own = plan.limits[type] ?? plan.limits['*'] ?? {};
  const placement = sw.placement(plan.name, type);
  return {
    name: sw.serviceName(plan.name, type, release.number),
    image,
    // {{.Task.Slot}} is Swarm's template: each task gets its own dyno number.
    env: { ...release.config, ...(type === 'web' ? { PORT: String(WEB_PORT) } : {}), DYNO: `${type}.{{.Task.Slot}}` },
    labels: { [LABEL.app]: plan.name, [LABEL.process]: type, [LABEL.release]: String(release.number), [LABEL.role]: 'process' },
    ...commandFor(release, release.processTypes[type] ?? '', entrypoint, type),
    replicas,
    ...(type === 'web' ? { publish: WEB_PORT } : {}),
    constraints: placement.constraints,
    spread: placement.spread,
    limits: { ...(limit.memory ? { memory: limit.memory } : {}), ...(limit.cpus ? { cpus: limit.cpus } : {}), ...(limit.pids ? { pids: limit.pids } : {}) },
    reservations: { ...(own.memory ? { memory: own.memory } : {}), ...(own.cpus ? { cpus: own.cpus } : {}) },
    capabilities: APP_CAPABILITIES,
    stopTimeout: Math.ceil(checks.stopTimeoutMs / 1000),
    // The app's own network: its tasks reach each other by SERVICE name and by APP.TYPE on every node.
    networks: [{ name: ctx.network, aliases: [`${plan.name}.${type}`] }],
    ...(plan.mounts.length ? { mounts: plan.mounts } : {}),
  };
}

/**
 * Waits until a new service runs `dynos.length` tasks (web ones with their published port), one
 * per slot, and returns them as the gate's Started list. A task that ends (fails, is rejected for
 * a missing image, exits) or that no node can take fails the deploy with what the engine said.
 */
async function runningTasks(ctx: DeployContext, sw: SwarmDeploy, service: SwarmService, dynos: readonly Dyno[]): Promise<Started[]> {
  const deadline = Date.now() + TASK_START_TIMEOUT_MS;
  const type = service.labels[LABEL.process] ?? 'web';
  for (;;) {
    const snapshot = await sw.dynos.snapshot(true);
    const tasks = snapshot.tasks.filter((t) => t.serviceId === service.id);
    const ended = tasks.find((t) => ENDED.has(t.state));
    if (ended) throw taskFailed(ended, snapshot.nodes, `${type}.${ended.slot}`);
    const stuck = tasks.find((t) => t.state === 'pending' && /no suitable node/i.test(t.message) && Date.now() - t.updatedAt >= UNPLACEABLE_MS);
    if (stuck) {
      throw new UserError('task_unplaceable', `${type}.${stuck.slot} cannot be placed on any node: ${stuck.message}`, {
        hint: `check the placement of ${type} (ps:set ${service.labels[LABEL.app]} ${type} placement ...) against nodes:list (labels, availability)`,
      });
    }
    const bySlot = new Map<number, ContainerState>();
    for (const t of tasks) {
      const state = sw.dynos.stateOf(t, snapshot);
      if (state.running && state.ip && (type !== 'web' || state.port) && !bySlot.has(t.slot)) bySlot.set(t.slot, state);
    }
    if (bySlot.size >= dynos.length) {
      return [...bySlot.entries()]
        .sort(([a], [b]) => a - b)
        .slice(0, dynos.length)
        .map(([slot, state], i) => ({ dyno: { ...dynos[i]!, index: slot, name: `${type}.${slot}` }, state }));
    }
    if (Date.now() > deadline) {
      const states = tasks.map((t) => `${type}.${t.slot} ${t.state}${t.message ? ` (${t.message})` : ''}`).join(', ') || 'no tasks';
      throw new UserError('tasks_not_running', `${service.name}: its tasks did not run within ${TASK_START_TIMEOUT_MS / 1000} s: ${states}`, {
        hint: 'nodes:list shows whether nodes are ready; each node must have or be able to pull the release image',
      });
    }
    await sleep(TASK_POLL_MS);
  }
}

function taskFailed(task: SwarmTask, nodes: readonly SwarmNode[], dyno: string): UserError {
  const node = nodes.find((n) => n.id === task.nodeId)?.hostname;
  const code = task.exitCode !== undefined && task.state !== 'rejected' ? `, exit code ${task.exitCode}` : '';
  return new UserError('container_exited', `${dyno} ${task.state === 'rejected' ? 'was rejected' : 'stopped'} at start${node ? ` on node ${node}` : ''} (${task.state}${code}): ${task.message || 'no message'}`, {
    hint: /image/i.test(task.message)
      ? 'every node must be able to get the release image (the cluster registry, or the image loaded on each node)'
      : 'the app must keep running, and a web process must listen on $PORT on all addresses (0.0.0.0)',
  });
}

// ---------------------------------------------------------------------------------------------

/** One look at berth's process services, their tasks and the nodes. */
export interface SwarmSnapshot {
  services: SwarmService[];
  tasks: SwarmTask[];
  nodes: SwarmNode[];
  at: number;
}

/**
 * The Swarm's tasks as the deploy path sees containers: a task wanted running is a container
 * named `SERVICE.SLOT.TASKID` (as its container on the node is), labelled with its service's
 * labels and its dyno (`web.SLOT`), at its node's address and published port, running while the
 * task runs on a ready node. One look at the Swarm is shared for SNAPSHOT_TTL_MS.
 */
export class SwarmDynos implements DynoEngine {
  readonly #swarm: Swarm;
  #last: SwarmSnapshot | undefined;
  #pending: Promise<SwarmSnapshot> | undefined;
  /** Task id → service id, for every task ever seen (a task's service never changes). */
  readonly #serviceOf = new Map<string, string>();
  readonly #replicas = new Map<string, number>();

  constructor(swarm: Swarm) {
    this.#swarm = swarm;
  }

  /** The Swarm now (`fresh`), or as seen within SNAPSHOT_TTL_MS. */
  snapshot(fresh = false): Promise<SwarmSnapshot> {
    if (!fresh && this.#last && Date.now() - this.#last.at < SNAPSHOT_TTL_MS) return Promise.resolve(this.#last);
    if (this.#pending) return this.#pending;
    const at = Date.now();
    this.#pending = Promise.all([this.#swarm.services({ [LABEL.role]: 'process' }), this.#swarm.tasks({ labels: { [LABEL.role]: 'process' } }), this.#swarm.nodes()])
      .then(([services, tasks, nodes]) => {
        for (const t of tasks) this.#serviceOf.set(t.id, t.serviceId);
        for (const s of services) this.#replicas.set(s.id, s.replicas);
        this.#last = { services, tasks, nodes, at };
        return this.#last;
      })
      .finally(() => (this.#pending = undefined));
    return this.#pending;
  }

  invalidate(): void {
    this.#last = undefined;
  }

  /** The service a task (by id) belongs to, once seen. */
  serviceOf(taskId: string): string | undefined {
    return this.#serviceOf.get(taskId);
  }

  /** How many tasks a service asks for, as last seen. */
  replicasOf(serviceId: string): number | undefined {
    return this.#replicas.get(serviceId);
  }

  /** A task as a container. */
  stateOf(task: SwarmTask, snapshot: SwarmSnapshot): ContainerState {
    const service = snapshot.services.find((s) => s.id === task.serviceId);
    const node = snapshot.nodes.find((n) => n.id === task.nodeId);
    const type = task.labels[LABEL.process] ?? 'web';
    const nodeReady = node?.state === 'ready';
    const running = task.state === 'running' && task.desiredState === 'running' && nodeReady;
    return {
      id: task.id,
      name: `${service?.name ?? task.serviceId}.${task.slot}.${task.id}`,
      labels: { ...task.labels, [LABEL.dyno]: `${type}.${task.slot}`, [NODE_LABEL]: node?.hostname ?? task.nodeId },
      running,
      status: task.state === 'running' && !nodeReady ? `running on a node that is ${node?.state ?? 'gone'}` : task.state,
      exitCode: task.exitCode ?? 0,
      restartCount: 0,
      ip: node?.address || undefined,
      ...(task.publishedPort ? { port: task.publishedPort } : {}),
      startedAt: task.state === 'running' ? task.updatedAt : undefined,
      oomKilled: false,
    };
  }

  async inspect(id: string): Promise<ContainerState> {
    const snapshot = await this.snapshot();
    const task = snapshot.tasks.find((t) => t.id === id);
    if (!task) throw new NotFoundError(`no Swarm task ${id}`);
    return this.stateOf(task, snapshot);
  }

  /** The tasks Swarm wants running (of berth's process services), narrowed by labels. */
  async list(labels: Record<string, string> = {}): Promise<ContainerState[]> {
    const snapshot = await this.snapshot(true);
    return snapshot.tasks
      .filter((t) => t.desiredState === 'running' && Object.entries(labels).every(([k, v]) => t.labels[k] === v))
      .map((t) => this.stateOf(t, snapshot));
  }

  logs(id: string, tail = 50): Promise<string> {
    return this.#swarm.taskLogs(id, tail);
  }

  /** A single task cannot be removed: its whole service is (only ever asked of the tasks of a service one deploy made). */
  async stopAndRemove(id: string): Promise<void> {
    const service = this.#serviceOf.get(id);
    if (service) await this.#swarm.removeService(service);
    this.invalidate();
  }
}

/** Not a Docker label: the node a task runs on, set on the ContainerStates SwarmDynos makes (ps:report shows it). */
export const NODE_LABEL = 'berth.node';

// ---------------------------------------------------------------------------------------------

/** How often the task watcher looks at the Swarm's tasks and nodes (Swarm has no task events). */
export const TASK_WATCH_INTERVAL_MS = 500;

/** What the task watcher reads and changes of the orchestrator. */
export interface TaskWatcherDeps {
  dynos: SwarmDynos;
  /** The apps, with the release each has on record (undefined before the first) and whether it is stopped. */
  apps(): Array<{ name: string; current: number | undefined; stopped: boolean }>;
  hostnames(app: string): string[];
  routes: {
    routed(app: string): readonly Target[];
    standby(app: string): readonly Target[];
    withdraw(app: string, hostnames: string[], target: string, reason: string): boolean;
    forget(target: string): void;
    isDown(target: string): boolean;
  };
  /** Task ids a deploy on probation listens about, and how to tell it. */
  watched(): readonly string[];
  tell(event: ContainerEvent): void;
  /** A running web task of the current release that is not routed (Swarm started it in place of one that stopped): check it, then route it. */
  readmit(app: string, task: ContainerState): Promise<void>;
}

/**
 * Polls the Swarm every TASK_WATCH_INTERVAL_MS: a routed (or standby) target whose task no longer
 * runs, or whose node is not `ready`, leaves its app's route at once (without the app's lock, as
 * the engine's die events do on one engine); a task a deploy on probation watches is reported as
 * died or removed; a running web task of the current release that is not routed is handed to
 * `readmit` once (it rejoins after its checks).
 */
export class TaskWatcher {
  readonly #deps: TaskWatcherDeps;
  readonly #readmitting = new Set<string>();
  readonly #told = new Set<string>();
  #timer: NodeJS.Timeout | undefined;
  #busy = false;

  constructor(deps: TaskWatcherDeps) {
    this.#deps = deps;
  }

  start(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => void this.tick(), TASK_WATCH_INTERVAL_MS);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** One look (tests call it directly). */
  async tick(): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    try {
      await this.#look();
    } catch (e) {
      // The manager not answering once says nothing about the tasks; the next turn asks again.
      log.warn('task_watch_failed', { error: e });
    } finally {
      this.#busy = false;
    }
  }

  async #look(): Promise<void> {
    const { dynos, routes } = this.#deps;
    const snapshot = await dynos.snapshot(true);
    const states = snapshot.tasks.map((t) => dynos.stateOf(t, snapshot));
    const byId = new Map(states.map((s) => [s.id, s]));
    const byName = new Map(states.map((s) => [s.name, s]));
    const now = Date.now();
    for (const id of this.#deps.watched()) {
      const state = byId.get(id);
      if (state?.running || this.#told.has(id)) continue;
      // A task not yet seen running is starting: only one that ran and stopped, or is gone, is news.
      if (state && !ENDED.has(state.status) && !state.status.startsWith('running')) continue;
      this.#told.add(id);
      this.#deps.tell({
        change: state ? 'died' : 'removed',
        reason: state ? state.status : 'task removed',
        id,
        name: state?.name ?? id,
        app: state?.labels[LABEL.app] ?? '',
        process: state?.labels[LABEL.process] ?? 'web',
        release: state ? Number(state.labels[LABEL.release]) : undefined,
        dyno: state?.labels[LABEL.dyno],
        role: 'process',
        at: now,
        ...(state && state.exitCode ? { exitCode: state.exitCode } : {}),
      });
    }
    for (const app of this.#deps.apps()) {
      const targets = [...routes.routed(app.name), ...routes.standby(app.name)];
      for (const target of targets) {
        const state = byName.get(target.id);
        if (state?.running) continue;
        const reason = state ? `task ${state.status}${state.labels[NODE_LABEL] ? ` on node ${state.labels[NODE_LABEL]}` : ''}` : 'task gone';
        if (routes.withdraw(app.name, this.#deps.hostnames(app.name), target.id, reason)) {
          log.info('route_target_withdrawn', { app: app.name, container: target.id, reason, lagMs: now - snapshot.at });
        }
      }
      if (app.current === undefined || app.stopped) continue;
      const routedIds = new Set(targets.map((t) => t.id));
      for (const state of states) {
        if (state.labels[LABEL.app] !== app.name || state.labels[LABEL.process] !== 'web' || state.labels[LABEL.release] !== String(app.current)) continue;
        if (!state.running || !state.port || routedIds.has(state.name) || routes.isDown(state.name) || this.#readmitting.has(state.name)) continue;
        this.#readmitting.add(state.name);
        void this.#deps
          .readmit(app.name, state)
          .catch((e) => log.info('task_readmit_skipped', { app: app.name, task: state.name, reason: (e as Error).message }))
          .finally(() => setTimeout(() => this.#readmitting.delete(state.name), TASK_WATCH_INTERVAL_MS * 4).unref());
      }
    }
    const watched = new Set(this.#deps.watched());
    for (const id of [...this.#told]) if (!watched.has(id)) this.#told.delete(id);
  }
}
