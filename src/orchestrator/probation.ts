// The probation after a swap: the new containers serve while the old ones stay running, out of
// the route, for the app's uptime `wait`. A new container that exits, restarts, is removed, turns
// unhealthy or fails its checks again meanwhile sends the route straight back to the old
// containers (in the same tick as the engine's event), the new ones are drained and removed, and
// the deploy fails with the reason and their last log lines. A clean probation leaves the old
// containers to retireOthers. The release record is only written once probation passed, so a
// daemon that restarts meanwhile adopts the old release and removes the unfinished one.
import { UserError } from '../errors.ts';
import { log, sharedClockMs } from '../log.ts';
import { sleep } from '../sleep.ts';
import type { Target } from '../proxy/route-table.ts';
import { checkSettingsOf, dynoEngine, probePort, processContainers, type DeployContext, type Deployed, type DrainResult, type ProcessPlan } from './deployment.ts';
import { LABEL, NotFoundError, type ContainerEvent, type ContainerState, type Subscription } from './engine.ts';
import { probeOnce } from './health-check.ts';
import { checksFor, recheckList } from './health-gate.ts';

/** How often a container on probation is inspected and its checks asked again (events come at once; this covers a lost event stream). */
export const RECHECK_INTERVAL_MS = 1_000;
/** A check fails probation when it fails this many rechecks in a row (one slow answer under load is no failure). */
export const RECHECK_FAILURES = 3;

/** The engine's events about some containers, as they arrive. */
export interface ContainerWatcher {
  /** Calls `onEvent` synchronously for every event about one of `ids`, until stopped. */
  watch(ids: readonly string[], onEvent: (event: ContainerEvent) => void): Subscription;
}

/** A probation under way, for reports (ps:report). */
export interface ProbationState {
  app: string;
  /** The release on probation (it serves). */
  release: number;
  /** When it began and when it ends, ms since the epoch. */
  since: number;
  until: number;
  /** Containers on probation. */
  containers: string[];
  /** Old containers kept running out of the route, and the release each runs. */
  warm: Array<{ name: string; release: number | undefined }>;
}

/** Where probations are shown while they run. */
export interface ProbationBoard {
  begin(state: ProbationState): void;
  end(app: string): void;
}

/** What a drain of the old web targets found, and when (after the swap) it ended. */
export type OldDrain = DrainResult & { sinceSwapMs: number };

export interface Proven {
  /** Set when the app's drain-timeout ran out during probation and the old targets were drained then. */
  drained?: Promise<OldDrain>;
}

/**
 * Watches the new containers of `deployed` for the app's `wait` after the swap. Resolves when they
 * all lived through it. On a failure the route goes back to what it was before the swap at once,
 * the new containers are drained and removed, their last log lines printed, and a UserError
 * (`probation_failed`) is thrown. Process types with checks skipped or disabled are not watched;
 * with nothing to watch, or a wait of 0, there is no probation.
 */
