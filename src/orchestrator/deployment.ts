// One deploy of one release, kamal-proxy's way: start every new container the formation asks for,
// health-gate all of them, swap the app's route to the new web targets in one publish(), keep the
// old containers running out of the route while the new ones are on probation (probation.ts), then
// (retireOthers) drain the old targets until the app's drain-timeout after the swap and stop the
// old containers, SIGTERM then SIGKILL after its stop-timeout. A failed gate removes the new
// containers and leaves the route and the old containers untouched.
//
// On the swarm scheduler (ctx.swarm) the same steps run on Swarm services instead of containers:
// deployRelease and retireOthers hand over to swarm-deployment.ts, whose tasks look like
// containers to the rest (ContainerState with the node's address and the published port), so the
// gate, the swap, probation and the drain here are the ones both schedulers share.
import { randomBytes } from 'node:crypto';
import type { Output } from '../ui/output.ts';
import { shellWords } from '../ui/shell-words.ts';
import { UserError } from '../errors.ts';
import { log, sharedClockMs } from '../log.ts';
import type { Target } from '../proxy/route-table.ts';
import type { AppRecord, Release } from '../state/app-store.ts';
import type { ResourceLimit } from '../state/app-settings.ts';
import { formatMs, resolveChecks, type ResolvedChecks } from '../state/check-settings.ts';
import { buildpackProcessCmd } from './buildpack-scripts.ts';
import { APP_CAPABILITIES, LABEL, type ContainerSpec, type ContainerState, type Engine, type NetworkOptions } from './engine.ts';
import type { CheckAttempt } from './health-check.ts';
import { checksFor, passGate, quickChecks } from './health-gate.ts';
import { drainOld, type ContainerWatcher, type OldDrain, type ProbationBoard, type Proven } from './probation.ts';
import { deployOnSwarm, type SwarmDeploy } from './swarm-deployment.ts';

/** The port every web process listens on, given to it as $PORT (Heroku's and Dokku's 5000). */
export const WEB_PORT = 5000;

/** What a drain of swapped-out targets found. */
export interface DrainResult {
  waitedMs: number;
  /** Requests still in flight at the deadline. */
  requestsLeft: number;
  /** WebSockets closed (cleanly) at the deadline. */
  tunnelsClosed: number;
}

/** How the orchestrator reaches the edge proxy. */
export interface RoutePublisher {
  /**
   * Replaces the app's routing in one synchronous swap. `standby` targets get only the requests
   * every target refused or reset (the old release while the new one is on probation).
   */
  publish(app: string, hostnames: string[], targets: Target[], standby?: Target[]): void;
  unpublish(app: string): void;
  /** The web targets the app is routed to now ([] when none). */
  routed(app: string): readonly Target[];
  /** The app's standby targets now ([] when none). */
  standby(app: string): readonly Target[];
  /**
   * For targets already swapped out: waits until their requests in flight finish (up to
   * `deadlineMs`), then closes their WebSockets with a close frame to both sides.
   */
  drain(targets: readonly Target[], options: { deadlineMs: number; reason: string }): Promise<DrainResult>;
}

export interface DeployContext {
  engine: Engine;
  /** The app's own network (created when missing): its containers start on it. */
  network: string;
  /**
   * How that network is made: an attachable overlay on the swarm scheduler (the app's tasks join it
   * on every node, under the alias APP.TYPE, beside its linked services' containers), else a bridge.
   */
  networkOptions?: NetworkOptions;
  /** The limits of a container whose app sets none (--container-memory, --container-pids). */
  defaultLimit?: ResourceLimit;
  publisher: RoutePublisher;
  hostnames: string[];
  out: Output;
  /** The probation of new containers when the app sets no `wait` (--checks-wait), ms. */
  checksWaitMs: number;
  /** The engine's events about containers on probation; without it, probation polls their state. */
  watcher?: ContainerWatcher;
  /** Told when a probation begins and ends. */
  board?: ProbationBoard;
  /** Runs before the first new container starts: the app's linked services are up and accept connections. */
  prepare?: (out: Output) => Promise<void>;
  /** On the swarm scheduler: the app's processes are Swarm services (swarm-deployment.ts), not containers of `engine`. */
  swarm?: SwarmDeploy;
}

/** What the deploy path asks of where dynos run: the engine's containers, or a Swarm's tasks seen as containers. */
export type DynoEngine = Pick<Engine, 'inspect' | 'logs' | 'followLogs' | 'stopAndRemove' | 'list'>;

/** The engine of `ctx`'s dynos: the Swarm's tasks on the swarm scheduler, else the Docker engine. */
export function dynoEngine(ctx: Pick<DeployContext, 'engine' | 'swarm'>): DynoEngine {
  return ctx.swarm?.dynos ?? ctx.engine;
}

