// The orchestrator's decisions over a fake engine, fast: what a deploy starts, keeps and routes
// (in dyno order), what adoption reports it started, and what the typed container events do to
// routing. The same paths run on the real Docker engine in e2e-push, e2e-buildpacks, e2e-checks
// and e2e-zero-downtime; the reading of the engine's event lines (docker-wire.ts) is checked here too.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { dataPaths, defaultConfig } from '../src/config.ts';
import { setLogSink } from '../src/log.ts';
import { sleep } from '../src/sleep.ts';
import { deployRelease, retireOthers, type DeployContext, type DrainResult, type ProcessPlan, type RoutePublisher } from '../src/orchestrator/deployment.ts';
import { parseContainerEvent } from '../src/orchestrator/docker-wire.ts';
import { APP_CAPABILITIES, LABEL } from '../src/orchestrator/engine.ts';
import { Orchestrator } from '../src/orchestrator/orchestrator.ts';
import { AppLock } from '../src/platform/app-lock.ts';
import type { Target } from '../src/proxy/route-table.ts';
import { AppStore, type Release } from '../src/state/app-store.ts';
import { ALL_TYPES, defaultCheckSettings } from '../src/state/check-settings.ts';
import { defaultSettings } from '../src/state/app-settings.ts';
import { DomainStore } from '../src/state/domain-store.ts';
import { ServiceStore } from '../src/state/service-store.ts';
import { FakeEngine } from './helpers/fake-engine.ts';

const logLines: string[] = [];
setLogSink((line) => logLines.push(line));

const IMAGE = 'berth-fake/shop:r1';
const release: Release = { number: 1, image: IMAGE, commit: 'c0ffee', builder: 'image', processTypes: { web: '' }, config: {}, description: 'Deploy', createdAt: '2026-01-01T00:00:00.000Z', createdBy: 'test' };
const ELEVEN = ['web.1', 'web.2', 'web.3', 'web.4', 'web.5', 'web.6', 'web.7', 'web.8', 'web.9', 'web.10', 'web.11'];

test('a deploy returns the containers it started and routes them in dyno order; a redeploy that reuses them starts none', async () => {
  const engine = new FakeEngine();
  engine.addImage(IMAGE);
  const publisher = recordingPublisher();
  const ctx: DeployContext = { engine, network: 'berth', publisher, hostnames: ['shop.example.test'], out: silent(), checksWaitMs: 0 };
  const plan: ProcessPlan = { ...defaultSettings(), name: 'shop', formation: { web: 11 }, checks: { ...defaultCheckSettings(), skipped: [ALL_TYPES] }, release };

  const first = await deployRelease(ctx, plan, { reuse: false });
  await retireOthers(ctx, plan, first);
  assert.deepEqual(first.started.map((c) => c.labels[LABEL.dyno]), ELEVEN);
  assert.deepEqual(dynosOf(engine, publisher.routed('shop')), ELEVEN);

  const again = await deployRelease(ctx, plan, { reuse: true });
  await retireOthers(ctx, plan, again);
  assert.deepEqual(again.started, []);
  assert.equal(again.containers.length, 11);
  assert.deepEqual(dynosOf(engine, publisher.routed('shop')), ELEVEN);
});

