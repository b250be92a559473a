// Changes to a running app that go through the normal deploy path: config changes and rollbacks
// (new releases), prebuilt images, scale, restart, stop and start; and what runs now (report,
// checks). The caller (the application layer) holds the app's lock around each change.
import type { Output } from '../ui/output.ts';
import { UserError } from '../errors.ts';
import { log } from '../log.ts';
import type { AppRecord, Release } from '../state/app-store.ts';
import { currentRelease } from '../state/app-store.ts';
import { healthchecksOfImage } from './app-json.ts';
import { imageTag } from './builder.ts';
import { byDyno, checkSettingsOf, dynosOf, probePort, processContainers, WEB_PORT } from './deployment.ts';
import { LABEL, type Engine } from './engine.ts';
import { isOwnImage, otherAppOf } from './image-owner.ts';
import { checksFor, passGate } from './health-gate.ts';
import type { Orchestrator } from './orchestrator.ts';
import type { ProbationState } from './probation.ts';
import { NODE_LABEL } from './swarm-deployment.ts';
import { deployNewRelease, deriveRelease, nextReleaseNumber, redeployCurrent, requireCurrent } from './release-flow.ts';

/**
 * Applies a config change: always stored; with `restart` and a current release, a new release
 * with the new config is deployed. Returns the release deployed, if any.
 */
export async function changeConfig(
  orch: Orchestrator,
  app: string,
  change: { set?: Record<string, string>; unset?: string[] },
  options: { restart: boolean; by: string; out: Output },
): Promise<Release | undefined> {
  const record = orch.apps.require(app);
  const config = { ...record.config, ...change.set };
  for (const k of change.unset ?? []) delete config[k];
  const keys = [...Object.keys(change.set ?? {}), ...(change.unset ?? [])];
  const description = `${change.set ? 'Set' : 'Unset'} ${keys.join(', ')}`;
  const current = currentRelease(record);
  if (!options.restart || !current || record.stopped) {
    await orch.apps.update(app, (a) => void (a.config = config));
    if (!current) options.out.step(`${description}; it applies at the first deploy of ${app}`);
    else options.out.step(record.stopped ? `${description}; ${app} is stopped, the change applies when it starts` : `${description}; not restarting ${app}: the change applies at the next deploy or ps:restart`);
    return undefined;
  }
  const release = deriveRelease(record, current, { config, description, by: options.by });
  options.out.step(`${description}; releasing v${release.number} and restarting ${app}`);
  await deployNewRelease(orch.releaseDeps(app), app, release, options.out);
  options.out.step(`Released v${release.number} of ${app}`);
  return release;
}

/** Brings back release `number` (default: the one before the current) as a new release, without building. */
export async function rollback(orch: Orchestrator, app: string, number: number | undefined, options: { by: string; out: Output }): Promise<Release> {
  const record = orch.apps.require(app);
  const current = requireCurrent(record);
  const target = number === undefined ? previousRelease(record, current.number) : record.releases.find((r) => r.number === number);
  if (!target) {
    throw new UserError('release_not_found', number === undefined ? `${app} has no release before v${current.number}` : `${app} has no release v${number}`, {
      hint: `\`releases ${app}\` lists them`,
    });
  }
  if (!(await orch.engine.imageExists(target.image))) {
    throw new UserError('release_image_pruned', `the image of v${target.number} (${target.image}) is no longer on the engine; only the newest ${orch.config.keepImages} release images are kept`, {
      hint: `roll back to a newer release (\`releases ${app}\`), or push that commit (${target.commit.slice(0, 7)}) again`,
    });
  }
  const release = deriveRelease(record, target, { config: target.config, description: `Rollback to v${target.number}`, by: options.by });
  options.out.step(`Rolling back ${app} to v${target.number} as v${release.number}`);
  await deployNewRelease(orch.releaseDeps(app), app, release, options.out);
  options.out.step(`Released v${release.number} of ${app} (the code and config of v${target.number})`);
  return release;
}

/**
 * Why `app` may not use `image` when the caller is limited to apps, or undefined when it may: never
 * another app's release image; otherwise one of `allowed` (by name, or the same image), or with
 * `own` an image that carries a release tag of the app itself.
 */
export async function imageRefusal(engine: Engine, app: string, image: string, allowed: readonly string[], options: { own: boolean }): Promise<string | undefined> {
  const identity = await engine.imageIdentity(image);
  const other = otherAppOf(image, identity, engine.instance, app);
  if (other) return `${image} is a release image of another app (${other})`;
  if (identity && options.own && isOwnImage(identity, engine.instance, app)) return undefined;
  if (allowed.includes(image)) return undefined;
  if (identity) {
    for (const name of allowed) if ((await engine.imageIdentity(name))?.id === identity.id) return undefined;
  }
  return `${image} is not ${options.own ? `an image ${app} built, nor ` : ''}an image the admin allows (buildpacks:allowed-stacks lists them)`;
}

/**
 * Deploys an image the engine already has, tagged as the app's next release image. With
 * `allowed` (a caller limited to apps), only the app's own images or those allowed.
 */
