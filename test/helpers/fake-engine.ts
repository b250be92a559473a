// An in-memory Engine for fast unit tests of the orchestrator's decisions (which containers to
// start, keep and route; what an event changes). Containers are records that run until stopped;
// a process run in one (exec) is what the test's handler does; what it does not model (builds,
// pulls, archives, attached streams) throws. The same paths run
// against the real Docker engine in the end-to-end tests.
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import {
  checkNetworkDriver,
  checkNetworkOwner,
  networkOwnerConflict,
  LABEL,
  NotFoundError,
  type Attachment,
  type ContainerEvent,
  type ContainerEventHandlers,
  type ContainerSpec,
  type ContainerState,
  type Engine,
  type ExecOptions,
  type ImageConfig,
  type ImageIdentity,
  type NetworkDriver,
  type NetworkOptions,
  type Subscription,
  type RegistryAuth,
} from '../../src/orchestrator/engine.ts';

export class FakeEngine implements Engine {
  readonly instance: string;
  readonly containers = new Map<string, ContainerState>();
  readonly images = new Map<string, ImageConfig>();
  /** Networks by name, with their labels. */
  readonly networks = new Map<string, Record<string, string>>();
  /** Each network's driver: bridge, or overlay (ensureNetwork's option). */
  readonly networkDrivers = new Map<string, NetworkDriver>();
  /** Each container's spec as created, by id: its network, limits and capabilities. */
  readonly specs = new Map<string, ContainerSpec>();
  /** The networks each container joined besides its own (connectNetwork), by id. */
  readonly links = new Map<string, Array<{ network: string; aliases: string[] }>>();
  readonly volumes = new Set<string>();
  readonly volumeLabelsOf = new Map<string, Record<string, string>>();
  /** Volumes a test says some other container holds: removeVolume leaves them, as the engine does (409). */
  readonly volumesInUse = new Set<string>();
  /** Each process run in a container, in order: the container's id and the options given. */
  readonly execs: Array<{ id: string; options: ExecOptions }> = [];
  /** What a process run in a container does (write to options.onStdout, read options.stdin); its exit code. */
  execHandler: ((id: string, options: ExecOptions) => Promise<number>) | undefined;
  #next = 1;
  #watchers = new Set<ContainerEventHandlers>();

  constructor(instance = 'fake') {
    this.instance = instance;
  }

  /** Adds an image the engine has. */
  addImage(ref: string, config: Partial<ImageConfig> = {}): void {
    this.images.set(ref, { user: '', entrypoint: [], cmd: [], env: [], workingDir: '', ...config });
  }

