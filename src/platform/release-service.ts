// An app's releases end to end: a git push received and deployed, a prebuilt image deployed, a
// config change released, a rollback; each under the app's lock. Also what a release left: its
// build output, the last failed deploy's output.
import path from 'node:path';
import { pushLimitsOf } from '../config.ts';
import { describeForUser, UserError } from '../errors.ts';
import type { ExecSession } from '../git/exec-router.ts';
import { scopeNames, scopeAllows, type KeyRecord } from '../git/key-store.ts';
import { diskBudget, directoryBytes, freeBytes, type DiskBudget } from '../git/disk-budget.ts';
import { receivePush } from '../git/push.ts';
import { cacheVolume } from '../orchestrator/buildpack-builder.ts';
import { Repository } from '../git/repository.ts';
import { log } from '../log.ts';
import { changeConfig, deployImage, imageRefusal, rollback } from '../orchestrator/app-operations.ts';
import type { BuildSource } from '../orchestrator/builder.ts';
import type { Orchestrator } from '../orchestrator/orchestrator.ts';
import type { Release } from '../state/app-store.ts';
import { StreamOutput, type Output } from '../ui/output.ts';
import type { AppLock } from './app-lock.ts';
import { createApp } from './app-service.ts';
import type { DeployFeeds } from './deploy-feeds.ts';
import type { State } from './state.ts';

export class ReleaseService {
  readonly #state: State;
  readonly #locks: AppLock;
  readonly #orchestrator: Orchestrator;
  readonly #feeds: DeployFeeds;

  constructor(deps: { state: State; locks: AppLock; orchestrator: Orchestrator; deploys: DeployFeeds }) {
    this.#state = deps.state;
    this.#locks = deps.locks;
    this.#orchestrator = deps.orchestrator;
    this.#feeds = deps.deploys;
  }

