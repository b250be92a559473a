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
import type { DomainStore } from '../state/domain-store.ts';
import { AppLock } from './app-lock.ts';
import type { Builder } from './builder.ts';
import { deployRelease, WEB_PORT, type RoutePublisher } from './deployment.ts';
import { DockerfileBuilder } from './dockerfile-builder.ts';
import { LABEL, type Engine } from './engine.ts';
import { runPipeline, type PipelineInput } from './pipeline.ts';

export interface OrchestratorDeps {
  engine: Engine;
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
  private readonly lock = new AppLock();

  constructor(deps: OrchestratorDeps) {
    this.deps = deps;
    this.builders = [new DockerfileBuilder(deps.engine)];
  }

  hostnames(app: string): string[] {
    return this.deps.domains.hostnames(app);
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
      await this.deps.domains.forget(app);
    });
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
