// ClusterRegistry's decisions over an in-memory Swarm and engine (test/cluster-registry.test.ts
// runs the same paths on a real Swarm): the registry image pulled on first use with its progress,
// the store and mirror services as asked for, adopted, replaced when their image or the manager's
// address changed, made once by two deploys at once, a clear error when they do not run; prune
// against a registry's HTTP API served here (the tag list, HEAD for digests, DELETE).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { UserError } from '../src/errors.ts';
import { ClusterRegistry, splitReference } from '../src/orchestrator/cluster-registry.ts';
import { setLogSink } from '../src/log.ts';
import { LABEL } from '../src/orchestrator/engine.ts';
import type { NodeAvailability, NodeRole, Swarm, SwarmNode, SwarmService, SwarmServiceSpec, SwarmTask } from '../src/orchestrator/swarm.ts';
import { MemoryOutput } from '../src/ui/output.ts';
import bcrypt from 'bcryptjs';
import { FakeEngine } from './helpers/fake-engine.ts';

const CONFIG = { user: '', entrypoint: [], cmd: [], env: [], workingDir: '/' };

/** The data dir of these tests: the registry's credential file. */
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-registry-fake-'));
const credentialFile = path.join(dataDir, 'registry', 'credential');
after(() => fs.rmSync(dataDir, { recursive: true, force: true }));

/** An engine that can pull the images of `pullable`, telling two progress lines. */
class PullingEngine extends FakeEngine {
  readonly pulls: string[] = [];
  readonly pullable = new Set<string>();
  override async pull(ref: string, onProgress?: (line: string) => void): Promise<void> {
    this.pulls.push(ref);
    if (!this.pullable.has(ref)) throw new Error(`pull access denied for ${ref}`);
    onProgress?.('a1b2 Downloading 1.2MB/3MB');
    onProgress?.('a1b2 Pull complete');
    this.images.set(ref, CONFIG);
  }
}

