// Dokku's pipeline as typed stages: receive (done by the git side) → build → release → deploy
// → retire. Each stage takes what the previous one produced.
import type { Output } from '../cli/output.ts';
import type { AppStore, Release } from '../state/app-store.ts';
import { chooseBuilder, type BuildResult, type BuildSource, type Builder } from './builder.ts';
import { deployRelease, retireOthers, type DeployContext } from './deployment.ts';

export interface PipelineInput {
  source: BuildSource;
  pushedBy: string;
  out: Output;
  signal?: AbortSignal;
}

export interface PipelineDeps {
  apps: AppStore;
  builders: readonly Builder[];
  deploy: Omit<DeployContext, 'out'>;
  /** Where users reach the app, for the last line of the output. */
  appUrl: string;
}

export async function runPipeline(deps: PipelineDeps, input: PipelineInput): Promise<Release> {
  const { source, out } = input;
  const number = nextReleaseNumber(deps.apps, source.app);
  const built = await build(deps, input, number);
  const release = makeRelease(number, built, input);
  const ctx: DeployContext = { ...deps.deploy, out };
  await deployRelease(ctx, source.app, release);
  await deps.apps.update(source.app, (app) => {
    app.releases.push(release);
    app.current = release.number;
  });
  await retireOthers(ctx, source.app, release.number);
  out.step(`Released v${release.number} of ${source.app}: ${deps.appUrl}`);
  return release;
}

async function build(deps: PipelineDeps, input: PipelineInput, number: number): Promise<BuildResult> {
  const builder = await chooseBuilder(deps.builders, input.source);
  return builder.build({ source: input.source, release: number, out: input.out, ...(input.signal ? { signal: input.signal } : {}) });
}

function makeRelease(number: number, built: BuildResult, input: PipelineInput): Release {
  return {
    number,
    image: built.image,
    commit: input.source.commit,
    builder: built.builder,
    createdAt: new Date().toISOString(),
    createdBy: input.pushedBy,
  };
}

function nextReleaseNumber(apps: AppStore, app: string): number {
  const record = apps.require(app);
  return record.releases.reduce((max, r) => Math.max(max, r.number), 0) + 1;
}
