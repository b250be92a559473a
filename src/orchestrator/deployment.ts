// One deploy of one release: start the new web container, wait until it listens, swap the
// route to it in one assignment, then retire the containers of older releases.
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import type { Output } from '../cli/output.ts';
import { UserError } from '../errors.ts';
import { log } from '../log.ts';
import type { Target } from '../proxy/route-table.ts';
import type { Release } from '../state/app-store.ts';
import { LABEL, type ContainerState, type Engine } from './engine.ts';

/** The port every web process listens on, given to it as $PORT (Heroku's and Dokku's 5000). */
export const WEB_PORT = 5000;
/** How long a new container has to start listening on $PORT. */
export const START_TIMEOUT_MS = 60_000;
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

/** Starts the release's web container and routes to it; throws (having removed it) when it does not come up. */
export async function deployRelease(ctx: DeployContext, app: string, release: Release): Promise<ContainerState> {
  const dyno = 'web.1';
  const name = `${app}.${dyno}.r${release.number}.${randomBytes(2).toString('hex')}`;
  ctx.out.step(`Starting ${dyno} (release v${release.number})`);
  const started = await ctx.engine.run({
    name,
    image: release.image,
    env: { PORT: String(WEB_PORT), DYNO: dyno },
    labels: { [LABEL.app]: app, [LABEL.process]: 'web', [LABEL.release]: String(release.number), [LABEL.dyno]: dyno },
    network: ctx.network,
    aliases: [`${app}.${dyno}`],
  });
  let ready: ContainerState;
  try {
    ready = await waitUntilListening(ctx.engine, started.id, WEB_PORT, START_TIMEOUT_MS);
  } catch (e) {
    const logs = await ctx.engine.logs(started.id, 50).catch(() => '');
    await ctx.engine.stopAndRemove(started.id, 0).catch((err) => log.warn('container_remove_failed', { id: started.id, error: err }));
    if (logs.trim()) {
      ctx.out.error(`the last lines ${dyno} wrote:`);
      ctx.out.detail(logs.trimEnd());
    }
    throw e;
  }
  ctx.out.detail(`${dyno} is listening on ${ready.ip}:${WEB_PORT}`);
  ctx.publisher.publish(app, ctx.hostnames, [{ id: ready.name, host: ready.ip!, port: WEB_PORT }]);
  ctx.out.step(`Routing ${ctx.hostnames.join(', ')} to release v${release.number}`);
  return ready;
}

/** Stops and removes the app's web containers of every release but `keep`. */
export async function retireOthers(ctx: DeployContext, app: string, keep: number): Promise<void> {
  const old = (await ctx.engine.list({ [LABEL.app]: app })).filter((c) => c.labels[LABEL.release] !== String(keep));
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

/** Polls until the container accepts TCP on `port`; fails if it exits or restarts first. */
export async function waitUntilListening(engine: Engine, id: string, port: number, timeoutMs: number): Promise<ContainerState> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const state = await engine.inspect(id);
    if (!state.running || state.restartCount > 0 || state.status === 'restarting') {
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