export async function deployImage(orch: Orchestrator, app: string, image: string, options: { by: string; out: Output; allowed?: readonly string[] }): Promise<Release> {
  const record = orch.apps.require(app);
  if (options.allowed) {
    const refusal = await imageRefusal(orch.engine, app, image, options.allowed, { own: true });
    if (refusal) {
      log.warn('command_refused', { app, command: 'git:from-image', image, by: options.by, reason: 'image_not_allowed' });
      throw new UserError('forbidden', `git:from-image ${app} refused: ${refusal}`, { hint: 'an admin may deploy it, or allow it for every app with buildpacks:allow-stack IMAGE' });
    }
  }
  const config = await orch.engine.imageConfig(image);
  if (!config) {
    throw new UserError('image_not_found', `the Docker engine has no image ${image}`, { hint: 'build, pull or load it onto the engine first (berth does not pull for git:from-image)' });
  }
  // As for a push, a bad app.json (here: in the image's working directory) fails before anything starts.
  const healthchecks = await healthchecksOfImage(orch.engine, image);
  const number = nextReleaseNumber(record);
  const tag = imageTag(orch.engine.instance, app, number);
  const [repo, version] = [tag.slice(0, tag.lastIndexOf(':')), tag.slice(tag.lastIndexOf(':') + 1)];
  await orch.engine.tagImage(image, repo, version);
  const release: Release = {
    number,
    image: tag,
    commit: '',
    builder: 'image',
    processTypes: { web: '' },
    config: { ...record.config },
    description: `Deploy image ${image}`,
    ...(healthchecks ? { healthchecks } : {}),
    createdAt: new Date().toISOString(),
    createdBy: options.by,
  };
  options.out.step(`Deploying image ${image} as v${number} of ${app}`);
  try {
    await deployNewRelease(orch.releaseDeps(app), app, release, options.out);
  } catch (e) {
    await orch.engine.removeImage(tag).catch(() => {});
    throw e;
  }
  options.out.step(`Released v${number} of ${app}`);
  return release;
}

/** Sets how many containers of each type run, and brings the running app to it (keeping containers that stay). */
export async function scale(orch: Orchestrator, app: string, counts: Record<string, number>, out: Output): Promise<void> {
  const record = orch.apps.require(app);
  const current = currentRelease(record);
  if (current) {
    const unknown = Object.keys(counts).filter((t) => !(t in current.processTypes));
    if (unknown.length) {
      throw new UserError('unknown_process_type', `v${current.number} of ${app} has no process type ${unknown.join(', ')}`, {
        hint: `its types are ${Object.keys(current.processTypes).join(', ') || '(none)'}; declare others in the Procfile`,
      });
    }
  }
  const previous = record.formation;
  await orch.apps.update(app, (a) => void (a.formation = { ...a.formation, ...counts }));
  if (!current || record.stopped) {
    out.step(`Scale saved${current ? `; ${app} is stopped` : ''}`);
    return;
  }
  out.step(`Scaling ${app}: ${Object.entries(counts).map(([t, n]) => `${t}=${n}`).join(' ')}`);
  try {
    await redeployCurrent(orch.releaseDeps(app), app, out, { reuse: true });
  } catch (e) {
    await orch.apps.update(app, (a) => void (a.formation = previous));
    throw e;
  }
}

/**
 * Starts every process of the current release afresh. Config changed with --no-restart since
 * that release makes a new release first.
 */
export async function restart(orch: Orchestrator, app: string, options: { by: string; out: Output }): Promise<void> {
  const record = orch.apps.require(app);
  const current = requireCurrent(record);
  if (!sameConfig(record.config, current.config)) {
    const release = deriveRelease(record, current, { config: record.config, description: 'Apply config changes', by: options.by });
    options.out.step(`Config changed since v${current.number}; releasing v${release.number}`);
    await deployNewRelease(orch.releaseDeps(app), app, release, options.out);
    return;
  }
  options.out.step(`Restarting ${app} (v${current.number})`);
  await redeployCurrent(orch.releaseDeps(app), app, options.out, { reuse: false });
}

export async function stop(orch: Orchestrator, app: string, out: Output): Promise<void> {
  orch.apps.require(app);
  await orch.apps.update(app, (a) => void (a.stopped = true));
  orch.publisher().publish(app, orch.hostnames(app), []);
  const stopS = Math.ceil(checkSettingsOf({ checksWaitMs: orch.config.checksWait }, orch.apps.require(app)).stopTimeoutMs / 1000);
  const count = await orch.removeDynos(app, stopS);
  log.info('app_stopped', { app, containers: count });
  const noun = orch.scheduler === 'swarm' ? 'Swarm service' : 'container';
  out.step(`Stopped ${app} (${count} ${noun}${count === 1 ? '' : 's'})`);
}

export async function start(orch: Orchestrator, app: string, out: Output): Promise<void> {
  const record = orch.apps.require(app);
  requireCurrent(record);
  out.step(`Starting ${app}`);
  await redeployCurrent(orch.releaseDeps(app), app, out, { reuse: true });
}

