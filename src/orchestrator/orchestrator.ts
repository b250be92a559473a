// The container side of the platform: deploys pushed commits one at a time per app, adopts what
// is already running when the daemon starts, and tears apps down.
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Output } from '../ui/output.ts';
import { MemoryOutput } from '../ui/output.ts';
import type { Config, DataPaths } from '../config.ts';
import { log } from '../log.ts';
import type { AppStore, Release } from '../state/app-store.ts';
import { currentRelease } from '../state/app-store.ts';
import type { DomainStore } from '../state/domain-store.ts';
import { imageRepository, imageTag, type Builder } from './builder.ts';
import { BuildLogs } from './build-log.ts';
import { BuildpackBuilder, buildContainerPrefix, cacheVolume } from './buildpack-builder.ts';
import { BuildpackFetcher } from './buildpack-fetcher.ts';
import { checkPort, checkSettingsOf, processContainers, WEB_PORT, type RoutePublisher } from './deployment.ts';
import { DockerfileBuilder } from './dockerfile-builder.ts';
import { LABEL, type Engine } from './engine.ts';
import { checksFor, passGate } from './health-gate.ts';
import { RouteGuard } from './route-guard.ts';
import { runPipeline, type PipelineInput } from './pipeline.ts';
import { redeployCurrent, type ReleaseDeps } from './release-flow.ts';

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
}

export class Orchestrator {
  private readonly deps: OrchestratorDeps;
  private readonly builders: readonly Builder[];
  /** Every publish goes through it: containers the engine reports dead stay out of routing. */
  private readonly routes: RouteGuard;
  readonly buildLogs: BuildLogs;
  private events: NodeJS.ReadableStream | undefined;
  private stopped = false;

  constructor(deps: OrchestratorDeps) {
    this.deps = deps;
    this.routes = new RouteGuard(deps.publisher);
    this.buildLogs = new BuildLogs(deps.paths.buildLogs);
    this.builders = [
      new DockerfileBuilder(deps.engine, deps.config.buildMemory),
      new BuildpackBuilder({
        engine: deps.engine,
        fetcher: new BuildpackFetcher(deps.paths.buildpacks),
        stackImage: deps.config.stackImage,
        defaultBuildpacks: deps.config.buildpacks,
        memory: deps.config.buildMemory,
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
      deploy: { engine: this.deps.engine, network: this.deps.config.network, publisher: this.routes, hostnames: this.hostnames(app), checksWaitMs: this.deps.config.checksWait },
      keepImages: this.deps.config.keepImages,
    };
  }

  publisher(): RoutePublisher {
    return this.routes;
  }

  /** Where users reach the app. */
  appUrl(app: string): string {
    return this.deps.appUrl(app);
  }

  hostnames(app: string): string[] {
    return this.deps.domains.hostnames(app);
  }

  async start(): Promise<void> {
    await this.deps.engine.ensureNetwork(this.deps.config.network);
    await this.removeStaleBuilds();
    await this.watchContainers();
    for (const app of this.deps.apps.list()) {
      try {
        await this.deps.locks.run(app.name, () => this.adopt(app.name));
      } catch (e) {
        log.error('app_adopt_failed', { app: app.name, error: e });
      }
    }
  }

  async stop(): Promise<void> {
    // App containers keep running while the daemon is down; a restart adopts them.
    this.stopped = true;
    (this.events as { destroy?: () => void } | undefined)?.destroy?.();
    this.events = undefined;
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
    const containers = await this.deps.engine.list({ [LABEL.app]: app });
    await Promise.all(containers.map((c) => this.deps.engine.stopAndRemove(c.id, stopS)));
    if (containers.length) out.detail(`removed ${containers.length} container${containers.length === 1 ? '' : 's'}`);
    const record = this.deps.apps.require(app);
    const images = new Set([...record.releases.map((r) => r.image), ...(await this.deps.engine.imagesOf(imageRepository(this.deps.engine.instance, app)))]);
    for (const image of images) await this.deps.engine.removeImage(image);
    await this.deps.engine.removeVolume(cacheVolume(this.deps.engine.instance, app));
    await this.buildLogs.removeApp(app);
    await fs.rm(path.join(this.deps.paths.repos, `${app}.git`), { recursive: true, force: true });
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
    const old = await engine.list({ [LABEL.app]: from });
    await Promise.all(old.map((c) => engine.stopAndRemove(c.id, Math.ceil(checks.stopTimeoutMs / 1000))));
    if (old.length) out.detail(`stopped ${old.length} container${old.length === 1 ? '' : 's'} of ${from}`);
    for (const r of record.releases) if (r.image.startsWith(ours)) await engine.removeImage(r.image);
    await engine.removeVolume(cacheVolume(engine.instance, from));
    await this.buildLogs.renameApp(from, to);
    const repos = this.deps.paths.repos;
    await fs.rename(path.join(repos, `${from}.git`), path.join(repos, `${to}.git`)).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw e;
    });
  }

  /**
   * At daemon start: re-checks the current release's running containers (once, with the
   * release's checks) before routing to them, starts the dynos the formation wants that do not run,
   * and removes containers of other releases (left by a deploy the daemon did not finish).
   */
  private async adopt(app: string): Promise<void> {
    const record = this.deps.apps.get(app);
    const release = record && currentRelease(record);
    if (!record || !release) return;
    if (record.stopped) {
      this.routes.publish(app, this.hostnames(app), []);
      return;
    }
    const out = new MemoryOutput();
    await redeployCurrent(this.releaseDeps(app), app, out, { reuse: true });
    const started = out.text().match(/Starting \S+/g) ?? [];
    log.info('app_adopted', { app, release: release.number, started: started.map((s) => s.slice('Starting '.length)) });
  }

