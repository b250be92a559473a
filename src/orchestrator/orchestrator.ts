// The container side of the platform: deploys pushed commits one at a time per app, adopts what
// is already running when the daemon starts, and tears apps down.
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Output } from '../cli/output.ts';
import { MemoryOutput } from '../cli/output.ts';
import type { Config, DataPaths } from '../config.ts';
import { log } from '../log.ts';
import type { AppStore, Release } from '../state/app-store.ts';
import { currentRelease } from '../state/app-store.ts';
import { AppLock } from './app-lock.ts';
import type { Builder } from './builder.ts';
import { imageTag } from './builder.ts';
import { deployRelease, STOP_TIMEOUT_S, WEB_PORT, type RoutePublisher } from './deployment.ts';
import { DockerfileBuilder } from './dockerfile-builder.ts';
import { LABEL, type Engine } from './engine.ts';
import { runPipeline, type PipelineInput } from './pipeline.ts';

export interface OrchestratorDeps {
  engine: Engine;
  apps: AppStore;
  config: Config;
  paths: DataPaths;
  publisher: RoutePublisher;
  /** The URL users reach an app at (scheme, host name, and the port when it is not the default). */
  appUrl(app: string): string;
}

export class Orchestrator {
  private readonly deps: OrchestratorDeps;
  private readonly builders: readonly Builder[];
  private readonly lock = new AppLock();

  constructor(deps: OrchestratorDeps) {
    this.deps = deps;
    this.builders = [new DockerfileBuilder(deps.engine)];
  }

  /** Where users reach the app. */
  appUrl(app: string): string {
    return this.deps.appUrl(app);
  }

  hostnames(app: string): string[] {
    return [`${app}.${this.deps.config.domain}`];
  }

  async start(): Promise<void> {
    await this.deps.engine.ensureNetwork(this.deps.config.network);
    for (const app of this.deps.apps.list()) {
      try {
        await this.lock.run(app.name, () => this.adopt(app.name));
      } catch (e) {
        log.error('app_adopt_failed', { app: app.name, error: e });
      }
    }
  }

  async stop(): Promise<void> {
    // App containers keep running while the daemon is down; a restart adopts them.
  }

  /** Builds and deploys a pushed commit; waits (and says so) while another deploy of the app runs. */
  deploy(input: PipelineInput): Promise<Release> {
    const app = input.source.app;
    return this.lock.run(
      app,
      () =>
        runPipeline(
          {
            apps: this.deps.apps,
            builders: this.builders,
            deploy: { engine: this.deps.engine, network: this.deps.config.network, publisher: this.deps.publisher, hostnames: this.hostnames(app) },
            appUrl: this.deps.appUrl(app),
          },
          input,
        ),
      () => input.out.step(`Another deploy of ${app} is running; waiting for it to finish`),
    );
  }

  async destroyApp(app: string, out: Output): Promise<void> {
    await this.lock.run(app, async () => {
      this.deps.publisher.unpublish(app);
      const containers = await this.deps.engine.list({ [LABEL.app]: app });
      await Promise.all(containers.map((c) => this.deps.engine.stopAndRemove(c.id, 10)));
      if (containers.length) out.detail(`removed ${containers.length} container${containers.length === 1 ? '' : 's'}`);
      const record = this.deps.apps.require(app);
      for (const r of record.releases) await this.deps.engine.removeImage(r.image);
      await fs.rm(path.join(this.deps.paths.repos, `${app}.git`), { recursive: true, force: true });
      await this.deps.apps.remove(app);
    });
  }

  /**
   * Renames an app. Its images get tags under the new name and its current release starts under
   * the new name, routed at the new host names; only then do state and repository move and the
   * old containers, routes and tags go. If the new container does not come up, nothing of the
   * old app has changed.
   */
  async renameApp(from: string, to: string, out: Output): Promise<void> {
    const [first, second] = [from, to].sort() as [string, string];
    await this.lock.run(first, () =>
      this.lock.run(second, async () => {
        const record = this.deps.apps.require(from);
        const renamed = record.releases.map((r) => ({ ...r, image: imageTag(to, r.number) }));
        const tagged: string[] = [];
        try {
          for (const [i, r] of record.releases.entries()) {
            if (!(await this.deps.engine.imageExists(r.image))) continue;
            await this.deps.engine.tagImage(r.image, renamed[i]!.image);
            tagged.push(renamed[i]!.image);
          }
          const current = currentRelease(record);
          if (current) {
            await deployRelease(
              { engine: this.deps.engine, network: this.deps.config.network, publisher: this.deps.publisher, hostnames: this.hostnames(to), out },
              to,
              { ...current, image: imageTag(to, current.number) },
            );
          }
        } catch (e) {
          for (const t of tagged) await this.deps.engine.removeImage(t).catch(() => undefined);
          throw e;
        }
        await this.deps.apps.rename(from, to, (draft) => {
          draft.releases = renamed;
        });
        const repos = this.deps.paths.repos;
        await fs.rename(path.join(repos, `${from}.git`), path.join(repos, `${to}.git`)).catch((e: NodeJS.ErrnoException) => {
          if (e.code !== 'ENOENT') throw e;
        });
        this.deps.publisher.unpublish(from);
        const old = await this.deps.engine.list({ [LABEL.app]: from });
        await Promise.all(old.map((c) => this.deps.engine.stopAndRemove(c.id, STOP_TIMEOUT_S)));
        if (old.length) out.detail(`stopped ${old.length} container${old.length === 1 ? '' : 's'} of ${from}`);
        for (const r of record.releases) await this.deps.engine.removeImage(r.image);
      }),
    );
  }

  // Routes to the current release's running web container, or starts one if none runs.
  private async adopt(app: string): Promise<void> {
    const record = this.deps.apps.get(app);
    const release = record && currentRelease(record);
    if (!release) return;
    const containers = await this.deps.engine.list({ [LABEL.app]: app, [LABEL.process]: 'web', [LABEL.release]: String(release.number) });
    const running = containers.filter((c) => c.running && c.ip);
    if (running.length) {
      this.deps.publisher.publish(app, this.hostnames(app), running.map((c) => ({ id: c.name, host: c.ip!, port: WEB_PORT })));
      log.info('app_adopted', { app, release: release.number, containers: running.map((c) => c.name) });
      return;
    }
    log.info('app_restarting', { app, release: release.number });
    const out = new MemoryOutput();
    for (const c of containers) await this.deps.engine.stopAndRemove(c.id, 0);
    await deployRelease(
      { engine: this.deps.engine, network: this.deps.config.network, publisher: this.deps.publisher, hostnames: this.hostnames(app), out },
      app,
      release,
    );
  }
}