/** One container the formation wants: web.1, web.2, worker.1 ... */
export interface Dyno {
  type: string;
  index: number;
  /** `type.index`, the DYNO variable and label. */
  name: string;
  command: string;
}

/** What runs for an app: the release, how many of each type, and the settings containers get. */
export type ProcessPlan = Pick<AppRecord, 'name' | 'formation' | 'limits' | 'mounts' | 'checks'> & { release: Release };

export interface Deployed {
  /** Every container of the new formation, kept or new. */
  containers: ContainerState[];
  /** The containers this deploy started (and gated), in dyno order; the others were kept. */
  started: ContainerState[];
  /** Web targets routed before the swap and not after it: retireOthers drains them. */
  replaced: Target[];
  /** The app's web targets before the swap (where a failed probation routes back to), and after it. */
  before: Target[];
  routed: Target[];
  /** performance.now() at the swap: the old targets' drain-timeout counts from it. */
  swappedAt: number;
}

/** The dynos of a release under a formation: a type not scaled runs once if it is web, else not at all. */
export function dynosOf(release: Release, formation: Record<string, number>): Dyno[] {
  const dynos: Dyno[] = [];
  for (const [type, command] of Object.entries(release.processTypes)) {
    const count = formation[type] ?? (type === 'web' ? 1 : 0);
    for (let i = 1; i <= count; i++) dynos.push({ type, index: i, name: `${type}.${i}`, command });
  }
  return dynos;
}

export function checkSettingsOf(ctx: Pick<DeployContext, 'checksWaitMs'>, plan: Pick<ProcessPlan, 'checks'>): ResolvedChecks {
  return resolveChecks(plan.checks, { waitMs: ctx.checksWaitMs });
}

/**
 * Brings the app to `plan` up to the swap: starts every dyno (with `reuse`, a running container
 * of the same release and dyno that still passes its checks once is kept instead), gates every new
 * one, then routes to all web containers in one publish() call. The old containers are left for
 * retireOthers. When a gate fails, the new containers are removed and the error (with the failing
 * container's last log lines printed) is thrown; routing and the old containers are untouched.
 */
export async function deployRelease(ctx: DeployContext, plan: ProcessPlan, options: { reuse: boolean }): Promise<Deployed> {
  if (ctx.swarm) return deployOnSwarm(ctx, ctx.swarm, plan, options);
  const app = plan.name;
  const release = plan.release;
  const checks = checkSettingsOf(ctx, plan);
  const dynos = dynosOf(release, plan.formation);
  const existing = await processContainers(ctx.engine, app);
  const kept = options.reuse ? await keepRunning(ctx, plan, checks, dynos, existing) : new Map<string, ContainerState>();
  const keptIds = new Set([...kept.values()].map((c) => c.id));
  await stopDisabledFirst(ctx, app, checks, existing.filter((c) => !keptIds.has(c.id)));
  const toStart = dynos.filter((d) => !kept.has(d.name));
  const entrypoint = toStart.some((d) => d.command !== '') ? ((await ctx.engine.imageConfig(release.image))?.entrypoint ?? []) : [];
  const started: Started[] = [];
  if (toStart.length > 0) {
    await ctx.prepare?.(ctx.out);
    await ctx.engine.ensureNetwork(ctx.network, { [LABEL.app]: app }, ctx.networkOptions);
  }
  try {
    for (const dyno of toStart) {
      ctx.out.step(`Starting ${dyno.name} (release v${release.number})`);
      const limit = limitFor(plan.limits, dyno.type, ctx.defaultLimit);
      const state = await ctx.engine.run({
        name: `${app}.${dyno.name}.r${release.number}.${randomBytes(2).toString('hex')}`,
        image: release.image,
        env: { ...release.config, ...(dyno.type === 'web' ? { PORT: String(WEB_PORT) } : {}), DYNO: dyno.name },
        labels: { [LABEL.app]: app, [LABEL.process]: dyno.type, [LABEL.release]: String(release.number), [LABEL.dyno]: dyno.name, [LABEL.role]: 'process' },
        network: ctx.network,
        aliases: [`${app}.${dyno.name}`],
        ...commandFor(release, dyno.command, entrypoint, dyno.type),
        ...limitSpec(limit),
        binds: plan.mounts,
      });
      started.push({ dyno, state });
    }
    const ready = await gateAll(ctx, plan, checks, started);
    return swapRoutes(ctx, plan, [...kept.values(), ...ready], ready, 'container');
  } catch (e) {
    await Promise.all(started.map((s) => ctx.engine.stopAndRemove(s.state.id, 0).catch((err) => log.warn('container_remove_failed', { id: s.state.id, error: err }))));
    throw e;
  }
}

