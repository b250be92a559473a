// The Docker engine as berth uses it: connect, build from a tar stream, run and inspect labelled
// containers, read their logs. dockerode is loaded lazily so CLI commands start fast.
import type { Readable } from 'node:stream';
import type Dockerode from 'dockerode';
import { UserError } from '../errors.ts';

export const LABEL = {
  managed: 'berth.managed',
  /** Which berth data dir owns the object, so two daemons can share one engine. */
  instance: 'berth.instance',
  app: 'berth.app',
  process: 'berth.process',
  release: 'berth.release',
  dyno: 'berth.dyno',
  /** `process` (a dyno of the formation), `run` (a one-off) or `build` (a buildpack build). */
  role: 'berth.role',
} as const;

export type Role = 'process' | 'run' | 'build';

/** Longest a build may run before it is stopped and the push fails. */
export const BUILD_TIMEOUT_MS = 30 * 60_000;

export interface ContainerSpec {
  name: string;
  image: string;
  env: Record<string, string>;
  labels: Record<string, string>;
  network: string;
  aliases: string[];
  /** Overrides the image's CMD. */
  cmd?: string[];
  /** Overrides the image's ENTRYPOINT ([] clears it). */
  entrypoint?: string[];
  /** Bytes of memory (swap included: no swap beyond it). */
  memory?: number;
  /** CPUs, such as 0.5. */
  cpus?: number;
  /** Bind mounts, `/host:/container[:ro]`, and named volumes, `name:/container`. */
  binds?: string[];
  /** Restart when it exits (dynos); one-offs and builds do not. Default true. */
  restart?: boolean;
  user?: string;
  workingDir?: string;
  /** For one-offs: keep stdin open, and give a terminal when asked. */
  stdin?: boolean;
  tty?: boolean;
}

export interface ContainerState {
  id: string;
  name: string;
  labels: Record<string, string>;
  running: boolean;
  status: string;
  exitCode: number;
  restartCount: number;
  ip: string | undefined;
  /** When the container last started (ms since the epoch); undefined when it never did. */
  startedAt: number | undefined;
  /** The kernel killed it for running out of memory. */
  oomKilled: boolean;
}

export class Engine {
  readonly docker: Dockerode;
  readonly where: string;
  readonly instance: string;

  private constructor(docker: Dockerode, where: string, instance: string) {
    this.docker = docker;
    this.where = where;
    this.instance = instance;
  }

  static async connect(dockerHost: string, instance: string): Promise<Engine> {
    const { default: Docker } = await import('dockerode');
    const docker = new Docker(dockerOptions(dockerHost));
    const engine = new Engine(docker, dockerHost, instance);
    try {
      await docker.ping();
    } catch (e) {
      throw new UserError('docker_unreachable', `no Docker engine answers at ${dockerHost}: ${(e as Error).message}`, {
        cause: e,
        hint: 'start one (as root: apt-get install -y docker.io iptables && dockerd &), or point --docker-host / BERTH_DOCKER_HOST at it',
      });
    }
    return engine;
  }

  async ensureNetwork(name: string): Promise<void> {
    const existing = await this.docker.listNetworks({ filters: { name: [name] } });
    if (existing.some((n) => n.Name === name)) return;
    try {
      await this.docker.createNetwork({ Name: name, Driver: 'bridge', CheckDuplicate: true, Labels: { [LABEL.managed]: '1' } });
    } catch (e) {
      if ((e as { statusCode?: number }).statusCode !== 409) throw new Error(`creating Docker network ${name}: ${(e as Error).message}`, { cause: e });
    }
  }

  async imageExists(ref: string): Promise<boolean> {
    try {
      await this.docker.getImage(ref).inspect();
      return true;
    } catch (e) {
      if ((e as { statusCode?: number }).statusCode === 404) return false;
      throw e;
    }
  }

