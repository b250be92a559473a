// The Swarm's tasks as the deploy path sees containers (SwarmDynos): what the gate, probation,
// ps:report and the task watcher read, from one look at the Swarm shared for a moment.
import { LABEL, NotFoundError, type ContainerState, type Subscription } from './engine.ts';
import type { DynoEngine } from './deployment.ts';
import type { Swarm, SwarmNode, SwarmService, SwarmTask } from './swarm.ts';

/** How long one look at the Swarm (services, tasks, nodes) is reused by the gates, probation and the watcher. */
export const SNAPSHOT_TTL_MS = 200;

/** Task states after which a task never runs again. */
export const ENDED_TASK_STATES: ReadonlySet<string> = new Set(['complete', 'failed', 'rejected', 'shutdown', 'orphaned', 'remove']);

/**
 * Node states in which its tasks count as lost. Not `unknown`: a restarted manager (or a new
 * leader) marks every node `unknown` until its next heartbeat, and their tasks keep running; a
 * node that stops answering goes from `ready` to `down` when its heartbeat expires.
 */
export const LOST_NODE_STATES: ReadonlySet<string> = new Set(['down', 'disconnected']);

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
 * task runs on a node not lost (LOST_NODE_STATES). One look at the Swarm is shared for SNAPSHOT_TTL_MS.
 */
export class SwarmDynos implements DynoEngine {
  readonly #swarm: Swarm;
  #last: SwarmSnapshot | undefined;
  #pending: Promise<SwarmSnapshot> | undefined;
  /** Task id → service id, and service id → replicas, as of the last look (rebuilt at each, so they hold only what exists). */
  #serviceOf = new Map<string, string>();
  #replicas = new Map<string, number>();

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
        const existing = new Set(services.map((s) => s.id));
        this.#serviceOf = new Map(tasks.filter((t) => existing.has(t.serviceId)).map((t) => [t.id, t.serviceId]));
        this.#replicas = new Map(services.map((s) => [s.id, s.replicas]));
        this.#last = { services, tasks, nodes, at };
        return this.#last;
      })
      .finally(() => (this.#pending = undefined));
    return this.#pending;
  }

  invalidate(): void {
    this.#last = undefined;
  }

  /** The service a task (by id) belongs to, as last seen. */
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
    const nodeUp = node !== undefined && !LOST_NODE_STATES.has(node.state);
    const running = task.state === 'running' && task.desiredState === 'running' && nodeUp;
    return {
      id: task.id,
      name: `${service?.name ?? task.serviceId}.${task.slot}.${task.id}`,
      labels: { ...task.labels, [LABEL.dyno]: `${type}.${task.slot}`, [NODE_LABEL]: node?.hostname ?? task.nodeId },
      running,
      status: task.state === 'running' && !nodeUp ? `running on a node that is ${node?.state ?? 'gone'}` : task.state,
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

  logs(id: string, tail = 50, options: { timestamps?: boolean } = {}): Promise<string> {
    return this.#swarm.taskLogs(id, tail, options);
  }

  followLogs(id: string, options: { tail: number; onData(data: Buffer): void | Promise<void> }): Promise<Subscription> {
    return this.#swarm.followTaskLogs(id, options);
  }

  /** A single task cannot be removed: its whole service is (only ever asked of the tasks of a service one deploy made). */
  async stopAndRemove(id: string): Promise<void> {
    const service = this.#serviceOf.get(id) ?? (await this.snapshot(true)).tasks.find((t) => t.id === id)?.serviceId;
    if (service) await this.#swarm.removeService(service);
    this.invalidate();
  }
}

/** Not a Docker label: the node a task runs on, set on the ContainerStates SwarmDynos makes (ps:report shows it). */
export const NODE_LABEL = 'berth.node';
