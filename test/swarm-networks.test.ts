// The networks of apps and backing services by scheduler, over a fake engine: bridge networks on
// the docker scheduler as before; on the swarm scheduler attachable overlay networks (the app's
// tasks on every node join them beside the manager's service containers), the deploy context
// carrying how to make the app's, and a service showing the manager's node it runs on. The same
// path on a real Swarm: test/e2e-swarm-services.test.ts.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { dataPaths, defaultConfig } from '../src/config.ts';
import { isUserError } from '../src/errors.ts';
import { setLogSink } from '../src/log.ts';
import { deployRelease, type DeployContext, type DrainResult, type ProcessPlan, type RoutePublisher } from '../src/orchestrator/deployment.ts';
import { LABEL, overlayNetworkName } from '../src/orchestrator/engine.ts';
import { Orchestrator } from '../src/orchestrator/orchestrator.ts';
import { SERVICE_LABEL } from '../src/orchestrator/service-manager.ts';
import type { Swarm, SwarmNode } from '../src/orchestrator/swarm.ts';
import { AppLock } from '../src/platform/app-lock.ts';
import { NodeService } from '../src/platform/node-service.ts';
import type { Target } from '../src/proxy/route-table.ts';
import type { ServiceKind } from '../src/services/kinds/kind.ts';
import { AppStore, type Release } from '../src/state/app-store.ts';
import { defaultSettings } from '../src/state/app-settings.ts';
import { ALL_TYPES, defaultCheckSettings } from '../src/state/check-settings.ts';
import { DomainStore } from '../src/state/domain-store.ts';
import { ServiceStore } from '../src/state/service-store.ts';
import { MemoryOutput, type Output } from '../src/ui/output.ts';
import { FakeEngine } from './helpers/fake-engine.ts';

setLogSink(() => {});

const IMAGE = 'berth-fake/shop:r1';
const release: Release = { number: 1, image: IMAGE, commit: 'c0ffee', builder: 'image', processTypes: { web: '' }, config: {}, description: 'Deploy', createdAt: '2026-01-01T00:00:00.000Z', createdBy: 'test' };

const KV: ServiceKind = {
  name: 'kv',
  urlVariable: 'KV_URL',
  defaultImage: 'kv:1',
  port: 7000,
  dataDir: '/kv',
  dumpExtension: '.kv',
  containerEnv: (s) => [`KV_PASSWORD=${s.password}`],
  containerCommand: () => ['kv-server'],
  url: (s, host) => `kv://:${s.password}@${host}:7000`,
  readyCommand: () => ({ cmd: ['kv-ping'] }),
  versionCommand: () => ({ cmd: ['kv-server', '--version'] }),
  connectCommand: () => ({ cmd: ['kv-cli'] }),
  exportCommand: () => ({ cmd: ['kv-dump'] }),
  importCommand: () => ({ cmd: ['kv-load'] }),
};

test('ensureNetwork makes an overlay network when asked, keeps the ownership checks, and refuses a bridge of that name where an overlay is wanted', async () => {
  const engine = new FakeEngine('inst');
  await engine.ensureNetwork('berth-inst-shop', { [LABEL.app]: 'shop' }, { driver: 'overlay' });
  assert.equal(engine.networkDrivers.get('berth-inst-shop'), 'overlay');
  assert.deepEqual(engine.networks.get('berth-inst-shop'), { [LABEL.managed]: '1', [LABEL.instance]: 'inst', [LABEL.app]: 'shop' });
  await engine.ensureNetwork('berth-inst-shop', { [LABEL.app]: 'shop' }, { driver: 'overlay' });
  await assert.rejects(engine.ensureNetwork('berth-inst-shop', { [LABEL.app]: 'blog' }, { driver: 'overlay' }), /belongs to berth\.app=shop, not berth\.app=blog/);

  await engine.ensureNetwork('berth-inst-blog', { [LABEL.app]: 'blog' });
  assert.equal(engine.networkDrivers.get('berth-inst-blog'), 'bridge', 'bridge unless asked');
  const refused = await engine.ensureNetwork('berth-inst-blog', { [LABEL.app]: 'blog' }, { driver: 'overlay' }).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(isUserError(refused), 'a clear UserError');
  assert.equal(refused.code, 'network_not_overlay');
  assert.match(refused.message, /berth-inst-blog is a bridge network/);
  assert.match(refused.hint ?? '', /docker network rm berth-inst-blog/);
  // An overlay asked for as a bridge (the docker scheduler on a Swarm manager) is an attachable network its containers join: reused.
  await engine.ensureNetwork('berth-inst-shop', { [LABEL.app]: 'shop' });
});