  /**
   * Builds an image from a tar build context with the classic builder, streaming output lines.
   * The engine reports a failed step as an event, not as an error, so any `error` event rejects.
   */
  async build(options: { context: Readable; tag: string; onLine: (line: string) => void; timeoutMs?: number; signal?: AbortSignal; memory?: number }): Promise<string> {
    const stream = (await this.docker.buildImage(options.context as unknown as NodeJS.ReadableStream, {
      // No build-time labels: the classic builder turns each into an extra step with its own
      // container. Images are found by their tag, berth/APP:rN.
      t: options.tag,
      rm: true,
      forcerm: true,
      ...(options.memory ? { memory: options.memory, memswap: options.memory } : {}),
    })) as unknown as Readable;
    return new Promise<string>((resolve, reject) => {
      let imageId: string | undefined;
      let failure: string | undefined;
      let partial = '';
      let settled = false;
      const finish = (err?: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        if (partial) options.onLine(partial);
        if (err) return reject(err);
        if (failure) {
          const oom = /returned a non-zero code: 137/.test(failure) && options.memory;
          return reject(
            new UserError('build_failed', `the Docker build failed: ${failure.trim()}${oom ? ` (killed: the build ran out of memory, limit ${Math.round(options.memory! / 1024 ** 2)} MiB)` : ''}`, oom ? { hint: 'raise --build-memory, or make the build use less memory' } : {}),
          );
        }
        if (!imageId) return reject(new Error('the Docker build ended without an image id'));
        resolve(imageId);
      };
      const timeoutMs = options.timeoutMs ?? BUILD_TIMEOUT_MS;
      const timer = setTimeout(() => {
        stream.destroy();
        finish(new UserError('build_timeout', `the build did not finish within ${Math.round(timeoutMs / 1000)} s`));
      }, timeoutMs);
      const onAbort = () => {
        stream.destroy();
        finish(new UserError('build_aborted', 'the build was cancelled'));
      };
      options.signal?.addEventListener('abort', onAbort, { once: true });
      this.docker.modem.followProgress(
        stream as unknown as NodeJS.ReadableStream,
        (err) => finish(err ?? undefined),
        (event: { stream?: string; error?: string; errorDetail?: { message?: string }; aux?: { ID?: string }; status?: string }) => {
          if (event.error || event.errorDetail) failure = event.errorDetail?.message ?? event.error;
          if (event.aux?.ID) imageId = event.aux.ID;
          const text = event.stream ?? (event.status ? event.status + '\n' : '');
          if (!text) return;
          const lines = (partial + text).split('\n');
          partial = lines.pop() ?? '';
          for (const line of lines) options.onLine(line.replace(/\r$/, ''));
        },
      );
    });
  }

  async run(spec: ContainerSpec): Promise<ContainerState> {
    const container = await this.create(spec);
    await container.start();
    return this.inspect(container.id);
  }

  /** Creates (does not start) a labelled container. */
  async create(spec: ContainerSpec): Promise<Dockerode.Container> {
    return this.docker.createContainer({
      name: spec.name,
      Image: spec.image,
      Env: Object.entries(spec.env).map(([k, v]) => `${k}=${v}`),
      Labels: { [LABEL.managed]: '1', [LABEL.instance]: this.instance, ...spec.labels },
      ...(spec.cmd ? { Cmd: spec.cmd } : {}),
      ...(spec.entrypoint ? { Entrypoint: spec.entrypoint } : {}),
      ...(spec.user !== undefined ? { User: spec.user } : {}),
      ...(spec.workingDir ? { WorkingDir: spec.workingDir } : {}),
      ...(spec.stdin ? { OpenStdin: true, StdinOnce: true, AttachStdin: true, AttachStdout: true, AttachStderr: true } : {}),
      Tty: spec.tty === true,
      HostConfig: {
        NetworkMode: spec.network,
        RestartPolicy: spec.restart === false ? { Name: 'no' } : { Name: 'unless-stopped' },
        Init: true,
        ...(spec.memory ? { Memory: spec.memory, MemorySwap: spec.memory } : {}),
        ...(spec.cpus ? { NanoCpus: Math.round(spec.cpus * 1e9) } : {}),
        ...(spec.binds?.length ? { Binds: spec.binds } : {}),
      },
      NetworkingConfig: { EndpointsConfig: { [spec.network]: { Aliases: spec.aliases } } },
    });
  }

  /** Attaches to a created container's output (and input when it has stdin), before it starts. */
  async attach(id: string, withStdin: boolean): Promise<NodeJS.ReadWriteStream> {
    return (await this.docker.getContainer(id).attach({ stream: true, stdout: true, stderr: true, stdin: withStdin, hijack: withStdin })) as NodeJS.ReadWriteStream;
  }

