// The container side of the platform: deploys pushed commits one at a time per app, adopts what
// is already running when the daemon starts, tells deploys on probation what the engine reports
// about their containers the moment it does, and tears apps down. On the swarm scheduler the
// dynos are Swarm tasks (swarm-deployment.ts): a task watcher stands in for the engine's events,
// and draining a node moves its dynos off (NodeMover).
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Output } from '../ui/output.ts';
import type { Config, DataPaths } from '../config.ts';
import { UserError } from '../errors.ts';
import { log } from '../log.ts';
import type { AppStore, Release } from '../state/app-store.ts';
import type { ResourceLimit } from '../state/app-settings.ts';
import { currentRelease } from '../state/app-store.ts';
import type { DomainStore } from '../state/domain-store.ts';
import type { ServiceStore } from '../state/service-store.ts';
import type { ServiceKind } from '../services/kinds/kind.ts';
import { imageRepository, imageTag, type Builder } from './builder.ts';
import { BuildLogs } from './build-log.ts';
import { BuildpackBuilder, buildContainerPrefix, cacheVolume } from './buildpack-builder.ts';
import { BuildpackFetcher } from './buildpack-fetcher.ts';
import { checkPort, checkSettingsOf, probePort, processContainers, webTargets, type DynoEngine, type RoutePublisher } from './deployment.ts';
import { DockerfileBuilder } from './dockerfile-builder.ts';
import { LABEL, overlayNetworkName, SWARM_NETWORK_MARK, type ContainerEvent, type Engine, type NetworkOptions, type Subscription } from './engine.ts';
import { checksOf, uptimeCheck } from './health-check.ts';
import { checksFor, passGate } from './health-gate.ts';
import type { ContainerWatcher, ProbationBoard, ProbationState } from './probation.ts';
import { RouteGuard } from './route-guard.ts';
import { runPipeline, type PipelineInput } from './pipeline.ts';
import { redeployCurrent, type ReleaseDeps } from './release-flow.ts';
import { ServiceManager } from './service-manager.ts';
import type { ImageDistributor, Swarm } from './swarm.ts';
import { LocalImageDistributor, SwarmDeploy, type Placement } from './swarm-deployment.ts';
import { TaskWatcher, type NodeProbe } from './task-watcher.ts';
import type { ContainerState } from './engine.ts';

/**
 * Per app, one change at a time. The application layer owns the lock and holds it around every
 * operation it calls here; the orchestrator takes it only for work it starts itself.
 */
export interface AppLocks {
  run<T>(app: string, fn: () => Promise<T>, onWait?: () => void): Promise<T>;
}

export interface OrchestratorDeps {
  engine: Engine;
  locks: AppLocks;
  apps: AppStore;
  domains: DomainStore;
  config: Config;
  paths: DataPaths;
  publisher: RoutePublisher;
  /** The URL users reach an app at (scheme, host name, and the port when it is not the default). */
  appUrl(app: string): string;
  /** Backing services' records, and the kinds berth has (SERVICE_KINDS). */
  services: ServiceStore;
  serviceKinds: readonly ServiceKind[];
  /** The Swarm to schedule apps on (--scheduler swarm, checked to be a manager's engine); undefined on the docker scheduler. */
  swarm?: Swarm;
  /** How release images reach every node on the swarm scheduler (the cluster registry); default: by image id, which nodes must have. */
  distributor?: ImageDistributor;
  /** On the swarm scheduler, whether a node's machine answers, before Swarm marks it down (default: a TCP probe of its gossip port; tests inject one). */
  nodeProbe?: NodeProbe;
  /** On the docker scheduler, the Swarm the engine manages, if it is a manager's: the process services berth left there on the swarm scheduler are removed at start. */
  formerSwarm?: Swarm;
}

/** How many times moveOff looks for apps with tasks on the node before it gives up. */
const MOVE_OFF_PASSES = 3;

