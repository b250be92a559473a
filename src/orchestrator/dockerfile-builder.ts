// Builds an app from the Dockerfile at the root of its repository through the engine's classic
// builder, streaming the build's own output to the pusher. The images the Dockerfile reads are
// checked first (dockerfile-images.ts): never another app's. The engine reads the very Dockerfile
// that was checked: one that is a link in the repository is refused. Its cache is the app's own:
// a cached layer stands in for a step only when one of the app's release images was built on it
// (another app's layer with the same FROM and RUN would hand over whatever that RUN fetched). Its
// steps run on the app's own network, not on the bridge every build shares.
import { pipeline } from 'node:stream';
import { UserError } from '../errors.ts';
import { LABEL, type Engine, type NetworkOptions } from './engine.ts';
import { imageRepository, imageTag, type BuildJob, type BuildResult, type BuildSource, type Builder } from './builder.ts';
import { checkDockerfileImages } from './dockerfile-images.ts';
import { requireRegularFile } from './tar-files.ts';

export class DockerfileBuilder implements Builder {
  readonly name = 'dockerfile' as const;
  readonly appFilesFromBuild = false;
  private readonly engine: Engine;
  private readonly memory: number;
  private readonly network: (app: string) => string;
  /** The app's network is an overlay on the swarm scheduler (its build steps reach the linked services there too). */
  private readonly networkOptions: NetworkOptions;

  constructor(engine: Engine, memory: number, network: (app: string) => string, networkOptions: NetworkOptions = {}) {
    this.engine = engine;
    this.memory = memory;
    this.network = network;
    this.networkOptions = networkOptions;
  }

  async detect(source: BuildSource): Promise<boolean> {
    return (await source.readFile('Dockerfile')) !== undefined;
  }

  async build(job: BuildJob): Promise<BuildResult> {
    const { source, out } = job;
    const tag = imageTag(this.engine.instance, source.app, job.release);
    out.step(`Building ${source.app} from Dockerfile`);
    const dockerfile = await source.readFile('Dockerfile');
    if (dockerfile === undefined) throw new Error('the Dockerfile went missing');
    await checkDockerfileImages(dockerfile.toString('utf8'), this.engine, source.app, (ref) => out.detail(`pulling ${ref} (the base image's ONBUILD triggers are checked before the build)`));
    let refused: UserError | undefined;
    const guard = requireRegularFile('Dockerfile', () => (refused = new UserError('dockerfile_link', 'the Dockerfile is a link: a Dockerfile build reads a Dockerfile that is a regular file', { hint: 'commit the Dockerfile itself at the root of the repository' })));
    // Every image in the app's repository is one of its releases, built by or given to it.
    const cacheFrom = await this.engine.imagesOf(imageRepository(this.engine.instance, source.app));
    const network = this.network(source.app);
    await this.engine.ensureNetwork(network, { [LABEL.app]: source.app }, this.networkOptions);
    const context = pipeline(source.archive(), guard, () => {});
    try {
      await this.engine.build({
        context,
        tag,
        onLine: (line) => (line.trim() ? out.detail(line) : undefined),
        memory: this.memory,
        cacheFrom,
        network,
        ...(job.signal ? { signal: job.signal } : {}),
      });
    } catch (e) {
      throw refused ?? e;
    } finally {
      // The engine may stop reading early (a failed step): the archive is not left waiting.
      context.destroy();
    }
    if (refused) throw refused;
    return { image: tag, builder: this.name, processTypes: { web: '' } };
  }
}