/** A Swarm of a manager and a worker whose services run their tasks at once (unless `stuck`). */
class MemorySwarm implements Swarm {
  readonly services_ = new Map<string, { service: SwarmService; spec: SwarmServiceSpec }>();
  readonly created: SwarmServiceSpec[] = [];
  readonly removed: string[] = [];
  managerAddress = '127.0.0.1';
  /** The node id of the manager whose engine berth talks to. */
  managerId = 'mgr';
  /** Tasks stay pending with this message. */
  stuck: string | undefined;
  #next = 1;
  readonly #nodes: SwarmNode[] = [
    { id: 'mgr', hostname: 'one', address: '10.0.0.1', role: 'manager', state: 'ready', availability: 'active', labels: {}, leader: true },
    { id: 'wrk', hostname: 'two', address: '10.0.0.2', role: 'worker', state: 'ready', availability: 'active', labels: {}, leader: false },
  ];

  async manager(): Promise<{ nodeId: string; address: string }> {
    return { nodeId: this.managerId, address: this.managerAddress };
  }
  async nodes(): Promise<SwarmNode[]> {
    return this.#nodes.map((n) => ({ ...n }));
  }
  async node(ref: string): Promise<SwarmNode> {
    const node = this.#nodes.find((n) => n.id === ref || n.hostname === ref);
    if (!node) throw new UserError('no_node', `no node ${ref}`);
    return { ...node };
  }
  async updateNode(ref: string, change: { labels?: Record<string, string | null>; availability?: NodeAvailability }): Promise<SwarmNode> {
    const node = this.#nodes.find((n) => n.id === ref)!;
    if (change.availability) node.availability = change.availability;
    return { ...node };
  }
  async joinCommand(role: NodeRole): Promise<string> {
    return `docker swarm join --token ${role} 10.0.0.1:2377`;
  }
  async createService(spec: SwarmServiceSpec): Promise<SwarmService> {
    const service = { id: `s${this.#next++}`, name: spec.name, labels: { ...spec.labels }, image: spec.image, replicas: spec.replicas, constraints: [...spec.constraints] };
    this.services_.set(service.id, { service, spec });
    this.created.push(spec);
    return service;
  }
  async services(labels: Record<string, string> = {}): Promise<SwarmService[]> {
    return [...this.services_.values()].map((s) => s.service).filter((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  }
  async setReplicas(id: string, replicas: number): Promise<void> {
    this.services_.get(id)!.service.replicas = replicas;
  }
  async removeService(id: string): Promise<void> {
    this.services_.delete(id);
    this.removed.push(id);
  }
  async tasks(filter: { service?: string }): Promise<SwarmTask[]> {
    const entry = this.services_.get(filter.service ?? '');
    if (!entry) return [];
    // A global service gets a task on the nodes that take new ones (active), as Swarm does.
    const nodes = entry.spec.global ? this.#nodes.filter((n) => n.availability === 'active').map((n) => n.id) : ['mgr'];
    return nodes.map((nodeId, i) => ({
      id: `${entry.service.id}.${i}`, serviceId: entry.service.id, slot: i + 1, nodeId, labels: entry.service.labels, desiredState: 'running',
      state: this.stuck ? 'pending' : 'running', message: this.stuck ?? 'started', exitCode: undefined, containerId: undefined, publishedPort: entry.spec.publishedPort, updatedAt: 0,
    }));
  }
  async taskLogs(): Promise<string> {
    return '';
  }
  followTaskLogs(): never {
    throw new Error('not used by the registry');
  }
  readonly secrets_ = new Map<string, { id: string; data: string }>();
  async ensureSecret(name: string, data: string): Promise<void> {
    if (!this.secrets_.has(name)) this.secrets_.set(name, { id: `x${this.#next++}`, data });
  }
  async secrets(): Promise<Array<{ id: string; name: string }>> {
    return [...this.secrets_].map(([name, s]) => ({ id: s.id, name }));
  }
  async removeSecret(id: string): Promise<void> {
    for (const [name, s] of this.secrets_) if (s.id === id) this.secrets_.delete(name);
  }
}

function setup(options: { pulled?: boolean } = {}) {
  const engine = new PullingEngine('i1');
  engine.images.set('berth-i1/shop:r1', CONFIG);
  engine.pullable.add('registry:2');
  if (options.pulled) engine.images.set('registry:2', CONFIG);
  const swarm = new MemorySwarm();
  const registry = new ClusterRegistry({ engine, swarm, image: 'registry:2', prefix: 'berth', credentialFile, startTimeoutMs: 300 });
  return { engine, swarm, registry };
}

describe('ClusterRegistry over an in-memory Swarm', () => {
  test('first use: the image pulled with its progress, the store on the manager and the mirror on every node, the release pushed and named by digest', async () => {
    const { engine, swarm, registry } = setup();
    const out = new MemoryOutput();
    const ref = await registry.distribute('berth-i1/shop:r1', out);

    assert.deepEqual(engine.pulls, ['registry:2']);
    assert.match(out.text(), /-----> Pulling registry:2 for the cluster registry \(first use\)\n\s+a1b2 Downloading 1\.2MB\/3MB\n\s+a1b2 Pull complete\n/);
    const [store, mirror] = swarm.created;
    const password = fs.readFileSync(credentialFile, 'utf8').trim();
    assert.match(password, /^[A-Za-z0-9_-]{32}$/, '192 random bits');
    assert.equal(fs.statSync(credentialFile).mode & 0o777, 0o600);
    const [htpasswd, config] = [...swarm.secrets_.keys()];
    assert.match(htpasswd!, /^berth-i1-registry-htpasswd-[0-9a-f]{12}$/);
    assert.match(config!, /^berth-i1-registry-mirror-[0-9a-f]{12}$/);
    const auth = { REGISTRY_AUTH: 'htpasswd', REGISTRY_AUTH_HTPASSWD_REALM: 'berth cluster registry', REGISTRY_AUTH_HTPASSWD_PATH: '/run/secrets/htpasswd' };
    assert.deepEqual(store, {
      name: 'berth-i1-registry', image: 'registry:2', spread: [], networks: [], stopTimeout: 10,
      env: { REGISTRY_STORAGE_DELETE_ENABLED: 'true', ...auth },
      labels: { [LABEL.managed]: '1', [LABEL.instance]: 'i1', [LABEL.role]: 'registry', 'berth.registry': 'store', 'berth.registry.secrets': htpasswd, 'berth.registry.node': 'mgr' },
      secrets: [{ name: htpasswd, target: 'htpasswd' }],
      replicas: 1, publish: 5000, publishedPort: 5000, constraints: ['node.id==mgr'], mounts: ['berth-i1-registry:/var/lib/registry'],
    });
    assert.deepEqual(mirror, {
      name: 'berth-i1-registry-mirror', image: 'registry:2', spread: [], networks: [], stopTimeout: 10,
      env: auth,
      labels: { [LABEL.managed]: '1', [LABEL.instance]: 'i1', [LABEL.role]: 'registry', 'berth.registry': 'mirror', 'berth.registry.remote': 'http://127.0.0.1:5000', 'berth.registry.secrets': `${htpasswd} ${config}` },
      secrets: [{ name: htpasswd, target: 'htpasswd' }, { name: config, target: '/etc/docker/registry/config.yml' }],
      replicas: 0, global: true, publish: 5000, publishedPort: 5001, constraints: [],
    });
    // The htpasswd entry is bcrypt of the password; the mirror's config reaches the store with it.
    const [user, hash] = swarm.secrets_.get(htpasswd!)!.data.trim().split(':');
    assert.equal(user, 'berth');
    assert.ok(bcrypt.compareSync(password, hash!), 'bcrypt of the credential');
    const proxy = (JSON.parse(swarm.secrets_.get(config!)!.data) as { proxy: Record<string, string> }).proxy;
    assert.deepEqual(proxy, { remoteurl: `http://berth:${password}@127.0.0.1:5000`, username: 'berth', password });
    assert.ok(!JSON.stringify(swarm.created).includes(password), 'the credential is in no service spec');
    assert.deepEqual(engine.pushes[0]!.auth, { username: 'berth', password, serveraddress: '127.0.0.1:5000' });
    assert.deepEqual(registry.registryAuth(ref), { username: 'berth', password, serveraddress: '127.0.0.1:5001' });
    assert.deepEqual(await engine.volumeLabels('berth-i1-registry'), { [LABEL.managed]: '1', [LABEL.instance]: 'i1', [LABEL.role]: 'registry' });

    assert.deepEqual(engine.pushes.map((p) => p.ref), ['127.0.0.1:5000/berth-i1/shop:r1']);
    assert.equal(ref, `127.0.0.1:5001/berth-i1/shop@${engine.pushes[0]!.digest}`);
    assert.equal(await engine.imageExists('127.0.0.1:5000/berth-i1/shop:r1'), false, 'the push tag is removed');
    assert.equal(await engine.imageExists('berth-i1/shop:r1'), true);
    assert.match(out.text(), /-----> Pushing berth-i1\/shop:r1 to the cluster registry/);
  });

  test('an image that cannot be pulled fails with what to do', async () => {
    const { engine, registry } = setup();
    engine.pullable.clear();
    await assert.rejects(registry.distribute('berth-i1/shop:r1', new MemoryOutput()), (e: unknown) => {
      assert.ok(e instanceof UserError);
      assert.equal(e.code, 'image_pull_failed');
      assert.match(e.message, /could not pull registry:2: pull access denied/);
      assert.match(e.hint ?? '', /--registry-image/);
      return true;
    });
  });

  test('services found are adopted: nothing made, nothing pulled, nothing said but the push', async () => {
    const { engine, swarm, registry } = setup();
    await registry.distribute('berth-i1/shop:r1', new MemoryOutput());
    const other = new ClusterRegistry({ engine, swarm, image: 'registry:2', prefix: 'berth', credentialFile });
    const out = new MemoryOutput();
    await other.distribute('berth-i1/shop:r1', out);
    assert.equal(swarm.created.length, 2);
    assert.deepEqual(swarm.removed, []);
    assert.deepEqual(engine.pulls, ['registry:2']);
    assert.equal(out.text(), '-----> Pushing berth-i1/shop:r1 to the cluster registry\n');
  });

  test("an earlier berth's services without the credential are replaced (the volume kept); a new credential replaces them and drops the old secrets", async () => {
    const { engine, swarm, registry } = setup({ pulled: true });
    const labels = { [LABEL.managed]: '1', [LABEL.instance]: 'i1', [LABEL.role]: 'registry' };
    const base = { image: 'registry:2', spread: [], networks: [], stopTimeout: 10, publish: 5000 };
    const oldStore = await swarm.createService({ ...base, name: 'berth-i1-registry', env: { REGISTRY_STORAGE_DELETE_ENABLED: 'true' }, labels: { ...labels, 'berth.registry': 'store' }, replicas: 1, publishedPort: 5000, constraints: ['node.id==mgr'], mounts: ['berth-i1-registry:/var/lib/registry'] });
    const oldMirror = await swarm.createService({ ...base, name: 'berth-i1-registry-mirror', env: { REGISTRY_PROXY_REMOTEURL: 'http://127.0.0.1:5000' }, labels: { ...labels, 'berth.registry': 'mirror', 'berth.registry.remote': 'http://127.0.0.1:5000' }, replicas: 0, global: true, publishedPort: 5001, constraints: [] });
    const out = new MemoryOutput();
    await registry.ensure(out);
    assert.deepEqual(swarm.removed, [oldStore.id, oldMirror.id]);
    assert.match(out.text(), /Recreating the cluster registry \(image registry:2, manager 127\.0\.0\.1, its credential\); its volume berth-i1-registry stays/);
    const made = await swarm.services();
    assert.equal(made.length, 2);
    assert.ok(made.every((s) => s.labels['berth.registry.secrets']?.includes('-htpasswd-')), 'both with the htpasswd secret');
    assert.deepEqual(swarm.created.at(-2)!.mounts, ['berth-i1-registry:/var/lib/registry']);

    // Rotation: the credential file deleted, another berth makes a new one and new services.
    const secretsBefore = [...swarm.secrets_.keys()];
    fs.rmSync(credentialFile);
    await new ClusterRegistry({ engine, swarm, image: 'registry:2', prefix: 'berth', credentialFile }).ensure(new MemoryOutput());
    assert.equal(swarm.removed.length, 4, 'both replaced');
    const secretsAfter = [...swarm.secrets_.keys()];
    assert.equal(secretsAfter.length, 2);
    assert.ok(secretsAfter.every((name) => !secretsBefore.includes(name)), 'the old secrets are gone, new ones made');
  });

  test('another --registry-image replaces both services and keeps the volume; a new manager address replaces the mirror only', async () => {
    const { engine, swarm, registry } = setup({ pulled: true });
    await registry.distribute('berth-i1/shop:r1', new MemoryOutput());
    const [storeId, mirrorId] = (await swarm.services()).map((s) => s.id);

    engine.images.set('registry:2.8', CONFIG);
    const out = new MemoryOutput();
    await new ClusterRegistry({ engine, swarm, image: 'registry:2.8', prefix: 'berth', credentialFile }).ensure(out);
    assert.deepEqual(swarm.removed, [storeId, mirrorId]);
    assert.deepEqual((await swarm.services()).map((s) => s.image), ['registry:2.8', 'registry:2.8']);
    assert.match(out.text(), /Recreating the cluster registry \(image registry:2\.8, manager 127\.0\.0\.1, its credential\); its volume berth-i1-registry stays/);
    assert.ok(engine.volumes.has('berth-i1-registry'));

    swarm.managerAddress = '10.0.0.9';
    const store = (await swarm.services()).find((s) => s.labels['berth.registry'] === 'store')!;
    await new ClusterRegistry({ engine, swarm, image: 'registry:2.8', prefix: 'berth', credentialFile }).ensure(new MemoryOutput());
    const now = await swarm.services();
    assert.ok(now.some((s) => s.id === store.id), 'the store stays');
    assert.equal(now.find((s) => s.labels['berth.registry'] === 'mirror')!.labels['berth.registry.remote'], 'http://10.0.0.9:5000');
  });

  test("on another manager's engine the store starts anew there, saying that its data stays on the old node and releases are pushed again", async () => {
    const { engine, swarm, registry } = setup({ pulled: true });
    await registry.ensure(new MemoryOutput());
    swarm.managerId = 'wrk';
    const out = new MemoryOutput();
    await new ClusterRegistry({ engine, swarm, image: 'registry:2', prefix: 'berth', credentialFile }).ensure(out);
    assert.match(out.text(), /The cluster registry's store ran on node mgr, whose volume berth-i1-registry keeps its data; berth's engine is node wrk now: a new, empty store starts here, and each app's release is pushed to it again at its next deploy/);
    const store = (await swarm.services()).find((s) => s.labels['berth.registry'] === 'store')!;
    assert.deepEqual(store.constraints, ['node.id==wrk']);
    assert.equal(store.labels['berth.registry.node'], 'wrk');
  });

  test('a paused node (no new tasks) is not waited for: the mirror that never lands there does not hold the deploy', async () => {
    const { swarm, registry } = setup({ pulled: true });
    await swarm.updateNode('wrk', { availability: 'pause' });
    await registry.ensure(new MemoryOutput());
    assert.deepEqual((await swarm.tasks({ service: (await swarm.services()).find((s) => s.labels['berth.registry'] === 'mirror')!.id })).map((t) => t.nodeId), ['mgr']);
  });

  test("an IPv6 manager address is bracketed in the mirror's store URL", async () => {
    const { swarm, registry } = setup({ pulled: true });
    swarm.managerAddress = 'fd00::2';
    await registry.ensure(new MemoryOutput());
    const mirror = swarm.created.find((s) => s.labels['berth.registry'] === 'mirror')!;
    assert.equal(mirror.labels['berth.registry.remote'], 'http://[fd00::2]:5000');
  });

  test('two deploys at once make the services once', async () => {
    const { swarm, registry } = setup({ pulled: true });
    await Promise.all([registry.ensure(new MemoryOutput()), registry.ensure(new MemoryOutput())]);
    assert.equal(swarm.created.length, 2);
  });

  test('services whose tasks do not run fail the deploy saying where and why', async () => {
    const { swarm, registry } = setup({ pulled: true });
    swarm.stuck = 'host-mode port already in use on 1 node';
    await assert.rejects(registry.ensure(new MemoryOutput()), (e: unknown) => {
      assert.ok(e instanceof UserError);
      assert.equal(e.code, 'registry_not_running');
      assert.match(e.message, /the store on the manager \(host-mode port already in use on 1 node\)/);
      assert.match(e.hint ?? '', /ports 5000 and 5001/);
      return true;
    });
  });

  test('a registry image that is no image reference is refused', () => {
    const { engine, swarm } = setup();
    assert.throws(() => new ClusterRegistry({ engine, swarm, image: 'not an image', prefix: 'berth', credentialFile }), /"not an image" is not an image reference/);
  });
});

describe('ClusterRegistry.prune against a registry API', () => {
  const manifests = new Map<string, string>([['r1', 'sha256:aaa'], ['r2', 'sha256:bbb'], ['r3', 'sha256:bbb']]);
  const deleted: string[] = [];
  let server: http.Server;
  let port: number;
  let refuseDelete = false;

  before(async () => {
    server = http.createServer((req, res) => {
      const url = req.url ?? '';
      const password = fs.readFileSync(credentialFile, 'utf8').trim();
      if (req.headers.authorization !== `Basic ${Buffer.from(`berth:${password}`).toString('base64')}`) return void res.writeHead(401, { 'www-authenticate': 'Basic realm="test"' }).end();
      if (!url.startsWith('/v2/berth-i1/shop/')) return void res.writeHead(404).end('{"errors":[{"code":"NAME_UNKNOWN"}]}');
      if (url.endsWith('/tags/list')) return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ name: 'berth-i1/shop', tags: [...manifests.keys()] }));
      const reference = url.slice(url.lastIndexOf('/') + 1);
      if (req.method === 'HEAD') {
        assert.match(req.headers.accept ?? '', /application\/vnd\.docker\.distribution\.manifest\.v2\+json/);
        const digest = manifests.get(reference);
        return void res.writeHead(digest ? 200 : 404, digest ? { 'docker-content-digest': digest } : {}).end();
      }
      if (req.method === 'DELETE') {
        if (refuseDelete) return void res.writeHead(405).end('{"errors":[{"code":"UNSUPPORTED"}]}');
        deleted.push(reference);
        for (const [tag, digest] of manifests) if (digest === reference) manifests.delete(tag);
        return void res.writeHead(202).end();
      }
      res.writeHead(405).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  after(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  function registry(): ClusterRegistry {
    return new ClusterRegistry({ engine: new FakeEngine('i1'), swarm: new MemorySwarm(), image: 'registry:2', prefix: 'berth', credentialFile, ports: { store: port, mirror: port + 1 } });
  }

  test('a store berth cannot reach is logged once as an error naming its address and port, and fails no prune', async (t) => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const shut = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const lines: string[] = [];
    setLogSink((line) => lines.push(line));
    t.after(() => setLogSink(() => {}));
    const unreachable = new ClusterRegistry({ engine: new FakeEngine('i1'), swarm: new MemorySwarm(), image: 'registry:2', prefix: 'berth', credentialFile, ports: { store: shut, mirror: shut + 1 } });
    await unreachable.prune(['berth-i1/shop:r1']);
    await unreachable.prune(['berth-i1/shop:r2']);
    const logged = lines.filter((l) => l.includes('registry_prune_unreachable'));
    assert.equal(logged.length, 1, lines.join('\n'));
    assert.match(logged[0]!, /"level":"error"/);
    assert.match(logged[0]!, new RegExp(`127\\.0\\.0\\.1:${shut}`));
  });

  test("deletes the manifests of pruned tags, but not one a kept tag names; another app's unknown repository is no error", async () => {
    await registry().prune(['berth-i1/shop:r1', 'berth-i1/shop:r3', 'berth-i1/gone:r1']);
    assert.deepEqual(deleted, ['sha256:aaa']);
    assert.deepEqual([...manifests.keys()], ['r2', 'r3']);
  });

  test('a reference by digest goes once no kept tag names it; a registry refusing deletes fails the prune saying so', async () => {
    await registry().prune([`127.0.0.1:${port + 1}/berth-i1/shop@sha256:bbb`]);
    assert.deepEqual(deleted, ['sha256:aaa'], 'r2 and r3 still name it');
    await registry().prune([`127.0.0.1:${port + 1}/berth-i1/shop@sha256:bbb`, 'berth-i1/shop:r2', 'berth-i1/shop:r3']);
    assert.deepEqual(deleted, ['sha256:aaa', 'sha256:bbb']);
    manifests.set('r4', 'sha256:ccc');
    refuseDelete = true;
    await assert.rejects(registry().prune(['berth-i1/shop:r4']), /pruning the cluster registry: deleting berth-i1\/shop@sha256:ccc: the registry answered 405/);
  });
});

test('splitReference: the repository path without a registry host, the tag, the digest', () => {
  assert.deepEqual(splitReference('berth-i1/shop:r3'), { path: 'berth-i1/shop', tag: 'r3', digest: undefined });
  assert.deepEqual(splitReference('127.0.0.1:5001/berth-i1/shop@sha256:abc'), { path: 'berth-i1/shop', tag: 'latest', digest: 'sha256:abc' });
  assert.deepEqual(splitReference('registry.example.com/team/app:1.2'), { path: 'team/app', tag: '1.2', digest: undefined });
  assert.deepEqual(splitReference('localhost/app'), { path: 'app', tag: 'latest', digest: undefined });
});
