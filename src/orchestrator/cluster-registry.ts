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
// the image, the manager's address or the credential changed). The store's volume is berth's
// data: berth never removes it. Old releases go from the store by the registry API's DELETE of
// their manifest.
// Their host ports listen on every address of every node (Swarm binds no host-mode port to
// loopback), so both ask for one credential (htpasswd, bcrypt), made at random on first use and
// kept 0600 in the data dir: the htpasswd file is a Swarm secret, the mirror's way to the store
// (its config file, the credential in the upstream URL) another one mounted over the image's
// config; pushes, prunes and the app services (X-Registry-Auth, which Swarm keeps for its nodes'
// pulls) send it. Nothing of it is in a service's env, label or log.
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import bcrypt from 'bcryptjs';
import type { Output } from '../ui/output.ts';
import { UserError } from '../errors.ts';
import { checkImageReference } from '../image-reference.ts';
import { log } from '../log.ts';
import { writeFileAtomic } from '../state/atomic-file.ts';
import { LABEL, type Engine, type RegistryAuth } from './engine.ts';
import type { ImageDistributor, Swarm, SwarmService, SwarmServiceSpec, SwarmTask } from './swarm.ts';

/** The host port of the store on the manager (pushes) and of the mirror on every node (pulls). */
export const REGISTRY_PORTS = { store: 5000, mirror: 5001 } as const;

/** Which of the two a registry service is (label). */
const KIND_LABEL = 'berth.registry';
/** The store's address the mirror forwards to, as it was created (label). */
const REMOTE_LABEL = 'berth.registry.remote';
/** The Swarm secrets a registry service was made with, space-separated (label): another credential, another service. */
const SECRETS_LABEL = 'berth.registry.secrets';
/** The user of the registry's one credential. */
const USER = 'berth';
/** Where the registry image reads its config: the mirror's is a secret mounted there. */
const CONFIG_PATH = '/etc/docker/registry/config.yml';
/**
 * bcrypt's cost for the htpasswd entry. The registry checks it on every request; the password is
 * 192 random bits, which no cost makes easier or harder to guess, so the cheapest the format
 * allows (Apache htpasswd -B's default) keeps the registry fast.
 */
