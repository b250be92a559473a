// Builds an app with Heroku buildpacks (used when there is no Dockerfile), as Heroku and
// herokuish run them: the buildpacks are chosen (BUILDPACK_URL, buildpacks:set, .buildpacks, or
// detection over the default list), fetched (or taken from the kept copies), and run by berth's
// runner in a container made from the stack image, as an unprivileged user with HOME=/app, STACK
// set to the stack id, the app's cache volume, and its config in ENV_DIR. Only the built app
// (/app) goes into the release image, a fresh container of the stack image with /start and /exec.
import { randomBytes } from 'node:crypto';
import type { Output } from '../ui/output.ts';
import { UserError } from '../errors.ts';
import { log } from '../log.ts';
import { redactUrl } from '../redact.ts';
import { imageTag, type BuildJob, type BuildResult, type BuildSource, type Builder } from './builder.ts';
import { BuildpackFetcher, buildpackName, parseBuildpackUrl, type FetchedBuildpack } from './buildpack-fetcher.ts';
import { EXEC, RUNNER, RUNNER_EXIT, START, STEPS, processTypesFile } from './buildpack-scripts.ts';
import { stackIdFor, type StackId } from './buildpack-stack.ts';
import { MAX_APP_JSON_BYTES } from './app-json.ts';
import { BUILD_CAPABILITIES, BUILD_TIMEOUT_MS, LABEL, type Engine, type NetworkOptions } from './engine.ts';
import { parseProcfile, parseReleaseYaml } from './procfile.ts';
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
  /**
   * The network a build of the app runs on (created when missing): the app's own, so a build
   * reaches the internet and nothing of another app, not even its builds. Default: Docker's bridge.
   */
  network?: (app: string) => string;
  /** How that network is made: an overlay on the swarm scheduler. */
  networkOptions?: NetworkOptions;
  timeoutMs?: number;
}

/** Which buildpacks a build uses, and what chose them. */
export interface BuildpackChoice {
  urls: string[];
  /** `all`: each must accept the app; `detect`: the first that accepts it. */
  mode: 'all' | 'detect';
  from: 'BUILDPACK_URL' | 'buildpacks:set' | '.buildpacks' | 'the default list';
}

/** Processes and threads a buildpack build may hold at once: compilers and package managers run many, a fork bomb stops here. */
export const BUILD_PIDS = 4096;

/** Build containers are found by this name prefix (they carry no labels, which a commit would copy into the image). */
export function buildContainerPrefix(instance: string): string {
  return `berth-build.${instance}.`;
}

export function cacheVolume(instance: string, app: string): string {
  return `berth-cache.${instance}.${app}`;
}

/**
 * BUILDPACK_URL wins over buildpacks:set, which wins over the repository's .buildpacks (Dokku's
 * order). BUILDPACK_URL and .buildpacks come from whoever may push or set config, so they may name
 * only URLs: a folder on the server is refused before it is looked at.
 */
export async function chooseBuildpacks(source: BuildSource, app: BuildJob['app'], defaults: readonly string[]): Promise<BuildpackChoice> {
  const fromConfig = app.config.BUILDPACK_URL?.trim();
  if (fromConfig) return onlyUrls({ urls: [fromConfig], mode: 'all', from: 'BUILDPACK_URL' });
  if (app.buildpacks.length) return { urls: [...app.buildpacks], mode: 'all', from: 'buildpacks:set' };
  const file = await source.readFile('.buildpacks');
  if (file) {
    const urls = file
      .toString('utf8')
      .split(/\r?\n/)
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    if (urls.length) return onlyUrls({ urls, mode: 'all', from: '.buildpacks' });
  }
  return { urls: [...defaults], mode: 'detect', from: 'the default list' };
}

function onlyUrls(choice: BuildpackChoice): BuildpackChoice {
  for (const url of choice.urls) {
    if (parseBuildpackUrl(url).kind !== 'dir') continue;
    throw new UserError('buildpack_folder_refused', `${choice.from} names ${url}, a folder on the server: ${choice.from} may name only buildpack URLs`, {
      hint: 'use a git URL (https://host/repo.git#ref), heroku/NAME or a tarball URL; an admin may set a folder on the server with buildpacks:set',
    });
  }
  return choice;
}

export class BuildpackBuilder implements Builder {
  readonly name = 'buildpacks' as const;
  readonly appFilesFromBuild = true;
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
    const stackId = stackIdFor(app.config, stack, stackConfig.env, stackConfig.labels);
    out.detail(`STACK=${stackId.id} (from ${stackId.from})`);
    await this.o.fetcher.remember(source.app, fetched.map((b) => b.url)).catch((e) => log.warn('buildpacks_remember_failed', { app: source.app, error: e }));

