// The machines of the Swarm berth schedules on (--scheduler swarm), as the nodes:* commands see
// them: each with the dynos it runs, the command that joins another, labels, and drain/activate.
// A drain moves the dynos off (NodeMover) while the node takes no new task, and only then lets
// Swarm stop what is left, so the route never holds a dyno that is going away.
import { UserError, isUserError } from '../errors.ts';
import { log } from '../log.ts';
import { LABEL } from '../orchestrator/engine.ts';
import type { NodeAvailability, NodeRole, Swarm, SwarmNode } from '../orchestrator/swarm.ts';
import type { Output } from '../ui/output.ts';

/**
 * Moves every dyno off a node that takes no new tasks (availability `pause`): the apps with tasks
 * there are redeployed elsewhere, gated and swapped as any deploy. The deploy path on Swarm
 * implements it; it throws when an app could not move (its dynos then stay where they were).
 */
export interface NodeMover {
  moveOff(nodeId: string, out: Output): Promise<void>;
}

/** A node as nodes:list shows it: what Swarm says of it, and berth's dynos running there. */
export interface NodeReport extends SwarmNode {
  /** `APP TYPE.N` of each running dyno, sorted. */
  dynos: string[];
  /** `KIND/NAME` of each backing service whose container runs there (the manager's engine's), sorted. */
  services: string[];
}

/** A node label's key: Docker's reverse-DNS style (letters, digits, `.`, `-`, `_`, `/`). */
const LABEL_KEY = /^[A-Za-z0-9]([A-Za-z0-9._/-]{0,126}[A-Za-z0-9])?$/;
const MAX_LABEL_VALUE = 256;

export class NodeService {
  readonly #swarm: Swarm | undefined;
  readonly #mover: NodeMover | undefined;
  readonly #services: () => string[];

  /**
   * `swarm` undefined: the docker scheduler, where every operation says it needs --scheduler swarm.
   * `services`: the backing services (`KIND/NAME`), which run on the manager (docs/swarm.md).
   */
  constructor(deps: { swarm: Swarm | undefined; mover: NodeMover | undefined; services?: () => string[] }) {
    this.#swarm = deps.swarm;
    this.#mover = deps.mover;
    this.#services = deps.services ?? (() => []);
  }

