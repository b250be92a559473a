// An app's running processes end to end: scale, restart, stop, start, a change of limits or
// mounts, each under the app's lock; and what runs now: the report, the checks, the logs, and
// one-off processes.
import { log } from '../log.ts';
import { writeAppLogs, type LogOptions } from '../orchestrator/app-logs.ts';
import { changeSettings, processReport, restart, runChecks, scale, start, stop, type ProcessReport } from '../orchestrator/app-operations.ts';
import { runOneOff, type OneOffIo } from '../orchestrator/one-off.ts';
import type { Orchestrator } from '../orchestrator/orchestrator.ts';
import type { AppRecord } from '../state/app-store.ts';
import type { Output } from '../ui/output.ts';
import type { AppLock } from './app-lock.ts';
import type { DeployFeeds } from './deploy-feeds.ts';
import type { State } from './state.ts';

export class ProcessService {
  readonly #state: State;
  readonly #locks: AppLock;
  readonly #orchestrator: Orchestrator;
  readonly #feeds: DeployFeeds;

  constructor(deps: { state: State; locks: AppLock; orchestrator: Orchestrator; deploys: DeployFeeds }) {
    this.#feeds = deps.deploys;
    this.#state = deps.state;
    this.#locks = deps.locks;
    this.#orchestrator = deps.orchestrator;
  }

  /** Sets how many containers of each type run, and brings the running app to it. */
  scale(app: string, counts: Record<string, number>, out: Output, by: string): Promise<void> {
    return this.#locks.exclusive(app, out, () => this.#feeds.run(app, by, out, (fed) => scale(this.#orchestrator, app, counts, fed), () => this.#current(app)));
  }

  restart(app: string, options: { by: string; out: Output }): Promise<void> {
    return this.#locks.exclusive(app, options.out, () => this.#feeds.run(app, options.by, options.out, (out) => restart(this.#orchestrator, app, { ...options, out }), () => this.#current(app)));
  }

  #current(app: string): number | null {
    return this.#state.apps.get(app)?.current ?? null;
  }

  stop(app: string, out: Output): Promise<void> {
    return this.#locks.exclusive(app, out, () => stop(this.#orchestrator, app, out));
  }

  start(app: string, out: Output): Promise<void> {
    return this.#locks.exclusive(app, out, () => start(this.#orchestrator, app, out));
  }

  /** Stores a change of limits or mounts; with `restart`, starts the processes afresh with it. */
  /** The scheduler apps run on (--scheduler). */
  get scheduler(): 'docker' | 'swarm' {
    return this.#orchestrator.scheduler;
  }

  changeSettings(app: string, change: (a: AppRecord) => void, options: { restart: boolean; out: Output }): Promise<void> {
    this.#state.apps.require(app);
    return this.#locks.exclusive(app, options.out, () => changeSettings(this.#orchestrator, app, change, options));
  }

  report(app: string): Promise<ProcessReport> {
    this.#state.apps.require(app);
    return processReport(this.#orchestrator, app);
  }

  /** Runs the current release's checks against the running containers (all, a type, or a dyno). */
  runChecks(app: string, which: string | undefined, options: { out: Output; signal: AbortSignal }): Promise<void> {
    this.#state.apps.require(app);
    return runChecks(this.#orchestrator, app, which, options);
  }

  /** Writes the app's log lines, every container interleaved; follows them with `options.follow`. A promise from `write` holds the logs back until it settles. */
  logs(app: string, options: LogOptions, write: (line: string) => void | Promise<void>, signal: AbortSignal): Promise<void> {
    this.#state.apps.require(app);
    return writeAppLogs(this.#orchestrator.dynos, app, options, write, signal);
  }

  /** A one-off process of the current release; resolves to its exit status. */
  run(app: string, words: readonly string[], io: OneOffIo & { by: string }): Promise<number> {
    this.#state.apps.require(app);
    log.info('run_requested', { app, by: io.by, words: words.length });
    const { by: _by, ...streams } = io;
    return runOneOff(this.#orchestrator, app, words, streams);
  }

}
