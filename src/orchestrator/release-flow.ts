// Releases as the rest of the orchestrator makes them: number the next one, derive one from
// another (config change, rollback), deploy it, hold it on probation, record it as current once
// it passed, retire what ran before, and prune release images beyond the ones kept for rollback.
import type { Output } from '../ui/output.ts';
import { UserError } from '../errors.ts';
import { log } from '../log.ts';
import type { AppRecord, AppStore, Release } from '../state/app-store.ts';
import { currentRelease } from '../state/app-store.ts';
import { deployRelease, retireOthers, type DeployContext, type Deployed } from './deployment.ts';
import { imageRepository } from './builder.ts';
import { prove } from './probation.ts';
import type { Engine } from './engine.ts';

export interface ReleaseDeps {
  apps: AppStore;
  engine: Engine;
  deploy: Omit<DeployContext, 'out'>;
  /** Release images kept per app (--keep-images). */
  keepImages: number;
}

export function nextReleaseNumber(record: AppRecord): number {
  return record.releases.reduce((max, r) => Math.max(max, r.number), 0) + 1;
}

/** A new release that runs `base`'s image and process types with other config or a description. */
export function deriveRelease(record: AppRecord, base: Release, change: { config: Record<string, string>; description: string; by: string }): Release {
  return {
    number: nextReleaseNumber(record),
    image: base.image,
    commit: base.commit,
    builder: base.builder,
    processTypes: { ...base.processTypes },
    config: { ...change.config },
    description: change.description,
    ...(base.healthchecks ? { healthchecks: base.healthchecks } : {}),
    createdAt: new Date().toISOString(),
    createdBy: change.by,
  };
}

/** A deploy of a release that ran to the end: the release, and what its deploy started and kept. */
export type ReleaseDeployed = Deployed & { release: Release };

/**
 * Deploys `release` and, once it passed its probation, records it as the app's current release.
 * Until then the record names the release before it: a daemon that restarts meanwhile adopts that
 * one and removes the containers of this one.
 */
export async function deployNewRelease(deps: ReleaseDeps, app: string, release: Release, out: Output): Promise<ReleaseDeployed> {
  const ctx: DeployContext = { ...deps.deploy, out };
  const plan = { ...deps.apps.require(app), release };
  const deployed = await deployRelease(ctx, plan, { reuse: false });
  const proven = await prove(ctx, plan, deployed);
  await deps.apps.update(app, (a) => {
    a.releases.push(release);
    a.current = release.number;
    a.config = { ...release.config };
    a.stopped = false;
  });
  log.info('release_deployed', { app, release: release.number, image: release.image, description: release.description });
  await retireOthers(ctx, plan, deployed, proven);
  await pruneImages(deps, app, out);
  return { ...deployed, release };
}

/**
 * Runs the current release again under the app's formation and settings (reuse: keep what already
 * runs and is ready). The new containers are on probation unless `probation` is false (adoption at
 * start-up, where the containers it replaces belong to a deploy that did not finish).
 */
export async function redeployCurrent(deps: ReleaseDeps, app: string, out: Output, options: { reuse: boolean; probation?: boolean }): Promise<ReleaseDeployed> {
  const record = deps.apps.require(app);
  const release = requireCurrent(record);
  const ctx: DeployContext = { ...deps.deploy, out };
  const plan = { ...record, release };
  const deployed = await deployRelease(ctx, plan, options);
  const proven = options.probation === false ? {} : await prove(ctx, plan, deployed);
  if (record.stopped) await deps.apps.update(app, (a) => void (a.stopped = false));
  await retireOthers(ctx, plan, deployed, proven);
  return { ...deployed, release };
}

export function requireCurrent(record: AppRecord): Release {
  const release = currentRelease(record);
  if (!release) {
    throw new UserError('no_release', `${record.name} has no release yet`, { hint: `push to it first: git push ssh://berth@HOST:PORT/${record.name} main` });
  }
  return release;
}

/**
 * Removes release images beyond the newest `keepImages` distinct ones (the current release's
 * image is always kept). An image still in use by a container is left for the next prune.
 */
export async function pruneImages(deps: ReleaseDeps, app: string, out: Output): Promise<string[]> {
  const record = deps.apps.require(app);
  const keep = new Set<string>();
  const current = currentRelease(record);
  if (current) keep.add(current.image);
  for (const r of [...record.releases].sort((a, b) => b.number - a.number)) {
    if (keep.size >= deps.keepImages && !keep.has(r.image)) continue;
    keep.add(r.image);
  }
  const prunable = [...new Set(record.releases.map((r) => r.image))].filter((image) => !keep.has(image) && image.startsWith(`${imageRepository(deps.engine.instance, app)}:`));
  const removed: string[] = [];
  for (const image of prunable) {
    if (!(await deps.engine.imageExists(image))) continue;
    try {
      await deps.engine.removeImage(image);
      if (!(await deps.engine.imageExists(image))) removed.push(image);
    } catch (e) {
      log.warn('image_prune_failed', { app, image, error: e });
    }
  }
  if (removed.length) out.step(`Pruned ${removed.length} old release image${removed.length === 1 ? '' : 's'} (keeping ${deps.keepImages})`);
  // On the swarm scheduler the cluster's copies go with them.
  if (removed.length && deps.deploy.swarm) await deps.deploy.swarm.distributor.prune(removed).catch((e) => log.warn('image_distribution_prune_failed', { app, error: e }));
  return removed;
}