/**
 * The swap: routes the app to the web targets of `containers` (the new formation, kept and
 * started) in one publish, the targets it replaces standing by behind them until retired.
 */
export function swapRoutes(ctx: DeployContext, plan: ProcessPlan, containers: ContainerState[], started: readonly ContainerState[], noun: string): Deployed {
  const app = plan.name;
  const release = plan.release;
  const targets = webTargets(containers);
  const before = [...ctx.publisher.routed(app)];
  const replaced = before.filter((t) => !targets.some((n) => n.id === t.id && n.host === t.host && n.port === t.port));
  // The swap: one synchronous assignment of the app's whole new target set. The old targets
  // stay behind it as standby until they are retired: a request the new ones refuse goes there.
  ctx.publisher.publish(app, ctx.hostnames, targets, replaced);
  const swappedAt = performance.now();
  log.info('route_swapped', {
    app,
    release: release.number,
    mono: sharedClockMs(),
    added: targets.filter((t) => !before.some((b) => b.id === t.id)).map((t) => t.id),
    removed: before.filter((b) => !targets.some((t) => t.id === b.id)).map((b) => b.id),
  });
  if (targets.length) ctx.out.step(`Routing ${ctx.hostnames.join(', ')} to ${targets.length} web ${noun}${targets.length === 1 ? '' : 's'} of release v${release.number}`);
  return { containers, started: [...started].sort(byDyno), replaced, before, routed: targets, swappedAt };
}

/**
 * After a swap (and a clean probation): drains the replaced web targets (requests in flight
 * finish, WebSockets keep their grace until the app's drain-timeout after the swap and are then
 * closed cleanly; `proven.drained` when that time came during probation), then stops the app's
 * process containers that are not in the new formation: SIGTERM, SIGKILL after the app's stop-timeout.
 */
export async function retireOthers(ctx: DeployContext, plan: ProcessPlan, deployed: Deployed, proven: Proven = {}): Promise<void> {
  const checks = checkSettingsOf(ctx, plan);
  const keep = new Set(deployed.containers.map((c) => c.id));
  if (deployed.replaced.length > 0) {
    const n = deployed.replaced.length;
    ctx.out.step(`Draining ${n} old web container${n === 1 ? '' : 's'} (up to ${formatMs(checks.drainTimeoutMs)} after the swap)`);
    const left = Math.max(0, checks.drainTimeoutMs - (performance.now() - deployed.swappedAt));
    const report: OldDrain = await (proven.drained ?? drainOld(ctx, deployed, left, 'the app is being redeployed'));
    log.info('old_release_drained', { app: plan.name, release: plan.release.number, sinceSwapMs: Math.round(report.sinceSwapMs), tunnelsClosed: report.tunnelsClosed, requestsLeft: report.requestsLeft });
    if (report.tunnelsClosed > 0) ctx.out.detail(`closed ${report.tunnelsClosed} WebSocket${report.tunnelsClosed === 1 ? '' : 's'} ${(report.sinceSwapMs / 1000).toFixed(1)}s after the swap`);
    if (report.requestsLeft > 0) ctx.out.detail(`${report.requestsLeft} request${report.requestsLeft === 1 ? ' was' : 's were'} still running at the deadline`);
    // They stop next: no longer standby either.
    if (ctx.publisher.standby(plan.name).length > 0) ctx.publisher.publish(plan.name, ctx.hostnames, [...ctx.publisher.routed(plan.name)]);
  }
  if (ctx.swarm) return ctx.swarm.retire(ctx, plan, deployed.containers, checks);
  const old = (await processContainers(ctx.engine, plan.name)).filter((c) => !keep.has(c.id));
  await stopContainers(ctx, plan.name, old, checks);
}

/** The route targets of the web containers among `containers` (those with an address), in dyno order. */
export function webTargets(containers: readonly ContainerState[]): Target[] {
  return containers
    .filter((c) => c.labels[LABEL.process] === 'web' && c.ip)
    .sort(byDyno)
    .map((c): Target => ({ id: c.name, host: c.ip!, port: c.port ?? WEB_PORT }));
}

/** Natural dyno order, by process type and then by number: web.2 before web.10. */
export function byDyno(a: ContainerState, b: ContainerState): number {
  return compareDynos(a.labels[LABEL.dyno] ?? a.name, b.labels[LABEL.dyno] ?? b.name);
}