export class Orchestrator {
  private readonly deps: OrchestratorDeps;
  private readonly builders: readonly Builder[];
  /** Every publish goes through it: containers the engine reports dead stay out of routing. */
  private readonly routes: RouteGuard;
  readonly buildLogs: BuildLogs;
  /** Backing services' containers; an app's containers start once its linked services accept connections. */
  readonly services: ServiceManager;
  private events: Subscription | undefined;
  private stopped = false;
  /** Deploys on probation listening for events about their new containers, by container id. */
  private readonly listeners = new Map<string, Set<(event: ContainerEvent) => void>>();
  private readonly probations = new Map<string, ProbationState>();
  private readonly watcher: ContainerWatcher = {
    watch: (ids, onEvent) => {
      for (const id of ids) {
        let set = this.listeners.get(id);
        if (!set) this.listeners.set(id, (set = new Set()));
        set.add(onEvent);
      }
      return {
        stop: () => {
          for (const id of ids) {
            const set = this.listeners.get(id);
            set?.delete(onEvent);
            if (set?.size === 0) this.listeners.delete(id);
          }
        },
      };
    },
  };
  /** On the swarm scheduler: the app's processes as Swarm services, and the watcher of their tasks. */
  private readonly swarm: SwarmDeploy | undefined;
  private tasks: TaskWatcher | undefined;
  /** Aborted by stop(): a readmission's checks and a wait for tasks end there. */
  private readonly stopping = new AbortController();
  /** Apps not yet adopted since start (the task watcher readmits none of their tasks). */
  private readonly unadopted = new Set<string>();
  private readonly board: ProbationBoard = {
    begin: (state) => void this.probations.set(state.app, state),
    end: (app) => void this.probations.delete(app),
  };

  constructor(deps: OrchestratorDeps) {
    this.deps = deps;
    this.routes = new RouteGuard(deps.publisher);
    this.buildLogs = new BuildLogs(deps.paths.buildLogs);
    this.swarm = deps.swarm
      ? new SwarmDeploy({
          swarm: deps.swarm,
          distributor: deps.distributor ?? new LocalImageDistributor(deps.engine),
          prefix: `${deps.config.network}-${deps.engine.instance}`,
          placement: (app, type) => this.placement(app, type),
          signal: this.stopping.signal,
        })
      : undefined;
    const images: Record<string, string> = { postgres: deps.config.postgresImage, redis: deps.config.redisImage };
    this.services = new ServiceManager({
      engine: deps.engine,
      store: deps.services,
      kinds: deps.serviceKinds,
      defaultImage: (kind) => images[kind.name] || kind.defaultImage,
      networkPrefix: deps.config.network,
      appNetwork: (app) => this.appNetwork(app),
      networkDriver: this.networkOptions.driver,
      ...(deps.swarm ? { node: () => managerNode(deps.swarm!), managerId: async () => (await deps.swarm!.manager()).nodeId } : {}),
      defaultLimit: () => this.defaultLimit,
      locks: deps.locks,
    });
    this.builders = [
      new DockerfileBuilder(deps.engine, deps.config.buildMemory, (app) => this.appNetwork(app), this.networkOptions),
      new BuildpackBuilder({
        engine: deps.engine,
        fetcher: new BuildpackFetcher(deps.paths.buildpacks, { policy: { allowHosts: deps.config.fetchAllowHosts } }),
        stackImage: deps.config.stackImage,
        defaultBuildpacks: deps.config.buildpacks,
        memory: deps.config.buildMemory,
        network: (app) => this.appNetwork(app),
        networkOptions: this.networkOptions,
      }),
    ];
  }

  get engine(): Engine {
    return this.deps.engine;
  }

  get apps(): AppStore {
    return this.deps.apps;
  }

  get config(): Config {
    return this.deps.config;
  }