test('adoption starts the missing dyno and names it; a web container that dies leaves the route and comes back in the same dyno order', async (t) => {
  const engine = new FakeEngine();
  engine.addImage(IMAGE);
  const publisher = recordingPublisher();
  const orch = await orchestrator(t, engine, publisher, { web: 11 });
  // What a daemon that stopped left running: every dyno but web.10.
  await deployRelease({ engine, network: 'berth', publisher: recordingPublisher(), hostnames: [], out: silent(), checksWaitMs: 0 }, { ...orch.apps.require('shop'), release }, { reuse: false });
  const web10 = idOf(engine, 'web.10');
  await engine.stopAndRemove(web10);

  await orch.start();
  t.after(() => orch.stop());
  assert.deepEqual(logged('app_adopted').map((e) => e.started), [['web.10']]);
  assert.equal(engine.containers.size, 11);
  assert.deepEqual(dynosOf(engine, publisher.routed('shop')), ELEVEN, 'adoption routes in dyno order');

  const web2 = idOf(engine, 'web.2');
  engine.set(web2, { running: false, status: 'exited', exitCode: 137 });
  engine.emit(engine.eventOf(web2, 'died', 'die'));
  assert.deepEqual(dynosOf(engine, publisher.routed('shop')), ELEVEN.filter((d) => d !== 'web.2'), 'withdrawn at once');
  assert.deepEqual(logged('route_target_withdrawn').map((e) => [e.container, e.reason]), [[engine.containers.get(web2)!.name, 'die']]);

  const publishes = publisher.publishes;
  engine.set(web2, { running: true, status: 'running', restartCount: 1 });
  engine.emit(engine.eventOf(web2, 'started', 'start'));
  await until(() => publisher.publishes > publishes);
  assert.deepEqual(dynosOf(engine, publisher.routed('shop')), ELEVEN, 'a restart republishes in the order a deploy and an adoption use');
});

test("a deploy starts the app's containers on its own network with the server's default limits (the app's own override them) and only the kept capabilities; destroy removes the network", async (t) => {
  const engine = new FakeEngine();
  engine.addImage(IMAGE);
  const orch = await orchestrator(t, engine, recordingPublisher(), { web: 2, worker: 1 });
  const withWorker: Release = { ...release, processTypes: { web: '', worker: 'node worker.js' } };
  await orch.apps.update('shop', (a) => {
    a.releases = [withWorker];
    a.limits = { worker: { memory: 64 * 1024 ** 2, pids: 32 } };
  });
  // What an older berth left: web.1 on the shared network, adopted as it is.
  await engine.ensureNetwork('berth');
  await deployRelease({ engine, network: 'berth', publisher: recordingPublisher(), hostnames: [], out: silent(), checksWaitMs: 0 }, { ...orch.apps.require('shop'), formation: { web: 1 }, release: withWorker }, { reuse: false });
  const network = `berth-${engine.instance}-shop`;
  assert.equal(orch.appNetwork('shop'), network);

  const ctx: DeployContext = { ...orch.releaseDeps('shop').deploy, out: silent() };
  const plan: ProcessPlan = { ...orch.apps.require('shop'), release: withWorker };
  const deployed = await deployRelease(ctx, plan, { reuse: false });
  await retireOthers(ctx, plan, deployed);
  assert.deepEqual(engine.networks.get(network), { [LABEL.managed]: '1', [LABEL.instance]: engine.instance, [LABEL.app]: 'shop' });
  const specs = [...engine.containers.keys()].map((id) => engine.specs.get(id)!);
  assert.deepEqual(specs.map((s) => [s.labels[LABEL.dyno], s.network, s.memory, s.pids, s.capabilities]).sort(), [
    ['web.1', network, 512 * 1024 ** 2, 512, APP_CAPABILITIES],
    ['web.2', network, 512 * 1024 ** 2, 512, APP_CAPABILITIES],
    ['worker.1', network, 64 * 1024 ** 2, 32, APP_CAPABILITIES],
  ], 'the old container on the shared network is gone, the new ones run on the app network');

  const other = `berth-${engine.instance}-billing`;
  await engine.ensureNetwork(other, { [LABEL.app]: 'billing' });
  await engine.connectNetwork(idOf(engine, 'web.1'), other, ['shop']);
  await orch.destroyApp('shop', silent());
  assert.equal(engine.networks.has(network), false);
  assert.equal(engine.networks.has(other), true, "another app's network stays");
});

