// How source becomes an image: a Builder per strategy, chosen by detect() in a fixed order.
import type { Readable } from 'node:stream';
import type { Output } from '../cli/output.ts';
import { UserError } from '../errors.ts';

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
  /** The release number the image is built for; part of its tag. */
  release: number;
  out: Output;
  signal?: AbortSignal;
}

export interface BuildResult {
  image: string;
  builder: 'dockerfile';
}

export interface Builder {
  readonly name: BuildResult['builder'];
  detect(source: BuildSource): Promise<boolean>;
  build(job: BuildJob): Promise<BuildResult>;
}

/** The first builder whose detect() accepts the source. */
export async function chooseBuilder(builders: readonly Builder[], source: BuildSource): Promise<Builder> {
  for (const b of builders) if (await b.detect(source)) return b;
  throw new UserError('no_builder', `no Dockerfile at the root of ${source.commit.slice(0, 7)}: berth builds apps from a Dockerfile`, {
    hint: 'add a Dockerfile at the repository root and push again (buildpack builds are not available yet)',
  });
}

export function imageTag(app: string, release: number): string {
  return `berth/${app}:r${release}`;
}