  /** What deploying a release of `app` needs. */
  releaseDeps(app: string): ReleaseDeps {
    return {
      apps: this.deps.apps,
      engine: this.deps.engine,
      deploy: {
        engine: this.deps.engine,
        network: this.appNetwork(app),
        networkOptions: this.networkOptions,
        defaultLimit: this.defaultLimit,
        publisher: this.routes,
        hostnames: this.hostnames(app),
        checksWaitMs: this.deps.config.checksWait,
        watcher: this.watcher,
        board: this.board,
        prepare: (out) => this.services.prepareApp(app, out),
        ...(this.swarm ? { swarm: this.swarm } : {}),
      },
      keepImages: this.deps.config.keepImages,
    };
  }

  /** The network the app's containers run on, its own: only the proxy (on the host) and apps linked to it reach them. */
  appNetwork(app: string): string {
    if (!this.deps.swarm) return appNetwork(this.deps.config.network, this.deps.engine.instance, app);
    // On the swarm scheduler an overlay network of another name (PREFIX-swarm-INSTANCE-APP) than the
    // docker scheduler's bridge, so switching schedulers never meets the other's; a DNS label, as Swarm wants.
    return overlayNetworkName(appNetwork(`${this.deps.config.network}-${SWARM_NETWORK_MARK}`, this.deps.engine.instance, app));
  }

  /**
   * How the apps' and the services' networks are made: bridge networks of this engine on the
   * docker scheduler; on the swarm scheduler attachable overlay networks, which the app's tasks on
   * every node join beside the manager's containers (backing services, one-offs, builds).
   */
  get networkOptions(): NetworkOptions {
    return { driver: this.deps.swarm ? 'overlay' : 'bridge' };
  }

  /** The limits of a container whose app sets none. */
  get defaultLimit(): ResourceLimit {
    return { memory: this.deps.config.containerMemory, pids: this.deps.config.containerPids };
  }

  publisher(): RoutePublisher {
    return this.routes;
  }

  /** Where the app's dynos run: the engine's containers, or on the swarm scheduler the Swarm's tasks seen as containers. */
  get dynos(): DynoEngine {
    return this.swarm?.dynos ?? this.deps.engine;
  }

  /** The scheduler apps run on. */
  get scheduler(): 'docker' | 'swarm' {
    return this.swarm ? 'swarm' : 'docker';
  }

  /** Where a process type's tasks may run on the swarm scheduler (ps:set APP TYPE placement). */
  placement(app: string, type: string): Placement {
    const own = this.deps.apps.get(app)?.placement[type];
    return { constraints: [...(own?.constraints ?? [])], spread: [...(own?.spread ?? [])] };
  }

  /**
   * Stops and removes the app's dynos: its containers, or on the swarm scheduler its process
   * services. Returns how many went.
   */
  async removeDynos(app: string, stopSeconds: number): Promise<number> {
    if (this.swarm) {
      const services = await this.swarm.services(app);
      await this.swarm.removeServices(app, services);
      return services.length;
    }
    const containers = await processContainers(this.deps.engine, app);
    await Promise.all(containers.map((c) => this.deps.engine.stopAndRemove(c.id, stopSeconds)));
    return containers.length;
  }