  /**
   * A git push: the whole push holds the app, so refs are advertised only once an earlier push
   * is done with them; a second push is computed against what the first left, and git itself
   * refuses it when it is no longer a fast-forward. The first push of a new name creates the app.
   */
  async push(app: string, session: ExecSession): Promise<void> {
    authorizeApp(session.key, app, this.#state);
    // Standard error is the one place git shows text before the protocol starts.
    const waiting = new StreamOutput((s) => session.stderr(s));
    await this.#locks.run(
      app,
      async () => {
        if (session.signal.aborted) return; // the client gave up while it waited
        // Checked again under the lock: the app may have been created or destroyed meanwhile.
        authorizeApp(session.key, app, this.#state);
        const budget = await this.#diskBudget(app, session);
        if (!this.#state.apps.get(app)) await createApp(this.#state, app, `ssh:${session.key.name}`, 'push');
        const repo = await Repository.open(this.#state.paths.repos, app, { create: true });
        log.info('push_started', { app, key: session.key.name, address: session.address });
        const rules = { limits: pushLimitsOf(this.#state.config), idleTimeoutMs: this.#state.config.pushTimeout, diskBudget: budget };
        await receivePush({ input: session.channel, output: session.channel }, repo, rules, (commit, out) => this.#deployPushed(app, repo, commit, session, out));
      },
      () => {
        waiting.step(`Another push to ${app} is running; waiting for it to finish`);
        log.info('push_waiting', { app, key: session.key.name, address: session.address });
      },
    );
  }

  /** Deploys an image the engine already has as the app's next release. */
  deployImage(app: string, image: string, options: { by: string; out: Output; allowed?: readonly string[] }): Promise<Release> {
    this.#state.apps.require(app);
    return this.#locks.exclusive(app, options.out, () => this.#fed(app, options, (out) => deployImage(this.#orchestrator, app, image, { ...options, out })));
  }

  /** Why `app` may not use `image` as its stack when the caller is limited to apps (see imageRefusal). */
  stackRefusal(app: string, image: string, allowed: readonly string[]): Promise<string | undefined> {
    return imageRefusal(this.#orchestrator.engine, app, image, allowed, { own: false });
  }

  /** Brings back release `number` (default: the one before the current) as a new release. */
  rollback(app: string, number: number | undefined, options: { by: string; out: Output }): Promise<Release> {
    return this.#locks.exclusive(app, options.out, () => this.#fed(app, options, (out) => rollback(this.#orchestrator, app, number, { ...options, out })));
  }

  /** Runs a deploy of `app` with its output also on the app's deploy feed, which ends with its result. */
  #fed(app: string, options: { by: string; out: Output }, deploy: (out: Output) => Promise<Release>): Promise<Release> {
    return this.#feeds.run(app, options.by, options.out, deploy, (release) => release.number);
  }

  /** Stores a config change; with `restart`, releases and deploys it. */
  async changeConfig(app: string, change: { set?: Record<string, string>; unset?: string[] }, options: { restart: boolean; by: string; out: Output }): Promise<void> {
    this.#state.apps.require(app);
    await this.#locks.exclusive(app, options.out, () =>
      options.restart
        ? this.#feeds.run(app, options.by, options.out, (out) => changeConfig(this.#orchestrator, app, change, { ...options, out }), () => this.#state.apps.get(app)?.current ?? null)
        : changeConfig(this.#orchestrator, app, change, options),
    );
    log.info('config_changed', { app, set: Object.keys(change.set ?? {}), unset: change.unset ?? [], by: options.by });
  }

  /** Whether a release's image is still on the engine (old ones are pruned). */
  imageExists(image: string): Promise<boolean> {
    return this.#orchestrator.engine.imageExists(image);
  }

  /** The build and deploy output kept for a release, if any. */
  output(app: string, release: number): Promise<string | undefined> {
    return this.#orchestrator.buildLogs.readRelease(app, release);
  }

  /** The output of the app's newest failed deploy, if any is kept. */
  lastFailed(app: string): Promise<{ at: string; text: string } | undefined> {
    return this.#orchestrator.buildLogs.lastFailed(app);
  }


  /**
   * What a push to `app` may add to the disk (its quota less its repository and build cache, the
   * free space less what berth keeps); refuses the push up front, before it creates anything,
   * when nothing is left.
   */
  async #diskBudget(app: string, session: ExecSession): Promise<DiskBudget> {
    const { config, paths } = this.#state;
    const engine = this.#orchestrator.engine;
    try {
      return diskBudget(app, { appQuotaBytes: config.appDiskQuota, minFreeBytes: config.minFreeDisk }, {
        repositoryBytes: await directoryBytes(path.join(paths.repos, `${app}.git`)),
        cacheBytes: await engine.volumeBytes(cacheVolume(engine.instance, app)),
        freeBytes: await freeBytes(paths.root),
      });
    } catch (e) {
      if (e instanceof UserError) log.warn('push_refused', { app, key: session.key.name, reason: e.code, error: e.message });
      throw e;
    }
  }

  /** The deploy step of a push: the reason for `! [remote rejected]` when it fails. */
  async #deployPushed(app: string, repo: Repository, commit: string, session: ExecSession, out: Output): Promise<string | undefined> {
    // Objects are inflated and resolved in a child process, under the push's caps.
    const contents = repo.contents(pushLimitsOf(this.#state.config));
    const source: BuildSource = {
      app,
      commit,
      readFile: (p) => contents.readFile(commit, p),
      archive: () => contents.archive(commit),
    };
    const feed = this.#feeds.begin(app, session.key.name);
    const fed = feed.output(out);
    try {
      const release = await this.#orchestrator.deploy({ source, pushedBy: session.key.name, out: fed, signal: session.signal });
      log.info('push_deployed', { app, commit, key: session.key.name });
      feed.end({ ok: true, release: release.number });
      return undefined;
    } catch (e) {
      const { lines } = describeForUser(e, `deploy of ${app}`);
      for (const line of lines) fed.error(line);
      fed.error(`${app} was not deployed; the previous release keeps serving`);
      feed.end({ ok: false, error: lines[0] ?? 'deploy failed' });
      if (session.signal.aborted) log.warn('push_cancelled', { app, commit, key: session.key.name, reason: 'the client disconnected' });
      else log.warn('push_deploy_failed', { app, commit, key: session.key.name, error: (e as Error).message });
      return lines[0] ?? 'deploy failed';
    } finally {
      contents.close();
    }
  }
}

function authorizeApp(key: KeyRecord, app: string, state: State): void {
  if (!scopeAllows(key, app, state.apps.get(app))) {
    log.warn('push_refused', { key: key.name, app, reason: 'scope' });
    throw new UserError('forbidden', `key "${key.name}" may not push to ${app}: it is limited to the apps ${scopeNames(key.apps ?? [], (id) => state.apps.byId(id)?.name).join(', ')}`);
  }
}
