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
} as const;

/** Longest a build may run before it is stopped and the push fails. */
export const BUILD_TIMEOUT_MS = 30 * 60_000;

export interface ContainerSpec {
  name: string;
  image: string;
  env: Record<string, string>;
  labels: Record<string, string>;
  network: string;
  aliases: string[];
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
  async build(options: { context: Readable; tag: string; onLine: (line: string) => void; timeoutMs?: number; signal?: AbortSignal }): Promise<string> {
    const stream = (await this.docker.buildImage(options.context as unknown as NodeJS.ReadableStream, {
      // No build-time labels: the classic builder turns each into an extra step with its own
      // container. Images are found by their tag, berth/APP:rN.
      t: options.tag,
      rm: true,
      forcerm: true,
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
        if (failure) return reject(new UserError('build_failed', `the Docker build failed: ${failure.trim()}`));
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
    const container = await this.docker.createContainer({
      name: spec.name,
      Image: spec.image,
      Env: Object.entries(spec.env).map(([k, v]) => `${k}=${v}`),
      Labels: { [LABEL.managed]: '1', [LABEL.instance]: this.instance, ...spec.labels },
      HostConfig: {
        NetworkMode: spec.network,
        RestartPolicy: { Name: 'unless-stopped' },
        Init: true,
      },
      NetworkingConfig: { EndpointsConfig: { [spec.network]: { Aliases: spec.aliases } } },
    });
    await container.start();
    return this.inspect(container.id);
  }

  async inspect(id: string): Promise<ContainerState> {
    const info = await this.docker.getContainer(id).inspect();
    const networks = info.NetworkSettings?.Networks ?? {};
    const ip = Object.values(networks).map((n) => n?.IPAddress).find((a) => a) || undefined;
    return {
      id: info.Id,
      name: info.Name.replace(/^\//, ''),
      labels: info.Config.Labels ?? {},
      running: info.State.Running,
      status: info.State.Status,
      exitCode: info.State.ExitCode,
      restartCount: info.RestartCount ?? 0,
      ip,
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

  /** Gives an image a second name (`repo:tag`); the image itself is not copied. */
  async tagImage(ref: string, target: string): Promise<void> {
    const at = target.lastIndexOf(':');
    await this.docker.getImage(ref).tag({ repo: target.slice(0, at), tag: target.slice(at + 1) });
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