  /**
   * NodeMover (nodes:drain): redeploys, one app at a time under its lock, every app with a task on
   * `nodeId`, which takes no new tasks meanwhile, so the new tasks land elsewhere and are gated and
   * swapped as in any deploy. The first app that cannot move throws.
   */
  async moveOff(nodeId: string, out: Output): Promise<void> {
    if (!this.swarm) throw new Error('moving dynos off a node needs the swarm scheduler');
    // A deploy that held an app's lock while the node was paused may have placed tasks there after
    // a pass listed the apps: each pass looks again, until no app has a task wanted on the node.
    for (let pass = 1; ; pass++) {
      const tasks = (await this.swarm.dynos.snapshot(true)).tasks.filter((t) => t.nodeId === nodeId && t.desiredState === 'running');
      const apps = [...new Set(tasks.map((t) => t.labels[LABEL.app]).filter((a): a is string => a !== undefined))].sort().filter((app) => {
        const record = this.deps.apps.get(app);
        return record !== undefined && currentRelease(record) !== undefined && !record.stopped;
      });
      if (apps.length === 0) return;
      // Mounts are the node's own folders and volumes: moving the app would leave its data behind.
      const mounted = apps.filter((app) => (this.deps.apps.get(app)?.mounts.length ?? 0) > 0);
      if (mounted.length > 0) {
        throw new UserError('node_holds_mounts', `${mounted.join(', ')} ${mounted.length === 1 ? 'has' : 'have'} storage mounts on this node (storage:mount): ${mounted.length === 1 ? 'it stays' : 'they stay'} with ${mounted.length === 1 ? 'its' : 'their'} data, berth does not move ${mounted.length === 1 ? 'it' : 'them'} off`, {
          hint: 'remove the mounts (storage:unmount) or pin the app to another node with its data moved there (ps:set APP TYPE placement node.hostname==NODE), then drain again',
        });
      }
      if (pass > MOVE_OFF_PASSES) {
        throw new UserError('node_not_emptied', `${apps.join(', ')} still ${apps.length === 1 ? 'has' : 'have'} tasks on the node after ${MOVE_OFF_PASSES} passes (deploys kept placing them there)`, {
          hint: 'try the drain again once the deploys in progress have finished',
        });
      }
      for (const app of apps) {
        out.step(`Moving ${app} off the node`);
        await this.deps.locks.run(app, () => redeployCurrent(this.releaseDeps(app), app, out, { reuse: false }));
      }
    }
  }

  /**
   * The app's probation, while one runs: which release serves on probation, until when, and
   * which old containers are kept running out of the route meanwhile.
   */
  probation(app: string): ProbationState | undefined {
    const state = this.probations.get(app);
    return state && { ...state, containers: [...state.containers], warm: state.warm.map((w) => ({ ...w })) };
  }

  /** Where users reach the app. */
  appUrl(app: string): string {
    return this.deps.appUrl(app);
  }

  hostnames(app: string): string[] {
    return this.deps.domains.hostnames(app);
  }

  async start(): Promise<void> {
    // Each app's network is made at its first deploy; containers of an older berth on the shared
    // --network stay there, adopted, until their app's next deploy starts new ones on its own.
    await this.removeStaleBuilds();
    // On the swarm scheduler the manager's own containers are tasks: the task watcher follows them instead.
    if (!this.swarm) await this.watchContainers();
    if (!this.swarm) await this.removeFormerServices();
    const apps = this.deps.apps.list();
    // The task watcher starts before adoption (which is serial and may take minutes): a lost node's
    // tasks leave the routes of the apps adopted so far at once. It readmits no task of an app not
    // yet adopted (adoption routes them).
    for (const app of apps) this.unadopted.add(app.name);
    if (this.swarm) this.watchTasks(this.swarm);
    // Services first: an app's containers start only once its linked services accept connections.
    await this.services.adopt();
    for (const app of apps) {
      try {
        await this.deps.locks.run(app.name, () => this.adopt(app.name));
      } catch (e) {
        log.error('app_adopt_failed', { app: app.name, error: e });
      } finally {
        this.unadopted.delete(app.name);
      }
    }
    if (this.swarm) await this.removeFormerContainers();
  }

  /** On the docker scheduler: berth's process services on this engine's Swarm (left from the swarm scheduler) would serve nothing and run forever. */
  private async removeFormerServices(): Promise<void> {
    const swarm = this.deps.formerSwarm;
    if (!swarm) return;
    try {
      for (const service of await swarm.services({ [LABEL.role]: 'process' })) {
        log.info('swarm_service_left_removed', { app: service.labels[LABEL.app], service: service.name, reason: 'the scheduler is docker now' });
        await swarm.removeService(service.id);
      }
    } catch (e) {
      log.warn('swarm_services_left_not_removed', { error: e });
    }
  }