export async function prove(ctx: DeployContext, plan: ProcessPlan, deployed: Deployed): Promise<Proven> {
  const app = plan.name;
  const checks = checkSettingsOf(ctx, plan);
  const watched = deployed.started.filter((c) => {
    const type = c.labels[LABEL.process] ?? '';
    return !checks.isSkipped(type) && !checks.isDisabled(type);
  });
  if (watched.length === 0 || checks.waitMs <= 0) return {};
  const keep = new Set(deployed.containers.map((c) => c.id));
  // Only for messages and reports: an engine that does not answer now changes nothing else.
  const warm = (await processContainers(dynoEngine(ctx), app).catch(() => [])).filter((c) => !keep.has(c.id) && c.running);
  const version = `v${plan.release.number}`;
  const since = Date.now();
  ctx.out.step(`${deployed.routed.length > 0 ? 'Serving' : 'Running'} ${version}; ${warm.length > 0 ? `keeping ${describeWarm(warm, plan.release.number)} ready` : 'watching it'} for ${seconds(checks.waitMs)}`);
  ctx.board?.begin({
    app,
    release: plan.release.number,
    since,
    until: since + checks.waitMs,
    containers: watched.map((c) => c.name),
    warm: warm.map((c) => ({ name: c.name, release: releaseOf(c) })),
  });
  log.info('probation_started', { app, release: plan.release.number, waitMs: checks.waitMs, containers: watched.map((c) => c.name), warm: warm.map((c) => c.name) });

  const stop = new AbortController();
  let failure: Failure | undefined;
  const fail = (container: ContainerState, reason: string, event?: ContainerEvent) => {
    if (failure) return;
    // The swap back: one publish of the route as it was before the swap, before anything is awaited.
    ctx.publisher.publish(app, ctx.hostnames, [...deployed.before]);
    failure = { container, reason, event, mono: performance.now() };
    log.info('probation_failed', {
      app,
      release: plan.release.number,
      container: container.name,
      reason,
      mono: sharedClockMs(),
      ...(event ? { engineTime: new Date(event.at).toISOString(), lagMs: Math.round((Date.now() - event.at) * 10) / 10 } : {}),
      routedBack: deployed.before.map((t) => t.id),
    });
    stop.abort(new Error('probation failed'));
  };
  const byId = new Map(watched.map((c) => [c.id, c]));
  const subscription = ctx.watcher?.watch([...byId.keys()], (event) => {
    const c = byId.get(event.id);
    if (c) {
      const reason = eventReason(event);
      if (reason) fail(c, reason, event);
    }
  });
  let drained: Promise<OldDrain> | undefined;
  const drainTimer =
    deployed.replaced.length > 0
      ? setTimeout(() => {
          // The old release's WebSockets had their grace from the swap on; probation does not lengthen it.
          drained = drainOld(ctx, deployed, 0, 'the app was redeployed');
        }, Math.max(0, checks.drainTimeoutMs - (performance.now() - deployed.swappedAt)))
      : undefined;
  try {
    await Promise.race([
      sleep(checks.waitMs, stop.signal),
      ...watched.map((c) => recheck(ctx, plan, c, stop.signal, fail)),
    ]).catch((e: unknown) => {
      if (!stop.signal.aborted) throw e;
    });
  } finally {
    stop.abort();
    subscription?.stop();
    clearTimeout(drainTimer);
    ctx.board?.end(app);
  }
  if (!failure) {
    log.info('probation_passed', { app, release: plan.release.number, mono: sharedClockMs() });
    return drained ? { drained } : {};
  }
  return rollBack(ctx, plan, deployed, failure, warm);
}

/**
 * Drains the old web targets of `deployed` (already out of the route) with `deadlineMs` left,
 * and says when, counted from the swap, the drain ended.
 */
export function drainOld(ctx: DeployContext, deployed: Deployed, deadlineMs: number, reason: string): Promise<OldDrain> {
  return ctx.publisher.drain(deployed.replaced, { deadlineMs, reason }).then((r) => ({ ...r, sinceSwapMs: performance.now() - deployed.swappedAt }));
}

// ---------------------------------------------------------------------------------------------

interface Failure {
  container: ContainerState;
  reason: string;
  event: ContainerEvent | undefined;
  /** performance.now() at the swap back. */
  mono: number;
}

/** After the swap back: the new containers are drained and removed, the failing one's log printed, and the failure thrown. */
async function rollBack(ctx: DeployContext, plan: ProcessPlan, deployed: Deployed, failure: Failure, warm: readonly ContainerState[]): Promise<never> {
  const app = plan.name;
  const checks = checkSettingsOf(ctx, plan);
  const dyno = failure.container.labels[LABEL.dyno] ?? failure.container.name;
  const engine = dynoEngine(ctx);
  const state = await engine.inspect(failure.container.id).catch(() => undefined);
  const what = `${dyno} ${failure.reason}${exitDetail(state, failure.event)} ${((failure.mono - deployed.swappedAt) / 1000).toFixed(1)} s after v${plan.release.number} was routed`;
  const back = warm.length > 0 ? `; routed back to ${describeWarm(warm, plan.release.number)}` : deployed.before.length === 0 ? '; the app has no route now' : '';
  const logs = await engine.logs(failure.container.id, 50).catch(() => '');
  const started = new Set(deployed.started.map((c) => c.name));
  const newTargets: Target[] = deployed.routed.filter((t) => started.has(t.id));
  if (newTargets.length > 0) {
    await ctx.publisher.drain(newTargets, { deadlineMs: checks.drainTimeoutMs, reason: 'the new release failed its probation' }).catch((e) => log.warn('probation_drain_failed', { app, error: e }));
  }
  await Promise.all(deployed.started.map((c) => engine.stopAndRemove(c.id, 0).catch((e) => log.warn('container_remove_failed', { id: c.id, error: e }))));
  if (logs.trim()) {
    ctx.out.error(`the last lines ${dyno} wrote:`);
    ctx.out.detail(logs.trimEnd());
  }
  throw new UserError('probation_failed', `${what}${back}`, {
    hint: `the new containers were removed and the previous release keeps serving; fix the app (its log is above) and deploy again${checks.waitMs > 0 ? ` (probation: checks:set ${app} wait N)` : ''}`,
  });
}

