// The deploy checks as units: settings (checks:set values, the disabled and skipped lists), the
// checks a process type gets, the health gate against a loopback server with a scripted engine,
// and the route guard in front of a recording publisher. The same paths run end to end on real
// containers in e2e-checks and e2e-zero-downtime.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { test, type TestContext } from 'node:test';
import { isUserError } from '../src/errors.ts';
import type { DrainResult, RoutePublisher } from '../src/orchestrator/deployment.ts';
import type { ContainerState, Engine } from '../src/orchestrator/engine.ts';
import { checksFor, passGate, quickChecks } from '../src/orchestrator/health-gate.ts';
import { healthchecksSection } from '../src/orchestrator/health-check.ts';
import { RouteGuard } from '../src/orchestrator/route-guard.ts';
import type { Target } from '../src/proxy/route-table.ts';
import { ALL_TYPES, changeCheckLists, defaultCheckSettings, parseCheckSettings, resolveChecks, setCheckProperty } from '../src/state/check-settings.ts';
import { FakeEngine } from './helpers/fake-engine.ts';

const settings = (over: Partial<ReturnType<typeof defaultCheckSettings>> = {}) => ({ ...defaultCheckSettings(), ...over });

test('checks:set values are seconds with an optional unit, stop-timeout rounds up to whole seconds, and bad ones are refused', () => {
  let p = setCheckProperty({}, 'wait', '5');
  p = setCheckProperty(p, 'wait-to-retire', '2m');
  p = setCheckProperty(p, 'stop-timeout', '1500ms');
  p = setCheckProperty(p, 'attempts', '7');
  assert.deepEqual(p, { wait: 5000, drainTimeout: 120_000, stopTimeout: 2000, attempts: 7 });
  assert.deepEqual(setCheckProperty(p, 'wait', undefined), { drainTimeout: 120_000, stopTimeout: 2000, attempts: 7 });
  for (const [key, value] of [['wait', '-1'], ['wait', 'soon'], ['attempts', '0'], ['attempts', '1.5'], ['timeout', '0'], ['drain-timeout', '2h']] as const) {
    assert.throws(() => setCheckProperty({}, key, value), (e: unknown) => isUserError(e) && e.code === 'invalid_check_property', `${key} ${value}`);
  }
  assert.throws(() => setCheckProperty({}, 'retire', '5'), (e: unknown) => isUserError(e) && e.code === 'unknown_check_property');
  const r = resolveChecks(settings({ properties: { wait: 3000 } }), { waitMs: 10_000 });
  assert.equal(r.waitMs, 3000);
  assert.equal(r.drainTimeoutMs, 30_000);
  assert.equal(r.stopTimeoutMs, 10_000);
  assert.equal(resolveChecks(settings(), { waitMs: 10_000 }).waitMs, 10_000);
});

test("the disabled and skipped lists move as Dokku's do: a type is in one list at most, and _all_ expands when one type leaves it", () => {
  let s = changeCheckLists(settings(), 'skip', ['web', 'worker'], ['web', 'worker']);
  assert.deepEqual([s.disabled, s.skipped], [[], ['web', 'worker']]);
  s = changeCheckLists(s, 'disable', ['worker'], ['web', 'worker']);
  assert.deepEqual([s.disabled, s.skipped], [['worker'], ['web']]);
  s = changeCheckLists(s, 'disable', [], ['web', 'worker']);
  assert.deepEqual([s.disabled, s.skipped], [[ALL_TYPES], []]);
  s = changeCheckLists(s, 'enable', ['web'], ['web', 'worker', 'clock']);
  assert.deepEqual([s.disabled, s.skipped], [['worker', 'clock'], []]);
  const r = resolveChecks(s, { waitMs: 0 });
  assert.equal(r.isDisabled('worker'), true);
  assert.equal(r.isDisabled('web'), false);
  s = changeCheckLists(s, 'enable', [], []);
  assert.deepEqual([s.disabled, s.skipped], [[], []]);
  assert.deepEqual(parseCheckSettings(undefined), defaultCheckSettings(), 'app documents from before checks load with the defaults');
  assert.throws(() => parseCheckSettings({ properties: { patience: 1 } }), /unknown property/);
});

