// How source becomes an image: a Builder per strategy, chosen by detect() in a fixed order.
import type { Readable } from 'node:stream';
import type { Output } from '../ui/output.ts';
import type { AppRecord } from '../state/app-store.ts';
import type { BuilderName } from '../state/app-settings.ts';

/** The pushed commit, as a builder sees it. */
export interface BuildSource {
  app: string;
  commit: string;
  /** A file at the root of the commit's tree, or undefined. */
  readFile(path: string): Promise<Buffer | undefined>;
  /** The commit's tree as a tar stream. */
  archive(): Readable;
}

export interface BuildJob {
  source: BuildSource;
  /** The app as it is before this build: config vars, buildpacks, stack. */
  app: AppRecord;
  /** The release number the image is built for; part of its tag. */
  release: number;
  out: Output;
  signal?: AbortSignal;
}

export interface BuildResult {
  image: string;
  builder: BuilderName;
  /** Process types the builder found (a buildpack's default_process_types); the Procfile overrides them. */
  processTypes: Record<string, string>;
  /** The Procfile and app.json of the built app, for a builder with `appFilesFromBuild`. */
  appFiles?: { procfile: string | undefined; appJson: string | undefined };
}

export interface Builder {
  readonly name: BuildResult['builder'];
  /**
   * Whether its build may write or move Procfile and app.json (buildpacks do), so that they are
   * read from the built app; otherwise they are the source's, checked before anything is built.
   */
  readonly appFilesFromBuild: boolean;
  detect(source: BuildSource): Promise<boolean>;
  build(job: BuildJob): Promise<BuildResult>;
}

/** The first builder whose detect() accepts the source (the buildpack builder accepts any). */
export async function chooseBuilder(builders: readonly Builder[], source: BuildSource): Promise<Builder> {
  for (const b of builders) if (await b.detect(source)) return b;
  throw new Error(`no builder accepts ${source.commit.slice(0, 7)}`);
}

/** berth-INSTANCE/APP: the instance id keeps two daemons on one engine from sharing tags. */
export function imageRepository(instance: string, app: string): string {
  return `berth-${instance}/${app}`;
}

export function imageTag(instance: string, app: string, release: number): string {
  return `${imageRepository(instance, app)}:r${release}`;
}
