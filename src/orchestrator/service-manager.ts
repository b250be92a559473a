// The containers of backing services (postgres, redis ...): one labelled container per service on
// a network of its own, its data in a named volume that outlives the container, joined to the
// network of each app linked to it (and no other: an unlinked app cannot reach it). The engine's
// restart policy brings a dead service back, while the daemon is down too; a restarted daemon
// adopts the service containers by their labels and recreates a missing one on its volume.
import type { ServiceKind, ServiceRecordView } from '../services/kinds/kind.ts';
import { isUserError, UserError } from '../errors.ts';
import { READY_CHECK_TIMEOUT_MS, waitReady } from '../services/data-ops.ts';
import { log } from '../log.ts';
import type { ResourceLimit } from '../state/app-settings.ts';
import type { ServiceRecord, ServiceStore } from '../state/service-store.ts';
import type { Output } from '../ui/output.ts';
import { APP_CAPABILITIES, LABEL, NotFoundError, overlayNetworkName, SWARM_NETWORK_MARK, type ContainerSpec, type ContainerState, type Engine, type NetworkDriver, type NetworkOptions, type Subscription } from './engine.ts';

/** The label that names a service container's service: `KIND/NAME`. */
export const SERVICE_LABEL = 'berth.service';
/** On a service's volume: the id of the record it was made for (a volume of the same name made for another is not adopted). */
/** The lock of a service: a name no app can have (app names hold no colon). */
export function serviceLockName(kind: string, name: string): string {
  return `svc:${kind}/${name}`;
}

export const SERVICE_ID_LABEL = 'berth.service-id';

/** How long a service may take to accept connections once started (a first initdb included). */
export const SERVICE_READY_TIMEOUT_MS = 120_000;
/** The host address an exposed service's port binds to unless `KIND:expose --host` names another: this machine only. */
export const EXPOSED_HOST_DEFAULT = '127.0.0.1';
/** Seconds a service's server is given to shut down cleanly before it is killed. */
export const SERVICE_STOP_TIMEOUT_S = 60;

export interface ServiceManagerDeps {
  engine: Engine;
  store: ServiceStore;
  kinds: readonly ServiceKind[];
  /** The image of a service that names none at create: --postgres-image, --redis-image, else the kind's default. */
  defaultImage(kind: ServiceKind): string;
  /** The prefix of berth's networks (--network). */
  networkPrefix: string;
  /** The network of an app's containers. */
  appNetwork(app: string): string;
  /** How the service's and the apps' networks are made: overlay (attachable) on the swarm scheduler, so tasks on every node reach the service; default bridge. */
  networkDriver?: NetworkDriver;
  /** On the swarm scheduler: the node the services run on, the manager's (`HOSTNAME (manager)`), for KIND:info. */
  node?(): Promise<string>;
  /** On the swarm scheduler: the Swarm node id of the manager whose engine this is (ServiceRecord.nodeId). */
  managerId?(): Promise<string>;
  /** How long a service may take to accept connections; default SERVICE_READY_TIMEOUT_MS. */
  readyTimeoutMs?: number;
  /** The limits of a service that sets none, the ones apps get (--container-memory, --container-pids). */
  defaultLimit?(): ResourceLimit;
  /** The per-app lock the application layer holds around every change of a service (under serviceLockName). */
  locks?: { run<T>(name: string, fn: () => Promise<T>): Promise<T> };
  /** How long one readiness check may run; default READY_CHECK_TIMEOUT_MS. */
  readyCheckTimeoutMs?: number;
}

/** What `KIND:info` shows of a service's container. */
export interface ServiceStatus {
  running: boolean;
  /** The engine's word: running, restarting, exited ... or `missing`. */
  status: string;
  startedAt: number | undefined;
  restartCount: number;
  id: string | undefined;
}

export class ServiceManager {
  readonly #deps: ServiceManagerDeps;

  constructor(deps: ServiceManagerDeps) {
    this.#deps = deps;
  }

  get kinds(): readonly ServiceKind[] {
    return this.#deps.kinds;
  }

  kind(name: string): ServiceKind {
    const kind = this.#deps.kinds.find((k) => k.name === name);
    if (!kind) throw new UserError('unknown_service_kind', `no service kind "${name}"`, { hint: `berth has ${this.#deps.kinds.map((k) => k.name).join(', ')}` });
    return kind;
  }