test("a process type gets app.json's checks with checks:set overrides, else berth's defaults: TCP then GET / for web, none for others (the wait is probation)", () => {
  const release = { healthchecks: healthchecksSection(JSON.stringify({ healthchecks: { web: [{ name: 'ready', path: '/health', attempts: 2 }] } })) };
  const plain = resolveChecks(settings(), { waitMs: 4000 });
  const web = checksFor(release, 'web', plain);
  assert.deepEqual(web.map((c) => [c.kind, c.name, c.attempts, c.timeoutMs]), [['http', 'ready', 2, 5000]]);
  const overridden = checksFor(release, 'web', resolveChecks(settings({ properties: { attempts: 9, timeout: 1000 } }), { waitMs: 4000 }));
  assert.deepEqual(overridden.map((c) => [c.attempts, c.timeoutMs]), [[9, 1000]]);
  assert.deepEqual(checksFor({}, 'web', plain).map((c) => c.name), ['port listening', 'GET / answers']);
  assert.deepEqual(checksFor({}, 'worker', plain).map((c) => c.name), []);
  assert.deepEqual(quickChecks(web).map((c) => [c.attempts, c.waitMs, c.initialDelayMs]), [[1, 0, 0]]);
});

// ---------------------------------------------------------------------------------------------

/** An engine whose container state follows a script of [ms after the first inspect, changes]. */
function scriptedEngine(base: ContainerState, script: Array<[number, Partial<ContainerState>]> = []): Engine {
  let first: number | undefined;
  return new (class extends FakeEngine {
    override async inspect(): Promise<ContainerState> {
      first ??= Date.now();
      const elapsed = Date.now() - first;
      let state = { ...base };
      for (const [at, change] of script) if (elapsed >= at) state = { ...state, ...change };
      return state;
    }
  })();
}

function container(over: Partial<ContainerState> = {}): ContainerState {
  return { id: 'c1', name: 'shop.web.1.r2.ab12', labels: {}, running: true, status: 'running', exitCode: 0, restartCount: 0, ip: '127.0.0.1', startedAt: Date.now(), oomKilled: false, ...over };
}

async function listen(t: TestContext, handler: http.RequestListener): Promise<number> {
  const server = http.createServer(handler);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  return (server.address() as net.AddressInfo).port;
}

