// The Swarm over the manager's Docker API (dockerode, loaded lazily as docker-engine.ts does): the
// only module that speaks Swarm. Nodes, services and tasks are turned into berth's terms here;
// services and their containers carry berth's labels, and only berth's services are listed.
import type { Readable } from 'node:stream';
import type Dockerode from 'dockerode';
import { UserError } from '../errors.ts';
import { dockerConnection } from './docker-engine.ts';
import type { DockerSshSettings } from './docker-ssh.ts';
import { demux, sink } from './docker-wire.ts';
import { LABEL, type Subscription } from './engine.ts';
import type { NodeAvailability, NodeRole, Swarm, SwarmNode, SwarmService, SwarmServiceSpec, SwarmTask } from './swarm.ts';

/** The oldest engine API whose services take CapabilityAdd/CapabilityDrop and a pids limit (Docker 20.10). */
export const MIN_SWARM_API = '1.41';

/** Port the Swarm managers listen on for nodes that join (docker swarm init's default). */
const SWARM_PORT = 2377;

export class DockerSwarm implements Swarm {
  readonly #docker: Dockerode;
  readonly #dockerHost: string;
  readonly instance: string;

  private constructor(docker: Dockerode, dockerHost: string, instance: string) {
    this.#docker = docker;
    this.#dockerHost = dockerHost;
    this.instance = instance;
  }

  /** The Swarm whose manager's engine `dockerHost` is; `manager()` says whether it is one. */
  static async connect(dockerHost: string, instance: string, ssh: DockerSshSettings = {}): Promise<DockerSwarm> {
    const { default: Docker } = await import('dockerode');
    return new DockerSwarm(new Docker((await dockerConnection(dockerHost, ssh)).options), dockerHost, instance);
  }