  defaultImage(kind: ServiceKind): string {
    return this.#deps.defaultImage(kind);
  }

  /** The names of a service's Docker objects. */
  names(record: Pick<ServiceRecord, 'kind' | 'name'>): { container: string; volume: string; network: string; alias: string } {
    const instance = this.#deps.engine.instance;
    const container = `berth-${instance}-svc-${record.kind}-${record.name}`;
    const overlay = this.#deps.networkDriver === 'overlay';
    // On the swarm scheduler PREFIX-swarm-INSTANCE-svc_KIND-NAME: a DNS label (`_` for the `.`, so still no app's), shortened when long.
    const network = `${this.#deps.networkPrefix}-${overlay ? `${SWARM_NETWORK_MARK}-` : ''}${instance}-svc.${record.kind}-${record.name}`;
    return { container, volume: `${container}-data`, network: overlay ? overlayNetworkName(network) : network, alias: `berth-${record.kind}-${record.name}` };
  }

  /** The memory and process limits of the service's container: its own memory, else the apps' defaults. */
  limits(record: Pick<ServiceRecord, 'memory'>): { memory?: number; pids?: number } {
    const defaults = this.#deps.defaultLimit?.() ?? {};
    const memory = record.memory ?? defaults.memory;
    return { ...(memory ? { memory } : {}), ...(defaults.pids ? { pids: defaults.pids } : {}) };
  }

