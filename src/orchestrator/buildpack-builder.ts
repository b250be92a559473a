// Builds an app with Heroku buildpacks (used when there is no Dockerfile): the buildpacks are
// chosen (BUILDPACK_URL, buildpacks:set, .buildpacks, or detection over the default list),
// fetched, and run by berth's runner in a container made from the stack image, with the app's
// cache volume and its config in ENV_DIR. The container, committed, is the release's image.
import { randomBytes } from 'node:crypto';
import type { Output } from '../cli/output.ts';
import { UserError } from '../errors.ts';
import { log } from '../log.ts';
import { imageTag, type BuildJob, type BuildResult, type BuildSource, type Builder } from './builder.ts';
import { BuildpackFetcher, buildpackName, type FetchedBuildpack } from './buildpack-fetcher.ts';
import { LAUNCHER, RUNNER, RUNNER_EXIT } from './buildpack-scripts.ts';
import { BUILD_TIMEOUT_MS, LABEL, type Engine } from './engine.ts';
import { parseReleaseYaml } from './procfile.ts';
import { makeTar, readTarFiles, type TarEntry } from './tar-files.ts';

export interface BuildpackBuilderOptions {
  engine: Engine;
  fetcher: BuildpackFetcher;
  /** --stack-image: used unless the app has its own. */
  stackImage: string;
  /** --buildpacks: tried in order when the app names none. */
  defaultBuildpacks: readonly string[];
  /** --build-memory, bytes. */
  memory: number;
  timeoutMs?: number;
}

/** Which buildpacks a build uses, and what chose them. */
export interface BuildpackChoice {
  urls: string[];
  /** `all`: each must accept the app; `detect`: the first that accepts it. */
  mode: 'all' | 'detect';
  from: 'BUILDPACK_URL' | 'buildpacks:set' | '.buildpacks' | 'the default list';
}

/** Build containers are found by this name prefix (they carry no labels, which a commit would copy into the image). */
export function buildContainerPrefix(instance: string): string {
  return `berth-build.${instance}.`;
}

export function cacheVolume(instance: string, app: string): string {
  return `berth-cache.${instance}.${app}`;
}

/** BUILDPACK_URL wins over buildpacks:set, which wins over the repository's .buildpacks (Dokku's order). */
export async function chooseBuildpacks(source: BuildSource, app: BuildJob['app'], defaults: readonly string[]): Promise<BuildpackChoice> {
  const fromConfig = app.config.BUILDPACK_URL?.trim();
  if (fromConfig) return { urls: [fromConfig], mode: 'all', from: 'BUILDPACK_URL' };
  if (app.buildpacks.length) return { urls: [...app.buildpacks], mode: 'all', from: 'buildpacks:set' };
  const file = await source.readFile('.buildpacks');
  if (file) {
    const urls = file
      .toString('utf8')
      .split(/\r?\n/)
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    if (urls.length) return { urls, mode: 'all', from: '.buildpacks' };
  }
  return { urls: [...defaults], mode: 'detect', from: 'the default list' };
}

export class BuildpackBuilder implements Builder {
  readonly name = 'buildpacks' as const;
  private readonly o: BuildpackBuilderOptions;

  constructor(options: BuildpackBuilderOptions) {
    this.o = options;
  }

  async detect(): Promise<boolean> {
    return true;
  }

