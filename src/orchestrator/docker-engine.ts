// The Engine over the Docker API (dockerode, loaded lazily so CLI commands start fast): the only
// module that speaks Docker. Containers and volumes carry berth's labels; the engine's
// multiplexed streams, progress events and event lines are turned into berth's terms here.
import { randomBytes } from 'node:crypto';
import type { Duplex, Readable } from 'node:stream';
import type Dockerode from 'dockerode';
import { UserError } from '../errors.ts';
import { log } from '../log.ts';
import { sleep } from '../sleep.ts';
import { type DockerSshSettings, type SshDockerAgent, sshDockerAgent } from './docker-ssh.ts';
import {
  BUILD_TIMEOUT_MS,
  checkNetworkDriver,
  checkNetworkOwner,
  networkOwnerConflict,
  LABEL,
  NotFoundError,
  type AttachOptions,
  type Attachment,
  type BuildOptions,
  type ContainerEventHandlers,
  type ContainerSpec,
  type ContainerState,
  type Engine,
  type ExecOptions,
  type ImageConfig,
  type ImageIdentity,
  type NetworkOptions,
  type Subscription,
  type RegistryAuth,
} from './engine.ts';
import { demux, parseContainerEvent, readFrames, sink, type EngineEvent } from './docker-wire.ts';
import { directoryBytes } from '../git/disk-budget.ts';

/** How long removing an overlay network waits for the tasks of removed Swarm services to let go of it. */
const NETWORK_IN_USE_WAIT_MS = 30_000;

/** The label Docker puts on a Swarm task's container: the id of its service. */
export const SWARM_SERVICE_LABEL = 'com.docker.swarm.service.id';

export class DockerEngine implements Engine {
  readonly #docker: Dockerode;
  readonly instance: string;

  private constructor(docker: Dockerode, instance: string) {
    this.#docker = docker;
    this.instance = instance;
  }

  static async connect(dockerHost: string, instance: string, ssh: DockerSshSettings = {}): Promise<DockerEngine> {
    const { default: Docker } = await import('dockerode');
    const connection = await dockerConnection(dockerHost, ssh);
    const docker = new Docker(connection.options);
    const engine = new DockerEngine(docker, instance);
    try {
      await docker.ping();
    } catch (e) {
      // Over SSH the agent knows why (host key, login, no docker CLI there) and what to do, once the
      // remote command's exit status, which may come after the hang-up, has arrived.
      const reason = await connection.agent?.failureReason();
      if (reason) throw reason;
      throw new UserError('docker_unreachable', `no Docker engine answers at ${dockerHost}: ${(e as Error).message}`, {
        cause: e,
        hint: connection.agent
          ? `check that \`docker info\` works on that machine for that user (ssh -p ${connection.agent.target.port} ${connection.agent.target.user}@${connection.agent.target.host} docker info)`
          : 'start one (as root: apt-get install -y docker.io iptables && dockerd &), or point --docker-host / BERTH_DOCKER_HOST at it',
      });
    }
    return engine;
  }

