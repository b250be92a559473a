// The service manager's decisions on an in-memory engine, with a kind of the test's own (a third
// kind is a module, not a copy): an image missing is pulled with its progress shown, the container
// gets its labels, volume, memory and restart policy, readiness is waited for inside it, a service
// that never gets ready leaves nothing behind, links join app networks, adoption brings services
// back. The same paths run against the real engine in e2e-services*.test.ts.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { setLogSink } from '../src/log.ts';
import { ServiceManager, SERVICE_LABEL, serviceLockName } from '../src/orchestrator/service-manager.ts';
import { AppLock } from '../src/platform/app-lock.ts';
import type { ServiceKind } from '../src/services/kinds/kind.ts';
import { ServiceStore } from '../src/state/service-store.ts';
import { MemoryOutput } from '../src/ui/output.ts';
import { FakeEngine } from './helpers/fake-engine.ts';
import { tempDir } from './helpers/temp.ts';

setLogSink(() => {});

const KV: ServiceKind = {
  name: 'kv',
  urlVariable: 'KV_URL',
  defaultImage: 'kv:1',
  port: 7000,
  dataDir: '/kv',
  dumpExtension: '.kv',
  containerEnv: (s) => [`KV_PASSWORD=${s.password}`],
  containerCommand: () => ['kv-server', '--dir', '/kv'],
  url: (s, host) => `kv://:${s.password}@${host}:7000`,
  readyCommand: (s) => ({ cmd: ['kv-ping'], env: [`KV_PASSWORD=${s.password}`] }),
  versionCommand: () => ({ cmd: ['kv-server', '--version'] }),
  connectCommand: () => ({ cmd: ['kv-cli'] }),
  exportCommand: () => ({ cmd: ['kv-dump'] }),
  importCommand: () => ({ cmd: ['kv-load'] }),
};

/** A fake engine whose registry has `kv:1`: a pull reports two layers' progress, then the image is there. */
class PullingEngine extends FakeEngine {
  pulls: string[] = [];
  override async pull(ref: string, onProgress?: (line: string) => void): Promise<void> {
    this.pulls.push(ref);
    if (ref !== 'kv:1') throw new Error(`pull access denied for ${ref}`);
    onProgress?.('a1b2 Downloading 1.2MB/3MB');
    onProgress?.('a1b2 Pull complete');
    this.addImage(ref);
  }
}

async function setUp(options: { readyAfter?: number; readyTimeoutMs?: number; readyCheckTimeoutMs?: number; locks?: AppLock } = {}) {
  const dir = tempDir('service-manager');
  const store = new ServiceStore(path.join(dir, 'state', 'services.json'), path.join(dir, 'services'));
  await store.load();
  const engine = new PullingEngine('inst');
  let pings = 0;
  engine.execHandler = async (_id, o) => {
    if (o.cmd[0] === 'kv-server') {
      await o.onStdout(Buffer.from('kv 1.2.3\n'));
      return 0;
    }
    return o.cmd[0] === 'kv-ping' ? (++pings > (options.readyAfter ?? 0) ? 0 : 1) : 1;
  };
  const manager = new ServiceManager({
    engine,
    store,
    kinds: [KV],
    defaultImage: (k) => k.defaultImage,
    networkPrefix: 'berth',
    appNetwork: (app) => `berth-inst-${app}`,
    defaultLimit: () => ({ memory: 512 * 1024 ** 2, pids: 512 }),
    ...(options.readyTimeoutMs ? { readyTimeoutMs: options.readyTimeoutMs } : {}),
    ...(options.readyCheckTimeoutMs ? { readyCheckTimeoutMs: options.readyCheckTimeoutMs } : {}),
    ...(options.locks ? { locks: options.locks } : {}),
  });
  return { engine, store, manager, pings: () => pings };
}