  /** The record with its password, as a kind reads it. */
  async view(record: ServiceRecord): Promise<ServiceRecordView> {
    return { kind: record.kind, name: record.name, password: await this.#deps.store.password(record.kind, record.name) };
  }

  /** The URL a linked app gets (host: the service's alias on the app's network). */
  async url(record: ServiceRecord): Promise<string> {
    return this.kind(record.kind).url(await this.view(record), this.names(record).alias);
  }

  /** The service's container now, if it has one. */
  async container(record: Pick<ServiceRecord, 'kind' | 'name'>): Promise<ContainerState | undefined> {
    const found = await this.#deps.engine.list({ [SERVICE_LABEL]: `${record.kind}/${record.name}` });
    return found.find((c) => c.running) ?? found[0];
  }

  /** The running container of a service, or a UserError that says how to bring it back. */
  async requireRunning(record: ServiceRecord): Promise<ContainerState> {
    const c = await this.container(record);
    if (!c?.running) throw new UserError('service_not_running', `${record.kind} service ${record.name} is not running`, { hint: `start it with \`${record.kind}:restart ${record.name}\`` });
    return c;
  }

  async status(record: ServiceRecord): Promise<ServiceStatus> {
    const c = await this.container(record);
    if (!c) return { running: false, status: 'missing', startedAt: undefined, restartCount: 0, id: undefined };
    return { running: c.running, status: c.status, startedAt: c.startedAt, restartCount: c.restartCount, id: c.id };
  }

  /**
   * Starts a new service's container on a new volume (the image pulled first when the engine does
   * not have it) and waits until it accepts connections. A service that does not come up is
   * removed again, volume included: nothing of it was ever used. A volume of its name that exists
   * already (data of a service destroyed by hand, or of another daemon) is refused, never adopted.
   */
  async provision(record: ServiceRecord, out: Output): Promise<void> {
    const kind = this.kind(record.kind);
    const { volume } = this.names(record);
    if (await this.#deps.engine.volumeLabels(volume)) {
      throw new UserError('service_volume_exists', `the Docker volume ${volume} exists already: berth does not make a new ${kind.name} service ${record.name} on data it did not create`, {
        hint: `look at it (docker volume inspect ${volume}); remove it (docker volume rm ${volume}) if its data is not needed, or create the service under another name`,
      });
    }
    try {
      await this.#ensureImage(record.image, out);
      out.step(`Creating ${kind.name} service ${record.name} (${record.image})`);
      const container = await this.#startContainer(record);
      await this.waitReady(record, container.id, out);
      await this.#noteNode(record);
    } catch (e) {
      await this.remove(record).catch((err) => log.warn('service_cleanup_failed', { service: `${record.kind}/${record.name}`, error: err }));
      throw e;
    }
  }

  /**
   * Brings a service's container back as its record says: a missing one is created anew on its
   * volume, a stopped one started, and it joins the network of every linked app. Returns it.
   */
  async ensureRunning(record: ServiceRecord): Promise<ContainerState> {
    let c = await this.container(record);
    if (c && !c.running) {
      await this.#deps.engine.start(c.id).catch((e) => log.warn('service_start_failed', { service: `${record.kind}/${record.name}`, error: e }));
      c = await this.#deps.engine.inspect(c.id).catch(() => undefined);
    }
    if (!c?.running) {
      if (c) await this.#deps.engine.stopAndRemove(c.id, 0);
      c = await this.#startContainer(record);
      log.info('service_container_created', { service: `${record.kind}/${record.name}`, container: c.name });
    }
    for (const link of record.links) await this.#joinApp(record, c.id, link.app);
    await this.#noteNode(record);
    return c;
  }

  /** Polls the kind's readiness command inside the container until it exits 0 (data-ops' waitReady); its last log lines shown when it never does. */
  async waitReady(record: ServiceRecord, id: string, out: Output, timeoutMs = this.#deps.readyTimeoutMs ?? SERVICE_READY_TIMEOUT_MS): Promise<void> {
    const started = performance.now();
    try {
      await waitReady(this.#deps.engine, id, this.kind(record.kind), await this.view(record), { timeoutMs, ...(this.#deps.readyCheckTimeoutMs ? { checkTimeoutMs: this.#deps.readyCheckTimeoutMs } : {}) });
    } catch (e) {
      if (!isUserError(e) || e.code !== 'service_not_ready') throw e;
      const logs = await this.#deps.engine.logs(id, 20).catch(() => '');
      for (const line of logs.split('\n').filter(Boolean)) out.detail(line);
      throw new UserError('service_not_ready', e.message, { cause: e, hint: `its last log lines are above; \`${record.kind}:logs ${record.name}\` shows more` });
    }
    log.info('service_ready', { service: `${record.kind}/${record.name}`, ms: Math.round(performance.now() - started) });
  }

  /**
   * Where the service runs on the swarm scheduler: the manager's node (`HOSTNAME (manager)`), or
   * for a service whose data is on another node (berth's --docker-host changed), that node;
   * undefined on the docker scheduler.
   */
  async node(record?: Pick<ServiceRecord, 'nodeId'>): Promise<string | undefined> {
    try {
      const elsewhere = record && (await this.#elsewhere(record));
      if (elsewhere) return `node ${elsewhere.recorded}, not berth's manager (${elsewhere.current}): the data is there`;
      return await this.#deps.node?.();
    } catch (e) {
      log.warn('service_node_unknown', { error: e });
      return undefined;
    }
  }

  // The record names another node than the engine berth now talks to: its volume is there.
  async #elsewhere(record: Pick<ServiceRecord, 'nodeId'>): Promise<{ recorded: string; current: string } | undefined> {
    if (!record.nodeId || !this.#deps.managerId) return undefined;
    const current = await this.#deps.managerId();
    return current === record.nodeId ? undefined : { recorded: record.nodeId, current };
  }

  // The service runs on this engine's node (with its volume): the record says so from now on.
  async #noteNode(record: ServiceRecord): Promise<void> {
    if (!this.#deps.managerId) return;
    const current = await this.#deps.managerId();
    if (record.nodeId === current) return;
    await this.#deps.store.update(record.kind, record.name, (draft) => {
      draft.nodeId = current;
    });
    record.nodeId = current;
  }

  /** The server's own version (the kind's versionCommand in the running container); undefined when it does not run or say. */
  async version(record: ServiceRecord): Promise<string | undefined> {
    const c = await this.container(record);
    if (!c?.running) return undefined;
    const command = this.kind(record.kind).versionCommand(await this.view(record));
    let output = '';
    const { code } = await this.#deps.engine
      .exec(c.id, { cmd: command.cmd, ...(command.env ? { env: command.env } : {}), ...(command.user ? { user: command.user } : {}), onStdout: (d) => void (output += d.toString('utf8')), onStderr: () => {}, signal: AbortSignal.timeout(READY_CHECK_TIMEOUT_MS) })
      .catch(() => ({ code: -1 }));
    return code === 0 ? output.trim().split('\n')[0] || undefined : undefined;
  }

  /** Stops the container and starts a new one on the same volume (so it runs the record's image, memory and port). */
  async restart(record: ServiceRecord, out: Output): Promise<void> {
    out.step(`Restarting ${record.kind} service ${record.name}`);
    const old = await this.container(record);
    // Postgres shuts down cleanly on SIGTERM (no recovery at the next start): give it time.
    if (old) await this.#deps.engine.stopAndRemove(old.id, SERVICE_STOP_TIMEOUT_S);
    const c = await this.ensureRunning(record);
    await this.waitReady(record, c.id, out);
  }

  /** Removes the container, its volume (the data) and its own network; a volume still in use is an error. */
  async remove(record: Pick<ServiceRecord, 'kind' | 'name'>): Promise<void> {
    const names = this.names(record);
    for (const c of await this.#deps.engine.list({ [SERVICE_LABEL]: `${record.kind}/${record.name}` })) await this.#deps.engine.stopAndRemove(c.id, 30);
    await this.#deps.engine.removeVolume(names.volume);
    if (await this.#deps.engine.volumeLabels(names.volume)) {
      throw new UserError('service_volume_in_use', `the volume ${names.volume} of ${record.kind} service ${record.name} is in use by another container: it was not removed`, {
        hint: `see which: docker ps -a --filter volume=${names.volume}; remove that container, then destroy the service again`,
      });
    }
    await this.#deps.engine.removeNetwork(names.network, { [SERVICE_LABEL]: `${record.kind}/${record.name}` });
  }

  /** The service joins the app's network (made if the app has never run), reachable there by its alias only. */
  async link(record: ServiceRecord, app: string): Promise<void> {
    const c = await this.ensureRunning(record);
    await this.#joinApp(record, c.id, app);
  }

  /** The service leaves the app's network: the app's containers can no longer open a connection to it. */
  async unlink(record: ServiceRecord, app: string): Promise<void> {
    const c = await this.container(record);
    if (c) await this.#deps.engine.disconnectNetwork(c.id, this.#deps.appNetwork(app));
  }

  /**
   * Before an app's containers start (deploy, restart, daemon start): every service linked to it
   * runs, is on its network, and accepts connections.
   */
  async prepareApp(app: string, out: Output): Promise<void> {
    for (const record of this.#deps.store.linkedTo(app)) {
      const c = await this.ensureRunning(record);
      out.step(`Waiting for ${record.kind} service ${record.name} to accept connections`);
      await this.waitReady(record, c.id, out);
    }
  }

  /**
   * At daemon start: every service runs again (the engine's restart policy brought back the ones
   * that died; one whose container is gone is recreated on its volume). A service that cannot be
   * started is logged; the apps linked to it wait for it at their start.
   */
  async adopt(): Promise<void> {
    for (const record of this.#deps.store.list()) {
      try {
        // Under the service's lock: a command run meanwhile (destroy, restart, import) finishes first.
        const c = await this.#locked(record, () => this.ensureRunning(this.#deps.store.require(record.kind, record.name)));
        log.info('service_adopted', { service: `${record.kind}/${record.name}`, container: c.name });
      } catch (e) {
        log.error('service_adopt_failed', { service: `${record.kind}/${record.name}`, error: e });
      }
    }
  }

  #networkOptions(): NetworkOptions {
    return this.#deps.networkDriver ? { driver: this.#deps.networkDriver } : {};
  }

  #locked<T>(record: Pick<ServiceRecord, 'kind' | 'name'>, fn: () => Promise<T>): Promise<T> {
    return this.#deps.locks ? this.#deps.locks.run(serviceLockName(record.kind, record.name), fn) : fn();
  }