test("the engine's container events are read once, in berth's terms, and events of other containers are left out", () => {
  const attrs = { name: 'shop.web.2.r7.ab12', [LABEL.app]: 'shop', [LABEL.process]: 'web', [LABEL.release]: '7', [LABEL.dyno]: 'web.2', [LABEL.role]: 'process' };
  const event = parseContainerEvent({ id: 'c2', Action: 'health_status: unhealthy', timeNano: 1_700_000_000_123_500_000, Actor: { Attributes: attrs } });
  assert.deepEqual(event, { change: 'unhealthy', reason: 'health_status: unhealthy', id: 'c2', name: 'shop.web.2.r7.ab12', app: 'shop', process: 'web', release: 7, dyno: 'web.2', role: 'process', at: 1_700_000_000_123.5 });
  const changes = ['start', 'die', 'stop', 'oom', 'health_status: healthy', 'destroy'].map((Action) => parseContainerEvent({ id: 'c2', Action, time: 1, Actor: { Attributes: attrs } })?.change);
  assert.deepEqual(changes, ['started', 'died', 'died', 'died', 'healthy', 'removed']);
  assert.equal(parseContainerEvent({ id: 'c2', status: 'oom', time: 1, Actor: { Attributes: attrs } })?.change, 'died', "older engines' status field");
  assert.equal(parseContainerEvent({ id: 'c2', Action: 'health_status: starting', time: 1, Actor: { Attributes: attrs } }), undefined);
  assert.equal(parseContainerEvent({ id: 'b1', Action: 'die', time: 1, Actor: { Attributes: { name: 'berth-build.x.shop.r1.ab12' } } }), undefined, 'a build container has no app');
  const bare = parseContainerEvent({ id: 'c3', Action: 'die', time: 2, Actor: { Attributes: { name: 'shop.run.1234.r7', [LABEL.app]: 'shop' } } });
  assert.deepEqual([bare?.process, bare?.role, bare?.release, bare?.dyno, bare?.at], ['web', 'process', undefined, undefined, 2000]);
  assert.equal(parseContainerEvent({ id: 'c2', Action: 'die', time: 1, Actor: { Attributes: { ...attrs, exitCode: '3' } } })?.exitCode, 3, 'a die keeps its exit code, which a restart would hide');
});

// ---------------------------------------------------------------------------------------------

async function orchestrator(t: TestContext, engine: FakeEngine, publisher: RoutePublisher, formation: Record<string, number>): Promise<Orchestrator> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-orchestrator-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const paths = dataPaths(dir);
  const apps = new AppStore(paths.apps);
  await apps.load();
  await apps.create('shop');
  await apps.update('shop', (a) => {
    a.releases.push(release);
    a.current = release.number;
    a.formation = formation;
    a.checks = { ...defaultCheckSettings(), skipped: [ALL_TYPES] };
  });
  const domains = new DomainStore(paths.domains, { domain: 'example.test', apps: () => apps.list().map((a) => a.name) });
  await domains.load();
  return new Orchestrator({ engine, locks: new AppLock(), apps, domains, config: { ...defaultConfig({}, false), dataDir: dir }, paths, publisher, appUrl: (app) => `http://${app}.example.test`, services: new ServiceStore(paths.services, paths.serviceData), serviceKinds: [] });
}

function recordingPublisher(): RoutePublisher & { publishes: number } {
  const routes = new Map<string, Target[]>();
  return {
    publishes: 0,
    publish(app, _hostnames, targets) {
      routes.set(app, targets);
      this.publishes++;
    },
    unpublish: (app) => void routes.delete(app),
    routed: (app) => routes.get(app) ?? [],
    standby: () => [],
    // No proxy here: nothing is in flight on a swapped-out target.
    drain: async (): Promise<DrainResult> => ({ waitedMs: 0, requestsLeft: 0, tunnelsClosed: 0 }),
  };
}

function dynosOf(engine: FakeEngine, targets: readonly Target[]): string[] {
  return targets.map((t) => [...engine.containers.values()].find((c) => c.name === t.id)?.labels[LABEL.dyno] ?? `? ${t.id}`);
}

function idOf(engine: FakeEngine, dyno: string): string {
  const found = [...engine.containers.values()].find((c) => c.labels[LABEL.dyno] === dyno);
  assert.ok(found, `no container for ${dyno}`);
  return found.id;
}

function logged(event: string): Array<Record<string, unknown>> {
  return logLines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e.event === event);
}

function silent(): DeployContext['out'] {
  return { step() {}, section() {}, detail() {}, error() {}, line() {}, raw() {} };
}

async function until(done: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await sleep(10);
  }
}