/** Stores a change of limits or mounts, then (with `restart`) starts the processes afresh with it. */
export async function changeSettings(orch: Orchestrator, app: string, change: (a: AppRecord) => void, options: { restart: boolean; out: Output }): Promise<void> {
  await orch.apps.update(app, change);
  const record = orch.apps.require(app);
  if (!currentRelease(record) || record.stopped) return;
  if (!options.restart) {
    options.out.step(`Not restarting ${app}; the change applies at the next deploy or ps:restart`);
    return;
  }
  options.out.step(`Restarting ${app} to apply the change`);
  await redeployCurrent(orch.releaseDeps(app), app, options.out, { reuse: false });
}

/** One container of an app as ps:report shows it. */
export interface ProcessRow {
  dyno: string;
  state: string;
  release: string;
  restarts: number;
  address: string;
  container: string;
  /** The engine's id of the container. */
  id: string;
  /** When it last started (ISO 8601); null when it never did. */
  startedAt: string | null;
  /** The Swarm node it runs on (swarm scheduler only). */
  node?: string;
}

export interface ProcessReport {
  status: 'stopped' | 'deployed' | 'not deployed';
  release: number | undefined;
  /** The dynos the app should run now. */
  wanted: string[];
  containers: ProcessRow[];
  /** The probation under way: the release serving on trial, until when, the old containers kept warm. */
  probation: ProbationState | undefined;
}

/** What an app should run and what runs, by dyno name. */
export async function processReport(orch: Orchestrator, app: string): Promise<ProcessReport> {
  const record = orch.apps.require(app);
  const current = currentRelease(record);
  const containers = (await processContainers(orch.dynos, app)).sort(byDyno);
  return {
    status: record.stopped ? 'stopped' : current ? 'deployed' : 'not deployed',
    release: current?.number,
    wanted: wantedDynos(record),
    probation: orch.probation(app),
    containers: containers.map((c) => ({
      dyno: c.labels[LABEL.dyno] ?? '?',
      state: c.status,
      release: `v${c.labels[LABEL.release] ?? '?'}`,
      restarts: c.restartCount,
      address: c.labels[LABEL.process] === 'web' && c.ip ? `${c.ip}:${c.port ?? WEB_PORT}` : c.ip ?? '-',
      container: c.name,
      id: c.id,
      startedAt: c.startedAt === undefined ? null : new Date(c.startedAt).toISOString(),
      ...(c.labels[NODE_LABEL] ? { node: c.labels[NODE_LABEL] } : {}),
    })),
  };
}

/**
 * Runs the current release's checks against the app's running containers (all, one process type
 * or one dyno), printing each result; fails when any container fails.
 */
export async function runChecks(orch: Orchestrator, app: string, which: string | undefined, options: { out: Output; signal: AbortSignal }): Promise<void> {
  const record = orch.apps.require(app);
  const release = currentRelease(record);
  if (!release) throw new UserError('no_release', `${app} has no release yet`, { hint: 'push to it first' });
  const settings = checkSettingsOf({ checksWaitMs: orch.config.checksWait }, record);
  const containers = (await processContainers(orch.dynos, app))
    .filter((c) => c.running && c.labels[LABEL.release] === String(release.number))
    .filter((c) => which === undefined || c.labels[LABEL.process] === which || c.labels[LABEL.dyno] === which)
    .sort(byDyno);
  if (containers.length === 0) {
    throw new UserError('no_containers', `${app} has no running container${which ? ` for ${which}` : ''} of v${release.number}`, { hint: `\`ps:report ${app}\` shows what runs` });
  }
  const failed: string[] = [];
  for (const container of containers) {
    const type = container.labels[LABEL.process] ?? 'web';
    const dyno = container.labels[LABEL.dyno] ?? type;
    const checks = checksFor(release, type, settings);
    options.out.step(`Running checks for ${dyno}: ${checks.map((c) => c.name).join(', then ')}`);
    try {
      let last = '';
      await passGate({ engine: orch.dynos, container, dyno, checks, port: probePort(container, type), hostHeader: orch.hostnames(app)[0] ?? app, signal: options.signal, onAttempt: (a) => void (last = a.detail) });
      options.out.detail(`${dyno} passed${last ? ` (${last})` : ''}`);
    } catch (e) {
      failed.push(dyno);
      options.out.error(`${dyno}: ${(e as Error).message}`);
    }
  }
  if (failed.length) throw new UserError('checks_failed', `checks failed for ${failed.join(', ')}`);
}

/** The dyno names the app should run now, for reports. */
export function wantedDynos(record: AppRecord): string[] {
  const current = currentRelease(record);
  return current && !record.stopped ? dynosOf(current, record.formation).map((d) => d.name) : [];
}

function previousRelease(record: AppRecord, current: number): Release | undefined {
  return [...record.releases].filter((r) => r.number < current).sort((a, b) => b.number - a.number)[0];
}

function sameConfig(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => a[k] === b[k]);
}
