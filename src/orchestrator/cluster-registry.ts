// The Swarm's own registry, so a release built on the manager reaches every node by digest with
// no registry outside and no trust to configure on any node. Two services of the registry image
// (--registry-image, registry:2 by default, pulled on first use):
// - the store, one task pinned to the manager with a named volume, its port published in host
//   mode on a fixed port: the manager's engine pushes to 127.0.0.1:PORT, which Docker trusts over
//   plain HTTP as it does every 127.0.0.0/8 registry;
// - the mirror, a global service (one task on every node, joining nodes included) in pull-through
//   cache mode towards the store at the manager's address, published on another fixed port: every
//   node pulls 127.0.0.1:MIRROR/berth-INSTANCE/APP@sha256:… from its own loopback.
// Both are labelled berth.role=registry; found at start they are kept (recreated when gone or when
// the image or the manager's address changed). The store's volume is berth's data: berth never
// removes it. Old releases go from the store by the registry API's DELETE of their manifest.
import type { Output } from '../ui/output.ts';
import { UserError } from '../errors.ts';
import { checkImageReference } from '../image-reference.ts';
import { log } from '../log.ts';
import { LABEL, type Engine } from './engine.ts';
import type { ImageDistributor, Swarm, SwarmService, SwarmServiceSpec, SwarmTask } from './swarm.ts';

/** The host port of the store on the manager (pushes) and of the mirror on every node (pulls). */
export const REGISTRY_PORTS = { store: 5000, mirror: 5001 } as const;

/** Which of the two a registry service is (label). */
const KIND_LABEL = 'berth.registry';
/** The store's address the mirror forwards to, as it was created (label). */
const REMOTE_LABEL = 'berth.registry.remote';
/** The Swarm node id of the manager the store (and its volume, its data) was made on (label). */
const NODE_LABEL = 'berth.registry.node';
/** Where the registry image keeps its data. */
const STORAGE = '/var/lib/registry';

/** Manifest types a push of the engine stores; the registry answers HEAD with the digest of the one it has. */
const MANIFEST_TYPES = [
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
].join(', ');

export interface ClusterRegistryDeps {
  /** The manager's engine: it pulls the registry image, holds the volume and pushes. */
  engine: Pick<Engine, 'instance' | 'imageExists' | 'pull' | 'tagImage' | 'push' | 'removeImage' | 'ensureVolume'>;
  swarm: Swarm;
  /** The registry image (--registry-image). */
  image: string;
  /** Names: PREFIX-INSTANCE-registry (the store and its volume), PREFIX-INSTANCE-registry-mirror. */
  prefix: string;
  ports?: { store: number; mirror: number };
  /** How long the services may take to run their tasks (pull included). Default 120 s. */
  startTimeoutMs?: number;
}

export class ClusterRegistry implements ImageDistributor {
  readonly #deps: ClusterRegistryDeps;
  readonly #ports: { store: number; mirror: number };
  readonly #name: string;
  /** The store's address a prune could not reach, once logged (an error once per daemon, not a warning per deploy). */
  #unreachableLogged = false;
  /** ensure() one at a time: two deploys at once make the services once. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(deps: ClusterRegistryDeps) {
    checkImageReference(deps.image, 'registry:2 or registry.example.com/registry:2');
    this.#deps = deps;
    this.#ports = deps.ports ?? REGISTRY_PORTS;
    this.#name = `${deps.prefix}-${deps.engine.instance}-registry`;
  }

  /** Pushes a release image to the store; the reference by digest every node pulls through its mirror. */
  async distribute(image: string, out: Output): Promise<string> {
    await this.ensure(out);
    const { path, tag } = splitReference(image);
    const pushRepo = `127.0.0.1:${this.#ports.store}/${path}`;
    await this.#deps.engine.tagImage(image, pushRepo, tag);
    try {
      await out.step(`Pushing ${image} to the cluster registry`);
      const digest = await this.#push(`${pushRepo}:${tag}`, out);
      log.info('registry_pushed', { image, digest });
      return `127.0.0.1:${this.#ports.mirror}/${path}@${digest}`;
    } finally {
      // Only the release's own tag names the image on the engine, so pruning it frees it.
      await this.#deps.engine.removeImage(`${pushRepo}:${tag}`);
    }
  }

