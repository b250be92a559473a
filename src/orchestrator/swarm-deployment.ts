// Deploys on the swarm scheduler: each process type of a release is one Swarm service
// (PREFIX-INSTANCE-APP-TYPE-rN-XXXX, berth's labels, replicas = the formation, web publishing $PORT
// in host mode on a port the engine picks, dnsrr endpoints), and its tasks are the dynos.
//
// The seam is small on purpose: a task looks like a container to the deploy path (swarm-dynos.ts
// answers inspect/list/logs/stopAndRemove with ContainerStates whose `ip` is the task's node
// address and whose `port` is its published port), so deployRelease and retireOthers
// (deployment.ts) hand over here when the DeployContext carries a SwarmDeploy, and everything
// else is shared with the docker scheduler: the gate (every new task checked from berth at its
// node's address and published port), the swap in one publish, probation, the drain of the old
// targets, then the removal of the old services. A gate that fails removes the new services; the
// old ones keep serving. Swarm has no task events: the orchestrator polls tasks and nodes
// (task-watcher.ts) to take a task that stopped, or whose node is not ready, out of the route.
//
// What differs from containers: a task that exits is replaced by Swarm with a new task (a new id
// and target) rather than restarted, so `restartCount` is always 0 and "restarted" shows as the
// task no longer running; removing one task means removing its service (stopAndRemove), which is
// only ever asked of tasks of services this deploy made. checks:disable stops the old services of
// those types first, as on one engine: they leave the route, are scaled to 0 until their tasks
// have stopped, and are removed before the new services start.
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
  unrouteFirst,
  WEB_PORT,
  type DeployContext,
  type Deployed,
  type Dyno,
  type ProcessPlan,
  type Started,
} from './deployment.ts';
import { APP_CAPABILITIES, LABEL, type ContainerState, type Engine } from './engine.ts';
import { ENDED_TASK_STATES, SwarmDynos } from './swarm-dynos.ts';
import type { ImageDistributor, Swarm, SwarmNode, SwarmService, SwarmServiceSpec, SwarmTask } from './swarm.ts';