  /** On the swarm scheduler: process containers the docker scheduler left on the manager's engine (the apps run as services now). */
  private async removeFormerContainers(): Promise<void> {
    try {
      for (const c of await this.deps.engine.list({ [LABEL.role]: 'process' })) {
        log.info('container_left_removed', { app: c.labels[LABEL.app], container: c.name, reason: 'the scheduler is swarm now' });
        await this.deps.engine.stopAndRemove(c.id, 10);
      }
    } catch (e) {
      log.warn('containers_left_not_removed', { error: e });
    }
  }

  async stop(): Promise<void> {
    // App containers keep running while the daemon is down; a restart adopts them.
    this.stopped = true;
    this.stopping.abort(new Error('berth is stopping'));
    this.events?.stop();
    this.events = undefined;
    this.tasks?.stop();
    this.tasks = undefined;
  }

  /** Builds and deploys a pushed commit. The caller holds the app's lock. */
  deploy(input: PipelineInput): Promise<Release> {
    const app = input.source.app;
    return runPipeline({ ...this.releaseDeps(app), builders: this.builders, logs: this.buildLogs, appUrl: this.deps.appUrl(app) }, input);
  }

  /**
   * Takes an app off the proxy and removes its containers, images, build cache, build logs and
   * repository; its records are the caller's to remove. The caller holds the app's lock.
   */
  async destroyApp(app: string, out: Output): Promise<void> {
    this.routes.unpublish(app);
    const stopS = Math.ceil(checkSettingsOf({ checksWaitMs: this.deps.config.checksWait }, this.deps.apps.require(app)).stopTimeoutMs / 1000);
    const services = this.swarm ? await this.removeDynos(app, stopS) : 0;
    if (services) out.detail(`removed ${services} Swarm service${services === 1 ? '' : 's'}`);
    const containers = await this.deps.engine.list({ [LABEL.app]: app });
    await Promise.all(containers.map((c) => this.deps.engine.stopAndRemove(c.id, stopS)));
    if (containers.length) out.detail(`removed ${containers.length} container${containers.length === 1 ? '' : 's'}`);
    const record = this.deps.apps.require(app);
    const images = new Set([...record.releases.map((r) => r.image), ...(await this.deps.engine.imagesOf(imageRepository(this.deps.engine.instance, app)))]);
    for (const image of images) await this.deps.engine.removeImage(image);
    await this.pruneDistributed(app, [...images]);
    await this.deps.engine.removeVolume(cacheVolume(this.deps.engine.instance, app));
    await this.removeNetwork(app);
    await this.buildLogs.removeApp(app);
    await fs.rm(path.join(this.deps.paths.repos, `${app}.git`), { recursive: true, force: true });
  }

  /** On the swarm scheduler: the cluster's copies of an app's release images go with them (a failure is logged, never fails the caller). */
  private async pruneDistributed(app: string, images: readonly string[]): Promise<void> {
    const ours = images.filter((image) => image.startsWith(`${imageRepository(this.deps.engine.instance, app)}:`));
    if (!this.swarm || ours.length === 0) return;
    await this.swarm.distributor.prune([...new Set(ours)]).catch((e) => log.warn('image_distribution_prune_failed', { app, error: e }));
  }

