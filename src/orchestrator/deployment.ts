// One deploy of one release: start the containers its formation asks for, wait until each is
// ready, route to all web containers in one swap, then retire every other process container.
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import type { Output } from '../cli/output.ts';
import { shellWords } from '../cli/shell-words.ts';
import { UserError } from '../errors.ts';
import { log } from '../log.ts';
import type { Target } from '../proxy/route-table.ts';
import type { AppRecord, Release } from '../state/app-store.ts';
import type { ResourceLimit } from '../state/app-settings.ts';
import { LABEL, type ContainerState, type Engine } from './engine.ts';

/** The port every web process listens on, given to it as $PORT (Heroku's and Dokku's 5000). */
export const WEB_PORT = 5000;
/** How long a new container has to become ready (web: listen on $PORT). */
export const START_TIMEOUT_MS = 60_000;
/** How long a non-web process must stay up to count as started. */
export const SETTLE_MS = 1_000;
/** Grace between SIGTERM and SIGKILL for a retired container. */
export const STOP_TIMEOUT_S = 10;

export interface RoutePublisher {
  /** Replaces the app's routing in one synchronous swap. */
  publish(app: string, hostnames: string[], targets: Target[]): void;
  unpublish(app: string): void;
}

export interface DeployContext {
  engine: Engine;
  network: string;
  publisher: RoutePublisher;
  hostnames: string[];
  out: Output;
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
export type ProcessPlan = Pick<AppRecord, 'name' | 'formation' | 'limits' | 'mounts'> & { release: Release };

export interface Deployed {
  /** Every container of the new formation, kept or new, by dyno name. */
  containers: ContainerState[];
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

/**
 * Brings the app to `plan`: starts each dyno (with `reuse`, a running container of the same
 * release and dyno that is still ready is kept instead), waits until every new one is ready, then
 * routes to all web containers in one publish() call. When a new container does not come up, the
 * new ones are removed and the error thrown; routing and the old containers are untouched.
 */
export async function deployRelease(ctx: DeployContext, plan: ProcessPlan, options: { reuse: boolean }): Promise<Deployed> {
  const app = plan.name;
  const release = plan.release;
  const dynos = dynosOf(release, plan.formation);
  const existing = options.reuse ? await processContainers(ctx.engine, app) : [];
  const entrypoint = dynos.some((d) => d.command !== '') ? ((await ctx.engine.imageConfig(release.image))?.entrypoint ?? []) : [];
  const kept: ContainerState[] = [];
  const started: { dyno: Dyno; id: string }[] = [];
  try {
    for (const dyno of dynos) {
      const reusable = existing.find((c) => c.labels[LABEL.release] === String(release.number) && c.labels[LABEL.dyno] === dyno.name && c.running && !kept.includes(c));
      if (reusable) {
        const ok = await waitUntilReady(ctx.engine, reusable.id, dyno, 5_000, { fresh: false }).then(
          (s) => s,
          () => undefined,
        );
        if (ok) {
          kept.push(ok);
          continue;
        }
      }
      ctx.out.step(`Starting ${dyno.name} (release v${release.number})`);
      const name = `${app}.${dyno.name}.r${release.number}.${randomBytes(2).toString('hex')}`;
      const limit = limitFor(plan.limits, dyno.type);
      const state = await ctx.engine.run({
        name,
        image: release.image,
        env: { ...release.config, ...(dyno.type === 'web' ? { PORT: String(WEB_PORT) } : {}), DYNO: dyno.name },
        labels: { [LABEL.app]: app, [LABEL.process]: dyno.type, [LABEL.release]: String(release.number), [LABEL.dyno]: dyno.name, [LABEL.role]: 'process' },
        network: ctx.network,
        aliases: [`${app}.${dyno.name}`],
        ...commandFor(release, dyno.command, entrypoint),
        ...(limit.memory ? { memory: limit.memory } : {}),
        ...(limit.cpus ? { cpus: limit.cpus } : {}),
        binds: plan.mounts,
      });
      started.push({ dyno, id: state.id });
    }
    const ready = await Promise.all(started.map((s) => readyOrReport(ctx, s.dyno, s.id)));
    for (const r of ready) if (r.labels[LABEL.process] === 'web') ctx.out.detail(`${r.labels[LABEL.dyno]} is listening on ${r.ip}:${WEB_PORT}`);
    const containers = [...kept, ...ready];
    const web = containers.filter((c) => c.labels[LABEL.process] === 'web' && c.ip).sort((a, b) => dynoOrder(a) - dynoOrder(b));
    ctx.publisher.publish(app, ctx.hostnames, web.map((c) => ({ id: c.name, host: c.ip!, port: WEB_PORT })));
    if (web.length) ctx.out.step(`Routing ${ctx.hostnames.join(', ')} to ${web.length} web container${web.length === 1 ? '' : 's'} of release v${release.number}`);
    return { containers };
  } catch (e) {
    await Promise.all(started.map((s) => ctx.engine.stopAndRemove(s.id, 0).catch((err) => log.warn('container_remove_failed', { id: s.id, error: err }))));
    throw e;
  }
}

/** Stops and removes the app's process containers that are not in `keep` (one-offs and builds are left alone). */
export async function retireOthers(ctx: DeployContext, app: string, keep: readonly ContainerState[]): Promise<void> {
  const ids = new Set(keep.map((c) => c.id));
  const old = (await processContainers(ctx.engine, app)).filter((c) => !ids.has(c.id));
  if (old.length === 0) return;
  ctx.out.step(`Retiring ${old.length} old container${old.length === 1 ? '' : 's'}`);
  await Promise.all(
    old.map((c) =>
      ctx.engine.stopAndRemove(c.id, STOP_TIMEOUT_S).catch((e) => {
        log.warn('container_retire_failed', { app, container: c.name, error: e });
        ctx.out.error(`could not remove ${c.name}: ${(e as Error).message}`);
      }),
    ),
  );
}

/** The app's dyno containers (not one-offs, not builds), running or not. */
export async function processContainers(engine: Engine, app: string): Promise<ContainerState[]> {
  const all = await engine.list({ [LABEL.app]: app });
  return all.filter((c) => (c.labels[LABEL.role] ?? 'process') === 'process');
}

/**
 * Resolves once the container can take work: a web process accepts TCP on $PORT; any other
 * process is still running after SETTLE_MS. This is the one gate a deploy waits on. A `fresh`
 * container (just started by this deploy) fails as soon as it has restarted once.
 */
export async function waitUntilReady(engine: Engine, id: string, dyno: Pick<Dyno, 'type'>, timeoutMs = START_TIMEOUT_MS, options: { fresh: boolean } = { fresh: true }): Promise<ContainerState> {
  if (dyno.type === 'web') return waitUntilListening(engine, id, WEB_PORT, timeoutMs, options);
  await new Promise((r) => setTimeout(r, SETTLE_MS));
  const state = await engine.inspect(id);
  if (!state.running || (options.fresh && state.restartCount > 0) || state.status === 'restarting') {
    throw new UserError('container_exited', `the container exited at start (status ${state.status}, exit code ${state.exitCode})`, { hint: 'the process must keep running' });
  }
  return state;
}

/** Polls until the container accepts TCP on `port`; fails if it exits or restarts first. */
export async function waitUntilListening(engine: Engine, id: string, port: number, timeoutMs: number, options: { fresh: boolean } = { fresh: true }): Promise<ContainerState> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const state = await engine.inspect(id);
    if (!state.running || (options.fresh && state.restartCount > 0) || state.status === 'restarting') {
      throw new UserError('container_exited', `the container exited at start (status ${state.status}, exit code ${state.exitCode})`, {
        hint: `the app must keep running and listen on $PORT (${port})`,
      });
    }
    if (state.ip && (await canConnect(state.ip, port, 1000))) return state;
    if (Date.now() > deadline) {
      throw new UserError('container_not_listening', `the container did not listen on port ${port} within ${Math.round(timeoutMs / 1000)} s`, {
        hint: 'make the web process listen on $PORT on all addresses (0.0.0.0)',
      });
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * The Cmd (and Entrypoint) that runs a process type's command in the release's image. Buildpack
 * images start through their launcher, which takes the command as one string; other images run
 * it with /bin/sh -c, or as words after their own entrypoint. '' keeps the image's command.
 */
export function commandFor(release: Pick<Release, 'builder'>, command: string, imageEntrypoint: readonly string[]): { cmd?: string[] } {
  if (command === '') return {};
  if (release.builder === 'buildpacks') return { cmd: [command] };
  if (imageEntrypoint.length > 0) return { cmd: shellWords(command) };
  return { cmd: ['/bin/sh', '-c', command] };
}

export function limitFor(limits: Record<string, ResourceLimit>, type: string): ResourceLimit {
  return limits[type] ?? limits['*'] ?? {};
}

async function readyOrReport(ctx: DeployContext, dyno: Dyno, id: string): Promise<ContainerState> {
  try {
    return await waitUntilReady(ctx.engine, id, dyno);
  } catch (e) {
    const logs = await ctx.engine.logs(id, 50).catch(() => '');
    if (logs.trim()) {
      ctx.out.error(`the last lines ${dyno.name} wrote:`);
      ctx.out.detail(logs.trimEnd());
    }
    if (e instanceof UserError) throw new UserError(e.code, `${dyno.name}: ${e.message}`, { ...(e.hint ? { hint: e.hint } : {}), cause: e });
    throw e;
  }
}

function dynoOrder(c: ContainerState): number {
  return Number((c.labels[LABEL.dyno] ?? '').split('.')[1] ?? 0);
}

function canConnect(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}
