// A Swarm in memory for fast unit tests of the deploy path on the swarm scheduler: nodes with
// availability and state, services whose tasks are placed on ready active nodes that match their
// constraints, and a replacement task in the same slot when one stops (as Swarm's restart policy
// `any` does). Each web task is a real HTTP server on loopback (the node's address is 127.0.0.1
// and the task's published port is the server's), so berth's real checks and routes reach it.
// The same paths run against a real Swarm of Docker-in-Docker nodes in e2e-swarm.
import http from 'node:http';
import type net from 'node:net';
import { once } from 'node:events';
import type { Subscription } from '../../src/orchestrator/engine.ts';
import type { NodeAvailability, NodeRole, Swarm, SwarmNode, SwarmService, SwarmServiceSpec, SwarmTask } from '../../src/orchestrator/swarm.ts';

/** What a task does when it starts; by default a web task answers `200 SERVICE` on every request. */
export interface TaskBehaviour {
  /** The task fails at start with this exit code (no server). */
  exitCode?: number;
  /** The status every request gets. */
  status?: number;
}

interface FakeTask extends SwarmTask {
  server: http.Server | undefined;
}

export class FakeSwarm implements Swarm {
  readonly nodes_: SwarmNode[];
  readonly specs = new Map<string, SwarmServiceSpec>();
  readonly services_ = new Map<string, SwarmService>();
  readonly tasks_: FakeTask[] = [];
  /** Decides how a service's new task behaves (tests set it). */
  behaviour: (spec: SwarmServiceSpec) => TaskBehaviour = () => ({});
  /** Every service name created and removed, in order. */
  readonly log: string[] = [];
  #next = 1;
  #sockets = new Set<net.Socket>();

  constructor(nodeCount = 3) {
    this.nodes_ = Array.from({ length: nodeCount }, (_, i) => ({
      id: `node${i + 1}id`,
      hostname: `node${i + 1}`,
      address: '127.0.0.1',
      role: (i === 0 ? 'manager' : 'worker') as NodeRole,
      state: 'ready',
      availability: 'active' as NodeAvailability,
      labels: {},
      leader: i === 0,
    }));
  }

  async manager(): Promise<{ nodeId: string; address: string }> {
    return { nodeId: this.nodes_[0]!.id, address: '127.0.0.1' };
  }
  async nodes(): Promise<SwarmNode[]> {
    return this.nodes_.map((n) => ({ ...n, labels: { ...n.labels } }));
  }
  async node(ref: string): Promise<SwarmNode> {
    const n = this.nodes_.find((x) => x.id === ref || x.hostname === ref);
    if (!n) throw new Error(`no node ${ref}`);
    return { ...n };
  }
  async updateNode(ref: string, change: { labels?: Record<string, string | null>; availability?: NodeAvailability }): Promise<SwarmNode> {
    const n = this.nodes_.find((x) => x.id === ref || x.hostname === ref)!;
    for (const [k, v] of Object.entries(change.labels ?? {})) {
      if (v === null) delete n.labels[k];
      else n.labels[k] = v;
    }
    if (change.availability) n.availability = change.availability;
    return { ...n };
  }
  async joinCommand(): Promise<string> {
    return 'docker swarm join --token fake 127.0.0.1:2377';
  }

  async createService(spec: SwarmServiceSpec): Promise<SwarmService> {
    const id = `svc${this.#next++}`;
    const service: SwarmService = { id, name: spec.name, labels: { ...spec.labels }, image: spec.image, replicas: spec.replicas, constraints: [...spec.constraints] };
    this.services_.set(id, service);
    this.specs.set(id, spec);
    this.log.push(`create ${spec.name}`);
    for (let slot = 1; slot <= spec.replicas; slot++) await this.#startTask(service, slot);
    return { ...service };
  }
  async services(labels: Record<string, string> = {}): Promise<SwarmService[]> {
    return [...this.services_.values()].filter((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v)).map((s) => ({ ...s }));
  }
  async setReplicas(id: string, replicas: number): Promise<void> {
    const s = this.services_.get(id)!;
    s.replicas = replicas;
    this.log.push(`scale ${s.name} ${replicas}`);
    // Tasks in slots beyond the count are told to stop, and have stopped a moment later (as a container takes its stop signal).
    for (const t of this.tasks_.filter((x) => x.serviceId === id && x.slot > replicas && x.desiredState === 'running')) {
      t.desiredState = 'shutdown';
      setTimeout(() => {
        this.#end(t, 'shutdown');
        this.log.push(`stopped ${t.id}`);
      }, this.stopDelayMs);
    }
  }
  /** How long a task told to stop by a scale-down takes to stop. */
  stopDelayMs = 100;
  async removeService(id: string): Promise<void> {
    const s = this.services_.get(id);
    if (!s) return;
    this.services_.delete(id);
    this.log.push(`remove ${s.name}`);
    for (const t of this.tasks_.filter((x) => x.serviceId === id)) this.#end(t, 'shutdown');
    // Swarm forgets a removed service's tasks.
    for (let i = this.tasks_.length - 1; i >= 0; i--) if (this.tasks_[i]!.serviceId === id) this.tasks_.splice(i, 1);
  }
  async tasks(filter: { service?: string; labels?: Record<string, string> }): Promise<SwarmTask[]> {
    return this.tasks_
      .filter((t) => (filter.service === undefined || t.serviceId === filter.service) && Object.entries(filter.labels ?? {}).every(([k, v]) => t.labels[k] === v))
      .map(({ server: _s, ...t }) => ({ ...t, labels: { ...t.labels } }));
  }
  async taskLogs(taskId: string, tail: number, options: { timestamps?: boolean } = {}): Promise<string> {
    const t = this.tasks_.find((x) => x.id === taskId);
    return t && tail > 0 ? `${options.timestamps ? `${new Date(t.updatedAt).toISOString()} ` : ''}log of ${t.id}\n` : '';
  }
  /** Followed tasks: a line given to a task's function reaches its follower, timestamped as the engine does. */
  readonly followers_ = new Map<string, (line: string) => void>();
  async followTaskLogs(taskId: string, options: { onData(data: Buffer): void | Promise<void> }): Promise<Subscription> {
    if (this.followers_.has(taskId)) throw new Error(`task ${taskId} is followed twice`);
    const say = (line: string) => void options.onData(Buffer.from(`${new Date().toISOString()} ${line}\n`));
    this.followers_.set(taskId, say);
    return { stop: () => void (this.followers_.get(taskId) === say && this.followers_.delete(taskId)) };
  }
  /** Secrets by name: their content and labels. */
  readonly secrets_ = new Map<string, { id: string; data: string; labels: Record<string, string> }>();
  async ensureSecret(name: string, data: string, labels: Record<string, string>): Promise<void> {
    if (!this.secrets_.has(name)) this.secrets_.set(name, { id: `secret-${name}`, data, labels: { ...labels } });
  }
  async secrets(labels: Record<string, string> = {}): Promise<Array<{ id: string; name: string }>> {
    return [...this.secrets_].filter(([, s]) => Object.entries(labels).every(([k, v]) => s.labels[k] === v)).map(([name, s]) => ({ id: s.id, name }));
  }
  async removeSecret(id: string): Promise<void> {
    for (const [name, s] of this.secrets_) if (s.id === id) this.secrets_.delete(name);
  }