  /**
   * Renames an app. Its images get tags under the new name, its state and domains move, and its
   * current release starts under the new name; the new routes replace the old ones in one swap
   * once the new containers are ready. Only then do the old containers, tags, repository and
   * logs go. If the new containers do not come up, everything is put back as it was and the
   * old app kept serving throughout. The caller holds the locks of both names.
   */
  async renameApp(from: string, to: string, out: Output): Promise<void> {
    const engine = this.deps.engine;
    const record = this.deps.apps.require(from);
    const ours = `${imageRepository(engine.instance, from)}:`;
    const renamed = record.releases.map((r) => (r.image.startsWith(ours) ? { ...r, image: imageTag(engine.instance, to, r.number) } : r));
    const tagged: string[] = [];
    const restore = async () => {
      await this.deps.apps.rename(to, from, (draft) => void (draft.releases = record.releases));
      await this.deps.domains.rename(to, from);
      for (const t of tagged) await engine.removeImage(t).catch(() => undefined);
      await this.removeNetwork(to);
    };
    for (const [i, r] of record.releases.entries()) {
      const next = renamed[i]!.image;
      if (next === r.image || !(await engine.imageExists(r.image))) continue;
      await engine.tagImage(r.image, imageRepository(engine.instance, to), `r${r.number}`);
      tagged.push(next);
    }
    const oldTargets = [...this.routes.routed(from)];
    await this.deps.apps.rename(from, to, (draft) => void (draft.releases = renamed));
    await this.deps.domains.rename(from, to);
    if (currentRelease(record) && !record.stopped) {
      try {
        await redeployCurrent(this.releaseDeps(to), to, out, { reuse: false });
      } catch (e) {
        await restore();
        throw e;
      }
    }
    // Whatever the new routes did not take over already (the old default domain) goes now;
    // requests in flight on the old containers finish before they stop, as in any deploy.
    this.routes.unpublish(from);
    const checks = checkSettingsOf({ checksWaitMs: this.deps.config.checksWait }, record);
    if (oldTargets.length > 0) await this.routes.drain(oldTargets, { deadlineMs: checks.drainTimeoutMs, reason: 'the app was renamed' });
    // On the swarm scheduler the old name's processes are services.
    if (this.swarm) await this.removeDynos(from, Math.ceil(checks.stopTimeoutMs / 1000));
    const old = await engine.list({ [LABEL.app]: from });
    await Promise.all(old.map((c) => engine.stopAndRemove(c.id, Math.ceil(checks.stopTimeoutMs / 1000))));
    if (old.length) out.detail(`stopped ${old.length} container${old.length === 1 ? '' : 's'} of ${from}`);
    const oldImages = record.releases.map((r) => r.image).filter((image) => image.startsWith(ours));
    for (const image of oldImages) await engine.removeImage(image);
    await this.pruneDistributed(from, oldImages);
    await engine.removeVolume(cacheVolume(engine.instance, from));
    await this.removeNetwork(from);
    await this.buildLogs.renameApp(from, to);
    const repos = this.deps.paths.repos;
    await fs.rename(path.join(repos, `${from}.git`), path.join(repos, `${to}.git`)).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw e;
    });
  }

  /**
   * At daemon start: re-checks the current release's running containers (once, with the
   * release's checks) before routing to them, starts the dynos the formation wants that do not run,
   * and removes containers of other releases (left by a deploy the daemon did not finish, such as
   * one whose probation it did not see to the end: the record still names the release before it).
   */
  private async adopt(app: string): Promise<void> {
    const record = this.deps.apps.get(app);
    const release = record && currentRelease(record);
    if (!record) return;
    if (!release) {
      // A first deploy that did not finish: nothing of it may run unrouted.
      const left = await processContainers(this.dynos, app);
      const removed = await this.removeDynos(app, 0);
      if (removed) log.info('unfinished_deploy_removed', { app, containers: left.map((c) => c.name) });
      return;
    }
    if (record.stopped) {
      this.routes.publish(app, this.hostnames(app), []);
      return;
    }
    // Nobody watches a start-up: what adoption did is the app_adopted log line.
    const deployed = await redeployCurrent(this.releaseDeps(app), app, UNWATCHED, { reuse: true, probation: false });
    log.info('app_adopted', { app, release: release.number, started: deployed.started.map((c) => c.labels[LABEL.dyno] ?? c.name) });
  }

  /**
   * Follows the engine's container events. A web container reported dead (die, stop, oom, or
   * unhealthy by its image's HEALTHCHECK) leaves its app's route at once, without waiting for the
   * app's lock; once the engine starts it again (its restart policy) or reports it healthy again,
   * it is checked and the app's routes are published anew under the lock.
   */
  private async watchContainers(): Promise<void> {
    let lost = false;
    const subscription = await this.deps.engine.watchContainers({
      onEvent: (event) => this.onContainerEvent(event),
      // The engine may restart under a running daemon: listen again while the daemon runs.
      onLost: (error) => {
        if (lost || this.stopped) return;
        lost = true;
        this.events = undefined;
        log.warn('docker_events_lost', { error });
        this.retryWatch();
      },
    });
    // stop() may have come while the subscription was being made.
    if (this.stopped) subscription.stop();
    else if (!lost) this.events = subscription;
  }

  private onContainerEvent(event: ContainerEvent): void {
    if (event.role !== 'process') return;
    // A deploy on probation hears first: its swap back happens in this tick.
    for (const listener of [...(this.listeners.get(event.id) ?? [])]) {
      try {
        listener(event);
      } catch (e) {
        log.error('probation_listener_failed', { container: event.name, error: e });
      }
    }
    const { app, name } = event;
    switch (event.change) {
      case 'removed':
        this.routes.forget(name);
        return;
      case 'started':
      case 'healthy':
        // Only a container that went down comes back here; a deploy routes the ones it starts.
        if (this.routes.revive(name)) void this.refreshRoutes(app, event.id, event.process);
        return;
      case 'died':
      case 'unhealthy': {
        if (event.process !== 'web') return;
        if (this.routes.withdraw(app, this.hostnames(app), name, event.reason)) {
          log.info('route_target_withdrawn', { app, container: name, reason: event.reason, engineTime: new Date(event.at).toISOString(), lagMs: Math.round((Date.now() - event.at) * 10) / 10 });
        }
        return;
      }
    }
  }

  /** The swarm scheduler's stand-in for the engine's events (TaskWatcher). */
  private watchTasks(swarm: SwarmDeploy): void {
    this.tasks = new TaskWatcher({
      dynos: swarm.dynos,
      apps: () => this.deps.apps.list().map((a) => ({ name: a.name, current: this.unadopted.has(a.name) ? undefined : (a.current ?? undefined), stopped: a.stopped })),
      hostnames: (app) => this.hostnames(app),
      routes: this.routes,
      watched: () => [...this.listeners.keys()],
      tell: (event) => {
        for (const listener of [...(this.listeners.get(event.id) ?? [])]) {
          try {
            listener(event);
          } catch (e) {
            log.error('probation_listener_failed', { container: event.name, error: e });
          }
        }
      },
      readmit: (app, task) => this.readmit(swarm, app, task),
      ...(this.deps.nodeProbe ? { probe: this.deps.nodeProbe } : {}),
    });
    if (!this.stopped) this.tasks.start();
  }

  /** A task Swarm started in place of one that stopped: its checks (with the uptime wait, as after a restart), then it joins the route under the app's lock. */
  private async readmit(swarm: SwarmDeploy, app: string, task: ContainerState): Promise<void> {
    const record = this.deps.apps.get(app);
    const release = record && currentRelease(record);
    if (!record || !release) return;
    const type = task.labels[LABEL.process] ?? 'web';
    const checks = checkSettingsOf({ checksWaitMs: this.deps.config.checksWait }, record);
    if (!checks.isSkipped(type) && !checks.isDisabled(type)) {
      const list = checksFor(release, type, checks);
      const declared = checksOf(release.healthchecks, type).length > 0;
      await passGate({ engine: swarm.dynos, container: task, dyno: task.labels[LABEL.dyno] ?? type, checks: declared ? list : [...list, uptimeCheck(checks.waitMs)], port: probePort(task, type), hostHeader: this.hostnames(app)[0] ?? app, signal: this.stopping.signal });
    }
    if (this.stopped) return;
    await this.deps.locks.run(app, async () => {
      const record = this.deps.apps.get(app);
      if (this.stopped || !record || record.stopped || record.current !== release.number) return;
      swarm.dynos.invalidate();
      const now = await swarm.dynos.inspect(task.id).catch(() => undefined);
      const routed = this.routes.routed(app);
      if (!now?.running || routed.some((t) => t.id === now.name) || this.routes.isDown(now.name)) return;
      this.routes.publish(app, this.hostnames(app), [...routed, ...webTargets([now])]);
      log.info('route_target_rejoined', { app, container: now.name, address: `${now.ip}:${now.port}` });
    });
  }

  private retryWatch(): void {
    setTimeout(() => {
      if (this.stopped) return;
      this.watchContainers().catch((e) => {
        log.warn('docker_events_failed', { error: e });
        this.retryWatch();
      });
    }, 5_000).unref();
  }

  /** A container that came back (restart policy, or healthy again) passes its checks, then the app's routes are published anew. */
  private async refreshRoutes(app: string, id: string, type: string): Promise<void> {
    const record = this.deps.apps.get(app);
    const release = record && currentRelease(record);
    if (!record || !release) return;
    const checks = checkSettingsOf({ checksWaitMs: this.deps.config.checksWait }, record);
    try {
      const container = await this.deps.engine.inspect(id);
      if (container.labels[LABEL.release] !== String(release.number)) return;
      if (!checks.isSkipped(type) && !checks.isDisabled(type)) {
        // A container its restart policy brought back has no old one standing by: without app.json
        // checks it must stay up for the wait before it is routed again, as a deploy's gate once did.
        const list = checksFor(release, type, checks);
        const declared = checksOf(release.healthchecks, type).length > 0;
        await passGate({ engine: this.deps.engine, container, dyno: container.labels[LABEL.dyno] ?? type, checks: declared ? list : [...list, uptimeCheck(checks.waitMs)], port: checkPort(type), hostHeader: this.hostnames(app)[0] ?? app });
      }
    } catch (e) {
      log.info('routes_refresh_skipped', { app, id, reason: (e as Error).message });
      return; // not healthy (yet); a later start event tries again
    }
    await this.deps.locks.run(app, async () => {
      const record = this.deps.apps.get(app);
      const release = record && currentRelease(record);
      if (!record || !release || record.stopped) return;
      const targets = webTargets((await processContainers(this.deps.engine, app)).filter((c) => c.running && c.labels[LABEL.release] === String(release.number)));
      this.routes.publish(app, this.hostnames(app), targets);
      log.info('routes_refreshed', { app, reason: 'container_restarted', targets: targets.map((t) => `${t.id}@${t.host}`) });
    }).catch((e) => log.warn('routes_refresh_failed', { app, error: e }));
  }

  // Once the app's containers are gone. One still attached (an app linked to it, an engine that has
  // not let go yet) keeps the network, which is logged: it never fails a destroy.
  private async removeNetwork(app: string): Promise<void> {
    await this.deps.engine.removeNetwork(this.appNetwork(app), { [LABEL.app]: app }).catch((e) => log.warn('app_network_remove_failed', { app, network: this.appNetwork(app), error: e }));
  }

  // A build the daemon was running when it stopped will never finish: its container goes.
  private async removeStaleBuilds(): Promise<void> {
    const prefix = buildContainerPrefix(this.deps.engine.instance);
    for (const c of await this.deps.engine.containersNamed(prefix)) {
      await this.deps.engine.stopAndRemove(c.id, 0).catch((e) => log.warn('build_container_remove_failed', { id: c.id, error: e }));
      log.info('stale_build_removed', { container: c.name });
    }
  }
}

/** The node the manager's engine (berth's, where backing services run) is: `HOSTNAME (manager)`. */
async function managerNode(swarm: Swarm): Promise<string> {
  const { nodeId } = await swarm.manager();
  return `${(await swarm.node(nodeId)).hostname} (manager)`;
}

/** The network of an app's containers: PREFIX-INSTANCE-APP, so two daemons on one engine keep theirs apart. */
export function appNetwork(prefix: string, instance: string, app: string): string {
  return `${prefix}-${instance}-${app}`;
}

/** Output nobody reads. */
const UNWATCHED: Output = { step() {}, section() {}, detail() {}, error() {}, line() {}, raw() {} };