  /**
   * Follows the engine's container events. A web container reported dead (die, stop, oom, or
   * unhealthy by its image's HEALTHCHECK) leaves its app's route at once, without waiting for the
   * app's lock; once the engine starts it again (its restart policy) or reports it healthy again,
   * it is checked and the app's routes are published anew under the lock.
   */
  private async watchContainers(): Promise<void> {
    const engine = this.deps.engine;
    const stream = (await engine.docker.getEvents({
      filters: {
        type: ['container'],
        event: ['start', 'die', 'stop', 'oom', 'health_status', 'destroy'],
        label: [`${LABEL.managed}=1`, `${LABEL.instance}=${engine.instance}`],
      },
    })) as NodeJS.ReadableStream;
    this.events = stream;
    let partial = '';
    stream.on('data', (chunk: Buffer) => {
      const lines = (partial + chunk.toString('utf8')).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        if (!line.trim()) continue;
        try {
          this.onContainerEvent(JSON.parse(line) as ContainerEvent);
        } catch (e) {
          log.warn('docker_event_unreadable', { error: e });
        }
      }
    });
    // The engine may restart under a running daemon: listen again while the daemon runs.
    const lost = (error?: Error) => {
      if (this.events !== stream) return;
      this.events = undefined;
      log.warn('docker_events_lost', { error });
      this.retryWatch();
    };
    stream.on('error', (e: Error) => lost(e));
    stream.on('end', () => lost());
  }

  private onContainerEvent(event: ContainerEvent): void {
    const attrs = event.Actor?.Attributes ?? {};
    const app = attrs[LABEL.app];
    const name = attrs.name;
    if (!app || !name || !event.id || (attrs[LABEL.role] ?? 'process') !== 'process') return;
    const action = event.Action ?? event.status ?? '';
    const type = attrs[LABEL.process] ?? 'web';
    if (action === 'destroy') {
      this.routes.forget(name);
    } else if (action === 'start' || action === 'health_status: healthy') {
      // Only a container that went down comes back here; a deploy routes the ones it starts.
      if (this.routes.revive(name)) void this.refreshRoutes(app, event.id, type);
    } else if (action === 'die' || action === 'stop' || action === 'oom' || action === 'health_status: unhealthy') {
      if (type !== 'web') return;
      const withdrawn = this.routes.withdraw(app, this.hostnames(app), name, action);
      if (withdrawn) {
        const reportedAt = event.timeNano ? event.timeNano / 1e6 : (event.time ?? 0) * 1000;
        log.info('route_target_withdrawn', { app, container: name, reason: action, engineTime: new Date(reportedAt).toISOString(), lagMs: Math.round((Date.now() - reportedAt) * 10) / 10 });
      }
    }
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
        await passGate({ engine: this.deps.engine, container, dyno: container.labels[LABEL.dyno] ?? type, checks: checksFor(release, type, checks), port: checkPort(type), hostHeader: this.hostnames(app)[0] ?? app });
      }
    } catch (e) {
      log.info('routes_refresh_skipped', { app, id, reason: (e as Error).message });
      return; // not healthy (yet); a later start event tries again
    }
    await this.deps.locks.run(app, async () => {
      const record = this.deps.apps.get(app);
      const release = record && currentRelease(record);
      if (!record || !release || record.stopped) return;
      const web = (await processContainers(this.deps.engine, app))
        .filter((c) => c.running && c.ip && c.labels[LABEL.process] === 'web' && c.labels[LABEL.release] === String(release.number))
        .sort((a, b) => (a.labels[LABEL.dyno] ?? '').localeCompare(b.labels[LABEL.dyno] ?? ''));
      this.routes.publish(app, this.hostnames(app), web.map((c) => ({ id: c.name, host: c.ip!, port: WEB_PORT })));
      log.info('routes_refreshed', { app, reason: 'container_restarted', targets: web.map((c) => `${c.name}@${c.ip}`) });
    }).catch((e) => log.warn('routes_refresh_failed', { app, error: e }));
  }

  // A build the daemon was running when it stopped will never finish: its container goes.
  private async removeStaleBuilds(): Promise<void> {
    const prefix = buildContainerPrefix(this.deps.engine.instance);
    const found = await this.deps.engine.docker.listContainers({ all: true, filters: { name: [prefix] } });
    for (const c of found) {
      if (!c.Names.some((n) => n.replace(/^\//, '').startsWith(prefix))) continue;
      await this.deps.engine.stopAndRemove(c.Id, 0).catch((e) => log.warn('build_container_remove_failed', { id: c.Id, error: e }));
      log.info('stale_build_removed', { container: c.Names[0] });
    }
  }
}

/** One line of the engine's event stream, as berth reads it. */
interface ContainerEvent {
  id?: string;
  /** The event: start, die, `health_status: unhealthy` ... (`status` in older engines). */
  Action?: string;
  status?: string;
  time?: number;
  timeNano?: number;
  Actor?: { Attributes?: Record<string, string> };
}