async function closedPort(): Promise<number> {
  const s = net.createServer().listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

test("the gate passes once the checks pass with the app's Host header, and uptime counts from the container's start", async (t) => {
  let host = '';
  const port = await listen(t, (req, res) => {
    host = req.headers.host ?? '';
    res.end('ok');
  });
  const release = { healthchecks: healthchecksSection(JSON.stringify({ healthchecks: { web: [{ path: '/health', content: 'ok' }, { uptime: 2 }] } })) };
  const checks = checksFor(release, 'web', resolveChecks(settings(), { waitMs: 0 }));
  const started = Date.now();
  const state = await passGate({ engine: scriptedEngine(container({ startedAt: Date.now() - 5000 })), container: container({ startedAt: Date.now() - 5000 }), dyno: 'web.1', checks, port, hostHeader: 'shop.example.com' });
  assert.equal(state.running, true);
  assert.equal(host, 'shop.example.com');
  assert.ok(Date.now() - started < 1500, 'the container had been up for 5 s already: no uptime wait');
});

test('a container that exits while its checks run fails the gate with its exit code instead of waiting out the checks', async () => {
  const port = await closedPort();
  const c = container();
  const checks = checksFor({}, 'web', resolveChecks(settings(), { waitMs: 0 }));
  const started = Date.now();
  await assert.rejects(
    passGate({ engine: scriptedEngine(c, [[300, { running: false, status: 'exited', exitCode: 3 }]]), container: c, dyno: 'web.1', checks, port, hostHeader: 'shop.example.com' }),
    (e: unknown) => isUserError(e) && e.code === 'container_exited' && /exit code 3/.test(e.message),
  );
  assert.ok(Date.now() - started < 5000, `the listening check alone would have tried for 60 s (${Date.now() - started} ms)`);
});

test('a restart during the gate fails it; the restarts a container had before it do not', async (t) => {
  const port = await listen(t, (_req, res) => res.end('ok'));
  const withUptime = { healthchecks: healthchecksSection(JSON.stringify({ healthchecks: { web: [{ uptime: 1 }] } })) };
  const checks = checksFor(withUptime, 'web', resolveChecks(settings(), { waitMs: 0 }));
  const fresh = container({ restartCount: 0 });
  await assert.rejects(
    passGate({ engine: scriptedEngine(fresh, [[200, { restartCount: 1 }]]), container: fresh, dyno: 'web.1', checks, port, hostHeader: 'x.test', baselineRestarts: 0 }),
    (e: unknown) => isUserError(e) && e.code === 'container_exited' && /restarted/.test(e.message),
  );
  const veteran = container({ restartCount: 4 });
  const state = await passGate({ engine: scriptedEngine(veteran), container: veteran, dyno: 'web.1', checks, port, hostHeader: 'x.test' });
  assert.equal(state.restartCount, 4);
});

test('an abort stops a gate at once', async () => {
  const port = await closedPort();
  const c = container();
  const abort = new AbortController();
  const gate = passGate({ engine: scriptedEngine(c), container: c, dyno: 'web.2', checks: checksFor({}, 'web', resolveChecks(settings(), { waitMs: 0 })), port, hostHeader: 'x.test', signal: abort.signal });
  setTimeout(() => abort.abort(new Error('web.1 failed')), 100);
  await assert.rejects(gate, /web\.1 failed/);
});

// ---------------------------------------------------------------------------------------------

function recordingPublisher(): RoutePublisher & { routes: Map<string, Target[]>; publishes: number } {
  const routes = new Map<string, Target[]>();
  const p = {
    routes,
    publishes: 0,
    publish(app: string, _hostnames: string[], targets: Target[]) {
      p.publishes++;
      routes.set(app, [...targets]);
    },
    unpublish(app: string) {
      routes.delete(app);
    },
    routed: (app: string) => routes.get(app) ?? [],
    standby: () => [],
    drain: async (): Promise<DrainResult> => ({ waitedMs: 0, requestsLeft: 0, tunnelsClosed: 0 }),
  };
  return p;
}

test('the route guard takes a dead container out of its route at once and keeps it out of later publishes until it runs again', () => {
  const inner = recordingPublisher();
  const guard = new RouteGuard(inner);
  const a = { id: 'shop.web.1.r3.aa', host: '172.18.0.2', port: 5000 };
  const b = { id: 'shop.web.2.r3.bb', host: '172.18.0.3', port: 5000 };
  guard.publish('shop', ['shop.example.com'], [a, b]);
  assert.equal(guard.withdraw('shop', ['shop.example.com'], b.id, 'die'), true);
  assert.deepEqual(inner.routes.get('shop'), [a]);
  assert.equal(guard.withdraw('shop', ['shop.example.com'], 'shop.web.9.r1.zz', 'die'), false, 'a container that was not routed changes nothing');
  guard.publish('shop', ['shop.example.com'], [a, b]);
  assert.deepEqual(inner.routes.get('shop'), [a], 'a deploy that still lists the dead container does not bring it back');
  assert.equal(guard.revive(b.id), true);
  guard.publish('shop', ['shop.example.com'], [a, b]);
  assert.deepEqual(inner.routes.get('shop'), [a, b]);
  guard.withdraw('shop', ['shop.example.com'], a.id, 'oom');
  guard.forget(a.id);
  assert.equal(guard.isDown(a.id), false);
});
