// Probation over a fake engine, fast: the old container kept running out of the route while the
// new one serves, the swap back in the same tick as the engine's event, the release record left
// on the old release until probation passed, and a restarted daemon adopting that one. The same
// paths run on the real Docker engine under wrk load in e2e-probation.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { dataPaths, defaultConfig } from '../src/config.ts';
import { isUserError } from '../src/errors.ts';
import { setLogSink } from '../src/log.ts';
import type { DrainResult, RoutePublisher } from '../src/orchestrator/deployment.ts';
import { LABEL, type ContainerState } from '../src/orchestrator/engine.ts';
import { healthchecksSection } from '../src/orchestrator/health-check.ts';
import { Orchestrator } from '../src/orchestrator/orchestrator.ts';
import { AppLock } from '../src/platform/app-lock.ts';
import { scale } from '../src/orchestrator/app-operations.ts';
import { deployNewRelease } from '../src/orchestrator/release-flow.ts';
import type { Target } from '../src/proxy/route-table.ts';
import { AppStore, currentRelease, type Release } from '../src/state/app-store.ts';
import { defaultCheckSettings } from '../src/state/check-settings.ts';
import { DomainStore } from '../src/state/domain-store.ts';
import { ServiceStore } from '../src/state/service-store.ts';
import { sleep } from '../src/sleep.ts';
import { FakeEngine } from './helpers/fake-engine.ts';
import { recordingOutput } from './helpers/recording-output.ts';

const logLines: string[] = [];
setLogSink((line) => logLines.push(line));

const IMAGE = 'berth-fake/shop:r1';

/** Containers answer on loopback: the app.json check probes a real listening port there. */
class LoopbackEngine extends FakeEngine {
  override async start(id: string): Promise<void> {
    await super.start(id);
    this.set(id, { ip: '127.0.0.1' });
  }
}

function releaseOf(number: number, checkPort: number): Release {
  return {
    number,
    image: IMAGE,
    commit: 'c0ffee',
    builder: 'image',
    processTypes: { web: '' },
    config: { N: String(number) },
    description: `Deploy ${number}`,
    healthchecks: healthchecksSection(JSON.stringify({ healthchecks: { web: [{ name: 'port open', listening: true, port: checkPort, attempts: 3, wait: 0.05 }] } }))!,
    createdAt: '2026-01-01T00:00:00.000Z',
    createdBy: 'test',
  };
}

test('a new container that dies on probation sends the route back to the old one in the same tick, is removed, and the old release stays on record', async (t) => {
  const { orch, engine, publisher, port } = await setUp(t, 5_000);
  const v1 = only(engine, 1);
  assert.deepEqual(publisher.routed('shop').map((x) => x.id), [v1.name]);

  const out = recordingOutput();
  const deploy = deployNewRelease(orch.releaseDeps('shop'), 'shop', releaseOf(2, port), out);
  const failed = assert.rejects(deploy, (e: unknown) => isUserError(e) && e.code === 'probation_failed' && /^web\.1 exited \(exit code 3\) \d+\.\d s after v2 was routed; routed back to v1$/.test(e.message));
  await until(() => orch.probation('shop') !== undefined);
  const v2 = only(engine, 2);
  const probation = orch.probation('shop')!;
  assert.equal(probation.release, 2);
  assert.deepEqual(probation.containers, [v2.name]);
  assert.deepEqual(probation.warm, [{ name: v1.name, release: 1 }]);
  assert.ok(probation.until - probation.since === 5_000);
  assert.deepEqual(publisher.routed('shop').map((x) => x.id), [v2.name], 'the new release serves during probation');
  assert.deepEqual(publisher.standby('shop').map((x) => x.id), [v1.name], 'the old one stands by for requests the new one refuses');
  assert.equal(engine.containers.get(v1.id)?.running, true, 'the old container is kept running, out of the route');
  assert.ok(out.lines.includes('-----> Serving v2; keeping v1 ready for 5 s'), out.lines.join('\n'));

  engine.set(v2.id, { running: false, status: 'exited', exitCode: 3 });
  engine.emit({ ...engine.eventOf(v2.id, 'died', 'die'), exitCode: 3 });
  // Nothing awaited since the event: the swap back happened in its tick.
  assert.deepEqual(publisher.routed('shop').map((x) => x.id), [v1.name]);
  assert.deepEqual(publisher.standby('shop'), []);
  await failed;
  assert.equal(engine.containers.has(v2.id), false, 'the new container was removed');
  assert.equal(engine.containers.get(v1.id)?.running, true);
  assert.equal(currentRelease(orch.apps.require('shop'))?.number, 1, 'the release record never named v2');
  assert.equal(orch.probation('shop'), undefined);
  const logged = events('probation_failed').at(-1)!;
  assert.equal(logged.container, v2.name);
  assert.equal(typeof logged.lagMs, 'number');
});

