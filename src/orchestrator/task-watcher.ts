// Swarm has no task events: on the swarm scheduler this poll stands in for the engine's container
// events, taking lost tasks out of the route at once and routing Swarm's replacements once checked.
import net from 'node:net';
import { log } from '../log.ts';
import type { Target } from '../proxy/route-table.ts';
import { LABEL, type ContainerEvent, type ContainerState } from './engine.ts';
import { ENDED_TASK_STATES, NODE_LABEL, type SwarmDynos } from './swarm-dynos.ts';

/** How often the task watcher looks at the Swarm's tasks and nodes (Swarm has no task events). */
export const TASK_WATCH_INTERVAL_MS = 500;

/** Swarm's gossip port (TCP 7946), open on every node of a Swarm: whether a node's machine answers. */
export const SWARM_GOSSIP_PORT = 7946;
/** How long a node's probe waits for an answer. */
export const NODE_PROBE_TIMEOUT_MS = 800;
/** Probes in a row a node that answered before must miss to count as lost before Swarm says so. */
export const NODE_PROBE_MISSES = 2;

/**
 * Whether the machine at `address` answers: `up` when a TCP connection to its gossip port is
 * accepted or refused (something answered), `down` when nothing does in time (unreachable).
 */
export function probeNode(address: string, timeoutMs = NODE_PROBE_TIMEOUT_MS): Promise<'up' | 'down'> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: address, port: SWARM_GOSSIP_PORT });
    const done = (result: 'up' | 'down') => {
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => done('down'), timeoutMs);
    socket.once('connect', () => done('up'));
    socket.once('error', (e: NodeJS.ErrnoException) => done(e.code === 'ECONNREFUSED' || e.code === 'ECONNRESET' ? 'up' : 'down'));
  });
}

/** Whether a node's machine answers. */
export type NodeProbe = (node: { address: string; hostname: string }) => Promise<'up' | 'down'>;

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
    revive(target: string): boolean;
    forget(target: string): void;
    isDown(target: string): boolean;
    /** Every target taken out as down and not yet revived or forgotten. */
    down(): readonly string[];
  };
  /** Task ids a deploy on probation listens about, and how to tell it. */
  watched(): readonly string[];
  tell(event: ContainerEvent): void;
  /** A running web task of the current release that is not routed (Swarm started it in place of one that stopped): check it, then route it. */
  readmit(app: string, task: ContainerState): Promise<void>;
  /** Whether a node's machine answers (default: probeNode at its address; tests inject one). */
  probe?: NodeProbe;
}

/**
 * Polls the Swarm every TASK_WATCH_INTERVAL_MS: a routed (or standby) target whose task no longer
 * runs, or whose node is lost (`down`, `disconnected`; not `unknown`), leaves its app's route at once (without the app's lock, as
 * the engine's die events do on one engine); a task a deploy on probation watches is reported as
 * died or removed; a running web task of the current release that is not routed is handed to
 * `readmit` once (it rejoins after its checks), as is one taken out that runs again on a ready node.
 *
 * Swarm marks a node `down` only when its heartbeats have been missing for a few periods (3-5 s
 * with a 1 s heartbeat, about 15 s with Docker's default 5 s). Meanwhile each ready node that
 * holds routed tasks is probed on its gossip port: one that answered before and then misses
 * NODE_PROBE_MISSES probes in a row counts as lost at once, its tasks leave the route (never an
 * app's last routed ones on the strength of a probe alone) and rejoin once it answers again. A
 * node whose port never answered (a firewall between berth and the node) is never judged by it.
 */