  /** The service's last `tail` log lines, or (follow) what it writes from them on until stopped. */
  logs(id: string, options: { tail: number; timestamps: boolean }): Promise<string> {
    return this.#deps.engine.logs(id, options.tail, { timestamps: options.timestamps });
  }

  followLogs(id: string, options: { tail: number; onData(data: Buffer): void | Promise<void> }): Promise<Subscription> {
    return this.#deps.engine.followLogs(id, options);
  }

  async #ensureImage(image: string, out: Output): Promise<void> {
    if (await this.#deps.engine.imageExists(image)) return;
    out.step(`Pulling ${image} (first use)`);
    try {
      await this.#deps.engine.pull(image, (line) => out.detail(line));
    } catch (e) {
      throw new UserError('image_pull_failed', `could not pull ${image}: ${(e as Error).message}`, {
        cause: e,
        hint: 'check the name and that the engine reaches its registry, or give a local image with --image',
      });
    }
  }

  async #startContainer(record: ServiceRecord): Promise<ContainerState> {
    const kind = this.kind(record.kind);
    const names = this.names(record);
    const view = await this.view(record);
    const labels = { [SERVICE_LABEL]: `${record.kind}/${record.name}` };
    const volumeLabels = await this.#deps.engine.volumeLabels(names.volume);
    if (volumeLabels && volumeLabels[SERVICE_ID_LABEL] !== record.id) {
      throw new Error(`${record.kind} service ${record.name}: the volume ${names.volume} was not made for this service (its ${SERVICE_ID_LABEL} is ${volumeLabels[SERVICE_ID_LABEL] ?? 'missing'}, the service's id ${record.id}); berth does not adopt it`);
    }
    if (!volumeLabels) {
      // Its data is on the node it was made on: a volume made empty here would serve no data under the same URL.
      const elsewhere = await this.#elsewhere(record);
      if (elsewhere) {
        throw new UserError('service_data_elsewhere', `${record.kind} service ${record.name}: its data (the volume ${names.volume}) is on the Swarm node ${elsewhere.recorded}, and berth's engine (--docker-host) is the one of node ${elsewhere.current}, which has no such volume: berth does not start it on an empty one`, {
          hint: `point --docker-host at the engine of node ${elsewhere.recorded} again (docker node inspect ${elsewhere.recorded} names its address), or move the volume to this node yourself (docs/swarm.md)`,
        });
      }
      await this.#deps.engine.ensureVolume(names.volume, { ...labels, [SERVICE_ID_LABEL]: record.id });
    }
    await this.#deps.engine.ensureNetwork(names.network, labels, this.#networkOptions());
    const command = kind.containerCommand(view);
    const spec: ContainerSpec = {
      name: names.container,
      image: record.image,
      env: Object.fromEntries(kind.containerEnv(view).map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)])),
      labels,
      network: names.network,
      aliases: [names.alias],
      ...(command ? { cmd: command } : {}),
      ...this.limits(record),
      // The official images start as root to own the data dir, then drop to their user.
      capabilities: APP_CAPABILITIES,
      binds: [`${names.volume}:${kind.dataDir}`],
      restart: true,
      // A server writing its data out on shutdown (postgres's checkpoint, redis's snapshot) is given time to finish, also when the engine stops.
      stopTimeout: SERVICE_STOP_TIMEOUT_S,
      ...(record.exposedPort ? { ports: [{ container: kind.port, host: record.exposedPort, hostIp: record.exposedHost ?? EXPOSED_HOST_DEFAULT }] } : {}),
    };
    try {
      return await this.#deps.engine.run(spec);
    } catch (e) {
      // A container of that name left by a create that did not finish: it goes, the volume stays.
      if (!/already in use|Conflict/i.test((e as Error).message)) throw new Error(`${record.kind} service ${record.name}: starting its container: ${(e as Error).message}`, { cause: e });
      for (const c of await this.#deps.engine.containersNamed(names.container)) if (c.name === names.container) await this.#deps.engine.stopAndRemove(c.id, 30);
      return this.#deps.engine.run(spec);
    }
  }

  async #joinApp(record: ServiceRecord, id: string, app: string): Promise<void> {
    const network = this.#deps.appNetwork(app);
    await this.#deps.engine.ensureNetwork(network, { [LABEL.app]: app }, this.#networkOptions());
    try {
      await this.#deps.engine.connectNetwork(id, network, [this.names(record).alias]);
    } catch (e) {
      if (e instanceof NotFoundError) throw new Error(`${record.kind} service ${record.name}: joining ${network}: ${e.message}`, { cause: e });
      throw e;
    }
  }
}
