// The container engine as the orchestrator uses it, in its own terms: labelled containers and
// what happens to them, images, builds, logs, archives, networks and volumes. DockerEngine
// (docker-engine.ts) implements it over the Docker API; nothing else knows Docker's wire format.
import type { Readable } from 'node:stream';
import { createHash } from 'node:crypto';
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

/**
 * Why `wanted`'s owner may not use or remove the network `name` labelled `existing`: another app or
 * service owns it. Undefined when it may: the same owner, or no owner (the shared network of an
 * older berth, anyone's as it always was).
 */
export function networkOwnerConflict(name: string, existing: Record<string, string>, wanted: Record<string, string>): string | undefined {
  if (!NETWORK_OWNER_LABELS.some((k) => existing[k] !== undefined)) return undefined;
  for (const key of NETWORK_OWNER_LABELS) {
    if (wanted[key] === undefined || existing[key] === wanted[key]) continue;
    const owner = NETWORK_OWNER_LABELS.filter((k) => existing[k] !== undefined).map((k) => `${k}=${existing[k]}`).join(', ');
    return `the Docker network ${name} exists and belongs to ${owner}, not ${key}=${wanted[key]}: berth does not share it`;
  }
  return undefined;
}

/** Refuses a network whose owner (app or service) is not the one asking for it. */
export function checkNetworkOwner(name: string, existing: Record<string, string>, wanted: Record<string, string>): void {
  const conflict = networkOwnerConflict(name, existing, wanted);
  if (conflict) throw new Error(conflict);
}

/**
 * How far a network reaches: `bridge`, this engine's containers only (the docker scheduler);
 * `overlay`, attachable and of swarm scope, every node of the Swarm (the swarm scheduler).
 */
export type NetworkDriver = 'bridge' | 'overlay';

export interface NetworkOptions {
  /** Default bridge. */
  driver?: NetworkDriver;
}

/** In the names of the swarm scheduler's networks, after the --network prefix: PREFIX-swarm-INSTANCE-... */
export const SWARM_NETWORK_MARK = 'swarm';

/** The longest name Swarm gives a network (a DNS label). */
const SWARM_NAME_MAX = 63;

/**
 * `name` as Swarm accepts a network's name: a DNS label (letters, digits, `-` and `_` inside, at
 * most 63 characters). Any other character becomes `_` (berth's own names have only `.`, which no
 * app name holds, so `_` keeps them apart); a longer name keeps its start and ends in a hash of
 * the whole after a `_`, so two long names stay two networks, and a shortened name is never the
 * name of another app (app names hold no `_`). A name that is one already is returned as it is.
 */
export function overlayNetworkName(name: string): string {
  const label = name.replace(/[^A-Za-z0-9_-]/g, '_');
  if (label.length <= SWARM_NAME_MAX && /^[A-Za-z0-9](?:[-_]*[A-Za-z0-9]+)*$/.test(label)) return label;
  const hash = createHash('sha256').update(name).digest('hex').slice(0, 8);
  return `${label.slice(0, SWARM_NAME_MAX - hash.length - 1).replace(/^[-_]+/, '').replace(/[-_]+$/, '')}_${hash}`;
}

/** Refuses an existing network that is not the overlay asked for: a Swarm task on another node could not join it. */
export function checkNetworkDriver(name: string, existing: string, wanted: NetworkDriver | undefined): void {
  if (wanted !== 'overlay' || existing === 'overlay') return;
  throw new UserError('network_not_overlay', `the Docker network ${name} is a ${existing || 'local'} network, and on the swarm scheduler it must be an overlay network the app's tasks on every node join`, {
    hint: `once no container uses it (docker network inspect ${name}), remove it (docker network rm ${name}) and try again: berth makes it anew as an overlay network (docs/swarm.md)`,
  });
}

/** The labels that say whose a network is. */
const NETWORK_OWNER_LABELS = [LABEL.app, 'berth.service'] as const;


/** Longest a build may run before it is stopped and the push fails. */
export const BUILD_TIMEOUT_MS = 30 * 60_000;

/**
 * The capabilities an app's containers (dynos and one-offs) keep; every other one is dropped, and
 * no process in them gains privileges on exec (setuid binaries, file capabilities). A buildpack
 * release runs as an unprivileged user and needs none of them; these are for images whose process
 * starts as root and then does what root entrypoints do: take ownership of and write to files of
 * other users (CHOWN, DAC_OVERRIDE, FOWNER: data directories, caches), drop to an unprivileged
 * user (SETUID, SETGID: gosu, su-exec, setpriv, nginx's and php-fpm's workers), signal processes
 * of that user (KILL: a master stopping its workers), and listen on a port below 1024 in the
 * container's own network namespace (NET_BIND_SERVICE). Of Docker's defaults, NET_RAW (raw
 * sockets: spoofing on the app's network), MKNOD, SYS_CHROOT, SETFCAP, SETPCAP, FSETID and
 * AUDIT_WRITE are gone.
 */