  /** Waits for the container to exit; its status code. */
  async wait(id: string): Promise<{ code: number; oomKilled: boolean }> {
    const r = (await this.docker.getContainer(id).wait()) as { StatusCode: number };
    const info = await this.docker.getContainer(id).inspect();
    return { code: r.StatusCode, oomKilled: info.State.OOMKilled === true };
  }

  async resize(id: string, rows: number, cols: number): Promise<void> {
    await this.docker.getContainer(id).resize({ h: rows, w: cols });
  }

  /** Extracts a tar stream into a directory of the container (which must exist). */
  async putArchive(id: string, dir: string, tar: Readable | Buffer): Promise<void> {
    await this.docker.getContainer(id).putArchive(tar as unknown as NodeJS.ReadableStream, { path: dir });
  }

  /** A path of a container (running or not) as a tar stream. */
  async getArchive(id: string, file: string): Promise<Readable> {
    return (await this.docker.getContainer(id).getArchive({ path: file })) as unknown as Readable;
  }

  /** Makes an image of a stopped container's filesystem; `config` replaces the fields it names. */
  async commit(id: string, repo: string, tag: string, config: Record<string, unknown>): Promise<string> {
    const r = (await this.docker.getContainer(id).commit({ _query: { container: id, repo, tag }, _body: config } as never)) as unknown as { Id?: string };
    return r.Id ?? `${repo}:${tag}`;
  }

  async tagImage(source: string, repo: string, tag: string): Promise<void> {
    await this.docker.getImage(source).tag({ repo, tag });
  }

  /** The parts of an image's config berth needs, or undefined when the engine does not have it. */
  async imageConfig(ref: string): Promise<{ user: string; entrypoint: string[]; cmd: string[]; env: string[]; workingDir: string } | undefined> {
    try {
      const info = await this.docker.getImage(ref).inspect();
      const list = (v: string | string[] | undefined | null) => (v == null ? [] : Array.isArray(v) ? v : [v]);
      return { user: info.Config?.User ?? '', entrypoint: list(info.Config?.Entrypoint), cmd: list(info.Config?.Cmd), env: info.Config?.Env ?? [], workingDir: info.Config?.WorkingDir ?? '' };
    } catch (e) {
      if ((e as { statusCode?: number }).statusCode === 404) return undefined;
      throw e;
    }
  }

  /** An image's labels, or undefined when the engine does not have it. */
  async imageLabels(ref: string): Promise<Record<string, string> | undefined> {
    try {
      return (await this.docker.getImage(ref).inspect()).Config?.Labels ?? {};
    } catch (e) {
      if ((e as { statusCode?: number }).statusCode === 404) return undefined;
      throw e;
    }
  }

  /** Pulls an image from its registry; rejects with the engine's reason. */
  async pull(ref: string): Promise<void> {
    const stream = (await this.docker.pull(ref)) as NodeJS.ReadableStream;
    await new Promise<void>((resolve, reject) => {
      let failure: string | undefined;
      this.docker.modem.followProgress(
        stream,
        (err) => (err ? reject(err) : failure ? reject(new Error(failure)) : resolve()),
        (event: { error?: string }) => {
          if (event.error) failure = event.error;
        },
      );
    });
  }

  /** A labelled named volume (created when missing). */
  async ensureVolume(name: string, labels: Record<string, string>): Promise<void> {
    await this.docker.createVolume({ Name: name, Labels: { [LABEL.managed]: '1', [LABEL.instance]: this.instance, ...labels } });
  }

  async removeVolume(name: string): Promise<void> {
    try {
      await this.docker.getVolume(name).remove();
    } catch (e) {
      const code = (e as { statusCode?: number }).statusCode;
      if (code !== 404 && code !== 409) throw e;
    }
  }

  /** A container's log stream (multiplexed unless it has a TTY), with timestamps. */
  async logStream(id: string, options: { follow: boolean; tail: number; since?: number }): Promise<NodeJS.ReadableStream> {
    const c = this.docker.getContainer(id);
    if (options.follow) {
      return (await c.logs({ stdout: true, stderr: true, timestamps: true, follow: true, tail: options.tail, ...(options.since ? { since: options.since } : {}) })) as NodeJS.ReadableStream;
    }
    const raw = (await c.logs({ stdout: true, stderr: true, timestamps: true, follow: false, tail: options.tail })) as unknown as Buffer;
    const { Readable: R } = await import('node:stream');
    return R.from([raw]);
  }