test("a Swarm network's name is a DNS label of at most 63 characters: `.` becomes `_`, a long name keeps its start and ends in a hash of the whole", () => {
  assert.equal(overlayNetworkName('berth-0123456789ab-shop'), 'berth-0123456789ab-shop');
  assert.equal(overlayNetworkName('berth-0123456789ab-svc.postgres-db'), 'berth-0123456789ab-svc_postgres-db');
  const long = `berth-0123456789ab-${'a'.repeat(63)}`;
  const short = overlayNetworkName(long);
  assert.equal(short.length, 63);
  assert.match(short, /^berth-0123456789ab-a+_[0-9a-f]{8}$/);
  assert.notEqual(overlayNetworkName(`${long.slice(0, -1)}b`), short, 'two long names stay two networks');
  assert.equal(overlayNetworkName(short), short, 'stable');
});

test("a short app never gets a long app's shortened network name (the hash follows a `_`, which no app name holds), and destroying it leaves the other's network", async (t) => {
  const engine = new FakeEngine('inst');
  const orch = await orchestrator(t, engine, fakeSwarm());
  const long = `x${'a'.repeat(62)}`;
  const longNetwork = orch.appNetwork(long);
  assert.match(longNetwork, /_[0-9a-f]{8}$/);
  // The app named as the long one's network would be were the hash joined with a `-` (a valid app name).
  const short = longNetwork.slice('berth-swarm-inst-'.length).replace('_', '-');
  assert.match(short, /^[a-z0-9-]{1,63}$/);
  assert.notEqual(orch.appNetwork(short), longNetwork);
  // Removing by name checks the owner: another app's network is left alone.
  await engine.ensureNetwork(longNetwork, { [LABEL.app]: long }, { driver: 'overlay' });
  await engine.removeNetwork(longNetwork, { [LABEL.app]: short });
  assert.ok(engine.networks.has(longNetwork));
  await engine.removeNetwork(longNetwork, { [LABEL.app]: long });
  assert.ok(!engine.networks.has(longNetwork));
});

test('on the docker scheduler the app and service networks are bridges, and a service shows no node', async (t) => {
  const engine = new FakeEngine('inst');
  const orch = await orchestrator(t, engine, undefined);
  assert.deepEqual(orch.networkOptions, { driver: 'bridge' });
  assert.equal(orch.appNetwork('shop'), 'berth-inst-shop', 'as before');
  assert.equal(orch.services.names({ kind: 'kv', name: 'cache' }).network, 'berth-inst-svc.kv-cache', 'as before');
  assert.deepEqual(orch.releaseDeps('shop').deploy.networkOptions, { driver: 'bridge' });
  const record = await linkedService(orch, engine);
  assert.equal(engine.networkDrivers.get(orch.services.names(record).network), 'bridge');
  assert.equal(engine.networkDrivers.get(orch.appNetwork('shop')), 'bridge');
  assert.equal(await orch.services.node(), undefined);
});