test('a new service pulls its missing image with progress shown, runs labelled on its volume with its limits, and is ready once its ready command exits 0', async () => {
  const { engine, store, manager, pings } = await setUp({ readyAfter: 2 });
  const record = await store.create({ kind: 'kv', name: 'sessions', image: 'kv:1', memory: 64 * 1024 ** 2, createdBy: 'local' });
  const out = new MemoryOutput();
  await manager.provision(record, out);
  assert.deepEqual(engine.pulls, ['kv:1']);
  assert.match(out.text(), /Pulling kv:1 \(first use\)\n\s+a1b2 Downloading 1\.2MB\/3MB\n\s+a1b2 Pull complete/);
  const [spec] = [...engine.specs.values()];
  assert.equal(spec!.name, 'berth-inst-svc-kv-sessions');
  assert.equal(spec!.labels[SERVICE_LABEL], 'kv/sessions');
  assert.deepEqual(spec!.binds, ['berth-inst-svc-kv-sessions-data:/kv']);
  assert.equal(spec!.network, 'berth-inst-svc.kv-sessions');
  assert.deepEqual(spec!.aliases, ['berth-kv-sessions']);
  assert.equal(spec!.memory, 64 * 1024 ** 2, 'its own memory limit');
  assert.equal(spec!.pids, 512, 'the process limit apps get');
  assert.equal(spec!.restart, true);
  assert.equal(spec!.stopTimeout, 60, 'time to shut down cleanly');
  assert.deepEqual(spec!.cmd, ['kv-server', '--dir', '/kv']);
  assert.equal(spec!.env.KV_PASSWORD, await store.password('kv', 'sessions'));
  assert.equal(spec!.ports, undefined, 'no host port unless exposed');
  assert.ok(engine.volumes.has('berth-inst-svc-kv-sessions-data'));
  assert.equal(pings(), 3, 'asked until it answered');
  const password = await store.password('kv', 'sessions');
  assert.ok(engine.execs.every((e) => !e.options.cmd.join(' ').includes(password)), 'the password goes in the environment, never in a command line');
  assert.equal(await manager.version(record), 'kv 1.2.3');
  assert.equal(await manager.url(record), `kv://:${await store.password('kv', 'sessions')}@berth-kv-sessions:7000`);
});

test('a service that never accepts connections fails its create with its last log lines, and leaves no container or volume', async () => {
  const { engine, store, manager } = await setUp({ readyAfter: Infinity, readyTimeoutMs: 600 });
  engine.addImage('kv:1');
  const record = await store.create({ kind: 'kv', name: 'broken', image: 'kv:1', createdBy: 'local' });
  await assert.rejects(manager.provision(record, new MemoryOutput()), (e: Error & { code?: string }) => e.code === 'service_not_ready' && /did not accept connections within 1 s/.test(e.message));
  assert.equal(engine.containers.size, 0);
  assert.equal(engine.volumes.size, 0);
});

test('an image the registry does not have is a clear error', async () => {
  const { store, manager } = await setUp();
  const record = await store.create({ kind: 'kv', name: 'x', image: 'kv:nope', createdBy: 'local' });
  await assert.rejects(manager.provision(record, new MemoryOutput()), /could not pull kv:nope: pull access denied/);
});

test("before an app starts, its linked services run, join the app's network under their alias, and accept connections", async () => {
  const { engine, store, manager } = await setUp();
  engine.addImage('kv:1');
  const record = await store.create({ kind: 'kv', name: 'cache', image: 'kv:1', createdBy: 'local' });
  await manager.provision(record, new MemoryOutput());
  await store.update('kv', 'cache', (d) => void d.links.push({ app: 'shop', alias: 'KV' }));
  const [c] = await engine.list({ [SERVICE_LABEL]: 'kv/cache' });
  engine.set(c!.id, { running: false, status: 'exited' });
  const out = new MemoryOutput();
  await manager.prepareApp('shop', out);
  assert.match(out.text(), /Waiting for kv service cache to accept connections/);
  assert.equal((await engine.inspect(c!.id)).running, true, 'the stopped container is started again');
  assert.deepEqual(engine.links.get(c!.id), [{ network: 'berth-inst-shop', aliases: ['berth-kv-cache'] }]);
  assert.ok(engine.networks.has('berth-inst-shop'), "the app's network is made if it has never run");
  await manager.prepareApp('blog', new MemoryOutput());
  assert.equal(engine.links.get(c!.id)!.length, 1, 'an app not linked gets nothing');
  await manager.unlink(store.require('kv', 'cache'), 'shop');
  assert.deepEqual(engine.links.get(c!.id), []);
});