  /**
   * Deletes from the store the manifests of these release images (`berth-INSTANCE/APP:TAG`, as
   * pruned from the engine, or references by digest). A manifest another tag still names stays.
   * The mirrors' caches keep what they served until it expires there (the registry's 7 days).
   */
  async prune(refs: string[]): Promise<void> {
    if (refs.length === 0) return;
    const where = `${urlHost((await this.#deps.swarm.manager()).address)}:${this.#ports.store}`;
    const base = `http://${where}/v2`;
    const byPath = new Map<string, { tags: Set<string>; digests: Set<string> }>();
    for (const ref of refs) {
      const { path, tag, digest } = splitReference(ref);
      const entry = byPath.get(path) ?? { tags: new Set(), digests: new Set() };
      if (digest) entry.digests.add(digest);
      else entry.tags.add(tag);
      byPath.set(path, entry);
    }
    const failures: string[] = [];
    for (const [path, wanted] of byPath) {
      try {
        const listed = await fetch(`${base}/${path}/tags/list`);
        const tags = listed.status === 404 ? [] : ((await (await ok(listed, `listing ${path}`)).json()) as { tags?: string[] | null }).tags ?? [];
        const kept = new Set<string>();
        const doomed = new Set(wanted.digests);
        for (const tag of tags) {
          const head = await fetch(`${base}/${path}/manifests/${tag}`, { method: 'HEAD', headers: { Accept: MANIFEST_TYPES } });
          const digest = head.status === 404 ? undefined : (await ok(head, `reading ${path}:${tag}`)).headers.get('docker-content-digest');
          if (!digest) continue;
          (wanted.tags.has(tag) ? doomed : kept).add(digest);
        }
        for (const digest of doomed) {
          if (kept.has(digest)) continue;
          const deleted = await fetch(`${base}/${path}/manifests/${digest}`, { method: 'DELETE' });
          if (deleted.status !== 404) await ok(deleted, `deleting ${path}@${digest}`);
          log.info('registry_manifest_deleted', { repository: path, digest });
        }
      } catch (e) {
        // fetch fails with a TypeError when it gets no answer at all (refused, no route): so will the other paths.
        if (e instanceof TypeError) return this.#unreachable(where, e);
        failures.push((e as Error).message);
      }
    }
    if (failures.length) throw new Error(`pruning the cluster registry: ${failures.join('; ')}`);
  }

  // berth's host may not reach the manager's port (a manager over ssh://, a firewall): said once, as an error.
  #unreachable(where: string, e: TypeError): void {
    if (this.#unreachableLogged) return;
    this.#unreachableLogged = true;
    const cause = (e.cause as { code?: string; message?: string } | undefined) ?? {};
    log.error('registry_prune_unreachable', { address: where, error: cause.code ?? cause.message ?? e.message, effect: `old releases stay in the cluster registry: berth's host must reach ${where} to delete them (said once)` });
  }

  /** The store and the mirror exist and run (made, adopted or remade); one caller at a time. */
  ensure(out: Output): Promise<void> {
    const next = this.#queue.then(() => this.#ensure(out));
    this.#queue = next.catch(() => undefined);
    return next;
  }

  async #ensure(out: Output): Promise<void> {
    const { swarm, image } = this.#deps;
    const manager = await swarm.manager();
    const remote = `http://${urlHost(manager.address)}:${this.#ports.store}`;
    const found = await swarm.services({ [LABEL.role]: 'registry' });
    let store = found.find((s) => s.labels[KIND_LABEL] === 'store');
    let mirror = found.find((s) => s.labels[KIND_LABEL] === 'mirror');
    for (const other of found.filter((s) => s !== store && s !== mirror)) await swarm.removeService(other.id);