  async inspect(id: string): Promise<ContainerState> {
    const info = await this.docker.getContainer(id).inspect();
    const networks = info.NetworkSettings?.Networks ?? {};
    const ip = Object.values(networks).map((n) => n?.IPAddress).find((a) => a) || undefined;
    const startedAt = Date.parse(info.State.StartedAt ?? '');
    return {
      id: info.Id,
      name: info.Name.replace(/^\//, ''),
      labels: info.Config.Labels ?? {},
      running: info.State.Running,
      status: info.State.Status,
      exitCode: info.State.ExitCode,
      restartCount: info.RestartCount ?? 0,
      ip,
      startedAt: Number.isFinite(startedAt) && startedAt > 0 ? startedAt : undefined,
      oomKilled: info.State.OOMKilled === true,
    };
  }

  /** Containers berth made, narrowed by labels, running or not. */
  async list(labels: Record<string, string> = {}): Promise<ContainerState[]> {
    const filters = [`${LABEL.managed}=1`, `${LABEL.instance}=${this.instance}`, ...Object.entries(labels).map(([k, v]) => `${k}=${v}`)];
    const found = await this.docker.listContainers({ all: true, filters: { label: filters } });
    const states: ContainerState[] = [];
    for (const c of found) {
      try {
        states.push(await this.inspect(c.Id));
      } catch (e) {
        if ((e as { statusCode?: number }).statusCode !== 404) throw e;
      }
    }
    return states;
  }

  /** The last lines a container wrote to stdout and stderr, for failure reports. */
  async logs(id: string, tail = 50): Promise<string> {
    const raw = (await this.docker.getContainer(id).logs({ stdout: true, stderr: true, tail, follow: false })) as unknown as Buffer;
    return demux(raw);
  }

  /** SIGTERM, SIGKILL after `timeoutSec`, then remove. A container already gone is not an error. */
  async stopAndRemove(id: string, timeoutSec = 10): Promise<void> {
    const c = this.docker.getContainer(id);
    try {
      await c.stop({ t: timeoutSec });
    } catch (e) {
      const code = (e as { statusCode?: number }).statusCode;
      if (code !== 304 && code !== 404) throw e;
    }
    try {
      await c.remove({ force: true });
    } catch (e) {
      const code = (e as { statusCode?: number }).statusCode;
      if (code !== 404 && code !== 409) throw e;
    }
  }

  /** Every tag of a repository (berth-INSTANCE/APP:*), for tearing an app down. */
  async imagesOf(repository: string): Promise<string[]> {
    const images = await this.docker.listImages({ filters: { reference: [repository] } });
    return images.flatMap((i) => (i.RepoTags ?? []).filter((t) => t.startsWith(`${repository}:`)));
  }

  async removeImage(ref: string): Promise<void> {
    try {
      await this.docker.getImage(ref).remove({ force: false });
    } catch (e) {
      const code = (e as { statusCode?: number }).statusCode;
      if (code !== 404 && code !== 409) throw e;
    }
  }
}

function dockerOptions(dockerHost: string): Dockerode.DockerOptions {
  if (dockerHost.startsWith('unix://')) return { socketPath: dockerHost.slice('unix://'.length) };
  if (dockerHost.startsWith('/')) return { socketPath: dockerHost };
  const url = new URL(dockerHost.replace(/^tcp:/, 'http:'));
  return { host: url.hostname, port: url.port || '2375', protocol: url.protocol === 'https:' ? 'https' : 'http' };
}

/** Docker's multiplexed log format: 8-byte frames (stream, 0, 0, 0, size32) before each chunk. */
export function demux(raw: Buffer): string {
  if (!Buffer.isBuffer(raw)) return String(raw);
  const parts: Buffer[] = [];
  let i = 0;
  while (i + 8 <= raw.length) {
    const kind = raw[i]!;
    const size = raw.readUInt32BE(i + 4);
    if (kind > 2 || raw[i + 1] !== 0 || raw[i + 2] !== 0 || raw[i + 3] !== 0) return raw.toString('utf8');
    parts.push(raw.subarray(i + 8, i + 8 + size));
    i += 8 + size;
  }
  return Buffer.concat(parts).toString('utf8');
}