  async build(job: BuildJob): Promise<BuildResult> {
    const { source, app, out } = job;
    const engine = this.o.engine;
    const stack = app.stack ?? this.o.stackImage;
    const choice = await chooseBuildpacks(source, app, this.o.defaultBuildpacks);
    out.step(`Building ${source.app} with buildpacks (from ${choice.from}) on ${stack}`);
    const { fetched, unreachable } = await this.fetchAll(choice, out);
    if (fetched.length === 0) throw noneDetected(choice, [], unreachable);
    const stackConfig = await this.ensureStack(stack, out);

    const volume = cacheVolume(engine.instance, source.app);
    await engine.ensureVolume(volume, { [LABEL.app]: source.app });
    const id = await engine.create({
      name: `${buildContainerPrefix(engine.instance)}${source.app}.r${job.release}.${randomBytes(2).toString('hex')}`,
      image: stack,
      env: {},
      labels: {},
      network: 'bridge',
      aliases: [],
      entrypoint: [],
      cmd: ['bash', '/berth/build', choice.mode === 'detect' ? 'detect' : 'all', stack, source.commit, stackConfig.user],
      user: '0',
      workingDir: '/tmp/build',
      restart: false,
      memory: this.o.memory,
      binds: [`${volume}:/tmp/cache`],
    });
    try {
      await engine.putArchive(id, '/', makeTar(setupEntries(app.config, fetched)));
      await engine.putArchive(id, '/tmp/build', source.archive());
      const output = await attachLines(engine, id, (line) => out.line(line));
      await engine.start(id);
      const result = await this.waitWithLimits(id, job.signal);
      await output.ended;
      if (result.oomKilled || result.code === 137) {
        throw new UserError('build_out_of_memory', `the build ran out of memory (limit ${Math.round(this.o.memory / 1024 ** 2)} MiB) and was stopped`, {
          hint: 'make the build use less memory, or raise the limit with --build-memory (BERTH_BUILD_MEMORY)',
        });
      }
      if (result.code !== 0) throw runnerFailure(result.code, choice, fetched, unreachable);
      const releaseInfo = await this.readReleaseInfo(id);
      const tag = imageTag(engine.instance, source.app, job.release);
      const [repo, version] = splitTag(tag);
      const web = releaseInfo.processTypes.web;
      const configEnv = Object.entries(releaseInfo.configVars)
        .filter(([k]) => !stackConfig.env.some((e) => e.startsWith(`${k}=`)))
        .map(([k, v]) => `${k}=${v}`);
      await engine.commit(id, repo, version, {
        entrypoint: ['/berth/launch'],
        cmd: web ? [web] : [],
        workingDir: '/app',
        user: stackConfig.user,
        env: [...stackConfig.env.filter((e) => !e.startsWith('HOME=')), 'HOME=/app', ...configEnv],
      });
      out.step(`Built image ${tag}`);
      return { image: tag, builder: this.name, processTypes: releaseInfo.processTypes };
    } finally {
      await engine.stopAndRemove(id, 0).catch((e) => log.warn('build_container_remove_failed', { id, error: e }));
    }
  }

  private async ensureStack(stack: string, out: Output): Promise<{ user: string; env: string[] }> {
    let config = await this.o.engine.imageConfig(stack);
    if (!config) {
      out.step(`Pulling stack image ${stack}`);
      try {
        await this.o.engine.pull(stack);
      } catch (e) {
        throw new UserError('stack_image_missing', `the stack image ${stack} is not on the Docker engine and could not be pulled: ${(e as Error).message}`, {
          cause: e,
          hint: 'load it onto the engine (docker pull or docker load), or choose another with --stack-image or buildpacks:set-stack APP IMAGE',
        });
      }
      config = await this.o.engine.imageConfig(stack);
      if (!config) throw new Error(`the stack image ${stack} is still missing after a pull`);
    }
    return { user: config.user, env: config.env };
  }

  private async fetchAll(choice: BuildpackChoice, out: Output): Promise<{ fetched: FetchedBuildpack[]; unreachable: string[] }> {
    const fetched: FetchedBuildpack[] = [];
    const unreachable: string[] = [];
    for (const url of choice.urls) {
      try {
        fetched.push(await this.o.fetcher.fetch(url));
      } catch (e) {
        // Detection goes on without a buildpack it cannot fetch; a named buildpack must be there.
        if (choice.mode === 'all' || !(e instanceof UserError)) throw e;
        unreachable.push(url);
        out.detail(`${url}: ${e.message.replace(/^could not fetch buildpack \S+: /, 'could not fetch: ')}`);
      }
    }
    if (fetched.length) out.detail(`buildpacks: ${fetched.map((b) => b.name).join(', ')}`);
    return { fetched, unreachable };
  }

  private async waitWithLimits(id: string, signal: AbortSignal | undefined): Promise<{ code: number; oomKilled: boolean }> {
    const timeoutMs = this.o.timeoutMs ?? BUILD_TIMEOUT_MS;
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    const stopped = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new UserError('build_timeout', `the build did not finish within ${Math.round(timeoutMs / 1000)} s`)), timeoutMs);
      onAbort = () => reject(new UserError('build_aborted', 'the build was cancelled'));
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    try {
      return await Promise.race([this.o.engine.wait(id), stopped]);
    } finally {
      clearTimeout(timer);
      if (onAbort) signal?.removeEventListener('abort', onAbort);
    }
  }

  // Every buildpack's bin/release output, later buildpacks overriding earlier ones.
  private async readReleaseInfo(id: string): Promise<{ processTypes: Record<string, string>; configVars: Record<string, string> }> {
    const files = await readTarFiles(await this.o.engine.getArchive(id, '/berth/release'));
    const merged = { processTypes: {} as Record<string, string>, configVars: {} as Record<string, string> };
    for (const name of [...files.keys()].sort()) {
      const parsed = parseReleaseYaml(files.get(name)!.toString('utf8'));
      Object.assign(merged.processTypes, parsed.processTypes);
      Object.assign(merged.configVars, parsed.configVars);
    }
    return merged;
  }
}