    const storeWanted = (s: SwarmService) => s.image === image && s.constraints.includes(`node.id==${manager.nodeId}`);
    const mirrorWanted = (s: SwarmService) => s.image === image && s.labels[REMOTE_LABEL] === remote;
    // berth's engine is another manager's now (--docker-host): the store's data stays on its volume there.
    const storeNode = store && (store.labels[NODE_LABEL] ?? store.constraints.find((c) => c.startsWith('node.id=='))?.slice('node.id=='.length));
    if (store && storeNode !== manager.nodeId) {
      log.warn('registry_store_moved', { from: storeNode, to: manager.nodeId, volume: this.#name });
      await out.step(`The cluster registry's store ran on node ${storeNode}, whose volume ${this.#name} keeps its data; berth's engine is node ${manager.nodeId} now: a new, empty store starts here, and each app's release is pushed to it again at its next deploy`);
    }
    if ((store && !storeWanted(store)) || (mirror && !mirrorWanted(mirror))) {
      await out.step(`Recreating the cluster registry (image ${image}, manager ${manager.address}); its volume ${this.#name} stays`);
      if (store && !storeWanted(store)) await swarm.removeService(store.id), (store = undefined);
      if (mirror && !mirrorWanted(mirror)) await swarm.removeService(mirror.id), (mirror = undefined);
    }
    if (!store || !mirror) {
      await this.#ensureImage(out);
      if (!store) await out.step(`Starting the cluster registry on the manager (${image}, port ${this.#ports.store}, volume ${this.#name})`);
      if (!mirror) await out.step(`Starting the cluster registry's mirror on every node (port ${this.#ports.mirror})`);
    }
    const labels = { [LABEL.managed]: '1', [LABEL.instance]: this.#deps.engine.instance, [LABEL.role]: 'registry' };
    if (!store) {
      await this.#deps.engine.ensureVolume(this.#name, { [LABEL.role]: 'registry' });
      store = await swarm.createService({
        ...serviceBase(this.#name, image),
        env: { REGISTRY_STORAGE_DELETE_ENABLED: 'true' },
        labels: { ...labels, [KIND_LABEL]: 'store', [NODE_LABEL]: manager.nodeId },
        replicas: 1,
        publish: 5000,
        publishedPort: this.#ports.store,
        constraints: [`node.id==${manager.nodeId}`],
        mounts: [`${this.#name}:${STORAGE}`],
      });
    }
    if (!mirror) {
      mirror = await swarm.createService({
        ...serviceBase(`${this.#name}-mirror`, image),
        env: { REGISTRY_PROXY_REMOTEURL: remote },
        labels: { ...labels, [KIND_LABEL]: 'mirror', [REMOTE_LABEL]: remote },
        replicas: 0,
        global: true,
        publish: 5000,
        publishedPort: this.#ports.mirror,
        constraints: [],
      });
    }
    await this.#waitRunning(store, mirror);
  }

  async #ensureImage(out: Output): Promise<void> {
    const { engine, image } = this.#deps;
    if (await engine.imageExists(image)) return;
    await out.step(`Pulling ${image} for the cluster registry (first use)`);
    try {
      await engine.pull(image, (line) => void out.detail(line));
    } catch (e) {
      throw new UserError('image_pull_failed', `could not pull ${image}: ${(e as Error).message}`, {
        cause: e,
        hint: 'check that the manager reaches its registry, or give an image every node has with --registry-image',
      });
    }
  }

  /** Until the store runs on the manager and a mirror on every node that takes tasks (ready and active). */
  async #waitRunning(store: SwarmService, mirror: SwarmService): Promise<void> {
    const { swarm } = this.#deps;
    const deadline = Date.now() + (this.#deps.startTimeoutMs ?? 120_000);
    for (;;) {
      const [storeTasks, mirrorTasks, nodes] = await Promise.all([swarm.tasks({ service: store.id }), swarm.tasks({ service: mirror.id }), swarm.nodes()]);
      // A paused node gets no new task: a mirror missing there never comes (nor on a drained one).
      const serving = nodes.filter((n) => n.state === 'ready' && n.availability === 'active');
      const mirrored = new Set(mirrorTasks.filter(running).map((t) => t.nodeId));
      const missing = serving.filter((n) => !mirrored.has(n.id));
      if (storeTasks.some(running) && missing.length === 0) return;
      if (Date.now() > deadline) {
        const why = [...storeTasks, ...mirrorTasks].filter((t) => t.message && !running(t)).map((t) => t.message);
        const waiting = storeTasks.some(running) ? `its mirror on ${missing.map((n) => n.hostname).join(', ')}` : 'the store on the manager';
        throw new UserError('registry_not_running', `the cluster registry does not run: ${waiting}${why.length ? ` (${[...new Set(why)].join('; ')})` : ''}`, {
          hint: `check that ports ${this.#ports.store} and ${this.#ports.mirror} are free on the nodes and that every node has or can pull ${this.#deps.image}`,
        });
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  /** A push, tried again while the store's task has just started and does not listen yet. */
  async #push(ref: string, out: Output): Promise<string> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#deps.engine.push(ref, (line) => void out.detail(line));
      } catch (e) {
        if (attempt >= 5 || !/connection refused|connection reset|EOF/i.test((e as Error).message)) {
          throw new UserError('registry_push_failed', `could not push ${ref} to the cluster registry: ${(e as Error).message}`, { cause: e });
        }
        await new Promise((resolve) => setTimeout(resolve, 1_000));
      }
    }
  }
}

function serviceBase(name: string, image: string): Pick<SwarmServiceSpec, 'name' | 'image' | 'spread' | 'networks' | 'stopTimeout'> {
  return { name, image, spread: [], networks: [], stopTimeout: 10 };
}

/** An address as the host of a URL: an IPv6 one in brackets. */
function urlHost(address: string): string {
  return address.includes(':') && !address.startsWith('[') ? `[${address}]` : address;
}

function running(task: SwarmTask): boolean {
  return task.state === 'running' && task.desiredState === 'running';
}

async function ok(response: Response, what: string): Promise<Response> {
  if (response.ok) return response;
  throw new Error(`${what}: the registry answered ${response.status} ${(await response.text().catch(() => '')).trim()}`);
}

/**
 * A release image's repository path in the cluster registry (its own registry host, if it names
 * one, left out), its tag (latest when it has none) and its digest (when given by one).
 */
export function splitReference(ref: string): { path: string; tag: string; digest: string | undefined } {
  const at = ref.indexOf('@');
  const digest = at >= 0 ? ref.slice(at + 1) : undefined;
  let name = at >= 0 ? ref.slice(0, at) : ref;
  let tag = 'latest';
  const colon = name.lastIndexOf(':');
  if (colon > name.lastIndexOf('/')) {
    tag = name.slice(colon + 1);
    name = name.slice(0, colon);
  }
  const slash = name.indexOf('/');
  const first = slash >= 0 ? name.slice(0, slash) : '';
  if (first && (first.includes('.') || first.includes(':') || first === 'localhost')) name = name.slice(slash + 1);
  return { path: name, tag, digest };
}