export class TaskWatcher {
  readonly #deps: TaskWatcherDeps;
  readonly #readmitting = new Set<string>();
  readonly #told = new Set<string>();
  /** Per node id: whether its gossip port ever answered, and the probes missed in a row since. */
  readonly #probes = new Map<string, { answered: boolean; misses: number }>();
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
    // A task taken out runs again on a ready node (its node was `down` and came back, or was
    // `disconnected`): it may be routed again once readmitted below, after its checks. A down
    // task Swarm no longer knows is forgotten.
    const ready = new Set(snapshot.nodes.filter((n) => n.state === 'ready').map((n) => n.id));
    const nodeOf = new Map(snapshot.tasks.map((t) => [t.id, t.nodeId]));
    const apps = this.#deps.apps();
    // The nodes probed: those of routed targets, and of targets taken out that may come back.
    const held = [...apps.flatMap((a) => [...routes.routed(a.name), ...routes.standby(a.name)].map((t) => t.id)), ...routes.down()];
    const silent = await this.#probeNodes(snapshot.nodes.filter((n) => ready.has(n.id)), held.map((name) => nodeOf.get(byName.get(name)?.id ?? '')));
    const onSilentNode = (state: ContainerState) => silent.has(nodeOf.get(state.id) ?? '');
    for (const name of routes.down()) {
      const state = byName.get(name);
      if (!state) routes.forget(name);
      else if (state.running && ready.has(nodeOf.get(state.id) ?? '') && !onSilentNode(state) && routes.revive(name)) log.info('route_target_revived', { container: name });
    }
    for (const id of this.#deps.watched()) {
      const state = byId.get(id);
      if (state?.running || this.#told.has(id)) continue;
      // A task not yet seen running is starting: only one that ran and stopped, or is gone, is news.
      if (state && !ENDED_TASK_STATES.has(state.status) && !state.status.startsWith('running')) continue;
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
    for (const app of apps) {
      const targets = [...routes.routed(app.name), ...routes.standby(app.name)];
      // A probe alone never takes an app's last routed targets: a firewall that starts dropping probes must not empty a route.
      const answering = routes.routed(app.name).filter((t) => {
        const state = byName.get(t.id);
        return state?.running && !onSilentNode(state);
      });
      for (const target of targets) {
        const state = byName.get(target.id);
        if (state?.running && (!onSilentNode(state) || answering.length === 0)) continue;
        const node = state?.labels[NODE_LABEL];
        const reason = !state ? 'task gone' : state.running ? `node ${node} does not answer` : `task ${state.status}${node ? ` on node ${node}` : ''}`;
        if (routes.withdraw(app.name, this.#deps.hostnames(app.name), target.id, reason)) {
          log.info('route_target_withdrawn', { app: app.name, container: target.id, reason, lagMs: now - snapshot.at });
        }
      }
      if (app.current === undefined || app.stopped) continue;
      const routedIds = new Set(targets.map((t) => t.id));
      for (const state of states) {
        if (state.labels[LABEL.app] !== app.name || state.labels[LABEL.process] !== 'web' || state.labels[LABEL.release] !== String(app.current)) continue;
        if (!state.running || !state.port || onSilentNode(state) || routedIds.has(state.name) || routes.isDown(state.name) || this.#readmitting.has(state.name)) continue;
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

  /** Probes the ready nodes among `holding` (node ids of routed targets and of those taken out) and returns the ids of those that count as lost. */
  async #probeNodes(nodes: ReadonlyArray<{ id: string; address: string; hostname: string }>, holding: ReadonlyArray<string | undefined>): Promise<Set<string>> {
    const probe = this.#deps.probe ?? ((node: { address: string }) => probeNode(node.address));
    const wanted = new Set(holding);
    const probed = nodes.filter((n) => wanted.has(n.id) && n.address);
    const results = await Promise.all(probed.map((n) => probe(n)));
    const silent = new Set<string>();
    probed.forEach((node, i) => {
      const seen = this.#probes.get(node.id) ?? { answered: false, misses: 0 };
      if (results[i] === 'up') {
        if (seen.misses >= NODE_PROBE_MISSES) log.info('node_answers_again', { node: node.hostname });
        this.#probes.set(node.id, { answered: true, misses: 0 });
        return;
      }
      if (!seen.answered) return this.#probes.set(node.id, seen);
      const misses = seen.misses + 1;
      this.#probes.set(node.id, { answered: true, misses });
      if (misses === NODE_PROBE_MISSES) log.warn('node_not_answering', { node: node.hostname, address: node.address, port: SWARM_GOSSIP_PORT });
      if (misses >= NODE_PROBE_MISSES) silent.add(node.id);
    });
    // Nodes no longer probed (gone, down, holding none of berth's targets) start afresh.
    const kept = new Set(probed.map((n) => n.id));
    for (const id of [...this.#probes.keys()]) if (!kept.has(id)) this.#probes.delete(id);
    return silent;
  }
}