test('adoption recreates a removed service container on its volume, joined to its linked apps again', async () => {
  const { engine, store, manager } = await setUp();
  engine.addImage('kv:1');
  const record = await store.create({ kind: 'kv', name: 'cache', image: 'kv:1', createdBy: 'local' });
  await manager.provision(record, new MemoryOutput());
  await store.update('kv', 'cache', (d) => void d.links.push({ app: 'shop', alias: 'KV' }));
  const [old] = await engine.list({ [SERVICE_LABEL]: 'kv/cache' });
  await engine.stopAndRemove(old!.id);
  await manager.adopt();
  const [now] = await engine.list({ [SERVICE_LABEL]: 'kv/cache' });
  assert.ok(now && now.id !== old!.id && now.running);
  assert.deepEqual(engine.specs.get(now.id)!.binds, ['berth-inst-svc-kv-cache-data:/kv']);
  assert.deepEqual(engine.links.get(now.id), [{ network: 'berth-inst-shop', aliases: ['berth-kv-cache'] }]);
});

test('create never takes over data it did not make: an existing volume or service folder is refused and left as it was; a volume another container holds fails destroy loudly', async () => {
  const { engine, store, manager } = await setUp({ readyAfter: Infinity, readyTimeoutMs: 600 });
  engine.addImage('kv:1');
  // What a service destroyed by hand (or a forgotten record) left: its volume, its folder with a backup.
  await engine.ensureVolume('berth-inst-svc-kv-orders-data', { [SERVICE_LABEL]: 'kv/orders' });
  const backup = path.join(store.dir('kv', 'orders'), 'backups', 'orders-20261201-030000.kv');
  fs.mkdirSync(path.dirname(backup), { recursive: true });
  fs.writeFileSync(backup, 'every row');
  await assert.rejects(store.create({ kind: 'kv', name: 'orders', image: 'kv:1', createdBy: 'local' }), (e: Error & { code?: string }) => e.code === 'service_data_exists' && /move it away/.test((e as Error & { hint?: string }).hint ?? ''));
  assert.equal(fs.readFileSync(backup, 'utf8'), 'every row');
  // The folder moved away, the volume is still there: refused before anything starts, the volume kept.
  fs.rmSync(store.dir('kv', 'orders'), { recursive: true });
  const record = await store.create({ kind: 'kv', name: 'orders', image: 'kv:1', createdBy: 'local' });
  await assert.rejects(manager.provision(record, new MemoryOutput()), (e: Error & { code?: string }) => e.code === 'service_volume_exists');
  assert.ok(engine.volumes.has('berth-inst-svc-kv-orders-data'), 'the volume it did not make is kept');
  assert.equal(engine.containers.size, 0);
  // Adoption of a record onto a volume made for another record is refused too.
  await assert.rejects(manager.ensureRunning(record), /was not made for this service/);
  assert.equal(engine.containers.size, 0);
  // A volume some other container holds: destroy says so rather than reporting success.
  await engine.removeVolume('berth-inst-svc-kv-orders-data');
  engine.volumesInUse.add('berth-inst-svc-kv-orders-data');
  await engine.ensureVolume('berth-inst-svc-kv-orders-data');
  await assert.rejects(manager.remove(record), (e: Error & { code?: string }) => e.code === 'service_volume_in_use');
});

test('a readiness check that never answers (a ping blocked for good) counts as not ready: the wait ends with an error, the checks each cut off', async () => {
  const { engine, store, manager } = await setUp({ readyTimeoutMs: 600, readyCheckTimeoutMs: 100 });
  engine.addImage('kv:1');
  let cut = 0;
  engine.execHandler = (_id, o) =>
    new Promise((_resolve, reject) => {
      if (o.cmd[0] !== 'kv-ping') return reject(new Error(`unexpected ${o.cmd[0]}`));
      // Answers nothing, ever; only its signal ends it.
      o.signal?.addEventListener('abort', () => (cut++, reject(o.signal!.reason)), { once: true });
    });
  const record = await store.create({ kind: 'kv', name: 'stuck', image: 'kv:1', createdBy: 'local' });
  await assert.rejects(manager.provision(record, new MemoryOutput()), (e: Error & { code?: string }) => e.code === 'service_not_ready' && /kv-ping did not answer within 100 ms/.test(e.message));
  assert.ok(cut >= 2, `each check was cut off (${cut})`);
});