  /** The tasks Swarm wants running now. */
  live(labels: Record<string, string> = {}): SwarmTask[] {
    return this.tasks_.filter((t) => t.desiredState === 'running' && Object.entries(labels).every(([k, v]) => t.labels[k] === v));
  }

  /** A task stops (its process exited): Swarm starts another in its slot. */
  async killTask(taskId: string, exitCode = 137): Promise<void> {
    const t = this.tasks_.find((x) => x.id === taskId)!;
    t.exitCode = exitCode;
    this.#end(t, 'failed');
    const service = this.services_.get(t.serviceId);
    if (service) await this.#startTask(service, t.slot);
  }

  /** A node stops answering: its tasks stay `running` on record, the node is `down`; Swarm starts their replacements elsewhere. */
  async loseNode(hostname: string): Promise<void> {
    const n = this.nodes_.find((x) => x.hostname === hostname)!;
    n.state = 'down';
    for (const t of this.tasks_.filter((x) => x.nodeId === n.id && x.desiredState === 'running')) {
      t.desiredState = 'shutdown';
      t.server?.close();
      t.server?.closeAllConnections();
      const service = this.services_.get(t.serviceId);
      if (service) await this.#startTask(service, t.slot);
    }
  }

  async close(): Promise<void> {
    for (const t of this.tasks_) this.#end(t, 'shutdown');
    for (const s of this.#sockets) s.destroy();
  }

  async #startTask(service: SwarmService, slot: number): Promise<void> {
    const spec = this.specs.get(service.id)!;
    const candidates = this.nodes_.filter((n) => n.state === 'ready' && n.availability === 'active' && spec.constraints.every((c) => matches(n, c)));
    const running = (n: SwarmNode) => this.tasks_.filter((t) => t.nodeId === n.id && t.serviceId === service.id && t.desiredState === 'running').length;
    const node = candidates.sort((a, b) => running(a) - running(b))[0];
    const behaviour = this.behaviour(spec);
    const task: FakeTask = {
      id: `task${this.#next++}`,
      serviceId: service.id,
      slot,
      nodeId: node?.id ?? '',
      labels: { ...service.labels },
      desiredState: 'running',
      state: node ? 'running' : 'pending',
      message: node ? 'started' : 'no suitable node (scheduling constraints not satisfied on 3 nodes)',
      exitCode: undefined,
      containerId: node ? `c-${this.#next}` : undefined,
      publishedPort: undefined,
      updatedAt: Date.now(),
      server: undefined,
    };
    this.tasks_.push(task);
    if (!node) return;
    if (behaviour.exitCode !== undefined) {
      task.exitCode = behaviour.exitCode;
      this.#end(task, 'failed');
      return;
    }
    if (spec.publish !== undefined) {
      const server = http.createServer((_req, res) => {
        res.writeHead(behaviour.status ?? 200, { 'content-type': 'text/plain' });
        res.end(`${service.name} ${task.id}`);
      });
      server.on('connection', (s) => {
        this.#sockets.add(s);
        s.on('close', () => this.#sockets.delete(s));
      });
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      task.server = server;
      task.publishedPort = (server.address() as net.AddressInfo).port;
    }
  }

  #end(t: FakeTask, state: string): void {
    t.state = state;
    t.desiredState = 'shutdown';
    t.updatedAt = Date.now();
    t.server?.close();
    t.server?.closeAllConnections();
  }
}

/** `node.id==x`, `node.hostname==x`, `node.labels.k==v`, `node.role!=manager`. */
function matches(n: SwarmNode, constraint: string): boolean {
  const m = /^\s*node\.(id|hostname|role|labels\.([\w.-]+))\s*(==|!=)\s*(\S+)\s*$/.exec(constraint);
  if (!m) throw new Error(`the fake Swarm does not know the constraint ${constraint}`);
  const value = m[1] === 'id' ? n.id : m[1] === 'hostname' ? n.hostname : m[1] === 'role' ? n.role : n.labels[m[2]!];
  return m[3] === '==' ? value === m[4] : value !== m[4];
}

