// The gate a container passes before it gets work: its process type's checks from the release's
// app.json (for web without any: a TCP connect to $PORT, then `GET /` answered below 500; other
// types without any: none, it only has to be running), probed from berth with the app's Host
// header while the container's state is watched, so a container that exits or restarts fails the
// gate at once instead of at a timeout. The uptime `wait` is the probation after the swap.
import { UserError } from '../errors.ts';
import { log } from '../log.ts';
import { sleep } from '../sleep.ts';
import type { Release } from '../state/app-store.ts';
import type { ResolvedChecks } from '../state/check-settings.ts';
import { NotFoundError, type ContainerState, type Engine } from './engine.ts';
import { checksOf, defaultHealthChecks, runHealthChecks, type CheckAttempt, type HealthCheck } from './health-check.ts';

/** How often the container's state is read while its checks run. */
export const WATCH_INTERVAL_MS = 250;

export interface GateRequest {
  /** What reads the container's state: the engine, or the Swarm's tasks (swarm-deployment.ts). */
  engine: Pick<Engine, 'inspect'>;
  /** The container as started (its address on berth's network is probed; a Swarm task's, at its node's address). */
  container: ContainerState;
  /** web.1, worker.2 ... for messages. */
  dyno: string;
  checks: readonly HealthCheck[];
  /** The port checks probe when they name none: $PORT for web, undefined otherwise. */
  port: number | undefined;
  /** The app's host name, sent as Host. */
  hostHeader: string;
  /** Restarts the container had before the gate: more than these fail it. */
  baselineRestarts?: number;
  signal?: AbortSignal;
  onAttempt?: (attempt: CheckAttempt) => void;
}

/** The checks one container of `type` must pass: app.json's (with checks:set overrides), else the defaults. */
export function checksFor(release: Pick<Release, 'healthchecks'>, type: string, settings: ResolvedChecks): HealthCheck[] {
  const declared = checksOf(release.healthchecks, type).map((c): HealthCheck => (c.kind === 'uptime' ? c : { ...c, attempts: settings.attempts ?? c.attempts, timeoutMs: settings.timeoutMs ?? c.timeoutMs }));
  if (declared.length > 0) return declared;
  return defaultHealthChecks({ listening: type === 'web' });
}

/** The same checks, once each and without delays: for a container that already ran (kept by a scale, adopted at start-up). */
export function quickChecks(checks: readonly HealthCheck[]): HealthCheck[] {
  return checks.map((c) => ({ ...c, attempts: 1, initialDelayMs: 0, waitMs: 0, timeoutMs: c.kind === 'listening' ? 1000 : c.timeoutMs }));
}

/** What probation asks of a container again and again: its checks once each, without the uptime ones (probation is the uptime). */
export function recheckList(checks: readonly HealthCheck[]): HealthCheck[] {
  return quickChecks(checks.filter((c) => c.kind !== 'uptime'));
}

/**
 * Resolves with the container's state once every check passed and it still runs without a new
 * restart. Throws a UserError: `container_exited` when it stopped or restarted meanwhile (with its
 * exit code), `health_check_failed` when a check ran out of attempts; an abort rejects with the
 * signal's reason.
 */
export async function passGate(req: GateRequest): Promise<ContainerState> {
  const { engine, container } = req;
  const baseline = req.baselineRestarts ?? container.restartCount;
  const stop = new AbortController();
  const onOuterAbort = () => stop.abort(req.signal!.reason);
  if (req.signal?.aborted) throw req.signal.reason;
  req.signal?.addEventListener('abort', onOuterAbort, { once: true });
  let exited: UserError | undefined;
  const fail = (state: ContainerState | undefined) => {
    exited = exitedError(state, baseline);
    stop.abort(exited);
  };
  const watching = (async () => {
    while (!stop.signal.aborted) {
      await sleep(WATCH_INTERVAL_MS, stop.signal);
      if (stop.signal.aborted) return;
      const state = await engine.inspect(container.id).catch((e: unknown) => {
        if (e instanceof NotFoundError) return undefined;
        throw e;
      });
      if (!state || !stillUp(state, baseline)) return fail(state);
    }
  })().catch((e: unknown) => {
    // The end of the checks aborts the watcher's sleep: that is no failure.
    if (!stop.signal.aborted) log.warn('health_gate_watch_failed', { container: container.name, error: e });
  });
  try {
    let ip = container.ip;
    if (!ip) {
      // An exited container has no address: say that it exited.
      const state = await engine.inspect(container.id);
      if (!stillUp(state, baseline)) throw exitedError(state, baseline);
      ip = state.ip;
    }
    if (!ip && req.port !== undefined) throw new UserError('container_without_address', `${req.dyno} has no address on berth's network`, { hint: 'check that the Docker network berth uses still exists' });
    await runHealthChecks(
      req.checks,
      {
        host: ip ?? '',
        port: req.port,
        hostHeader: req.hostHeader,
        state: async () => {
          const s = await engine.inspect(container.id);
          return { running: s.running && s.status !== 'restarting', restartCount: s.restartCount - baseline };
        },
      },
      { signal: stop.signal, ...(container.startedAt ? { startedAt: container.startedAt } : {}), ...(req.onAttempt ? { onAttempt: req.onAttempt } : {}) },
    );
    const state = await engine.inspect(container.id);
    if (!stillUp(state, baseline)) throw exitedError(state, baseline);
    return state;
  } catch (e) {
    if (exited) throw exited;
    // An uptime check that saw the container stop says so; the exit code says more.
    if (e instanceof UserError && e.code === 'health_check_failed' && /stopped|restarted/.test(e.message)) {
      const state = await engine.inspect(container.id).catch(() => undefined);
      throw exitedError(state, baseline);
    }
    throw e;
  } finally {
    // The watcher ends at its next turn; an inspect it has in flight is not waited for.
    stop.abort();
    req.signal?.removeEventListener('abort', onOuterAbort);
    void watching;
  }
}

function stillUp(state: ContainerState, baseline: number): boolean {
  return state.running && state.status !== 'restarting' && state.restartCount <= baseline;
}

function exitedError(state: ContainerState | undefined, baseline: number): UserError {
  const hint = 'the app must keep running, and a web process must listen on $PORT on all addresses (0.0.0.0)';
  if (!state) return new UserError('container_exited', 'the container was removed while it was being checked', { hint });
  const how = state.oomKilled ? ', killed: out of memory' : '';
  if (state.restartCount > baseline) {
    // Once restarted, the engine no longer shows the exit code (the log above says why it exited).
    const code = state.running ? '' : ` (exit code ${state.exitCode}${how})`;
    return new UserError('container_exited', `the container exited at start and was restarted${code}`, { hint });
  }
  return new UserError('container_exited', `the container exited at start (status ${state.status}, exit code ${state.exitCode}${how})`, { hint });
}