test("on the swarm scheduler the service's network and each linked app's are attachable overlays, the service joins the app's under its alias, and it shows the manager's node", async (t) => {
  const engine = new FakeEngine('inst');
  const orch = await orchestrator(t, engine, fakeSwarm());
  assert.deepEqual(orch.networkOptions, { driver: 'overlay' });
  assert.equal(orch.appNetwork('shop'), 'berth-swarm-inst-shop', "apart from the docker scheduler's bridge");
  assert.equal(orch.services.names({ kind: 'kv', name: 'cache' }).network, 'berth-swarm-inst-svc_kv-cache', 'a DNS label on Swarm, apart from the docker scheduler\'s');
  const ctx: DeployContext = { ...orch.releaseDeps('shop').deploy, out: silent() };
  assert.deepEqual(ctx.networkOptions, { driver: 'overlay' }, 'the deploy path makes the app network through its context');

  const record = await linkedService(orch, engine);
  const names = orch.services.names(record);
  const [c] = await engine.list({ [SERVICE_LABEL]: 'kv/cache' });
  assert.equal(engine.specs.get(c!.id)!.network, names.network);
  assert.equal(engine.networkDrivers.get(names.network), 'overlay');
  assert.equal(engine.networkDrivers.get(orch.appNetwork('shop')), 'overlay');
  assert.deepEqual(engine.links.get(c!.id), [{ network: orch.appNetwork('shop'), aliases: [names.alias] }]);
  assert.equal(await orch.services.node(), 'node1 (manager)');
  const other = (await orch.services.container(record))!;
  assert.equal(other.id, c!.id, 'the service stays one container of the manager engine');
});

test("a service records the manager's node it runs on (an older record gets it at adoption); on another manager without its volume it is refused, not started empty", async (t) => {
  const lines: string[] = [];
  setLogSink((line) => lines.push(line));
  t.after(() => setLogSink(() => {}));
  const engine = new FakeEngine('inst');
  const at = { id: 'n1' };
  const orch = await orchestrator(t, engine, fakeSwarm(at));
  const store = stores.get(orch)!;
  let record = await linkedService(orch, engine);
  assert.equal(record.nodeId, 'n1', 'written at create');
  await store.update('kv', 'cache', (d) => void delete d.nodeId);
  await orch.services.adopt();
  record = store.require('kv', 'cache');
  assert.equal(record.nodeId, 'n1', 'an older record gets it at adoption');

  // berth now talks to another manager's engine (n2), which has neither the container nor the volume.
  at.id = 'n2';
  const volume = orch.services.names(record).volume;
  for (const c of await engine.list({ [SERVICE_LABEL]: 'kv/cache' })) await engine.stopAndRemove(c.id);
  engine.volumes.delete(volume);
  await orch.services.adopt();
  assert.ok(!engine.volumes.has(volume), 'no empty volume made');
  assert.deepEqual(await engine.list({ [SERVICE_LABEL]: 'kv/cache' }), []);
  const failed = lines.find((l) => l.includes('service_adopt_failed'));
  assert.ok(failed, lines.join('\n'));
  assert.match(failed, /its data \(the volume [^)]+\) is on the Swarm node n1/);
  assert.equal(await orch.services.node(record), "node n1, not berth's manager (n2): the data is there");
  await assert.rejects(orch.services.prepareApp('shop', new MemoryOutput()), (e: unknown) => isUserError(e) && e.code === 'service_data_elsewhere');
  assert.equal(store.require('kv', 'cache').nodeId, 'n1', 'the record still names the node with the data');
});

test('the deploy path makes the app network as its context says (the docker path passes it on too)', async () => {
  const engine = new FakeEngine('inst');
  engine.addImage(IMAGE);
  const ctx: DeployContext = { engine, network: 'berth-inst-shop', networkOptions: { driver: 'overlay' }, publisher: nullPublisher(), hostnames: [], out: silent(), checksWaitMs: 0 };
  const plan: ProcessPlan = { ...defaultSettings(), name: 'shop', formation: { web: 1 }, checks: { ...defaultCheckSettings(), skipped: [ALL_TYPES] }, release };
  await deployRelease(ctx, plan, { reuse: false });
  assert.equal(engine.networkDrivers.get('berth-inst-shop'), 'overlay');
});