  async ensureNetwork(name: string, labels: Record<string, string> = {}, options: NetworkOptions = {}): Promise<void> {
    const existing = (await this.#docker.listNetworks({ filters: { name: [name] } })).find((n) => n.Name === name);
    if (existing) {
      checkNetworkOwner(name, existing.Labels ?? {}, labels);
      return checkNetworkDriver(name, existing.Driver ?? '', options.driver);
    }
    const overlay = options.driver === 'overlay';
    try {
      await this.#docker.createNetwork({
        Name: name,
        CheckDuplicate: true,
        Labels: { [LABEL.managed]: '1', [LABEL.instance]: this.instance, ...labels },
        // Attachable: the containers of this engine (backing services, one-offs, builds) join it beside the Swarm's tasks.
        ...(overlay ? { Driver: 'overlay', Attachable: true, Scope: 'swarm' } : { Driver: 'bridge' }),
      });
    } catch (e) {
      const code = (e as { statusCode?: number }).statusCode;
      if (code === 409) return;
      if (/address pool|non-overlapping/i.test((e as Error).message)) {
        throw new UserError('network_pool_exhausted', `the Docker engine has no address range left for the network ${name}: each app runs on a network of its own`, {
          cause: e,
          hint: 'give the engine smaller and more networks: "default-address-pools": [{"base": "10.200.0.0/16", "size": 24}] in /etc/docker/daemon.json (256 networks), then restart dockerd (docs/containers.md)',
        });
      }
      throw new Error(`creating Docker network ${name}: ${(e as Error).message}`, { cause: e });
    }
  }

  async removeNetwork(name: string, owner: Record<string, string> = {}): Promise<void> {
    const network = this.#docker.getNetwork(name);
    try {
      const info = (await network.inspect()) as { Containers?: Record<string, unknown>; Labels?: Record<string, string> };
      const conflict = networkOwnerConflict(name, info.Labels ?? {}, owner);
      if (conflict) return log.warn('network_remove_skipped', { network: name, reason: conflict });
      // Containers of other apps linked to it are cut off first: the network goes with its app.
      for (const id of Object.keys(info.Containers ?? {})) {
        await network.disconnect({ Container: id, Force: true }).catch((e: { statusCode?: number }) => {
          if (e.statusCode !== 404) throw e;
        });
      }
      // An overlay network stays in use by the tasks of a Swarm service just removed until they
      // have stopped on their nodes (their stop timeout): it is asked again meanwhile.
      const deadline = Date.now() + NETWORK_IN_USE_WAIT_MS;
      for (;;) {
        try {
          await network.remove();
          break;
        } catch (e) {
          if (!/in use by (task|service)/i.test((e as Error).message) || Date.now() >= deadline) throw e;
          await sleep(250);
        }
      }
    } catch (e) {
      if ((e as { statusCode?: number }).statusCode !== 404) throw new Error(`removing Docker network ${name}: ${(e as Error).message}`, { cause: e });
    }
  }

  async connectNetwork(id: string, network: string, aliases: string[]): Promise<void> {
    try {
      await this.#docker.getNetwork(network).connect({ Container: id, EndpointConfig: { Aliases: aliases } });
    } catch (e) {
      // Already attached: the engine says so with a 403 (older engines) or a 409.
      const code = (e as { statusCode?: number }).statusCode;
      if ((code === 403 || code === 409) && /already exists|already attached/i.test((e as Error).message)) return;
      throw notFound(e, `network ${network} or container ${id}`);
    }
  }

  async disconnectNetwork(id: string, network: string): Promise<void> {
    try {
      await this.#docker.getNetwork(network).disconnect({ Container: id, Force: true });
    } catch (e) {
      const code = (e as { statusCode?: number }).statusCode;
      // 404: no such network or container; 403/409 (by engine version): the container is not attached.
      if (code === 404 || ((code === 403 || code === 409 || code === 500) && /not connected|is not attached/i.test((e as Error).message))) return;
      throw e;
    }
  }

  async imageExists(ref: string): Promise<boolean> {
    try {
      await this.#docker.getImage(ref).inspect();
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
  async build(options: BuildOptions): Promise<string> {
    const stream = (await this.#docker.buildImage(options.context as unknown as NodeJS.ReadableStream, {
      // No build-time labels: the classic builder turns each into an extra step with its own
      // container. Images are found by their tag, berth/APP:rN.
      t: options.tag,
      rm: true,
      forcerm: true,
      ...(options.memory ? { memory: options.memory, memswap: options.memory } : {}),
      // A JSON list. The reference that never resolves keeps it from being empty, which the engine
      // would read as "any local image".
      cachefrom: JSON.stringify([...options.cacheFrom, NO_CACHE_SOURCE]),
      networkmode: options.network,
    })) as unknown as Readable;
    return new Promise<string>((resolve, reject) => {
      let imageId: string | undefined;
      let failure: string | undefined;
      let partial = '';
      let settled = false;
      /** The images the steps committed (` ---> ID` lines), not those a FROM names. */
      const steps: string[] = [];
      let fromStep = false;
      const finish = (err?: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        if (partial) options.onLine(partial);
        if (err || failure || !imageId) void this.#removeStepImages(steps);
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
      this.#docker.modem.followProgress(
        stream as unknown as NodeJS.ReadableStream,
        (err) => finish(err ?? undefined),
        (event: { stream?: string; error?: string; errorDetail?: { message?: string }; aux?: { ID?: string }; status?: string }) => {
          if (event.error || event.errorDetail) failure = event.errorDetail?.message ?? event.error;
          if (event.aux?.ID) imageId = event.aux.ID;
          const text = event.stream ?? (event.status ? event.status + '\n' : '');
          if (!text) return;
          const lines = (partial + text).split('\n');
          partial = lines.pop() ?? '';
          let pending: void | Promise<void> = undefined;
          for (const line of lines) {
            const step = STEP_IMAGE.exec(line);
            if (step && !fromStep) steps.push(step[1]!);
            if (step || STEP_START.test(line)) fromStep = FROM_STEP.test(line);
            pending = options.onLine(line.replace(/\r$/, '')) ?? pending;
          }
          if (pending) holdBack(stream as unknown as NodeJS.ReadableStream, pending);
        },
      );
    });
  }

  /**
   * After a build that failed or was cancelled: the images its finished steps committed are
   * nobody's (no tag, no release, no child), and the classic builder leaves them. Each untagged
   * one is removed, the last step first; one still in use (the step container the engine is
   * removing, a child, another build's cache) stays. Waits a little for the engine to let go of a
   * cancelled step's container; never fails the caller.
   */
  async #removeStepImages(steps: readonly string[]): Promise<void> {
    for (const id of [...new Set(steps)].reverse()) {
      for (let attempt = 0; attempt < 20; attempt++) {
        try {
          const info = (await this.#docker.getImage(id).inspect()) as { RepoTags?: string[]; RepoDigests?: string[]; Parent?: string };
          // Tagged, pulled, or not made by a build step (no parent): somebody's image.
          if ((info.RepoTags ?? []).some((t) => t !== '<none>:<none>') || (info.RepoDigests ?? []).length > 0 || !info.Parent) break;
          await this.#docker.getImage(id).remove({ force: false });
          log.info('build_step_image_removed', { image: id });
          break;
        } catch (e) {
          const code = (e as { statusCode?: number }).statusCode;
          // In use by a container the engine is still removing: asked again shortly; anything else leaves it.
          if (code !== 409 || !/container/i.test((e as Error).message) || /child/i.test((e as Error).message)) break;
          await sleep(500);
        }
      }
    }
  }

  async run(spec: ContainerSpec): Promise<ContainerState> {
    const id = await this.create(spec);
    await this.start(id);
    return this.inspect(id);
  }

  async create(spec: ContainerSpec): Promise<string> {
    const container = await this.#docker.createContainer({
      name: spec.name,
      Image: spec.image,
      Env: Object.entries(spec.env).map(([k, v]) => `${k}=${v}`),
      Labels: { [LABEL.managed]: '1', [LABEL.instance]: this.instance, ...spec.labels },
      ...(spec.cmd ? { Cmd: spec.cmd } : {}),
      ...(spec.stopTimeout !== undefined ? { StopTimeout: spec.stopTimeout } : {}),
      ...(spec.entrypoint ? { Entrypoint: spec.entrypoint } : {}),
      ...(spec.user !== undefined ? { User: spec.user } : {}),
      ...(spec.workingDir ? { WorkingDir: spec.workingDir } : {}),
      ...(spec.stdin ? { OpenStdin: true, StdinOnce: true, AttachStdin: true, AttachStdout: true, AttachStderr: true } : {}),
      Tty: spec.tty === true,
      HostConfig: {
        NetworkMode: spec.network,
        RestartPolicy: spec.restart === false ? { Name: 'no' } : { Name: 'unless-stopped' },
        Init: true,
        // Every capability goes but the ones the spec keeps, and nothing gains privileges on exec.
        CapDrop: ['ALL'],
        ...(spec.capabilities?.length ? { CapAdd: [...spec.capabilities] } : {}),
        SecurityOpt: ['no-new-privileges'],
        ...(spec.memory ? { Memory: spec.memory, MemorySwap: spec.memory } : {}),
        ...(spec.cpus ? { NanoCpus: Math.round(spec.cpus * 1e9) } : {}),
        ...(spec.pids ? { PidsLimit: spec.pids } : {}),
        ...(spec.binds?.length ? { Binds: spec.binds } : {}),
        ...(spec.ports?.length ? { PortBindings: Object.fromEntries(spec.ports.map((p) => [`${p.container}/tcp`, [{ HostIp: p.hostIp, HostPort: String(p.host) }]])) } : {}),
      },
      ...(spec.ports?.length ? { ExposedPorts: Object.fromEntries(spec.ports.map((p) => [`${p.container}/tcp`, {}])) } : {}),
      NetworkingConfig: { EndpointsConfig: { [spec.network]: { Aliases: spec.aliases } } },
    });
    return container.id;
  }

  async start(id: string): Promise<void> {
    await this.#docker.getContainer(id).start();
  }

  async attach(id: string, options: AttachOptions): Promise<Attachment> {
    const stream = (await this.#docker.getContainer(id).attach({ stream: true, stdout: true, stderr: true, stdin: options.stdin, hijack: options.stdin })) as NodeJS.ReadWriteStream;
    const ended = new Promise<void>((resolve) => {
      stream.once('end', resolve);
      stream.once('close', resolve);
      stream.once('error', () => resolve());
    });
    // Without a terminal the engine frames stdout and stderr in one stream.
    if (options.tty) stream.pipe(sink(options.onStdout, stream));
    else this.#docker.modem.demuxStream(stream, sink(options.onStdout, stream), sink(options.onStderr, stream));
    return {
      write: (data) => (stream.write(data) ? undefined : new Promise<void>((resolve) => {
        const done = () => {
          stream.off('drain', done);
          stream.off('close', done);
          resolve();
        };
        stream.on('drain', done);
        stream.on('close', done);
      })),
      end: () => void stream.end(),
      ended,
    };
  }

  async wait(id: string): Promise<{ code: number; oomKilled: boolean }> {
    const r = (await this.#docker.getContainer(id).wait()) as { StatusCode: number };
    const info = await this.#docker.getContainer(id).inspect();
    return { code: r.StatusCode, oomKilled: info.State.OOMKilled === true };
  }

  async resize(id: string, rows: number, cols: number): Promise<void> {
    await this.#docker.getContainer(id).resize({ h: rows, w: cols });
  }

  async putArchive(id: string, dir: string, tar: Readable | Buffer): Promise<void> {
    await this.#docker.getContainer(id).putArchive(tar as unknown as NodeJS.ReadableStream, { path: dir });
  }

  async getArchive(id: string, file: string): Promise<Readable> {
    try {
      return (await this.#docker.getContainer(id).getArchive({ path: file })) as unknown as Readable;
    } catch (e) {
      throw notFound(e, `${file} in container ${id}`);
    }
  }

  async commit(id: string, repo: string, tag: string, config: ImageConfig): Promise<string> {
    const body = { Entrypoint: config.entrypoint, Cmd: config.cmd, WorkingDir: config.workingDir, User: config.user, Env: config.env };
    const r = (await this.#docker.getContainer(id).commit({ _query: { container: id, repo, tag }, _body: body } as never)) as unknown as { Id?: string };
    return r.Id ?? `${repo}:${tag}`;
  }

  async tagImage(source: string, repo: string, tag: string): Promise<void> {
    await this.#docker.getImage(source).tag({ repo, tag });
  }

  async imageConfig(ref: string): Promise<ImageConfig | undefined> {
    try {
      const info = await this.#docker.getImage(ref).inspect();
      const list = (v: string | string[] | undefined | null) => (v == null ? [] : Array.isArray(v) ? v : [v]);
      return { user: info.Config?.User ?? '', entrypoint: list(info.Config?.Entrypoint), cmd: list(info.Config?.Cmd), env: info.Config?.Env ?? [], workingDir: info.Config?.WorkingDir ?? '' };
    } catch (e) {
      if ((e as { statusCode?: number }).statusCode === 404) return undefined;
      throw e;
    }
  }

  async imageIdentity(ref: string): Promise<ImageIdentity | undefined> {
    try {
      const info = await this.#docker.getImage(ref).inspect();
      const onBuild = (info.Config as { OnBuild?: string[] | null } | undefined)?.OnBuild ?? [];
      return { id: info.Id, repoTags: info.RepoTags ?? [], labels: info.Config?.Labels ?? {}, onBuild };
    } catch (e) {
      const code = (e as { statusCode?: number }).statusCode;
      // 400: not a valid reference at all, which no build can use either.
      if (code === 404 || code === 400) return undefined;
      throw e;
    }
  }

  async imageLabels(ref: string): Promise<Record<string, string> | undefined> {
    try {
      return (await this.#docker.getImage(ref).inspect()).Config?.Labels ?? {};
    } catch (e) {
      if ((e as { statusCode?: number }).statusCode === 404) return undefined;
      throw e;
    }
  }

  async pull(ref: string, onProgress?: (line: string) => void): Promise<void> {
    const stream = (await this.#docker.pull(ref)) as NodeJS.ReadableStream;
    await this.#followProgress(stream, onProgress);
  }

  /** Follows a pull's or push's progress to its end; the digest the push's last event gives, if any. */
  async #followProgress(stream: NodeJS.ReadableStream, onProgress?: (line: string) => void): Promise<string | undefined> {
    // One line per layer and status (Pulling fs layer, Downloading, Pull complete ...), and a
    // download's progress at most every 2 s: enough to see it move, not a line per chunk.
    const said = new Map<string, { status: string; at: number }>();
    let digest: string | undefined;
    await new Promise<void>((resolve, reject) => {
      let failure: string | undefined;
      this.#docker.modem.followProgress(
        stream,
        (err) => (err ? reject(err) : failure ? reject(new Error(failure)) : resolve()),
        (event: { error?: string; status?: string; id?: string; progress?: string; aux?: { Digest?: string } }) => {
          if (event.error) failure = event.error;
          if (event.aux?.Digest) digest = event.aux.Digest;
          if (!onProgress || !event.status) return;
          const key = event.id ?? '';
          const before = said.get(key);
          const now = Date.now();
          if (before?.status === event.status && now - before.at < 2_000) return;
          said.set(key, { status: event.status, at: now });
          onProgress([event.id, event.status, event.progress?.replace(/\[[=> ]*\]\s*/, '')].filter(Boolean).join(' '));
        },
      );
    });
    return digest;
  }

  async push(ref: string, onProgress?: (line: string) => void, auth?: RegistryAuth): Promise<string> {
    const { repo, tag } = splitTag(ref);
    // The engine wants an X-Registry-Auth header even for a registry that asks for none.
    const stream = (await this.#docker.getImage(repo).push({ tag, authconfig: auth ?? {} } as never)) as unknown as NodeJS.ReadableStream;
    return this.#followProgress(stream, onProgress).then((digest) => {
      if (!digest) throw new Error(`the engine pushed ${ref} but did not say its digest`);
      return digest;
    });
  }

  async ensureVolume(name: string, labels: Record<string, string>): Promise<void> {
    await this.#docker.createVolume({ Name: name, Labels: { [LABEL.managed]: '1', [LABEL.instance]: this.instance, ...labels } });
  }

  async volumeLabels(name: string): Promise<Record<string, string> | undefined> {
    try {
      return ((await this.#docker.getVolume(name).inspect()) as { Labels?: Record<string, string> | null }).Labels ?? {};
    } catch (e) {
      if ((e as { statusCode?: number }).statusCode === 404) return undefined;
      throw e;
    }
  }

  async removeVolume(name: string): Promise<void> {
    try {
      await this.#docker.getVolume(name).remove();
    } catch (e) {
      const code = (e as { statusCode?: number }).statusCode;
      if (code !== 404 && code !== 409) throw e;
    }
  }

  async volumeBytes(name: string): Promise<number> {
    let mountpoint: string;
    try {
      mountpoint = (await this.#docker.getVolume(name).inspect()).Mountpoint;
    } catch (e) {
      if ((e as { statusCode?: number }).statusCode === 404) return 0;
      throw e;
    }
    // The engine's API reports volume sizes only by measuring every volume (GET /system/df);
    // the files of a local engine's volume are on this machine, readable by berth (root).
    return directoryBytes(mountpoint);
  }

  async inspect(id: string): Promise<ContainerState> {
    let info: Dockerode.ContainerInspectInfo;
    try {
      info = await this.#docker.getContainer(id).inspect();
    } catch (e) {
      throw notFound(e, `container ${id}`);
    }
    // The address on the network it was created on: a container linked to other networks has more.
    const networks = info.NetworkSettings?.Networks ?? {};
    const own = networks[info.HostConfig?.NetworkMode ?? '']?.IPAddress;
    const ip = own || Object.values(networks).map((n) => n?.IPAddress).find((a) => a) || undefined;
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

  async list(labels: Record<string, string> = {}): Promise<ContainerState[]> {
    const filters = [`${LABEL.managed}=1`, `${LABEL.instance}=${this.instance}`, ...Object.entries(labels).map(([k, v]) => `${k}=${v}`)];
    const found = await this.#docker.listContainers({ all: true, filters: { label: filters } });
    const states: ContainerState[] = [];
    // A Swarm task's container carries its service's labels (berth's too): it is the Swarm's, not an app container of this engine.
    for (const c of found.filter((x) => x.Labels?.[SWARM_SERVICE_LABEL] === undefined)) {
      try {
        states.push(await this.inspect(c.Id));
      } catch (e) {
        if (!(e instanceof NotFoundError)) throw e;
      }
    }
    return states;
  }

  async containersNamed(prefix: string): Promise<Array<{ id: string; name: string }>> {
    // The engine's name filter matches anywhere in the name: keep the ones that start with it.
    const found = await this.#docker.listContainers({ all: true, filters: { name: [prefix] } });
    return found.flatMap((c) => {
      const name = c.Names.map((n) => n.replace(/^\//, '')).find((n) => n.startsWith(prefix));
      return name ? [{ id: c.Id, name }] : [];
    });
  }

  async logs(id: string, tail = 50, options: { timestamps?: boolean } = {}): Promise<string> {
    const raw = (await this.#docker.getContainer(id).logs({ stdout: true, stderr: true, tail, follow: false, timestamps: options.timestamps === true })) as unknown as Buffer;
    return demux(raw);
  }

  async followLogs(id: string, options: { tail: number; onData(data: Buffer): void }): Promise<Subscription> {
    const stream = (await this.#docker.getContainer(id).logs({ stdout: true, stderr: true, timestamps: true, follow: true, tail: options.tail })) as NodeJS.ReadableStream;
    const out = sink(options.onData, stream);
    this.#docker.modem.demuxStream(stream, out, out);
    return { stop: () => (stream as Readable).destroy() };
  }

  async watchContainers(handlers: ContainerEventHandlers): Promise<Subscription> {
    const stream = (await this.#docker.getEvents({
      filters: {
        type: ['container'],
        event: ['start', 'die', 'stop', 'oom', 'health_status', 'destroy'],
        label: [`${LABEL.managed}=1`, `${LABEL.instance}=${this.instance}`],
      },
    })) as unknown as Readable;
    let stopped = false;
    let partial = '';
    stream.on('data', (chunk: Buffer) => {
      const lines = (partial + chunk.toString('utf8')).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        if (!line.trim()) continue;
        try {
          const event = parseContainerEvent(JSON.parse(line) as EngineEvent);
          if (event) handlers.onEvent(event);
        } catch (e) {
          log.warn('docker_event_unreadable', { error: e });
        }
      }
    });
    const lost = (error?: Error) => {
      if (stopped) return;
      stopped = true;
      handlers.onLost(error);
    };
    stream.on('error', (e: Error) => lost(e));
    stream.on('end', () => lost());
    return {
      stop: () => {
        stopped = true;
        stream.destroy();
      },
    };
  }

  async exec(id: string, options: ExecOptions): Promise<{ code: number }> {
    options.signal?.throwIfAborted();
    const tty = options.tty === true;
    // Marks the process (and what it starts) so that it can be found and ended if its caller goes away.
    const marker = `${EXEC_MARKER}=${randomBytes(8).toString('hex')}`;
    let exec: Dockerode.Exec;
    try {
      exec = await this.#docker.getContainer(id).exec({
        Cmd: options.cmd,
        Env: [...(options.env ?? []), marker],
        ...(options.user !== undefined ? { User: options.user } : {}),
        AttachStdin: options.stdin !== undefined,
        AttachStdout: true,
        AttachStderr: true,
        Tty: tty,
      });
    } catch (e) {
      throw notFound(e, `container ${id}`);
    }
    // Hijacked: the engine's connection becomes the process's stdin and output, both ways at once.
    const stream = (await exec.start({ hijack: true, stdin: options.stdin !== undefined, Tty: tty })) as Duplex;
    // Cut off (its caller gone, its input broken): the process is ended first, then the
    // connection. Closing the connection first would end its input like a whole one (a psql
    // reading SQL commits what it got at end of input).
    const stdin = options.stdin;
    let cut: Error | undefined;
    let ended: Promise<void> | undefined;
    const cutOff = (reason: Error) => {
      if (cut) return;
      cut = reason;
      stdin?.unpipe(stream);
      ended = this.#endExec(id, marker, options.user).finally(() => stream.destroy(reason));
    };
    const abort = () => cutOff(options.signal?.reason instanceof Error ? options.signal.reason : new Error('the command was cancelled'));
    options.signal?.addEventListener('abort', abort, { once: true });
    // Reading the output reports a broken connection; one after the output ended (input the
    // process never read) is no error of the command's.
    stream.on('error', () => {});
    if (stdin) {
      // pipe() waits for the engine's side to drain, and ends (half-closes) it when stdin ends.
      // On a terminal, end of input is a ^D the client sends as a byte: closing the engine's
      // side early would cut the output off.
      stdin.pipe(stream, { end: !tty });
      stdin.once('error', (e) => cutOff(new Error(`reading the input for ${options.cmd[0]}: ${e.message}`, { cause: e })));
    }
    if (tty && options.terminal) {
      const t = options.terminal;
      const resize = (rows: number, cols: number) => void exec.resize({ h: rows, w: cols }).catch(() => {});
      resize(t.rows, t.cols);
      t.onResize(resize);
    }
    try {
      if (tty) {
        for await (const chunk of stream) await options.onStdout(chunk as Buffer);
      } else {
        for await (const frame of readFrames(stream as AsyncIterable<Buffer>)) {
          await (frame.stream === 2 ? options.onStderr(frame.data) : options.onStdout(frame.data));
        }
      }
    } catch (e) {
      // The engine keeps a process whose caller went away running, blocked on its output for
      // good (a pg_dump holding its locks): it is ended here.
      if (ended) await ended;
      else await this.#endExec(id, marker, options.user);
      if (cut) throw cut;
      throw new Error(`running ${options.cmd[0]} in container ${id}: ${(e as Error).message}`, { cause: e });
    } finally {
      options.signal?.removeEventListener('abort', abort);
      stdin?.unpipe(stream);
      stream.destroy();
    }
    // Ended by the cut (its output closed once the process was killed): the cut's error, not its status.
    if (cut) {
      await ended;
      throw cut;
    }
    // The output ends a moment before the engine records the exit code.
    for (let i = 0; ; i++) {
      const info = await exec.inspect();
      if (!info.Running && info.ExitCode !== null) return { code: info.ExitCode };
      if (i >= 100) throw new Error(`running ${options.cmd[0]} in container ${id}: its output ended but the engine reports no exit code`);
      await sleep(20);
    }
  }

  /** SIGTERM to the processes of an exec (found by its marker in their environment). */
  async #endExec(id: string, marker: string, user: string | undefined): Promise<void> {
    const script = 'for p in /proc/[0-9]*; do if tr "\\0" "\\n" < "$p/environ" 2>/dev/null | grep -qxF "$1"; then kill -TERM "${p#/proc/}" 2>/dev/null; fi; done';
    try {
      await this.exec(id, { cmd: ['sh', '-c', script, 'sh', marker], ...(user !== undefined ? { user } : {}), onStdout: () => {}, onStderr: () => {} });
    } catch (e) {
      log.warn('docker_exec_not_ended', { container: id, error: e });
    }
  }

  async stopAndRemove(id: string, timeoutSec = 10): Promise<void> {
    const c = this.#docker.getContainer(id);
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

  async imagesOf(repository: string): Promise<string[]> {
    const images = await this.#docker.listImages({ filters: { reference: [repository] } });
    return images.flatMap((i) => (i.RepoTags ?? []).filter((t) => t.startsWith(`${repository}:`)));
  }

  async removeImage(ref: string): Promise<void> {
    try {
      await this.#docker.getImage(ref).remove({ force: false });
    } catch (e) {
      const code = (e as { statusCode?: number }).statusCode;
      if (code !== 404 && code !== 409) throw e;
    }
  }
}

/** A build step's result in the classic builder's output: ` ---> 0123456789ab`. */
const STEP_IMAGE = /^ ---> ([0-9a-f]{12,64})\s*$/;
/** The start of a step (`Step 2/5 : COPY . /app`), and of a FROM step, whose result is the base image. */
const STEP_START = /^Step \d+\/\d+ : /;
const FROM_STEP = /^Step \d+\/\d+ : FROM\s/i;

/** The environment variable that marks the processes of one exec (lower case: no berth setting's name). */
const EXEC_MARKER = 'berth_exec';

// An image id no image can have (its content would hash to zeros): as the only cache source, a
// build uses no cached layer.
const NO_CACHE_SOURCE = `sha256:${'0'.repeat(64)}`;

/** How dockerode reaches `dockerHost`: a unix socket path, unix://PATH, or tcp://HOST:PORT (https:// with TLS); ssh:// needs dockerConnection. */
export function dockerOptions(dockerHost: string): Dockerode.DockerOptions {
  if (dockerHost.startsWith('unix://')) return { socketPath: dockerHost.slice('unix://'.length) };
  if (dockerHost.startsWith('/')) return { socketPath: dockerHost };
  if (dockerHost.startsWith('ssh:')) throw new Error('an ssh:// docker host is reached through dockerConnection');
  const url = new URL(dockerHost.replace(/^tcp:/, 'http:'));
  return { host: url.hostname, port: url.port || '2375', protocol: url.protocol === 'https:' ? 'https' : 'http' };
}

/** dockerode's options for any `dockerHost`, ssh://USER@HOST[:PORT] included (then with its agent, which knows why a connection failed). */
export async function dockerConnection(dockerHost: string, ssh: DockerSshSettings = {}): Promise<{ options: Dockerode.DockerOptions; agent?: SshDockerAgent }> {
  if (!dockerHost.startsWith('ssh:')) return { options: dockerOptions(dockerHost) };
  const agent = await sshDockerAgent(dockerHost, ssh);
  // The host and port are the agent's to use; every request goes through one of its channels.
  return { options: { host: agent.target.host, port: agent.target.port, protocol: 'http', agent } as Dockerode.DockerOptions, agent };
}

/** A 404 of the engine as a NotFoundError; any other error as it is. */
function notFound(e: unknown, what: string): unknown {
  if ((e as { statusCode?: number }).statusCode === 404) return new NotFoundError(`the Docker engine has no ${what}`, { cause: e });
  return e;
}

/** Stops reading `stream` until `pending` settles: a slow consumer holds the engine's output back. */
function holdBack(stream: NodeJS.ReadableStream, pending: Promise<void>): void {
  stream.pause();
  void pending.finally(() => stream.resume());
}

/** `repo:tag` in its two parts (a registry's :port is part of the repo); tag `latest` when it has none. */
function splitTag(ref: string): { repo: string; tag: string } {
  const colon = ref.lastIndexOf(':');
  return colon > ref.lastIndexOf('/') ? { repo: ref.slice(0, colon), tag: ref.slice(colon + 1) } : { repo: ref, tag: 'latest' };
}