export const APP_CAPABILITIES: readonly string[] = ['CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'SETUID', 'SETGID', 'KILL', 'NET_BIND_SERVICE'];

/**
 * The capabilities a buildpack build container keeps. Its runner starts as root to prepare the
 * build and then runs the buildpacks as an unprivileged user: it chowns the build, cache and env
 * directories to that user (CHOWN), drops to it with setpriv --reuid --regid --clear-groups
 * (SETUID, SETGID), and afterwards moves the build the user owns out of the sticky /tmp and
 * replaces /app (FOWNER, DAC_OVERRIDE). Nothing else.
 */
export const BUILD_CAPABILITIES: readonly string[] = ['CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'SETUID', 'SETGID'];

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
  /** Processes and threads the container may hold at once (a fork bomb stops there). */
  pids?: number;
  /**
   * The capabilities it keeps (APP_CAPABILITIES, BUILD_CAPABILITIES); every other one is dropped
   * and no process in it gains privileges on exec. Default none.
   */
  capabilities?: readonly string[];
  /** Bind mounts, `/host:/container[:ro]`, and named volumes, `name:/container`. */
  binds?: string[];
  /** Host ports it is published on (an exposed service); app containers publish none. */
  ports?: Array<{ container: number; host: number; hostIp: string }>;
  /** Restart when it exits (dynos); one-offs and builds do not. Default true. */
  restart?: boolean;
  /** Seconds the engine waits after the stop signal before it kills the process (`docker stop`, an engine shutdown); the engine's default when absent. */
  stopTimeout?: number;
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
  /** Its address on the network it was created on (the app's own), not on networks linked later. */
  ip: string | undefined;
  /** When the container last started (ms since the epoch); undefined when it never did. */
  startedAt: number | undefined;
  /** The kernel killed it for running out of memory. */
  oomKilled: boolean;
  /**
   * Where the proxy and the checks reach its $PORT at `ip` when that is not $PORT itself: a Swarm
   * task's host-mode published port on its node (whose address is then `ip`).
   */
  port?: number;
}

/** The parts of an image's config berth reads, and (for a commit) sets. */
export interface ImageConfig {
  user: string;
  entrypoint: string[];
  cmd: string[];
  env: string[];
  workingDir: string;
}

/** What the engine knows of an image, resolved as a build's FROM would resolve its reference. */
export interface ImageIdentity {
  /** sha256:… */
  id: string;
  /** Its tags (repo:tag); empty for an untagged image. */
  repoTags: string[];
  labels: Record<string, string>;
  /** Its ONBUILD instructions, which run in a build FROM it. */
  onBuild: string[];
}

export interface BuildOptions {
  /** The build context as a tar stream. */
  context: Readable;
  tag: string;
  /** Each line of output; returning a promise stops reading the build's output until it settles (backpressure). */
  onLine: (line: string) => void | Promise<void>;
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Bytes of memory each build step may use. */
  memory?: number;
  /**
   * The only images whose layers may stand in for a step (the engine's `cachefrom`): a cached
   * layer is used only when it is in the history of one of them. References that do not resolve
   * are skipped; an empty list means none (never, as the engine's own default, every local image).
   */
  cacheFrom: string[];
  /** The network the build's steps run on. */
  network: string;
}

/** What happened to a container of one of berth's apps, its labels read once. */
export interface ContainerEvent {
  /**
   * `died`: it stopped running (killed, exited, out of memory); `unhealthy` and `healthy`: its
   * image's HEALTHCHECK changed its mind; `started`: it runs (again); `removed`: it is gone.
   */
  change: 'died' | 'unhealthy' | 'started' | 'healthy' | 'removed';
  /** The engine's own word for it (die, stop, oom, health_status: unhealthy ...), for logs. */
  reason: string;
  id: string;
  name: string;
  app: string;
  /** The process type (web, worker, run ...); web when unlabelled. */
  process: string;
  /** The release number it runs; undefined when unlabelled. */
  release: number | undefined;
  /** The dyno (web.1) it is; undefined when unlabelled. */
  dyno: string | undefined;
  role: Role;
  /** When the engine saw it, ms since the epoch (with a fraction when the engine gives one). */
  at: number;
  /** For `died` by a die: the exit code (a restart policy may start it again before anyone inspects it). */
  exitCode?: number;
}

export interface ContainerEventHandlers {
  onEvent(event: ContainerEvent): void;
  /** The stream ended or broke (not after stop()): subscribe again to go on. */
  onLost(error?: Error): void;
}

/** Something that keeps going until stopped: an event subscription, a followed log. */
export interface Subscription {
  stop(): void;
}

/** A created container's standard streams, wired before it starts. */
export interface Attachment {
  /** To its stdin (attached with `stdin`); a promise when the engine's side is full: write nothing more until it settles. */
  write(data: Buffer): void | Promise<void>;
  /** Ends its stdin. */
  end(): void;
  /** Settles once its output ended or the connection broke. */
  readonly ended: Promise<void>;
}

export interface AttachOptions {
  stdin: boolean;
  /** It was created with a terminal: its output is one stream, given to onStdout. */
  tty: boolean;
  /** Output as it comes; returning a promise stops reading the container's output until it settles (backpressure). */
  onStdout(data: Buffer): void | Promise<void>;
  onStderr(data: Buffer): void | Promise<void>;
}

export interface ExecOptions {
  cmd: string[];
  /** `NAME=value` entries added to the container's environment for this process. */
  env?: string[];
  /** Runs as this user (name or uid[:gid]); the container's user when absent. */
  user?: string;
  /** Streamed to the process's stdin, which is closed when it ends (on a terminal it stays open: the process ends on its own, as on ^D); no stdin when absent. */
  stdin?: Readable;
  /** Runs it on a terminal: its output is one stream, given to onStdout. */
  tty?: boolean;
  /** With `tty`: the terminal's size, followed as it changes. */
  terminal?: { rows: number; cols: number; onResize(listener: (rows: number, cols: number) => void): void };
  /** Output as it comes; returning a promise stops reading the process's output until it settles (backpressure). */
  onStdout(data: Buffer): void | Promise<void>;
  onStderr(data: Buffer): void | Promise<void>;
  /**
   * Cuts the process short: it is sent SIGTERM (with what it started), and exec rejects with the
   * signal's reason. The same happens when onStdout or onStderr throws (the caller's output broke).
   */
  signal?: AbortSignal;
}

/** An object the engine does not have (a container removed meanwhile, a path not in a container). */
export class NotFoundError extends Error {
  override readonly name = 'NotFoundError';
}

/** A registry's credential as the Docker API takes it (X-Registry-Auth): for pushes, and for a Swarm's nodes to pull a service's image. */
export interface RegistryAuth {
  username: string;
  password: string;
  /** The registry it is for, HOST:PORT. */
  serveraddress: string;
}

export interface Engine {
  /** The berth instance whose objects this engine labels and lists. */
  readonly instance: string;

  // Networks and volumes
  /**
   * A labelled network (created when missing): a bridge on this engine, or with `{ driver:
   * 'overlay' }` an attachable overlay network of the Swarm this engine manages, which Swarm
   * tasks on every node and this engine's containers join. An existing one that has an owner (a
   * `berth.app` or `berth.service` label) is reused only by that owner: its labels are the ones
   * given (for each given), or an Error says whose it is. An existing bridge asked for as an
   * overlay is refused with a UserError (tasks on other nodes could not reach it).
   */
  ensureNetwork(name: string, labels?: Record<string, string>, options?: NetworkOptions): Promise<void>;
  /**
   * Removes a network, disconnecting the containers still attached to it (linked ones); one missing
   * is not an error. With `owner` (the labels ensureNetwork was given), a network another app or
   * service owns is left alone, nothing disconnected, and logged (`network_remove_skipped`).
   */
  removeNetwork(name: string, owner?: Record<string, string>): Promise<void>;
  /**
   * Attaches a container to another network as well, reachable there under `aliases` (an app
   * linked to another: its containers join that app's network). Already attached is not an error.
   */
  connectNetwork(id: string, network: string, aliases: string[]): Promise<void>;
  /** Detaches a container from a network it joined with connectNetwork; not attached (or gone) is not an error. */
  disconnectNetwork(id: string, network: string): Promise<void>;
  /** A labelled named volume (created when missing). */
  ensureVolume(name: string, labels: Record<string, string>): Promise<void>;
  /** A volume's labels; undefined when it does not exist. */
  volumeLabels(name: string): Promise<Record<string, string> | undefined>;
  /** Removes a volume; one missing or in use is left alone. */
  removeVolume(name: string): Promise<void>;
  /** Bytes a volume's files take; 0 when it is missing or its files are not on this machine. */
  volumeBytes(name: string): Promise<number>;

  // Images
  imageExists(ref: string): Promise<boolean>;
  /** The image's config, or undefined when the engine does not have it. */
  imageConfig(ref: string): Promise<ImageConfig | undefined>;
  /** The image's labels, or undefined when the engine does not have it. */
  imageLabels(ref: string): Promise<Record<string, string> | undefined>;
  /**
   * The image a reference names (a name with tag or digest, a full or short image id), resolved
   * as the engine resolves it; undefined when the engine has none.
   */
  imageIdentity(ref: string): Promise<ImageIdentity | undefined>;
  /**
   * Builds an image from a tar build context, streaming output lines; resolves to its id. A
   * failed step rejects with a UserError, as do the timeout and the signal.
   */
  build(options: BuildOptions): Promise<string>;
  /** Pulls an image from its registry, telling `onProgress` each layer's progress as it goes; rejects with the engine's reason. */
  pull(ref: string, onProgress?: (line: string) => void): Promise<void>;
  /**
   * Pushes `repo:tag` to the registry its name points at, telling `onProgress` each layer's
   * progress; resolves to the manifest digest the registry stored (sha256:…); rejects with the
   * engine's reason. `auth`: the registry's credential, sent to it by the engine (never logged).
   */
  push(ref: string, onProgress?: (line: string) => void, auth?: RegistryAuth): Promise<string>;
  tagImage(source: string, repo: string, tag: string): Promise<void>;
  /** Makes an image `repo:tag` of a stopped container's filesystem with this config; its id. */
  commit(id: string, repo: string, tag: string, config: ImageConfig): Promise<string>;
  /** Every tag of a repository (berth-INSTANCE/APP:*), for tearing an app down. */
  imagesOf(repository: string): Promise<string[]>;
  /** Removes an image; one missing or in use is left alone. */
  removeImage(ref: string): Promise<void>;

  // Containers
  /** Creates and starts a labelled container; its state once started. */
  run(spec: ContainerSpec): Promise<ContainerState>;
  /** Creates (does not start) a labelled container; its id. */
  create(spec: ContainerSpec): Promise<string>;
  start(id: string): Promise<void>;
  /** Wires a created container's output (and input) to the caller; call before start(). */
  attach(id: string, options: AttachOptions): Promise<Attachment>;
  /** Waits for the container to exit; its status code. */
  wait(id: string): Promise<{ code: number; oomKilled: boolean }>;
  /** Resizes the container's terminal. */
  resize(id: string, rows: number, cols: number): Promise<void>;
  /** Rejects with NotFoundError when the container is gone. */
  inspect(id: string): Promise<ContainerState>;
  /** Containers berth made, narrowed by labels, running or not. */
  list(labels?: Record<string, string>): Promise<ContainerState[]>;
  /** Containers (berth's or not, running or not) whose name starts with `prefix`. */
  containersNamed(prefix: string): Promise<Array<{ id: string; name: string }>>;
  /**
   * Runs a process in a running container (a database's dump, its client), its streams wired to
   * the caller; resolves to its exit code once its output has been handed over entirely.
   * NotFoundError when the container is gone; an error when it is not running.
   */
  exec(id: string, options: ExecOptions): Promise<{ code: number }>;
  /** SIGTERM, SIGKILL after `timeoutSec`, then remove. A container already gone is not an error. */
  stopAndRemove(id: string, timeoutSec?: number): Promise<void>;

  // Archives
  /** Extracts a tar stream into a directory of the container (which must exist). */
  putArchive(id: string, dir: string, tar: Readable | Buffer): Promise<void>;
  /** A path of a container (running or not) as a tar stream; NotFoundError when it has none. */
  getArchive(id: string, file: string): Promise<Readable>;

  // Logs
  /**
   * The last `tail` lines the container wrote to stdout and stderr; with `timestamps`, each line
   * starts with its RFC 3339 time and a space.
   */
  logs(id: string, tail?: number, options?: { timestamps?: boolean }): Promise<string>;
  /** From its last `tail` lines on, what the container writes (stdout and stderr, timestamped), until stopped. */
  /** `onData` may return a promise: the logs are not read further until it settles (backpressure). */
  followLogs(id: string, options: { tail: number; onData(data: Buffer): void | Promise<void> }): Promise<Subscription>;

  // Events
  /** Follows what happens to the containers of berth's apps on this instance. */
  watchContainers(handlers: ContainerEventHandlers): Promise<Subscription>;
}
