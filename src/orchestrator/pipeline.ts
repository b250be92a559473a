// Dokku's pipeline as typed stages: receive (done by the git side) → build → release → deploy
// → retire. Each stage takes what the previous one produced; the output is kept as the
// release's build log, or as the app's last failed deploy.
import type { Output } from '../ui/output.ts';
import { UserError, describeForUser } from '../errors.ts';
import { log } from '../log.ts';
import type { Release } from '../state/app-store.ts';
import { chooseBuilder, type BuildResult, type BuildSource, type Builder } from './builder.ts';
import { MAX_APP_JSON_BYTES } from './app-json.ts';
import { TeeOutput, type BuildLogs } from './build-log.ts';
import { healthchecksSection, type HealthchecksSection } from './health-check.ts';
import { parseProcfile } from './procfile.ts';
import { deployNewRelease, nextReleaseNumber, type ReleaseDeps } from './release-flow.ts';

export interface PipelineInput {
  source: BuildSource;
  pushedBy: string;
  out: Output;
  signal?: AbortSignal;
}

export interface PipelineDeps extends ReleaseDeps {
  builders: readonly Builder[];
  logs: BuildLogs;
  /** Where users reach the app, for the last line of the output. */
  appUrl: string;
}

export async function runPipeline(deps: PipelineDeps, input: PipelineInput): Promise<Release> {
  const { source } = input;
  const out = new TeeOutput(input.out);
  const started = performance.now();
  let building: number | undefined;
  /** The image this push built, until a release records it. */
  let built: BuildResult | undefined;
  try {
    const record = deps.apps.require(source.app);
    const number = nextReleaseNumber(record);
    const builder = await chooseBuilder(deps.builders, source);
    // The source's Procfile and app.json are checked before anything is built; a buildpack build
    // may write or move them, so then they are read from the built app.
    const fromSource = builder.appFilesFromBuild ? undefined : parseAppFiles(await appFilesOfSource(source));
    building = performance.now();
    built = await builder.build({ source, app: record, release: number, out, ...(input.signal ? { signal: input.signal } : {}) });
    log.info('build_finished', { app: source.app, builder: built.builder, result: 'succeeded', ms: Math.round(performance.now() - building) });
    building = undefined;
    const { procfile, healthchecks } = fromSource ?? parseAppFiles(built.appFiles ?? (await appFilesOfSource(source)));
    const release = makeRelease(number, built, procfile, input, record.config, healthchecks);
    describeProcesses(out, release, procfile !== undefined);
    await deployNewRelease(deps, source.app, release, out);
    out.step(`Released v${release.number} of ${source.app}: ${deps.appUrl}`);
    await deps.logs.saveRelease(source.app, release.number, out.copy.text());
    log.info('deploy_finished', { app: source.app, release: release.number, result: 'succeeded', ms: Math.round(performance.now() - started) });
    return release;
  } catch (e) {
    const result = input.signal?.aborted ? 'cancelled' : 'failed';
    if (building !== undefined) log.info('build_finished', { app: source.app, result, ms: Math.round(performance.now() - building) });
    log.info('deploy_finished', { app: source.app, result, ms: Math.round(performance.now() - started) });
    const { lines } = describeForUser(e, `deploy of ${source.app}`);
    for (const line of lines) out.copy.error(line);
    await deps.logs.saveFailed(source.app, out.copy.text()).catch(() => {});
    if (built) await forgetUnreleasedImage(deps, source.app, built.image);
    throw e;
  }
}

/**
 * A build whose deploy failed leaves an image no release names: its tag is removed, or the next
 * push's build, which takes the same release number, would leave it behind untagged. Only the tag
 * goes when a release's image is the same image (an unchanged Dockerfile build).
 */
async function forgetUnreleasedImage(deps: PipelineDeps, app: string, image: string): Promise<void> {
  if (deps.apps.get(app)?.releases.some((r) => r.image === image)) return;
  await deps.engine.removeImage(image).catch((e) => log.warn('image_remove_failed', { app, image, error: e }));
}

function parseAppFiles(files: NonNullable<BuildResult['appFiles']>): { procfile: Record<string, string> | undefined; healthchecks: HealthchecksSection | undefined } {
  return {
    procfile: files.procfile === undefined ? undefined : parseProcfile(files.procfile),
    healthchecks: files.appJson === undefined ? undefined : healthchecksSection(files.appJson),
  };
}

async function appFilesOfSource(source: BuildSource): Promise<NonNullable<BuildResult['appFiles']>> {
  const [procfile, appJson] = await Promise.all([source.readFile('Procfile'), source.readFile('app.json')]);
  if (appJson && appJson.length > MAX_APP_JSON_BYTES) {
    throw new UserError('invalid_app_json', `app.json is larger than ${MAX_APP_JSON_BYTES / 1024} KiB`, { hint: 'app.json holds settings such as healthchecks; keep it small' });
  }
  return { procfile: procfile?.toString('utf8'), appJson: appJson?.toString('utf8') };
}

function makeRelease(number: number, built: BuildResult, procfile: Record<string, string> | undefined, input: PipelineInput, config: Record<string, string>, healthchecks: HealthchecksSection | undefined): Release {
  return {
    number,
    image: built.image,
    commit: input.source.commit,
    builder: built.builder,
    processTypes: { ...built.processTypes, ...procfile },
    config: { ...config },
    description: `Deploy ${input.source.commit.slice(0, 7)}`,
    ...(healthchecks ? { healthchecks } : {}),
    createdAt: new Date().toISOString(),
    createdBy: input.pushedBy,
  };
}

function describeProcesses(out: Output, release: Release, fromProcfile: boolean): void {
  const types = Object.keys(release.processTypes);
  out.step(`Process types${fromProcfile ? ' (Procfile)' : ''}: ${types.length ? types.join(', ') : '(none)'}`);
  if (!types.includes('web')) out.detail('no web process: nothing is routed to this app');
  const checked = Object.keys(release.healthchecks ?? {}).filter((t) => types.includes(t));
  if (checked.length) out.detail(`app.json health checks for ${checked.join(', ')}`);
}