test('a clean probation keeps the old container running out of the route for the wait, then records the release and stops the old one', async (t) => {
  const { orch, engine, publisher, port } = await setUp(t, 400);
  const v1 = only(engine, 1);
  const out = recordingOutput();
  const started = Date.now();
  const deploy = deployNewRelease(orch.releaseDeps('shop'), 'shop', releaseOf(2, port), out);
  await until(() => orch.probation('shop') !== undefined);
  assert.equal(currentRelease(orch.apps.require('shop'))?.number, 1, 'not on record while on probation');
  assert.equal(engine.containers.has(v1.id), true);
  await deploy;
  assert.ok(Date.now() - started >= 400);
  const v2 = only(engine, 2);
  assert.deepEqual(publisher.routed('shop').map((x) => x.id), [v2.name]);
  assert.deepEqual(publisher.standby('shop'), [], 'no standby once the old container stops');
  assert.equal(engine.containers.has(v1.id), false, 'the old container was stopped after probation');
  assert.equal(currentRelease(orch.apps.require('shop'))?.number, 2);
  const steps = out.lines.filter((l) => l.startsWith('----->'));
  assert.ok(steps.indexOf('-----> Serving v2; keeping v1 ready for 0.4 s') < steps.findIndex((l) => l.startsWith('-----> Stopping 1 old container')), steps.join('\n'));
});

test("the old release's drain-timeout counts from the swap: when it runs out during probation, the old targets are drained then, not after", async (t) => {
  const { orch, engine, publisher, port } = await setUp(t, 800, 200);
  const v1 = only(engine, 1);
  const out = recordingOutput();
  const deploy = deployNewRelease(orch.releaseDeps('shop'), 'shop', releaseOf(2, port), out);
  await until(() => orch.probation('shop') !== undefined);
  const probationBegan = Date.now();
  await until(() => publisher.drains.length > 0);
  assert.deepEqual(publisher.drains[0]!.targets, [v1.name]);
  assert.equal(publisher.drains[0]!.deadlineMs, 0, 'the grace was spent during probation');
  assert.ok(publisher.drains[0]!.at - probationBegan < 600, 'drained while probation still ran');
  assert.notEqual(orch.probation('shop'), undefined);
  await deploy;
  assert.equal(publisher.drains.length, 1, 'not drained a second time after probation');
  assert.ok(out.lines.includes('-----> Draining 1 old web container (up to 200ms after the swap)'), out.lines.join('\n'));
});

test('a new container that keeps failing its check during probation is rolled back like one that died', async (t) => {
  const { orch, engine, publisher, port, server } = await setUp(t, 10_000);
  const v1 = only(engine, 1);
  const deploy = deployNewRelease(orch.releaseDeps('shop'), 'shop', releaseOf(2, port), recordingOutput());
  const failed = assert.rejects(deploy, (e: unknown) => isUserError(e) && e.code === 'probation_failed' && /^web\.1 failed its check "port open" 3 times in a row \(nothing listens on port \d+\)/.test(e.message));
  await until(() => orch.probation('shop') !== undefined);
  server.close();
  await failed;
  assert.deepEqual(publisher.routed('shop').map((x) => x.id), [v1.name]);
  assert.equal(currentRelease(orch.apps.require('shop'))?.number, 1);
});

test('ps:scale puts the containers it starts on probation: one that dies fails the scale, which is undone', async (t) => {
  const { orch, engine, publisher } = await setUp(t, 10_000);
  const v1 = only(engine, 1);
  const scaling = scale(orch, 'shop', { web: 2 }, recordingOutput());
  const failed = assert.rejects(scaling, (e: unknown) => isUserError(e) && e.code === 'probation_failed' && /^web\.2 exited/.test(e.message));
  await until(() => orch.probation('shop') !== undefined);
  assert.equal(publisher.routed('shop').length, 2);
  assert.deepEqual(orch.probation('shop')!.warm, [], 'web.1 is kept, not replaced: nothing to keep warm');
  const web2 = [...engine.containers.values()].find((c) => c.labels[LABEL.dyno] === 'web.2')!;
  engine.set(web2.id, { running: false, status: 'exited', exitCode: 1 });
  engine.emit(engine.eventOf(web2.id, 'died', 'die'));
  assert.deepEqual(publisher.routed('shop').map((x) => x.id), [v1.name]);
  await failed;
  assert.deepEqual(orch.apps.require('shop').formation, {}, 'the formation is back as it was');
  assert.deepEqual([...engine.containers.values()].map((c) => c.labels[LABEL.dyno]), ['web.1']);
});

test('checks:skip keeps its meaning: no checks and no probation, the old container retires right after the swap', async (t) => {
  const { orch, engine, port } = await setUp(t, 10_000);
  await orch.apps.update('shop', (a) => void (a.checks = { ...a.checks, skipped: ['web'] }));
  const out = recordingOutput();
  const started = Date.now();
  await deployNewRelease(orch.releaseDeps('shop'), 'shop', releaseOf(2, port), out);
  assert.ok(Date.now() - started < 5_000, 'no 10 s probation');
  assert.ok(!out.lines.some((l) => /Serving|Checking/.test(l)), out.lines.join('\n'));
  assert.deepEqual([...engine.containers.values()].map((c) => c.labels[LABEL.release]), ['2']);
});