export function compareDynos(a: string, b: string): number {
  const [ta, na] = splitDyno(a);
  const [tb, nb] = splitDyno(b);
  if (ta !== tb) return ta < tb ? -1 : 1;
  return Number(na) - Number(nb) || (na < nb ? -1 : na > nb ? 1 : 0);
}

/** The app's dyno containers (not one-offs, not builds), running or not. */
export async function processContainers(engine: Pick<Engine, 'list'>, app: string): Promise<ContainerState[]> {
  const all = await engine.list({ [LABEL.app]: app });
  return all.filter((c) => (c.labels[LABEL.role] ?? 'process') === 'process');
}

/**
 * The Cmd (and Entrypoint) that runs a process type's command in the release's image. Buildpack
 * images start it with `/start TYPE`; other images run it with /bin/sh -c, or as words after
 * their own entrypoint. '' keeps the image's command.
 */
export function commandFor(release: Pick<Release, 'builder'>, command: string, imageEntrypoint: readonly string[], type = 'web'): { cmd?: string[] } {
  if (command === '') return {};
  if (release.builder === 'buildpacks') return { cmd: buildpackProcessCmd(imageEntrypoint, type, command) };
  if (imageEntrypoint.length > 0) return { cmd: shellWords(command) };
  return { cmd: ['/bin/sh', '-c', command] };
}

/** The limits of a process type: its own, else the app's default (`*`), each one missing taken from the server's `defaults`. */
export function limitFor(limits: Record<string, ResourceLimit>, type: string, defaults: ResourceLimit = {}): ResourceLimit {
  return { ...defaults, ...(limits[type] ?? limits['*'] ?? {}) };
}

/** What a container spec says of a limit, with the capabilities every app container keeps. */
export function limitSpec(limit: ResourceLimit): Pick<ContainerSpec, 'memory' | 'cpus' | 'pids' | 'capabilities'> {
  return {
    ...(limit.memory ? { memory: limit.memory } : {}),
    ...(limit.cpus ? { cpus: limit.cpus } : {}),
    ...(limit.pids ? { pids: limit.pids } : {}),
    capabilities: APP_CAPABILITIES,
  };
}

/** The port a process type's checks probe when they name none. */
export function checkPort(type: string): number | undefined {
  return type === 'web' ? WEB_PORT : undefined;
}

/** Where checks reach `container`'s $PORT when they name no port: a Swarm task's published port, else $PORT itself. */
export function probePort(container: Pick<ContainerState, 'port'>, type: string): number | undefined {
  return type === 'web' ? (container.port ?? WEB_PORT) : undefined;
}

// ---------------------------------------------------------------------------------------------

export interface Started {
  dyno: Dyno;
  state: ContainerState;
}

/**
 * Gates every started container at once. The first failure aborts the others' checks, prints the
 * failing container's last 50 log lines and is thrown, named after its dyno.
 */
export async function gateAll(ctx: DeployContext, plan: ProcessPlan, checks: ResolvedChecks, started: readonly Started[]): Promise<ContainerState[]> {
  const abort = new AbortController();
  let failure: { s: Started; error: unknown } | undefined;
  const hostHeader = ctx.hostnames[0] ?? plan.name;
  const ready = await Promise.all(
    started.map(async (s): Promise<ContainerState> => {
      const { dyno } = s;
      if (checks.isDisabled(dyno.type) || checks.isSkipped(dyno.type)) {
        ctx.out.detail(`${dyno.name}: checks ${checks.isDisabled(dyno.type) ? 'disabled' : 'skipped'} for ${dyno.type}`);
        return s.state;
      }
      const list = checksFor(plan.release, dyno.type, checks);
      ctx.out.step(`Checking ${dyno.name}: ${list.map((c) => c.name).join(', then ')}`);
      let last = '';
      try {
        const state = await passGate({
          engine: dynoEngine(ctx),
          container: s.state,
          dyno: dyno.name,
          checks: list,
          port: probePort(s.state, dyno.type),
          hostHeader,
          baselineRestarts: 0,
          signal: abort.signal,
          onAttempt: (a: CheckAttempt) => {
            last = a.detail;
            if (!a.ok && a.check.attempts <= 20) ctx.out.detail(`${dyno.name}: ${a.check.name}: attempt ${a.attempt}/${a.check.attempts} failed: ${a.detail}`);
          },
        });
        const at = `${state.ip}:${state.port ?? WEB_PORT}`;
        log.info('health_check_passed', { app: plan.name, release: plan.release.number, container: state.name, address: state.ip ? at : undefined, mono: sharedClockMs() });
        ctx.out.detail(`${dyno.name} passed its checks${state.ip && dyno.type === 'web' ? ` at ${at}` : ''}${last ? ` (${last})` : ''}`);
        return state;
      } catch (error) {
        if (!failure) {
          failure = { s, error };
          abort.abort(error);
        }
        return s.state;
      }
    }),
  );
  if (!failure) return ready;
  const { s, error } = failure;
  const logs = await dynoEngine(ctx).logs(s.state.id, 50).catch(() => '');
  if (logs.trim()) {
    ctx.out.error(`the last lines ${s.dyno.name} wrote:`);
    ctx.out.detail(logs.trimEnd());
  }
  log.info('health_check_failed', { app: plan.name, release: plan.release.number, container: s.state.name, error });
  if (error instanceof UserError) throw new UserError(error.code, `${s.dyno.name}: ${error.message}`, { ...(error.hint ? { hint: error.hint } : {}), cause: error });
  throw error;
}

