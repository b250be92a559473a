// A Docker Swarm as the orchestrator schedules on it, in berth's terms: nodes, services (one per
// process type of a release) and their tasks (the dynos), with the node address and host port
// each web task is reached at. DockerSwarm (docker-swarm.ts) implements it over the manager's
// Docker API; the deploy path on Swarm (swarm-deployment.ts) and the nodes commands use only this.
import type { Output } from '../ui/output.ts';
import type { RegistryAuth, Subscription } from './engine.ts';

export type NodeRole = 'manager' | 'worker';
export type NodeAvailability = 'active' | 'pause' | 'drain';

export interface SwarmNode {
  id: string;
  hostname: string;
  /** The address the node reports (its Status.Addr): where its host-mode published ports are reached. */
  address: string;
  role: NodeRole;
  /** The engine's word: ready, down, unknown, disconnected. */
  state: string;
  availability: NodeAvailability;
  labels: Record<string, string>;
  /** A manager that leads the Raft group. */
  leader: boolean;
}

/** What berth asks of a Swarm service: one process type of one release. */
export interface SwarmServiceSpec {
  name: string;
  /** Every node must be able to pull it: a reference by digest to the cluster's registry, or an image each node has. */
  image: string;
  env: Record<string, string>;
  /** On the service and on its tasks' containers (berth.app, berth.process, berth.release, berth.role ...). */
  labels: Record<string, string>;
  cmd?: string[];
  entrypoint?: string[];
  replicas: number;
  /** A container port published in host mode on an engine-assigned port of the task's node (web: $PORT). */
  publish?: number;
  /** The host port `publish` gets on every node instead of an engine-assigned one (the cluster registry's fixed ports). */
  publishedPort?: number;
  /** One task on every node (the registry's mirror), instead of `replicas` tasks. */
  global?: boolean;
  /** Placement constraints in Swarm's syntax: node.labels.zone==a, node.role!=manager ... */
  constraints: string[];
  /** Spread preferences: node.labels.zone ... */
  spread: string[];
  /** Bytes of memory (limit) and CPUs (limit); reservations ask the scheduler for as much. */
  limits?: { memory?: number; cpus?: number; pids?: number };
  reservations?: { memory?: number; cpus?: number };
  /** Capabilities kept (every other one is dropped). */
  capabilities?: readonly string[];
  /** Seconds from the stop signal to SIGKILL. */
  stopTimeout?: number;
  /** Networks the tasks join (overlay, attachable), with their aliases there. */
  networks: Array<{ name: string; aliases: string[] }>;
  /** Named volumes and bind mounts, `source:/target[:ro]`. */
  mounts?: string[];
  /** Swarm secrets (made by ensureSecret) as files of its tasks: `target` a name under /run/secrets or an absolute path. */
  secrets?: Array<{ name: string; target: string }>;
  /** The credential its nodes pull `image` with (X-Registry-Auth); kept by the Swarm, never in the spec it shows. */
  registryAuth?: RegistryAuth;
}

export interface SwarmService {
  id: string;
  name: string;
  labels: Record<string, string>;
  image: string;
  replicas: number;
  constraints: string[];
}

export interface SwarmTask {
  id: string;
  serviceId: string;
  /** 1, 2 ... for a replicated service (the dyno's number). */
  slot: number;
  nodeId: string;
  /** The labels of its service. */
  labels: Record<string, string>;
  /** What the orchestrator wants of it (running, shutdown, ...). */
  desiredState: string;
  /** What it is (new, pending, assigned, preparing, starting, running, complete, failed, shutdown, rejected, orphaned ...). */
  state: string;
  /** The engine's message or error for its state (a failed pull, an exit code). */
  message: string;
  exitCode: number | undefined;
  /** The container on its node, once it has one. */
  containerId: string | undefined;
  /** The host port its published container port got on its node (host mode), once running. */
  publishedPort: number | undefined;
  /** When its state last changed, ms since the epoch. */
  updatedAt: number;
}

export interface Swarm {
  /** The engine is a Swarm manager: its node id and the address it advertises; a UserError that says what to do otherwise. */
  manager(): Promise<{ nodeId: string; address: string }>;
  nodes(): Promise<SwarmNode[]>;
  /** A node by id, id prefix or hostname; a UserError when none or more than one match. */
  node(ref: string): Promise<SwarmNode>;
  /** Sets (a string) or removes (null) node labels, and/or its availability. */
  updateNode(ref: string, change: { labels?: Record<string, string | null>; availability?: NodeAvailability }): Promise<SwarmNode>;
  /** The command a new machine runs to join as a worker (or manager). */
  joinCommand(role: NodeRole): Promise<string>;

  createService(spec: SwarmServiceSpec): Promise<SwarmService>;
  /** berth's services, narrowed by labels. */
  services(labels?: Record<string, string>): Promise<SwarmService[]>;
  setReplicas(id: string, replicas: number): Promise<void>;
  /** Removes a service (its tasks stop with their stop timeout); one missing is not an error. */
  removeService(id: string): Promise<void>;
  /** The tasks of one service, or of berth's services narrowed by labels; newest first within a slot. */
  tasks(filter: { service?: string; labels?: Record<string, string> }): Promise<SwarmTask[]>;
  /** The last `tail` lines a task's container wrote, on whatever node it runs (the manager asks it); '' when it has none. */
  taskLogs(taskId: string, tail: number, options?: { timestamps?: boolean }): Promise<string>;
  /** A task's output as it comes, each line timestamped as in `followLogs` of the Engine, after its last `tail` lines. */
  followTaskLogs(taskId: string, options: { tail: number; onData(data: Buffer): void | Promise<void> }): Promise<Subscription>;

  /** Makes a Swarm secret `name` holding `data` unless one of that name exists (a secret never changes: a new content takes a new name). */
  ensureSecret(name: string, data: string, labels: Record<string, string>): Promise<void>;
  /** berth's secrets, narrowed by labels. */
  secrets(labels?: Record<string, string>): Promise<Array<{ id: string; name: string }>>;
  /** Removes a secret; one missing is not an error, one a service still uses is refused (an error). */
  removeSecret(id: string): Promise<void>;
}

/**
 * Gets a release image to every node of the Swarm: `distribute` returns the reference services
 * name it by (every node can pull or already has it); `prune` forgets references no release
 * keeps. The cluster registry (cluster-registry.ts) implements it; until a Swarm has one,
 * LocalImageDistributor (swarm-deployment.ts) names the image by id, which nodes must have.
 */
export interface ImageDistributor {
  distribute(image: string, out: Output): Promise<string>;
  prune(refs: string[]): Promise<void>;
  /** The credential nodes pull a reference `distribute` returned with; undefined when they need none. */
  registryAuth?(ref: string): RegistryAuth | undefined;
}