test('a probation that hears no event still notices a container that stopped, by inspecting it', async (t) => {
  const { orch, engine, publisher, port } = await setUp(t, 10_000);
  const v1 = only(engine, 1);
  const deploy = deployNewRelease(orch.releaseDeps('shop'), 'shop', releaseOf(2, port), recordingOutput());
  const failed = assert.rejects(deploy, (e: unknown) => isUserError(e) && e.code === 'probation_failed');
  await until(() => orch.probation('shop') !== undefined);
  engine.set(only(engine, 2).id, { running: false, status: 'exited', exitCode: 1 });
  await failed;
  assert.deepEqual(publisher.routed('shop').map((x) => x.id), [v1.name]);
});

test('a daemon that restarts during probation adopts the release on record and removes the containers of the unfinished one', async (t) => {
  const { orch, engine, port, stores } = await setUp(t, 10_000);
  const v1 = only(engine, 1);
  const deploy = deployNewRelease(orch.releaseDeps('shop'), 'shop', releaseOf(2, port), recordingOutput());
  const abandoned = deploy.catch(() => undefined);
  await until(() => orch.probation('shop') !== undefined);
  await orch.stop();
  // The new daemon: same state and engine, a fresh proxy.
  const publisher = recordingPublisher();
  const next = new Orchestrator({ ...stores, engine, publisher, appUrl: (app) => `http://${app}.example.test` });
  await next.start();
  t.after(() => next.stop());
  assert.deepEqual(publisher.routed('shop').map((x) => x.id), [v1.name], 'only the release on record is routed');
  assert.deepEqual([...engine.containers.values()].map((c) => c.labels[LABEL.release]), ['1'], "v2's container was removed");
  await abandoned;
});

// ---------------------------------------------------------------------------------------------

async function setUp(t: TestContext, waitMs: number, drainTimeoutMs = 1000) {
  const server = net.createServer((s) => s.destroy()).listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => void (server.listening && server.close()));
  const port = (server.address() as net.AddressInfo).port;
  const engine = new LoopbackEngine();
  engine.addImage(IMAGE);
  const publisher = recordingPublisher();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-probation-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const paths = dataPaths(dir);
  const apps = new AppStore(paths.apps);
  await apps.load();
  await apps.create('shop');
  await apps.update('shop', (a) => {
    a.releases.push(releaseOf(1, port));
    a.current = 1;
    a.checks = { ...defaultCheckSettings(), properties: { wait: waitMs, drainTimeout: drainTimeoutMs } };
  });
  const domains = new DomainStore(paths.domains, { domain: 'example.test', apps: () => apps.list().map((a) => a.name) });
  await domains.load();
  const stores = { apps, domains, config: { ...defaultConfig({}, false), dataDir: dir }, paths, locks: new AppLock(), services: new ServiceStore(paths.services, paths.serviceData), serviceKinds: [] };
  const orch = new Orchestrator({ ...stores, engine, publisher, appUrl: (app) => `http://${app}.example.test` });
  // Start-up adopts the release on record: v1 runs and is routed.
  await orch.start();
  t.after(() => orch.stop());
  return { orch, engine, publisher, port, stores, server };
}

function only(engine: FakeEngine, release: number): ContainerState {
  const found = [...engine.containers.values()].filter((c) => c.labels[LABEL.release] === String(release));
  assert.equal(found.length, 1, `one container of v${release}`);
  return found[0]!;
}

function recordingPublisher(): RoutePublisher & { drains: Array<{ at: number; targets: string[]; deadlineMs: number }> } {
  const routes = new Map<string, Target[]>();
  const standby = new Map<string, Target[]>();
  const drains: Array<{ at: number; targets: string[]; deadlineMs: number }> = [];
  return {
    drains,
    publish: (app, _hostnames, targets, behind = []) => {
      routes.set(app, [...targets]);
      standby.set(app, [...behind]);
    },
    unpublish: (app) => void routes.delete(app),
    routed: (app) => routes.get(app) ?? [],
    standby: (app) => standby.get(app) ?? [],
    // No proxy here: nothing is in flight on a swapped-out target.
    drain: async (targets, options): Promise<DrainResult> => {
      drains.push({ at: Date.now(), targets: targets.map((x) => x.id), deadlineMs: options.deadlineMs });
      return { waitedMs: 0, requestsLeft: 0, tunnelsClosed: 0 };
    },
  };
}


function events(event: string): Array<Record<string, unknown>> {
  return logLines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e.event === event);
}

async function until(done: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await sleep(10);
  }
}
