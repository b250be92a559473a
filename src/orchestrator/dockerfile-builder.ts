// Builds an app from the Dockerfile at the root of its repository through the engine's classic
// builder, streaming the build's own output to the pusher.
import type { Engine } from './engine.ts';
import { imageTag, type BuildJob, type BuildResult, type BuildSource, type Builder } from './builder.ts';

export class DockerfileBuilder implements Builder {
  readonly name = 'dockerfile' as const;
  readonly appFilesFromBuild = false;
  private readonly engine: Engine;
  private readonly memory: number;

  constructor(engine: Engine, memory: number) {
    this.engine = engine;
    this.memory = memory;
  }

  async detect(source: BuildSource): Promise<boolean> {
    return (await source.readFile('Dockerfile')) !== undefined;
  }

  async build(job: BuildJob): Promise<BuildResult> {
    const { source, out } = job;
    const tag = imageTag(this.engine.instance, source.app, job.release);
    out.step(`Building ${source.app} from Dockerfile`);
    await this.engine.build({
      context: source.archive(),
      tag,
      onLine: (line) => {
        if (line.trim()) out.detail(line);
      },
      memory: this.memory,
      ...(job.signal ? { signal: job.signal } : {}),
    });
    return { image: tag, builder: this.name, processTypes: { web: '' } };
  }
}