test('nodes:list names the backing services on the manager\'s node, and on no other', async () => {
  const swarm = fakeSwarm();
  const worker: SwarmNode = { id: 'n2', hostname: 'node2', address: '10.0.0.3', role: 'worker', state: 'ready', availability: 'active', labels: {}, leader: false };
  const nodes = new NodeService({ swarm: { ...swarm, nodes: async () => [...(await swarm.nodes()), worker] }, mover: undefined, services: () => ['redis/cache', 'postgres/db'] });
  assert.deepEqual((await nodes.list()).map((n) => [n.hostname, n.services]), [
    ['node1', ['postgres/db', 'redis/cache']],
    ['node2', []],
  ]);
});

/** A service kv/cache created and linked to shop, brought up for shop's start. */
async function linkedService(orch: Orchestrator, engine: FakeEngine) {
  engine.addImage('kv:1');
  engine.execHandler = async () => 0;
  const store = stores.get(orch)!;
  const record = await store.create({ kind: 'kv', name: 'cache', image: 'kv:1', createdBy: 'local' });
  await orch.services.provision(record, new MemoryOutput());
  await store.update('kv', 'cache', (d) => void d.links.push({ app: 'shop', alias: 'KV' }));
  await orch.services.prepareApp('shop', new MemoryOutput());
  return store.require('kv', 'cache');
}

/** Only what the networks ask of a Swarm: which node the manager's engine is (`at.id`, which a test may change: --docker-host pointed at another manager). */
function fakeSwarm(at: { id: string } = { id: 'n1' }): Swarm {
  const manager: SwarmNode = { id: 'n1', hostname: 'node1', address: '10.0.0.2', role: 'manager', state: 'ready', availability: 'active', labels: {}, leader: true };
  const unused = async (): Promise<never> => {
    throw new Error('not used by the networks');
  };
  return {
    manager: async () => ({ nodeId: at.id, address: manager.address }),
    nodes: async () => [manager],
    node: async (ref) => {
      if (ref !== manager.id && ref !== manager.hostname) throw new Error(`no node ${ref}`);
      return manager;
    },
    updateNode: unused,
    joinCommand: unused,
    createService: unused,
    services: async () => [],
    setReplicas: unused,
    removeService: unused,
    tasks: async () => [],
    taskLogs: unused,
    followTaskLogs: unused,
    ensureSecret: unused,
    secrets: unused,
    removeSecret: unused,
  };
}

/** Each orchestrator's service records. */
const stores = new WeakMap<Orchestrator, ServiceStore>();

async function orchestrator(t: TestContext, engine: FakeEngine, swarm: Swarm | undefined): Promise<Orchestrator> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-swarm-networks-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const paths = dataPaths(dir);
  const apps = new AppStore(paths.apps);
  await apps.load();
  await apps.create('shop');
  const domains = new DomainStore(paths.domains, { domain: 'example.test', apps: () => apps.list().map((a) => a.name) });
  await domains.load();
  const services = new ServiceStore(paths.services, paths.serviceData);
  await services.load();
  const orch = new Orchestrator({
    engine,
    locks: new AppLock(),
    apps,
    domains,
    config: { ...defaultConfig({}, false), dataDir: dir },
    paths,
    publisher: nullPublisher(),
    appUrl: (app) => `http://${app}.example.test`,
    services,
    serviceKinds: [KV],
    ...(swarm ? { swarm } : {}),
  });
  stores.set(orch, services);
  return orch;
}

function nullPublisher(): RoutePublisher {
  const routes = new Map<string, Target[]>();
  return {
    publish: (app, _hostnames, targets) => void routes.set(app, targets),
    unpublish: (app) => void routes.delete(app),
    routed: (app) => routes.get(app) ?? [],
    standby: () => [],
    drain: async (): Promise<DrainResult> => ({ waitedMs: 0, requestsLeft: 0, tunnelsClosed: 0 }),
  };
}

function silent(): Output {
  return new MemoryOutput();
}