/**
 * With `reuse`: the running containers of this release, one per wanted dyno, that pass their
 * checks once (uptime counted from their start). The others will be replaced.
 */
export async function keepRunning(ctx: DeployContext, plan: ProcessPlan, checks: ResolvedChecks, dynos: readonly Dyno[], existing: readonly ContainerState[]): Promise<Map<string, ContainerState>> {
  const kept = new Map<string, ContainerState>();
  const hostHeader = ctx.hostnames[0] ?? plan.name;
  await Promise.all(
    dynos.map(async (dyno) => {
      const candidate = existing.find((c) => c.labels[LABEL.release] === String(plan.release.number) && c.labels[LABEL.dyno] === dyno.name && c.running);
      if (!candidate) return;
      if (checks.isDisabled(dyno.type) || checks.isSkipped(dyno.type)) {
        kept.set(dyno.name, candidate);
        return;
      }
      try {
        const list = quickChecks(checksFor(plan.release, dyno.type, checks));
        kept.set(dyno.name, await passGate({ engine: dynoEngine(ctx), container: candidate, dyno: dyno.name, checks: list, port: probePort(candidate, dyno.type), hostHeader }));
        log.info('container_kept', { app: plan.name, container: candidate.name, checks: list.map((c) => c.name) });
      } catch (e) {
        log.info('container_not_kept', { app: plan.name, container: candidate.name, reason: (e as Error).message });
      }
    }),
  );
  return kept;
}

/** checks:disable: the old containers of those types leave routing and stop before new ones start (downtime, as in Dokku). */
async function stopDisabledFirst(ctx: DeployContext, app: string, checks: ResolvedChecks, old: readonly ContainerState[]): Promise<void> {
  const disabled = old.filter((c) => checks.isDisabled(c.labels[LABEL.process] ?? ''));
  if (disabled.length === 0) return;
  const types = [...new Set(disabled.map((c) => c.labels[LABEL.process]))].join(', ');
  ctx.out.step(`Zero-downtime deploys are disabled for ${types}: stopping the old containers first`);
  const names = new Set(disabled.map((c) => c.name));
  await unrouteFirst(ctx, app, (t) => names.has(t.id), checks);
  await stopContainers(ctx, app, disabled, checks);
}

/** checks:disable, on either scheduler: the targets `leaving` picks leave the app's route and are drained before they stop. */
export async function unrouteFirst(ctx: DeployContext, app: string, leaving: (t: Target) => boolean, checks: ResolvedChecks): Promise<void> {
  const routed = ctx.publisher.routed(app);
  if (!routed.some(leaving)) return;
  ctx.publisher.publish(app, ctx.hostnames, routed.filter((t) => !leaving(t)));
  await ctx.publisher.drain(routed.filter(leaving), { deadlineMs: checks.drainTimeoutMs, reason: 'the app is being redeployed' });
}

async function stopContainers(ctx: DeployContext, app: string, containers: readonly ContainerState[], checks: ResolvedChecks): Promise<void> {
  if (containers.length === 0) return;
  const seconds = Math.ceil(checks.stopTimeoutMs / 1000);
  ctx.out.step(`Stopping ${containers.length} old container${containers.length === 1 ? '' : 's'} (SIGTERM, then SIGKILL after ${seconds}s)`);
  await Promise.all(
    containers.map((c) =>
      ctx.engine.stopAndRemove(c.id, seconds).catch((e) => {
        log.warn('container_retire_failed', { app, container: c.name, error: e });
        ctx.out.error(`could not remove ${c.name}: ${(e as Error).message}`);
      }),
    ),
  );
}

function splitDyno(dyno: string): [string, string] {
  const dot = dyno.lastIndexOf('.');
  return dot < 0 ? [dyno, ''] : [dyno.slice(0, dot), dyno.slice(dot + 1)];
}