/** How long a new service's tasks may take to run (a pull on a node included) before the deploy fails. */
export const TASK_START_TIMEOUT_MS = 120_000;
/** How often a new service's tasks are looked at while they start. */
export const TASK_POLL_MS = 250;
/** A task Swarm cannot place anywhere (its constraints match no node) fails the deploy after this long. */
export const UNPLACEABLE_MS = 3_000;
/** Beyond their stop timeout, how long the tasks of an old service scaled to 0 may take to be seen stopped (a lost node's never are). */
const STOP_SEEN_MARGIN_MS = 10_000;

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
  #managerId: Promise<string> | undefined;
  /** Aborted when the daemon stops: waits for tasks end then. */
  readonly signal: AbortSignal | undefined;

  constructor(deps: { swarm: Swarm; distributor: ImageDistributor; prefix: string; placement?: (app: string, type: string) => Placement; signal?: AbortSignal }) {
    this.swarm = deps.swarm;
    this.signal = deps.signal;
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

  /** The node id of the manager berth talks to (asked once). */
  managerId(): Promise<string> {
    this.#managerId ??= this.swarm.manager().then(
      (m) => m.nodeId,
      (e: unknown) => {
        this.#managerId = undefined;
        throw e;
      },
    );
    return this.#managerId;
  }


  /** The app's process services, newest release first. */
  async services(app: string): Promise<SwarmService[]> {
    return (await this.swarm.services({ [LABEL.app]: app, [LABEL.role]: 'process' })).sort((a, b) => Number(b.labels[LABEL.release]) - Number(a.labels[LABEL.release]));
  }

  /** After the swap and the drain: removes every process service of the app but those `keep`'s tasks belong to. */
  async retire(ctx: DeployContext, plan: ProcessPlan, keep: readonly ContainerState[], checks: ResolvedChecks): Promise<void> {
    const services = await this.services(plan.name);
    // A task's container is named SERVICE.SLOT.TASKID: by name too, should Swarm have dropped the task from its history.
    const kept = new Set(keep.map((c) => this.dynos.serviceOf(c.id) ?? services.find((s) => c.name.startsWith(`${s.name}.`))?.id));
    const old = services.filter((s) => !kept.has(s.id));
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
      const manager = plan.mounts.length ? await sw.managerId() : undefined;
      // Only now, with the image on the cluster's registry: the downtime is the services' restart alone.
      await stopDisabledFirst(ctx, sw, app, checks, toStart);
      for (const type of toStart) {
        const count = dynos.filter((d) => d.type === type).length;
        const registryAuth = sw.distributor.registryAuth?.(image);
        const spec = { ...serviceSpec(ctx, sw, plan, type, count, image, entrypoint, checks, manager), ...(registryAuth ? { registryAuth } : {}) };
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

/**
 * checks:disable on Swarm as on one engine (and in Dokku): the old services of those types leave
 * the route, and their tasks stop before the new ones start, so two copies do not run at once
 * (downtime). Scaled to 0 first, so their tasks are seen stopped (SIGTERM, SIGKILL after the stop
 * timeout) before the services go. As on one engine, a failure to stop them is reported and the
 * deploy goes on: tasks not seen stopped within the stop timeout and STOP_SEEN_MARGIN_MS (on a
 * node that does not answer) are named in the deploy's output.
 */
async function stopDisabledFirst(ctx: DeployContext, sw: SwarmDeploy, app: string, checks: ResolvedChecks, types: readonly string[]): Promise<void> {
  const disabled = new Set(types.filter((t) => checks.isDisabled(t)));
  if (disabled.size === 0) return;
  const old = (await sw.services(app)).filter((s) => disabled.has(s.labels[LABEL.process] ?? ''));
  if (old.length === 0) return;
  ctx.out.step(`Zero-downtime deploys are disabled for ${[...disabled].join(', ')}: stopping the old Swarm services first`);
  // A task's target is named SERVICE.SLOT.TASKID.
  await unrouteFirst(ctx, app, (t) => old.some((s) => t.id.startsWith(`${s.name}.`)), checks);
  ctx.out.step(`Stopping the tasks of ${old.length} old Swarm service${old.length === 1 ? '' : 's'} (SIGTERM, then SIGKILL after ${Math.ceil(checks.stopTimeoutMs / 1000)}s)`);
  const deadline = Date.now() + checks.stopTimeoutMs + STOP_SEEN_MARGIN_MS;
  let left: SwarmTask[] = [];
  try {
    await Promise.all(old.map((s) => sw.swarm.setReplicas(s.id, 0)));
    for (;;) {
      // A manager that does not answer for a moment is asked again until the deadline.
      const tasks = await Promise.all(old.map((s) => sw.swarm.tasks({ service: s.id }))).then((all) => all.flat(), () => undefined);
      left = tasks ? tasks.filter((t) => !ENDED_TASK_STATES.has(t.state)) : left;
      if (tasks && left.length === 0) break;
      if (Date.now() > deadline) {
        log.warn('swarm_tasks_not_seen_stopped', { app, tasks: left.map((t) => `${t.id} ${t.state}`) });
        ctx.out.error(`${left.length || 'the'} old task${left.length === 1 ? ' was' : 's were'} not seen stopped within ${Math.ceil((checks.stopTimeoutMs + STOP_SEEN_MARGIN_MS) / 1000)}s (a node that does not answer?); starting the new ones anyway`);
        break;
      }
      await sleep(TASK_POLL_MS, sw.signal);
    }
  } catch (e) {
    sw.signal?.throwIfAborted();
    log.warn('swarm_service_stop_failed', { app, services: old.map((s) => s.name), error: e });
    ctx.out.error(`could not stop the old services: ${(e as Error).message}`);
  }
  await sw.removeServices(app, old, ctx.out);
}

/** The spec of one process type's service. */
function serviceSpec(ctx: DeployContext, sw: SwarmDeploy, plan: ProcessPlan, type: string, replicas: number, image: string, entrypoint: readonly string[], checks: ResolvedChecks, manager: string | undefined): SwarmServiceSpec {
  const release = plan.release;
  const limit = limitFor(plan.limits, type, ctx.defaultLimit);
  // The app's own limits are reserved too, so Swarm places tasks where they fit; the server's default is only a ceiling.
  const own = plan.limits[type] ?? plan.limits['*'] ?? {};
  const placement = sw.placement(plan.name, type);
  return {
    name: sw.serviceName(plan.name, type, release.number),
    image,
    // Swarm expands templates in a service's environment and mounts: the app's values are taken
    // literally (swarmLiteral); only DYNO is a template, {{.Task.Slot}} giving each task its number.
    env: { ...Object.fromEntries(Object.entries(release.config).map(([k, v]) => [k, swarmLiteral(v)])), ...(type === 'web' ? { PORT: String(WEB_PORT) } : {}), DYNO: `${type}.{{.Task.Slot}}` },
    labels: { [LABEL.app]: plan.name, [LABEL.process]: type, [LABEL.release]: String(release.number), [LABEL.role]: 'process' },
    ...commandFor(release, release.processTypes[type] ?? '', entrypoint, type),
    replicas,
    ...(type === 'web' ? { publish: WEB_PORT } : {}),
    // Mounts (storage:mount) are folders and volumes of one node: the tasks stay on the manager's
    // unless the placement pins them to one node itself.
    constraints: manager && !pinnedToOneNode(placement.constraints) ? [...placement.constraints, `node.id==${manager}`] : placement.constraints,
    spread: placement.spread,
    limits: { ...(limit.memory ? { memory: limit.memory } : {}), ...(limit.cpus ? { cpus: limit.cpus } : {}), ...(limit.pids ? { pids: limit.pids } : {}) },
    reservations: { ...(own.memory ? { memory: own.memory } : {}), ...(own.cpus ? { cpus: own.cpus } : {}) },
    capabilities: APP_CAPABILITIES,
    stopTimeout: Math.ceil(checks.stopTimeoutMs / 1000),
    // The app's own network: its tasks reach each other by SERVICE name and by APP.TYPE on every node.
    networks: [{ name: ctx.network, aliases: [`${plan.name}.${type}`] }],
    ...(plan.mounts.length ? { mounts: plan.mounts.map(swarmLiteral) } : {}),
  };
}

/** Whether placement constraints keep tasks on one node (`node.id==` or `node.hostname==`). */
export function pinnedToOneNode(constraints: readonly string[]): boolean {
  return constraints.some((c) => /^\s*node\.(id|hostname)\s*==/.test(c));
}

/**
 * `text` as a Swarm (Go) template that yields `text` itself: every `{{` becomes `{{"{{"}}`, so no
 * value of the app's config reaches Swarm's template engine (`{{printf ...}}` would be run by
 * dockerd on the node; `Hello {{name}}` would get the task rejected).
 */
export function swarmLiteral(text: string): string {
  return text.replaceAll('{{', '{{"{{"}}');
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
    sw.signal?.throwIfAborted();
    const snapshot = await sw.dynos.snapshot(true);
    const tasks = snapshot.tasks.filter((t) => t.serviceId === service.id);
    const ended = tasks.find((t) => ENDED_TASK_STATES.has(t.state));
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
    await sleep(TASK_POLL_MS, sw.signal);
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