/**
 * Every RECHECK_INTERVAL_MS: the container must still run without a new restart (in case an event
 * was missed), and its checks (uptime ones aside) must not fail RECHECK_FAILURES times in a row.
 * Never resolves on its own; ends with the signal.
 */
async function recheck(ctx: DeployContext, plan: ProcessPlan, container: ContainerState, signal: AbortSignal, fail: (c: ContainerState, reason: string) => void): Promise<void> {
  const type = container.labels[LABEL.process] ?? 'web';
  const list = recheckList(checksFor(plan.release, type, checkSettingsOf(ctx, plan)));
  const failures = new Map<string, number>();
  const target = { host: container.ip ?? '', port: probePort(container, type), hostHeader: ctx.hostnames[0] ?? plan.name };
  for (;;) {
    await sleep(RECHECK_INTERVAL_MS, signal);
    try {
      const state = await dynoEngine(ctx).inspect(container.id).catch((e: unknown) => {
        if (e instanceof NotFoundError) return undefined;
        throw e;
      });
      if (signal.aborted) return;
      if (!state) return fail(container, 'was removed');
      if (!state.running || state.status === 'restarting') return fail(container, 'exited');
      if (state.restartCount > container.restartCount) return fail(container, 'restarted');
      for (const check of list) {
        const result = await probeOnce(check, target, Date.now(), signal);
        if (signal.aborted) return;
        const n = result.ok ? 0 : (failures.get(check.name) ?? 0) + 1;
        failures.set(check.name, n);
        if (n >= RECHECK_FAILURES) return fail(container, `failed its check "${check.name}" ${n} times in a row (${result.detail})`);
      }
    } catch (e) {
      if (signal.aborted) return;
      // The engine not answering once says nothing about the container; the next turn asks again.
      log.warn('probation_recheck_failed', { container: container.name, error: e });
    }
  }
}

function eventReason(event: ContainerEvent): string | undefined {
  switch (event.change) {
    case 'died':
      return event.reason === 'oom' ? 'ran out of memory' : 'exited';
    case 'removed':
      return 'was removed';
    case 'unhealthy':
      return "was reported unhealthy by its image's HEALTHCHECK";
    case 'started': // a restart comes after a die, which already failed it
    case 'healthy':
      return undefined;
  }
}

function exitDetail(state: ContainerState | undefined, event: ContainerEvent | undefined): string {
  // A restart policy may have started it again since: the die event kept the code.
  if (event?.exitCode !== undefined) return ` (exit code ${event.exitCode}${state?.oomKilled ? ', out of memory' : ''})`;
  if (!state || state.running) return '';
  return ` (exit code ${state.exitCode}${state.oomKilled ? ', out of memory' : ''})`;
}

/** `10 s`, `0.4 s`: how the deploy output says durations. */
function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}

function releaseOf(c: ContainerState): number | undefined {
  const r = c.labels[LABEL.release];
  return r === undefined ? undefined : Number(r);
}

/** `v4`, `v3 and v4`, or `the old containers` when they run the same release as the new ones. */
function describeWarm(warm: readonly ContainerState[], release: number): string {
  const releases = [...new Set(warm.map(releaseOf))].filter((r): r is number => r !== undefined && r !== release).sort((a, b) => a - b);
  if (releases.length === 0) return `the old container${warm.length === 1 ? '' : 's'}`;
  return releases.map((r) => `v${r}`).join(' and ');
}