    const volume = cacheVolume(engine.instance, source.app);
    await engine.ensureVolume(volume, { [LABEL.app]: source.app });
    const network = this.o.network?.(source.app) ?? 'bridge';
    if (network !== 'bridge') await engine.ensureNetwork(network, { [LABEL.app]: source.app }, this.o.networkOptions);
    const name = `${buildContainerPrefix(engine.instance)}${source.app}.r${job.release}.${randomBytes(2).toString('hex')}`;
    const id = await engine.create({
      name,
      image: stack,
      env: buildEnv(stackId, source.commit),
      labels: {},
      network,
      aliases: [],
      entrypoint: [],
      cmd: ['bash', '/berth/build', choice.mode === 'detect' ? 'detect' : 'all', stackConfig.user],
      user: '0',
      workingDir: '/tmp/build',
      restart: false,
      memory: this.o.memory,
      pids: BUILD_PIDS,
      capabilities: BUILD_CAPABILITIES,
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
      if (result.code !== 0) throw runnerFailure(result.code, choice, fetched, unreachable, stack);
      const built = await this.readBuildOutput(id);
      const procfile = built.procfile === undefined ? {} : parseProcfile(built.procfile);
      const processTypes = { ...built.release.processTypes, ...procfile };

      const tag = imageTag(engine.instance, source.app, job.release);
      await this.makeImage(id, `${name}.slug`, tag, stack, stackConfig.env, built, processTypes);
      out.step(`Built image ${tag}`);
      return { image: tag, builder: this.name, processTypes, appFiles: { procfile: built.procfile, appJson: built.appJson } };
    } finally {
      await engine.stopAndRemove(id, 0).catch((e) => log.warn('build_container_remove_failed', { id, error: e }));
    }
  }

  // The release image: a fresh container of the stack image that gets the built app (/app of the
  // build container) and berth's launch scripts, nothing else the build left behind, committed.
  private async makeImage(buildId: string, name: string, tag: string, stack: string, stackEnv: readonly string[], built: BuildOutput, processTypes: Record<string, string>): Promise<void> {
    const engine = this.o.engine;
    const slugId = await engine.create({ name, image: stack, env: {}, labels: {}, network: 'none', aliases: [], entrypoint: [], cmd: ['/exec'], restart: false });
    try {
      await engine.putArchive(slugId, '/', await engine.getArchive(buildId, '/app'));
      await engine.putArchive(slugId, '/', makeTar(launchEntries(processTypes, built.passwd, built.group)));
      const [repo, version] = splitTag(tag);
      // bin/release config_vars are defaults: the image's env, which the app's config overrides.
      const configEnv = Object.entries(built.release.configVars)
        .filter(([k]) => !stackEnv.some((e) => e.startsWith(`${k}=`)))
        .map(([k, v]) => `${k}=${v}`);
      await engine.commit(slugId, repo, version, {
        entrypoint: [],
        cmd: processTypes.web ? ['/start', 'web'] : ['/exec'],
        workingDir: '/app',
        user: built.user,
        env: [...stackEnv.filter((e) => !e.startsWith('HOME=')), 'HOME=/app', ...configEnv],
      });
    } finally {
      await engine.stopAndRemove(slugId, 0).catch((e) => log.warn('build_container_remove_failed', { id: slugId, error: e }));
    }
  }

  private async ensureStack(stack: string, out: Output): Promise<{ user: string; env: string[]; labels: Record<string, string> }> {
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
    return { user: config.user, env: config.env, labels: (await this.o.engine.imageLabels(stack)) ?? {} };
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
        out.detail(`${redactUrl(url)}: ${e.message.replace(/^could not fetch buildpack \S+: /, 'could not fetch: ')}`);
      }
    }
    if (fetched.length) out.detail(`buildpacks: ${fetched.map((b) => b.name).join(', ')}`);
    const kept = fetched.filter((b) => b.cached);
    if (kept.length) {
      const oldest = new Date(Math.min(...kept.map((b) => b.fetchedAt?.getTime() ?? Date.now())));
      out.detail(`using the copies kept on this server of ${kept.map((b) => b.name).join(', ')} (fetched since ${oldest.toISOString().slice(0, 16).replace('T', ' ')} UTC; buildpacks:update refreshes them)`);
    }
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

  // What the runner left in /berth/out: the build user, the last buildpack's bin/release output,
  // the built app's Procfile and app.json, and the passwd and group files that name the user.
  private async readBuildOutput(id: string): Promise<BuildOutput> {
    const files = await readTarFiles(await this.o.engine.getArchive(id, '/berth/out'), 4 * 1024 * 1024);
    const text = (name: string) => files.get(`out/${name}`)?.toString('utf8');
    const appJson = files.get('out/app.json');
    if (appJson && appJson.length > MAX_APP_JSON_BYTES) {
      throw new UserError('invalid_app_json', `app.json is larger than ${MAX_APP_JSON_BYTES / 1024} KiB`, { hint: 'app.json holds settings such as healthchecks; keep it small' });
    }
    const user = text('user')?.trim();
    if (!user || !/^\d+:\d+$/.test(user)) throw new Error('the build runner did not record its user');
    return {
      user,
      release: parseReleaseYaml(text('release.yml') ?? ''),
      procfile: text('Procfile'),
      appJson: appJson?.toString('utf8'),
      passwd: text('passwd') ?? '',
      group: text('group') ?? '',
    };
  }
}