const BCRYPT_COST = 5;
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
  /** The file of the registry's credential (DataPaths.registryCredential): made on first use, 0600. */
  credentialFile: string;
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
  /** The credential's password, once read or made. */
  #password: string | undefined;

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
      const digest = await this.#push(`${pushRepo}:${tag}`, out, this.#auth(this.#ports.store, await this.#readPassword()));
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
    const authorization = `Basic ${Buffer.from(`${USER}:${await this.#readPassword()}`).toString('base64')}`;
    const fetch = (url: string, init: RequestInit = {}) => globalThis.fetch(url, { ...init, headers: { ...(init.headers as Record<string, string>), Authorization: authorization } });
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

  /** The credential a node pulls `ref` through its mirror with (a reference distribute returned). */
  registryAuth(ref: string): RegistryAuth | undefined {
    if (!ref.startsWith(`127.0.0.1:${this.#ports.mirror}/`) || this.#password === undefined) return undefined;
    return this.#auth(this.#ports.mirror, this.#password);
  }

  #auth(port: number, password: string): RegistryAuth {
    return { username: USER, password, serveraddress: `127.0.0.1:${port}` };
  }

  /** The credential's password: from its file, or made at random (192 bits) and kept there, 0600. */
  async #readPassword(): Promise<string> {
    if (this.#password !== undefined) return this.#password;
    const file = this.#deps.credentialFile;
    let password: string;
    try {
      password = (await fs.readFile(file, 'utf8')).trim();
      if (!password) throw new UserError('registry_credential_empty', `the cluster registry's credential file ${file} is empty`, { hint: 'delete it and the registry services; berth makes new ones (docs/swarm.md)' });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      password = randomBytes(24).toString('base64url');
      await writeFileAtomic(file, password + '\n', 0o600);
      log.info('registry_credential_created', { file });
    }
    this.#password = password;
    return password;
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
    const password = await this.#readPassword();
    // A secret never changes: its name tells its content (the credential, and the mirror's upstream).
    const tag = (text: string) => createHash('sha256').update(text).digest('hex').slice(0, 12);
    const htpasswd = `${this.#name}-htpasswd-${tag(`${USER}:${password}`)}`;
    const mirrorConfig = `${this.#name}-mirror-${tag(`${remote}\n${USER}:${password}`)}`;
    const found = await swarm.services({ [LABEL.role]: 'registry' });
    let store = found.find((s) => s.labels[KIND_LABEL] === 'store');
    let mirror = found.find((s) => s.labels[KIND_LABEL] === 'mirror');
    for (const other of found.filter((s) => s !== store && s !== mirror)) await swarm.removeService(other.id);

    const storeWanted = (s: SwarmService) => s.image === image && s.constraints.includes(`node.id==${manager.nodeId}`) && s.labels[SECRETS_LABEL] === htpasswd;
    const mirrorWanted = (s: SwarmService) => s.image === image && s.labels[REMOTE_LABEL] === remote && s.labels[SECRETS_LABEL] === `${htpasswd} ${mirrorConfig}`;
    // berth's engine is another manager's now (--docker-host): the store's data stays on its volume there.
    const storeNode = store && (store.labels[NODE_LABEL] ?? store.constraints.find((c) => c.startsWith('node.id=='))?.slice('node.id=='.length));
    if (store && storeNode !== manager.nodeId) {
      log.warn('registry_store_moved', { from: storeNode, to: manager.nodeId, volume: this.#name });
      await out.step(`The cluster registry's store ran on node ${storeNode}, whose volume ${this.#name} keeps its data; berth's engine is node ${manager.nodeId} now: a new, empty store starts here, and each app's release is pushed to it again at its next deploy`);
    }
    if ((store && !storeWanted(store)) || (mirror && !mirrorWanted(mirror))) {
      await out.step(`Recreating the cluster registry (image ${image}, manager ${manager.address}, its credential); its volume ${this.#name} stays`);
      if (store && !storeWanted(store)) await swarm.removeService(store.id), (store = undefined);
      if (mirror && !mirrorWanted(mirror)) await swarm.removeService(mirror.id), (mirror = undefined);
    }
    if (!store || !mirror) {
      await this.#ensureImage(out);
      if (!store) await out.step(`Starting the cluster registry on the manager (${image}, port ${this.#ports.store}, volume ${this.#name})`);
      if (!mirror) await out.step(`Starting the cluster registry's mirror on every node (port ${this.#ports.mirror})`);
    }
    const labels = { [LABEL.managed]: '1', [LABEL.instance]: this.#deps.engine.instance, [LABEL.role]: 'registry' };
    const made = !store || !mirror;
    if (made) {
      const secretLabels = { [LABEL.role]: 'registry' };
      await swarm.ensureSecret(htpasswd, `${USER}:${bcrypt.hashSync(password, BCRYPT_COST)}\n`, secretLabels);
      if (!mirror) await swarm.ensureSecret(mirrorConfig, mirrorConfigFile(remote, password), secretLabels);
    }
    // The registry's htpasswd auth, its file a secret: the env names only where it is.
    const auth = { REGISTRY_AUTH: 'htpasswd', REGISTRY_AUTH_HTPASSWD_REALM: 'berth cluster registry', REGISTRY_AUTH_HTPASSWD_PATH: '/run/secrets/htpasswd' };
    if (!store) {
      await this.#deps.engine.ensureVolume(this.#name, { [LABEL.role]: 'registry' });
      store = await swarm.createService({
        ...serviceBase(this.#name, image),
        env: { REGISTRY_STORAGE_DELETE_ENABLED: 'true', ...auth },
        labels: { ...labels, [KIND_LABEL]: 'store', [SECRETS_LABEL]: htpasswd, [NODE_LABEL]: manager.nodeId },
        secrets: [{ name: htpasswd, target: 'htpasswd' }],
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
        env: auth,
        labels: { ...labels, [KIND_LABEL]: 'mirror', [REMOTE_LABEL]: remote, [SECRETS_LABEL]: `${htpasswd} ${mirrorConfig}` },
        secrets: [{ name: htpasswd, target: 'htpasswd' }, { name: mirrorConfig, target: CONFIG_PATH }],
        replicas: 0,
        global: true,
        publish: 5000,
        publishedPort: this.#ports.mirror,
        constraints: [],
      });
    }
    await this.#waitRunning(store, mirror);
    if (made) {
      // The secrets of an earlier credential or manager address, now used by no service.
      for (const stale of await swarm.secrets({ [LABEL.role]: 'registry' })) {
        if (stale.name !== htpasswd && stale.name !== mirrorConfig) await swarm.removeSecret(stale.id).catch(() => undefined);
      }
    }
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
  async #push(ref: string, out: Output, auth: RegistryAuth): Promise<string> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#deps.engine.push(ref, (line) => void out.detail(line), auth);
      } catch (e) {
        if (attempt >= 5 || !/connection refused|connection reset|EOF/i.test((e as Error).message)) {
          throw new UserError('registry_push_failed', `could not push ${ref} to the cluster registry: ${(e as Error).message}`, { cause: e });
        }
        await new Promise((resolve) => setTimeout(resolve, 1_000));
      }
    }
  }
}

/**
 * The mirror's config (JSON is YAML): the image's own, in pull-through cache mode towards the
 * store. The credential is in the upstream URL, which the registry's HTTP client sends as Basic
 * auth (registry 2.x's proxy.username/password serve only token auth); given as those too.
 */
function mirrorConfigFile(remote: string, password: string): string {
  const upstream = new URL(remote);
  upstream.username = USER;
  upstream.password = password;
  return JSON.stringify({
    version: 0.1,
    // At info the registry logs its upstream URL, credential included; warnings and errors print
    // URLs with the password masked (Go's HTTP client), and the access log names no credential.
    log: { level: 'warn', fields: { service: 'registry' } },
    storage: { cache: { blobdescriptor: 'inmemory' }, filesystem: { rootdirectory: STORAGE } },
    http: { addr: ':5000', headers: { 'X-Content-Type-Options': ['nosniff'] } },
    health: { storagedriver: { enabled: true, interval: '10s', threshold: 3 } },
    proxy: { remoteurl: upstream.toString().replace(/\/$/, ''), username: USER, password },
  }, null, 2) + '\n';
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