  async list(): Promise<NodeReport[]> {
    const swarm = this.#need();
    const [nodes, dynos, manager] = await Promise.all([swarm.nodes(), this.#dynos(swarm), swarm.manager()]);
    const services = this.#services().sort();
    return nodes.map((n) => ({ ...n, dynos: (dynos.get(n.id) ?? []).sort(), services: n.id === manager.nodeId ? services : [] }));
  }

  /** A node by name, id or the start of an id. */
  get(ref: string): Promise<SwarmNode> {
    return this.#need().node(ref);
  }

  /** What a new machine runs to join the Swarm, as a worker or as a manager. */
  joinCommand(role: NodeRole): Promise<string> {
    return this.#need().joinCommand(role);
  }

  /** Sets (a string) or removes (null) labels of a node; placement constraints read them (node.labels.KEY). */
  async label(ref: string, labels: Record<string, string | null>, by: string): Promise<SwarmNode> {
    const swarm = this.#need();
    for (const [key, value] of Object.entries(labels)) checkLabel(key, value);
    const node = await swarm.updateNode(ref, { labels });
    log.info('node_labelled', { node: node.id, hostname: node.hostname, labels, by });
    return node;
  }

  /**
   * Stops a node taking tasks and moves its dynos off first: availability `pause` (no new task
   * lands there), the mover redeploys the apps that run there, then `drain` (Swarm stops what is
   * left). When the move fails the node takes tasks again, as it did, and the error says why.
   * berth's own manager (the engine it talks to) is refused: services and the registry store run there.
   */
  async drain(ref: string, out: Output, by: string): Promise<SwarmNode> {
    const swarm = this.#need();
    const node = await swarm.node(ref);
    if (node.availability === 'drain') {
      await out.step(`Node ${node.hostname} is drained already`);
      return node;
    }
    // Its engine is berth's: the backing services and the registry store run there, pinned, and a drain would stop them.
    if (node.id === (await swarm.manager()).nodeId) {
      throw new UserError('drain_berth_manager', `node ${node.hostname} is the manager whose engine berth uses (--docker-host): the backing services and the cluster's registry store are pinned to it, and draining it would stop them (every later push would fail)`, {
        hint: `keep dynos off it instead: ps:set APP TYPE placement node.role!=manager (or nodes:label ${node.hostname} KEY=VALUE and a placement on node.labels.KEY); to take this machine out, move the services' data first (docs/swarm.md)`,
      });
    }
    const others = (await swarm.nodes()).filter((n) => n.id !== node.id && n.availability === 'active' && n.state === 'ready');
    if (others.length === 0) {
      throw new UserError('last_active_node', `node ${node.hostname} is the only ready node that takes tasks: its dynos would have nowhere to go`, {
        hint: 'join another machine first (nodes:join-command), or activate a node (nodes:activate NODE)',
      });
    }
    log.info('node_drain_started', { node: node.id, hostname: node.hostname, by });
    await out.step(`Draining node ${node.hostname}: it takes no new tasks`);
    await swarm.updateNode(node.id, { availability: 'pause' });
    try {
      const dynos = (await this.#dynos(swarm)).get(node.id) ?? [];
      if (dynos.length === 0) await out.detail('no dynos run on it');
      else {
        await out.step(`Moving ${dynos.length} dyno${dynos.length === 1 ? '' : 's'} off ${node.hostname}: ${dynos.sort().join(', ')}`);
        if (!this.#mover) throw new Error('no NodeMover is wired into the platform: dynos cannot be moved off a node');
        await this.#mover.moveOff(node.id, out);
      }
    } catch (e) {
      await this.#restore(swarm, node, e);
    }
    const drained = await swarm.updateNode(node.id, { availability: 'drain' });
    log.info('node_drained', { node: node.id, hostname: node.hostname, by });
    await out.step(`Node ${node.hostname} is drained: Swarm runs nothing there until nodes:activate ${node.hostname}`);
    return drained;
  }

  /** Lets a node take tasks again. Running dynos stay where they are; the next deploys spread onto it. */
  async activate(ref: string, out: Output, by: string): Promise<SwarmNode> {
    const swarm = this.#need();
    const node = await swarm.updateNode(ref, { availability: 'active' });
    log.info('node_activated', { node: node.id, hostname: node.hostname, by });
    await out.step(`Node ${node.hostname} is active: it takes new tasks (dynos running elsewhere stay there until their app's next deploy)`);
    return node;
  }

  // The node takes tasks again as before the drain; the error says so, and keeps its cause.
  async #restore(swarm: Swarm, node: SwarmNode, e: unknown): Promise<never> {
    const back: NodeAvailability = node.availability;
    try {
      await swarm.updateNode(node.id, { availability: back });
    } catch (again) {
      log.error('node_restore_failed', { node: node.id, hostname: node.hostname, error: again });
    }
    log.warn('node_drain_failed', { node: node.id, hostname: node.hostname, error: e });
    const what = `nodes:drain ${node.hostname}: moving its dynos off failed, so it is ${back} again`;
    if (isUserError(e)) throw new UserError(e.code, `${what}: ${e.message}`, { cause: e, ...(e.hint ? { hint: e.hint } : {}) });
    throw new Error(`${what}: ${(e as Error).message}`, { cause: e });
  }

  /** berth's running dynos per node id, as `APP TYPE.N`. */
  async #dynos(swarm: Swarm): Promise<Map<string, string[]>> {
    const tasks = await swarm.tasks({ labels: { [LABEL.role]: 'process' } });
    const byNode = new Map<string, string[]>();
    for (const t of tasks) {
      if (t.state !== 'running' || t.desiredState !== 'running' || !t.nodeId) continue;
      const name = `${t.labels[LABEL.app] ?? '?'} ${t.labels[LABEL.process] ?? '?'}.${t.slot}`;
      byNode.set(t.nodeId, [...(byNode.get(t.nodeId) ?? []), name]);
    }
    return byNode;
  }

  #need(): Swarm {
    if (this.#swarm) return this.#swarm;
    throw new UserError('needs_swarm_scheduler', 'nodes:* commands need the swarm scheduler: this berth runs apps on one Docker engine (--scheduler docker)', {
      hint: 'run berth serve with --scheduler swarm and --docker-host pointing at a Swarm manager\'s engine (docs/swarm.md)',
    });
  }
}

function checkLabel(key: string, value: string | null): void {
  if (!LABEL_KEY.test(key)) {
    throw new UserError('bad_label', `"${key}" is not a node label key: letters, digits, and . - _ / inside, at most 128 characters`, { hint: 'such as: nodes:label NODE zone=a', exitCode: 2 });
  }
  if (value !== null && (value.length > MAX_LABEL_VALUE || /[\x00-\x1f\x7f]/.test(value))) {
    throw new UserError('bad_label', `the value of node label ${key} is over ${MAX_LABEL_VALUE} characters or holds a control character`, { exitCode: 2 });
  }
}