// /berth (runner, launcher), /tmp/env (one file per config var), /tmp/buildpacks/NN-name.
function setupEntries(config: Record<string, string>, buildpacks: readonly FetchedBuildpack[]): TarEntry[] {
  const entries: TarEntry[] = [
    { name: 'berth', type: 'directory' },
    { name: 'berth/build', type: 'file', content: RUNNER, mode: 0o755 },
    { name: 'berth/launch', type: 'file', content: LAUNCHER, mode: 0o755 },
    { name: 'berth/release', type: 'directory' },
    { name: 'tmp', type: 'directory', mode: 0o1777 },
    { name: 'tmp/build', type: 'directory' },
    { name: 'tmp/env', type: 'directory', mode: 0o700 },
    { name: 'tmp/buildpacks', type: 'directory' },
  ];
  for (const [key, value] of Object.entries(config)) entries.push({ name: `tmp/env/${key}`, type: 'file', content: value, mode: 0o600 });
  buildpacks.forEach((bp, i) => entries.push({ name: `tmp/buildpacks/${String(i).padStart(2, '0')}-${bp.name}`, type: 'tree', from: bp.dir }));
  return entries;
}

// The build container's stdout and stderr as lines; `ended` settles once its output ended.
async function attachLines(engine: Engine, id: string, onLine: (line: string) => void | Promise<void>): Promise<{ ended: Promise<void> }> {
  let partial = '';
  // A promise from onLine (a slow client) holds the container's output back until it settles.
  const onData = (data: Buffer) => {
    const lines = (partial + data.toString('utf8')).split('\n');
    partial = lines.pop() ?? '';
    let pending: void | Promise<void> = undefined;
    for (const line of lines) pending = onLine(line.replace(/\r$/, '')) ?? pending;
    return pending;
  };
  const attachment = await engine.attach(id, { stdin: false, tty: false, onStdout: onData, onStderr: onData });
  const ended = attachment.ended.then(() => {
    if (partial) onLine(partial);
    partial = '';
  });
  return { ended };
}

function noneDetected(choice: BuildpackChoice, tried: readonly FetchedBuildpack[], unreachable: readonly string[]): UserError {
  const parts = [...tried.map((b) => `${b.name} (did not detect the app)`), ...unreachable.map((u) => `${u} (could not be fetched)`)];
  return new UserError('no_buildpack_detected', `no buildpack detected; tried ${parts.join(', ')}`, {
    hint:
      unreachable.length && unreachable.length === choice.urls.length
        ? 'none of the default buildpacks could be fetched from this server: set buildpacks with buildpacks:set APP URL (a folder on the server works), or change --buildpacks'
        : 'add a Dockerfile, name a buildpack (.buildpacks, BUILDPACK_URL or buildpacks:set APP URL), or add the files a buildpack looks for (such as package.json)',
  });
}

function runnerFailure(code: number, choice: BuildpackChoice, fetched: readonly FetchedBuildpack[], unreachable: readonly string[]): UserError {
  const at = (base: number) => fetched[code - base]?.name ?? buildpackName(choice.urls[code - base] ?? 'buildpack');
  if (code === RUNNER_EXIT.noneDetected) return noneDetected(choice, fetched, unreachable);
  if (code >= RUNNER_EXIT.notCompatible && code < RUNNER_EXIT.compileFailed) {
    return new UserError('buildpack_not_compatible', `the app is not compatible with buildpack ${at(RUNNER_EXIT.notCompatible)} (its bin/detect refused it)`, {
      hint: `check the buildpacks named by ${choice.from}`,
    });
  }
  if (code >= RUNNER_EXIT.compileFailed && code < RUNNER_EXIT.releaseFailed) {
    return new UserError('buildpack_compile_failed', `buildpack ${at(RUNNER_EXIT.compileFailed)} failed to compile the app`, { hint: 'its output is above' });
  }
  if (code >= RUNNER_EXIT.releaseFailed && code < RUNNER_EXIT.releaseFailed + 20) {
    return new UserError('buildpack_release_failed', `bin/release of buildpack ${at(RUNNER_EXIT.releaseFailed)} failed`);
  }
  return new UserError('build_failed', `the buildpack build failed (exit status ${code})`, { hint: 'its output is above; the stack image needs bash' });
}

function splitTag(tag: string): [string, string] {
  const i = tag.lastIndexOf(':');
  return [tag.slice(0, i), tag.slice(i + 1)];
}