  async manager(): Promise<{ nodeId: string; address: string }> {
    const [info, version] = await Promise.all([this.#docker.info() as Promise<EngineInfo>, this.#docker.version() as Promise<{ ApiVersion?: string; Version?: string }>]);
    const swarm = info.Swarm ?? {};
    checkSwarmState(this.#dockerHost, swarm);
    if (!swarm.ControlAvailable || !swarm.NodeID) {
      throw new UserError('swarm_not_manager', `--scheduler swarm: the Docker engine at ${this.#dockerHost} is a Swarm worker; berth needs a manager's engine`, {
        hint: 'point --docker-host at a manager (`docker node ls` on one lists them), or promote this node there with `docker node promote NODE`',
      });
    }
    if (compareVersions(version.ApiVersion ?? '0', MIN_SWARM_API) < 0) {
      throw new UserError('swarm_engine_too_old', `--scheduler swarm: the Docker engine at ${this.#dockerHost} speaks API ${version.ApiVersion ?? '?'} (Docker ${version.Version ?? '?'}); berth's services need API ${MIN_SWARM_API} (Docker 20.10) or newer`, {
        hint: 'upgrade Docker on the Swarm manager, or run berth with --scheduler docker',
      });
    }
    return { nodeId: swarm.NodeID, address: swarm.NodeAddr ?? '' };
  }

  async nodes(): Promise<SwarmNode[]> {
    const nodes = (await this.#docker.listNodes()) as NodeWire[];
    return nodes.map(nodeOf).sort((a, b) => Number(b.role === 'manager') - Number(a.role === 'manager') || a.hostname.localeCompare(b.hostname));
  }

  async node(ref: string): Promise<SwarmNode> {
    const nodes = await this.nodes();
    const exact = nodes.filter((n) => n.id === ref || n.hostname === ref);
    const found = exact.length ? exact : nodes.filter((n) => ref.length > 0 && n.id.startsWith(ref));
    if (found.length === 1) return found[0]!;
    if (found.length === 0) {
      throw new UserError('node_not_found', `no node of the Swarm is "${ref}"`, { hint: 'nodes:list shows each node\'s name and id' });
    }
    throw new UserError('node_ambiguous', `"${ref}" names ${found.length} nodes: ${found.map((n) => `${n.hostname} (${n.id.slice(0, 12)})`).join(', ')}`, {
      hint: 'name the node by its id (nodes:list shows them)',
    });
  }

  async updateNode(ref: string, change: { labels?: Record<string, string | null>; availability?: NodeAvailability }): Promise<SwarmNode> {
    const { id } = await this.node(ref);
    await this.#versioned(`node ${ref}`, async () => {
      const node = (await this.#docker.getNode(id).inspect()) as NodeWire;
      const labels = { ...node.Spec?.Labels };
      for (const [key, value] of Object.entries(change.labels ?? {})) {
        if (value === null) delete labels[key];
        else labels[key] = value;
      }
      const spec = { ...node.Spec, Labels: labels, ...(change.availability ? { Availability: change.availability } : {}) };
      await this.#docker.getNode(id).update({ _query: { version: node.Version?.Index }, _body: spec });
    });
    return this.node(id);
  }

  async joinCommand(role: NodeRole): Promise<string> {
    const [swarm, info] = await Promise.all([this.#docker.swarmInspect() as Promise<{ JoinTokens?: { Worker?: string; Manager?: string } }>, this.#docker.info() as Promise<EngineInfo>]);
    const token = role === 'manager' ? swarm.JoinTokens?.Manager : swarm.JoinTokens?.Worker;
    if (!token) throw new Error(`the Swarm manager at ${this.#dockerHost} gave no ${role} join token`);
    // Where this manager listens for nodes that join: its own entry among the managers.
    const self = info.Swarm?.RemoteManagers?.find((m) => m.NodeID === info.Swarm?.NodeID)?.Addr;
    const address = self ?? `${info.Swarm?.NodeAddr ?? ''}:${SWARM_PORT}`;
    return `docker swarm join --token ${token} ${address}`;
  }

  async createService(spec: SwarmServiceSpec): Promise<SwarmService> {
    const labels = { [LABEL.managed]: '1', [LABEL.instance]: this.instance, ...spec.labels };
    const secrets = await Promise.all((spec.secrets ?? []).map(async ({ name, target }) => ({ SecretID: await this.#secretId(name), SecretName: name, File: { Name: target, UID: '0', GID: '0', Mode: 0o444 } })));
    const body = {
      Name: spec.name,
      Labels: labels,
      TaskTemplate: {
        ContainerSpec: {
          Image: spec.image,
          Labels: labels,
          Env: Object.entries(spec.env).map(([k, v]) => `${k}=${v}`),
          ...(spec.entrypoint ? { Command: spec.entrypoint } : {}),
          ...(spec.cmd ? { Args: spec.cmd } : {}),
          Init: true,
          ...(spec.stopTimeout !== undefined ? { StopGracePeriod: Math.round(spec.stopTimeout * 1e9) } : {}),
          // As on one engine: every capability goes but the ones the spec keeps.
          ...(spec.capabilities ? { CapabilityDrop: ['ALL'], CapabilityAdd: spec.capabilities.map((c) => (c.startsWith('CAP_') ? c : `CAP_${c}`)) } : {}),
          ...(spec.mounts?.length ? { Mounts: spec.mounts.map(mountOf) } : {}),
          ...(secrets.length ? { Secrets: secrets } : {}),
        },
        Resources: {
          Limits: {
            ...(spec.limits?.cpus ? { NanoCPUs: Math.round(spec.limits.cpus * 1e9) } : {}),
            ...(spec.limits?.memory ? { MemoryBytes: spec.limits.memory } : {}),
            ...(spec.limits?.pids ? { Pids: spec.limits.pids } : {}),
          },
          Reservations: {
            ...(spec.reservations?.cpus ? { NanoCPUs: Math.round(spec.reservations.cpus * 1e9) } : {}),
            ...(spec.reservations?.memory ? { MemoryBytes: spec.reservations.memory } : {}),
          },
        },
        // berth's gate and route decide what serves; Swarm only keeps the count, at once.
        RestartPolicy: { Condition: 'any', Delay: 0 },
        Placement: {
          Constraints: spec.constraints,
          Preferences: spec.spread.map((descriptor) => ({ Spread: { SpreadDescriptor: descriptor } })),
        },
        Networks: spec.networks.map((n) => ({ Target: n.name, Aliases: n.aliases })),
      },
      Mode: spec.global ? { Global: {} } : { Replicated: { Replicas: spec.replicas } },
      // No VIP and no routing mesh (they need IPVS): each task is reached at its node's address
      // on the port the engine gave it there.
      EndpointSpec: {
        Mode: 'dnsrr',
        Ports: spec.publish === undefined ? [] : [{ Protocol: 'tcp', TargetPort: spec.publish, PublishMode: 'host', ...(spec.publishedPort ? { PublishedPort: spec.publishedPort } : {}) }],
      },
    };
    let created: { id: string };
    try {
      // The registry credential goes as X-Registry-Auth: Swarm keeps it for its nodes' pulls (and
      // through updates) and shows it in no inspect.
      const options = body as unknown as Dockerode.CreateServiceOptions;
      created = (await (spec.registryAuth ? this.#docker.createService(spec.registryAuth as never, options) : this.#docker.createService(options))) as unknown as { id: string };
    } catch (e) {
      throw new Error(`creating Swarm service ${spec.name}: ${(e as Error).message}`, { cause: e });
    }
    return serviceOf((await this.#docker.getService(created.id).inspect()) as ServiceWire);
  }

  async services(labels: Record<string, string> = {}): Promise<SwarmService[]> {
    const filters = [`${LABEL.managed}=1`, `${LABEL.instance}=${this.instance}`, ...Object.entries(labels).map(([k, v]) => `${k}=${v}`)];
    const found = (await this.#docker.listServices({ filters: { label: filters } })) as ServiceWire[];
    return found.map(serviceOf);
  }

  async setReplicas(id: string, replicas: number): Promise<void> {
    await this.#versioned(`service ${id}`, async () => {
      const service = (await this.#docker.getService(id).inspect()) as ServiceWire;
      const spec = { ...service.Spec, Mode: { Replicated: { Replicas: replicas } } };
      await this.#docker.getService(id).update({ _query: { version: service.Version?.Index }, _body: spec } as never);
    });
  }

  async removeService(id: string): Promise<void> {
    try {
      await this.#docker.getService(id).remove();
    } catch (e) {
      if ((e as { statusCode?: number }).statusCode !== 404) throw new Error(`removing Swarm service ${id}: ${(e as Error).message}`, { cause: e });
    }
  }

  async tasks(filter: { service?: string; labels?: Record<string, string> }): Promise<SwarmTask[]> {
    const services = (await this.services(filter.labels)).filter((s) => filter.service === undefined || s.id === filter.service || s.name === filter.service);
    if (services.length === 0) return [];
    const labelsOf = new Map(services.map((s) => [s.id, s.labels]));
    const found = (await this.#docker.listTasks({ filters: { service: services.map((s) => s.id) } })) as TaskWire[];
    return found
      .filter((t) => labelsOf.has(t.ServiceID ?? ''))
      .map((t) => taskOf(t, labelsOf.get(t.ServiceID!)!))
      .sort((a, b) => a.serviceId.localeCompare(b.serviceId) || a.slot - b.slot || b.updatedAt - a.updatedAt);
  }

  async taskLogs(taskId: string, tail: number, options: { timestamps?: boolean } = {}): Promise<string> {
    const task = (await this.#docker.getTask(taskId).inspect()) as TaskWire;
    if (!task.Status?.ContainerStatus?.ContainerID) return '';
    // A node that is gone never answers: the manager would wait for it without end.
    const raw = (await this.#taskLogs(taskId, { stdout: true, stderr: true, tail, follow: false, timestamps: options.timestamps === true, abortSignal: AbortSignal.timeout(10_000) })) as Buffer;
    return demux(raw);
  }

  async followTaskLogs(taskId: string, options: { tail: number; onData(data: Buffer): void | Promise<void> }): Promise<Subscription> {
    const stream = (await this.#taskLogs(taskId, { stdout: true, stderr: true, timestamps: true, follow: true, tail: options.tail })) as Readable;
    const out = sink(options.onData, stream);
    this.#docker.modem.demuxStream(stream, out, out);
    return { stop: () => stream.destroy() };
  }

  // GET /tasks/ID/logs: the manager reads them from the task's node. dockerode's types lack it.
  #taskLogs(taskId: string, options: Record<string, unknown>): Promise<unknown> {
    return (this.#docker.getTask(taskId) as unknown as { logs(options: object): Promise<unknown> }).logs(options);
  }

  async ensureSecret(name: string, data: string, labels: Record<string, string>): Promise<void> {
    if (await this.#secretId(name).catch(() => undefined)) return;
    try {
      await this.#docker.createSecret({ Name: name, Labels: { [LABEL.managed]: '1', [LABEL.instance]: this.instance, ...labels }, Data: Buffer.from(data).toString('base64') });
    } catch (e) {
      // Made meanwhile by another caller: the same name, the same content.
      if ((e as { statusCode?: number }).statusCode !== 409) throw new Error(`creating Swarm secret ${name}: ${(e as Error).message}`, { cause: e });
    }
  }

  async secrets(labels: Record<string, string> = {}): Promise<Array<{ id: string; name: string }>> {
    const filters = [`${LABEL.managed}=1`, `${LABEL.instance}=${this.instance}`, ...Object.entries(labels).map(([k, v]) => `${k}=${v}`)];
    const found = (await this.#docker.listSecrets({ filters: { label: filters } } as never)) as unknown as Array<{ ID: string; Spec?: { Name?: string } }>;
    return found.map((s) => ({ id: s.ID, name: s.Spec?.Name ?? '' }));
  }

  async removeSecret(id: string): Promise<void> {
    try {
      await this.#docker.getSecret(id).remove();
    } catch (e) {
      if ((e as { statusCode?: number }).statusCode !== 404) throw new Error(`removing Swarm secret ${id}: ${(e as Error).message}`, { cause: e });
    }
  }

  /** The id of the secret named exactly `name` (the engine's name filter matches prefixes too). */
  async #secretId(name: string): Promise<string> {
    const found = (await this.#docker.listSecrets({ filters: { name: [name] } } as never)) as unknown as Array<{ ID: string; Spec?: { Name?: string } }>;
    const secret = found.find((s) => s.Spec?.Name === name);
    if (!secret) throw new Error(`the Swarm has no secret ${name}`);
    return secret.ID;
  }

  /** Runs a read-modify-write of a versioned Swarm object again when another writer got in between. */
  async #versioned(what: string, update: () => Promise<void>): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await update();
      } catch (e) {
        if (attempt < 5 && /out of sequence/i.test((e as Error).message)) continue;
        if ((e as { statusCode?: number }).statusCode === 404) throw new UserError('swarm_object_gone', `the Swarm has no ${what} any more`, { cause: e });
        throw new Error(`updating Swarm ${what}: ${(e as Error).message}`, { cause: e });
      }
    }
  }
}

/** `source:/target[:ro]`: a bind mount when the source is a path, else a named volume. */
export function mountOf(text: string): { Type: 'bind' | 'volume'; Source: string; Target: string; ReadOnly: boolean } {
  const [source = '', target = '', mode] = text.split(':');
  return { Type: source.startsWith('/') ? 'bind' : 'volume', Source: source, Target: target, ReadOnly: mode === 'ro' };
}

/**
 * A node as the engine reports it, in berth's terms. A manager may report 0.0.0.0 or 127.0.0.1
 * as its Status.Addr (it was started without --advertise-addr's host): the address it listens on
 * for the Swarm says where it is.
 */
export function nodeOf(n: NodeWire): SwarmNode {
  let address = n.Status?.Addr ?? '';
  if ((address === '' || address === '0.0.0.0' || address === '127.0.0.1') && n.ManagerStatus?.Addr) address = hostOf(n.ManagerStatus.Addr);
  return {
    id: n.ID,
    hostname: n.Description?.Hostname ?? n.ID.slice(0, 12),
    address,
    role: n.Spec?.Role === 'manager' ? 'manager' : 'worker',
    state: n.Status?.State ?? 'unknown',
    availability: (n.Spec?.Availability ?? 'active') as NodeAvailability,
    labels: { ...n.Spec?.Labels },
    leader: n.ManagerStatus?.Leader === true,
  };
}

export function serviceOf(s: ServiceWire): SwarmService {
  return {
    id: s.ID,
    name: s.Spec?.Name ?? '',
    labels: { ...s.Spec?.Labels },
    image: s.Spec?.TaskTemplate?.ContainerSpec?.Image ?? '',
    replicas: s.Spec?.Mode?.Replicated?.Replicas ?? 0,
    constraints: [...(s.Spec?.TaskTemplate?.Placement?.Constraints ?? [])],
  };
}

export function taskOf(t: TaskWire, labels: Record<string, string>): SwarmTask {
  const status = t.Status ?? {};
  const port = status.PortStatus?.Ports?.find((p) => p.PublishMode === 'host' && p.PublishedPort) ?? status.PortStatus?.Ports?.find((p) => p.PublishedPort);
  const updatedAt = Date.parse(status.Timestamp ?? t.UpdatedAt ?? '');
  return {
    id: t.ID,
    serviceId: t.ServiceID ?? '',
    slot: t.Slot ?? 0,
    nodeId: t.NodeID ?? '',
    labels: { ...labels },
    desiredState: t.DesiredState ?? '',
    state: status.State ?? '',
    message: status.Err || status.Message || '',
    exitCode: status.ContainerStatus?.ExitCode ?? undefined,
    containerId: status.ContainerStatus?.ContainerID || undefined,
    publishedPort: port?.PublishedPort || undefined,
    updatedAt: Number.isFinite(updatedAt) ? updatedAt : 0,
  };
}

/** `10.0.0.2:2377` or `[fd00::2]:2377` → the host. */
function hostOf(addr: string): string {
  const m = /^\[([^\]]+)\]:\d+$/.exec(addr) ?? /^([^:]+):\d+$/.exec(addr);
  return m ? m[1]! : addr;
}

/** `1.41` against `1.40`: negative, zero or positive. */
function compareVersions(a: string, b: string): number {
  const [am = 0, an = 0] = a.split('.').map(Number);
  const [bm = 0, bn = 0] = b.split('.').map(Number);
  return am - bm || an - bn;
}

// The engine's objects, as far as berth reads them.
/**
 * Refuses an engine whose node is not an active member of a Swarm, saying what to do for its
 * state (Swarm's LocalNodeState): `inactive`, in no Swarm (docker swarm init); `locked`, its
 * autolock key not given since the engine started (docker swarm unlock); `pending` or `error`,
 * joining or failed, with Swarm's own error.
 */
export function checkSwarmState(dockerHost: string, swarm: NonNullable<EngineInfo['Swarm']>): void {
  const state = swarm.LocalNodeState || 'inactive';
  if (state === 'active') return;
  const what = `--scheduler swarm: the Docker engine at ${dockerHost}`;
  if (state === 'locked') {
    throw new UserError('swarm_locked', `${what} is in a Swarm that is locked (autolock): its manager cannot run until it is unlocked`, {
      hint: 'run `docker swarm unlock` on that machine and give the unlock key (`docker swarm unlock-key` on another manager shows it), then start berth again',
    });
  }
  if (state !== 'inactive') {
    throw new UserError('swarm_not_ready', `${what} is not an active member of its Swarm (its state: ${state}${swarm.Error ? `; Swarm says: ${swarm.Error}` : ''})`, {
      hint: state === 'pending' ? 'it is still joining: wait until `docker info` there shows Swarm: active, then start berth again' : 'see `docker info` on that machine; once its Swarm state is active, start berth again (docs/swarm.md)',
    });
  }
  throw new UserError('swarm_inactive', `${what} is not part of a Swarm (its state: inactive)`, {
    hint: 'make it the manager of a new Swarm with `docker swarm init` on that machine (docs/swarm.md), or run berth with --scheduler docker',
  });
}

interface EngineInfo {
  Swarm?: {
    LocalNodeState?: string;
    /** Why the node is not active (pending or error), as Swarm says it. */
    Error?: string;
    ControlAvailable?: boolean;
    NodeID?: string;
    NodeAddr?: string;
    RemoteManagers?: Array<{ NodeID?: string; Addr?: string }> | null;
  };
}

export interface NodeWire {
  ID: string;
  Version?: { Index?: number };
  Spec?: { Role?: string; Availability?: string; Labels?: Record<string, string>; Name?: string };
  Description?: { Hostname?: string };
  Status?: { State?: string; Addr?: string; Message?: string };
  ManagerStatus?: { Leader?: boolean; Addr?: string; Reachability?: string };
}

export interface ServiceWire {
  ID: string;
  Version?: { Index?: number };
  Spec?: {
    Name?: string;
    Labels?: Record<string, string>;
    TaskTemplate?: { ContainerSpec?: { Image?: string }; Placement?: { Constraints?: string[] } };
    Mode?: { Replicated?: { Replicas?: number } };
  };
}

export interface TaskWire {
  ID: string;
  ServiceID?: string;
  Slot?: number;
  NodeID?: string;
  DesiredState?: string;
  UpdatedAt?: string;
  Status?: {
    Timestamp?: string;
    State?: string;
    Message?: string;
    Err?: string;
    ContainerStatus?: { ContainerID?: string; ExitCode?: number };
    PortStatus?: { Ports?: Array<{ Protocol?: string; TargetPort?: number; PublishedPort?: number; PublishMode?: string }> };
  };
}