test('a service that sets no memory limit gets the default limits apps get', async () => {
  const { engine, store, manager } = await setUp();
  engine.addImage('kv:1');
  const record = await store.create({ kind: 'kv', name: 'plain', image: 'kv:1', createdBy: 'local' });
  await manager.provision(record, new MemoryOutput());
  const [spec] = [...engine.specs.values()];
  assert.equal(spec!.memory, 512 * 1024 ** 2);
  assert.equal(spec!.pids, 512);
  assert.deepEqual(manager.limits(record), { memory: 512 * 1024 ** 2, pids: 512 });
});

test("adoption waits for a command holding the service's lock (a destroy under way is not undone by a new container)", async () => {
  const locks = new AppLock();
  const { engine, store, manager } = await setUp({ locks });
  engine.addImage('kv:1');
  const record = await store.create({ kind: 'kv', name: 'held', image: 'kv:1', createdBy: 'local' });
  await manager.provision(record, new MemoryOutput());
  const [old] = await engine.list({ [SERVICE_LABEL]: 'kv/held' });
  await engine.stopAndRemove(old!.id);
  let release!: () => void;
  const holding = locks.run(serviceLockName('kv', 'held'), () => new Promise<void>((resolve) => (release = resolve)));
  const adopting = manager.adopt();
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal((await engine.list({ [SERVICE_LABEL]: 'kv/held' })).length, 0, 'nothing made while the lock is held');
  release();
  await holding;
  await adopting;
  assert.equal((await engine.list({ [SERVICE_LABEL]: 'kv/held' })).length, 1, 'made once the lock is free');
});

test('an exposed port binds to 127.0.0.1 unless the record names another address', async () => {
  const { engine, store, manager } = await setUp();
  engine.addImage('kv:1');
  const record = await store.create({ kind: 'kv', name: 'open', image: 'kv:1', createdBy: 'local' });
  await manager.provision(await store.update('kv', 'open', (d) => void (d.exposedPort = 17000)), new MemoryOutput());
  assert.deepEqual([...engine.specs.values()].at(-1)!.ports, [{ container: 7000, host: 17000, hostIp: '127.0.0.1' }]);
  await manager.restart(await store.update('kv', 'open', (d) => void (d.exposedHost = '0.0.0.0')), new MemoryOutput());
  assert.deepEqual([...engine.specs.values()].at(-1)!.ports, [{ container: 7000, host: 17000, hostIp: '0.0.0.0' }]);
  assert.equal(record.exposedHost, undefined);
});

test("a network is reused only by its owner: an app's is no service's, a service's no app's; one with no owner (an older berth's shared network) is anyone's", async () => {
  const engine = new FakeEngine('inst');
  await engine.ensureNetwork('berth-inst-svc-kv-db', { 'berth.app': 'svc-kv-db' });
  await assert.rejects(engine.ensureNetwork('berth-inst-svc-kv-db', { [SERVICE_LABEL]: 'kv/db' }), /belongs to berth\.app=svc-kv-db, not berth\.service=kv\/db/);
  await engine.ensureNetwork('berth-inst-svc.kv-db', { [SERVICE_LABEL]: 'kv/db' });
  await assert.rejects(engine.ensureNetwork('berth-inst-svc.kv-db', { 'berth.app': 'other' }), /belongs to berth\.service=kv\/db/);
  await engine.ensureNetwork('berth-inst-svc-kv-db', { 'berth.app': 'svc-kv-db' });
  await engine.ensureNetwork('berth');
  await engine.ensureNetwork('berth', { 'berth.app': 'shop' });
});