  /** Tells every watcher of `event`, as the engine's event stream would. */
  emit(event: ContainerEvent): void {
    for (const w of this.#watchers) w.onEvent(event);
  }

  /** An event about container `id` in berth's terms, its labels read from the container. */
  eventOf(id: string, change: ContainerEvent['change'], reason: string = change): ContainerEvent {
    const c = this.#require(id);
    const release = c.labels[LABEL.release];
    return {
      change,
      reason,
      id,
      name: c.name,
      app: c.labels[LABEL.app] ?? '',
      process: c.labels[LABEL.process] ?? 'web',
      release: release === undefined ? undefined : Number(release),
      dyno: c.labels[LABEL.dyno],
      role: (c.labels[LABEL.role] ?? 'process') as ContainerEvent['role'],
      at: Date.now(),
    };
  }

  /** Changes a container's state, as a crash or a restart policy would. */
  set(id: string, change: Partial<ContainerState>): void {
    this.containers.set(id, { ...this.#require(id), ...change });
  }

  async ensureNetwork(name: string, labels: Record<string, string> = {}, options: NetworkOptions = {}): Promise<void> {
    const existing = this.networks.get(name);
    if (existing) {
      checkNetworkOwner(name, existing, labels);
      return checkNetworkDriver(name, this.networkDrivers.get(name) ?? 'bridge', options.driver);
    }
    this.networks.set(name, { [LABEL.managed]: '1', [LABEL.instance]: this.instance, ...labels });
    this.networkDrivers.set(name, options.driver ?? 'bridge');
  }
  async removeNetwork(name: string, owner: Record<string, string> = {}): Promise<void> {
    // Another owner's network stays, as DockerEngine leaves it (and logs it).
    if (networkOwnerConflict(name, this.networks.get(name) ?? {}, owner)) return;
    for (const [id, list] of this.links) this.links.set(id, list.filter((l) => l.network !== name));
    this.networks.delete(name);
    this.networkDrivers.delete(name);
  }
  async connectNetwork(id: string, network: string, aliases: string[]): Promise<void> {
    this.#require(id);
    if (!this.networks.has(network)) throw new NotFoundError(`no network ${network}`);
    const list = this.links.get(id) ?? [];
    if (!list.some((l) => l.network === network)) this.links.set(id, [...list, { network, aliases }]);
  }
  async disconnectNetwork(id: string, network: string): Promise<void> {
    const list = this.links.get(id);
    if (list) this.links.set(id, list.filter((l) => l.network !== network));
  }
  async ensureVolume(name: string, labels: Record<string, string> = {}): Promise<void> {
    if (this.volumes.has(name)) return;
    this.volumes.add(name);
    this.volumeLabelsOf.set(name, { [LABEL.managed]: '1', [LABEL.instance]: this.instance, ...labels });
  }
  async volumeLabels(name: string): Promise<Record<string, string> | undefined> {
    return this.volumes.has(name) ? { ...(this.volumeLabelsOf.get(name) ?? {}) } : undefined;
  }
  async removeVolume(name: string): Promise<void> {
    if (this.volumesInUse.has(name)) return;
    this.volumes.delete(name);
    this.volumeLabelsOf.delete(name);
  }
  async volumeBytes(): Promise<number> {
    return 0;
  }

  async imageExists(ref: string): Promise<boolean> {
    return this.images.has(ref);
  }
  async imageConfig(ref: string): Promise<ImageConfig | undefined> {
    return this.images.get(ref);
  }
  async imageIdentity(ref: string): Promise<ImageIdentity | undefined> {
    return this.images.has(ref) ? { id: `sha256:${ref}`, repoTags: [ref], labels: {}, onBuild: [] } : undefined;
  }
  async imageLabels(ref: string): Promise<Record<string, string> | undefined> {
    return this.images.has(ref) ? {} : undefined;
  }
  async build(): Promise<string> {
    throw new Error('FakeEngine does not build images');
  }
  async pull(ref: string): Promise<void> {
    throw new Error(`FakeEngine cannot pull ${ref}`);
  }
  /** Each push, in order: the reference and the digest it answered. */
  readonly pushes: Array<{ ref: string; digest: string; auth?: RegistryAuth }> = [];
  async push(ref: string, _onProgress?: (line: string) => void, auth?: RegistryAuth): Promise<string> {
    const config = this.images.get(ref);
    if (!config) throw new NotFoundError(`no image ${ref}`);
    // The same bytes, the same digest: the image's config stands for its content.
    const digest = `sha256:${createHash('sha256').update(JSON.stringify(config)).digest('hex')}`;
    this.pushes.push({ ref, digest, ...(auth ? { auth } : {}) });
    return digest;
  }
  async tagImage(source: string, repo: string, tag: string): Promise<void> {
    const config = this.images.get(source);
    if (!config) throw new NotFoundError(`no image ${source}`);
    this.images.set(`${repo}:${tag}`, config);
  }
  async commit(): Promise<string> {
    throw new Error('FakeEngine does not commit containers');
  }
  async imagesOf(repository: string): Promise<string[]> {
    return [...this.images.keys()].filter((ref) => ref.startsWith(`${repository}:`));
  }
  async removeImage(ref: string): Promise<void> {
    this.images.delete(ref);
  }

  async run(spec: ContainerSpec): Promise<ContainerState> {
    const id = await this.create(spec);
    await this.start(id);
    return this.inspect(id);
  }
  async create(spec: ContainerSpec): Promise<string> {
    if (!this.images.has(spec.image)) throw new NotFoundError(`no image ${spec.image}`);
    if (!['none', 'bridge'].includes(spec.network) && !this.networks.has(spec.network)) throw new NotFoundError(`no network ${spec.network}`);
    if ([...this.containers.values()].some((c) => c.name === spec.name)) throw new Error(`the name ${spec.name} is taken`);
    const n = this.#next++;
    const id = `fake${String(n).padStart(8, '0')}`;
    this.specs.set(id, spec);
    this.containers.set(id, {
      id,
      name: spec.name,
      labels: { [LABEL.managed]: '1', [LABEL.instance]: this.instance, ...spec.labels },
      running: false,
      status: 'created',
      exitCode: 0,
      restartCount: 0,
      ip: undefined,
      startedAt: undefined,
      oomKilled: false,
    });
    return id;
  }
  async start(id: string): Promise<void> {
    const n = Number(id.slice(4));
    this.set(id, { running: true, status: 'running', ip: `10.9.${Math.floor(n / 250)}.${(n % 250) + 2}`, startedAt: Date.now() });
  }
  async attach(): Promise<Attachment> {
    throw new Error('FakeEngine does not attach to containers');
  }
  async wait(): Promise<{ code: number; oomKilled: boolean }> {
    throw new Error('FakeEngine does not wait for containers');
  }
  async resize(): Promise<void> {
    throw new Error('FakeEngine has no terminals');
  }
  async exec(id: string, options: ExecOptions): Promise<{ code: number }> {
    if (!this.#require(id).running) throw new Error(`container ${id} is not running`);
    this.execs.push({ id, options });
    if (!this.execHandler) throw new Error(`FakeEngine runs no process (${options.cmd.join(' ')}): set execHandler`);
    return { code: await this.execHandler(id, options) };
  }
  async inspect(id: string): Promise<ContainerState> {
    return { ...this.#require(id) };
  }
  async list(labels: Record<string, string> = {}): Promise<ContainerState[]> {
    const wanted = Object.entries({ [LABEL.managed]: '1', [LABEL.instance]: this.instance, ...labels });
    return [...this.containers.values()].filter((c) => wanted.every(([k, v]) => c.labels[k] === v)).map((c) => ({ ...c }));
  }
  async containersNamed(prefix: string): Promise<Array<{ id: string; name: string }>> {
    return [...this.containers.values()].filter((c) => c.name.startsWith(prefix)).map((c) => ({ id: c.id, name: c.name }));
  }
  async stopAndRemove(id: string): Promise<void> {
    this.containers.delete(id);
  }

  async putArchive(): Promise<void> {
    throw new Error('FakeEngine has no container filesystems');
  }
  async getArchive(): Promise<Readable> {
    throw new Error('FakeEngine has no container filesystems');
  }

  async logs(): Promise<string> {
    return '';
  }
  async followLogs(): Promise<Subscription> {
    throw new Error('FakeEngine does not follow logs');
  }

  async watchContainers(handlers: ContainerEventHandlers): Promise<Subscription> {
    this.#watchers.add(handlers);
    return { stop: () => void this.#watchers.delete(handlers) };
  }

  #require(id: string): ContainerState {
    const c = this.containers.get(id);
    if (!c) throw new NotFoundError(`no container ${id}`);
    return c;
  }
}