interface BuildOutput {
  /** uid:gid the buildpacks ran as; the release's processes run as it too. */
  user: string;
  release: ReturnType<typeof parseReleaseYaml>;
  procfile: string | undefined;
  appJson: string | undefined;
  passwd: string;
  group: string;
}

/** The build's environment, as Heroku and herokuish set it (config vars are in ENV_DIR only). */
function buildEnv(stack: StackId, commit: string): Record<string, string> {
  return {
    STACK: stack.id,
    SOURCE_VERSION: commit,
    REQUEST_ID: `build-${randomBytes(8).toString('hex')}`,
    HOME: '/app',
    APP_DIR: '/app',
    CURL_CONNECT_TIMEOUT: '30',
    CURL_TIMEOUT: '180',
  };
}

// /berth (runner, steps), /tmp/env (one file per config var), /tmp/buildpacks/NN-name.
function setupEntries(config: Record<string, string>, buildpacks: readonly FetchedBuildpack[]): TarEntry[] {
  const entries: TarEntry[] = [
    { name: 'berth', type: 'directory' },
    { name: 'berth/build', type: 'file', content: RUNNER, mode: 0o755 },
    { name: 'berth/steps', type: 'file', content: STEPS, mode: 0o755 },
    { name: 'tmp', type: 'directory', mode: 0o1777 },
    { name: 'tmp/build', type: 'directory' },
    { name: 'tmp/env', type: 'directory', mode: 0o700 },
    { name: 'tmp/buildpacks', type: 'directory' },
  ];
  for (const [key, value] of Object.entries(config)) entries.push({ name: `tmp/env/${key}`, type: 'file', content: value, mode: 0o600 });
  buildpacks.forEach((bp, i) => entries.push({ name: `tmp/buildpacks/${String(i).padStart(2, '0')}-${bp.name}`, type: 'tree', from: bp.dir }));
  return entries;
}

// What the release image gets besides /app: /start, /exec, the process types /start reads, and
// the passwd and group files that name the user its processes run as.
function launchEntries(processTypes: Record<string, string>, passwd: string, group: string): TarEntry[] {
  return [
    { name: 'start', type: 'file', content: START, mode: 0o755 },
    { name: 'exec', type: 'file', content: EXEC, mode: 0o755 },
    { name: 'berth', type: 'directory' },
    { name: 'berth/process-types', type: 'file', content: processTypesFile(processTypes), mode: 0o644 },
    ...(passwd ? [{ name: 'etc/passwd', type: 'file' as const, content: passwd, mode: 0o644 }] : []),
    ...(group ? [{ name: 'etc/group', type: 'file' as const, content: group, mode: 0o644 }] : []),
  ];
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
  const parts = [...tried.map((b) => `${b.name} (did not detect the app)`), ...unreachable.map((u) => `${redactUrl(u)} (could not be fetched)`)];
  return new UserError('no_buildpack_detected', `no buildpack detected; tried ${parts.join(', ')}`, {
    hint:
      unreachable.length && unreachable.length === choice.urls.length
        ? 'none of the default buildpacks could be fetched from this server: set buildpacks with buildpacks:set APP URL (a folder on the server works), or change --buildpacks'
        : 'add a Dockerfile, name a buildpack (.buildpacks, BUILDPACK_URL or buildpacks:set APP URL), or add the files a buildpack looks for (such as package.json)',
  });
}

function runnerFailure(code: number, choice: BuildpackChoice, fetched: readonly FetchedBuildpack[], unreachable: readonly string[], stack: string): UserError {
  const at = (base: number) => fetched[code - base]?.name ?? buildpackName(choice.urls[code - base] ?? 'buildpack');
  if (code === RUNNER_EXIT.noneDetected) return noneDetected(choice, fetched, unreachable);
  if (code === RUNNER_EXIT.noSetpriv || code === RUNNER_EXIT.unknownUser) {
    return new UserError('stack_image_unsupported', `the stack image ${stack} cannot run buildpacks as an unprivileged user (see the line above)`, {
      hint: "use a Heroku stack image (heroku/heroku:24-build), or one with util-linux's setpriv (or su) and its user in /etc/passwd",
    });
  }
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
