// Zero-downtime deploys on real parts, under real load: dist/berth serve, real pushes over OpenSSH,
// the Docker engine, wrk and Node clients through berth's proxy. Ten redeploys of every kind under
// 16 connections, a slow request across a swap, a WebSocket across a swap, a deploy whose health
// check fails, a container killed under load, and one its image's HEALTHCHECK reports unhealthy.
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { BINARY, gitRepo, makeKey, mustRun, request, startDaemon, tempDir, waitFor, type Daemon } from './helpers/daemon.ts';
import { logEvents, openWebSocket, runAsync, sleep, startLoadLoop, startWrk, swapTimings, zeroDowntimeApp } from './helpers/zero-downtime.ts';

const APP = 'zd';
let daemon: Daemon;
let key: { privateKey: string; publicKey: string };
let host: string;
const work = tempDir('e2e-zero-downtime');
const repo = path.join(work, APP);
let version = 1;

const cli = (args: string[]) => runAsync(BINARY, ['--data-dir', daemon.dataDir, ...args]);
const push = () => runAsync('git', ['push', daemon.remote(APP), 'main'], { cwd: repo, env: daemon.gitEnv(key.privateKey) });
async function pushVersion(): Promise<void> {
  version++;
  gitRepo(repo, zeroDowntimeApp({ message: `v${version}` }), `v${version}`);
  const r = await push();
  assert.equal(r.code, 0, r.stderr);
}

function get(urlPath: string): Promise<{ status: number; body: string; endedAt: number }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: daemon.httpPort, path: urlPath, headers: { host }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, endedAt: Date.now() }));
    });
    req.on('error', reject);
    req.end();
  });
}

before(async () => {
  daemon = await startDaemon();
  host = `${APP}.${daemon.domain}`;
  key = makeKey(work, 'admin');
  assert.equal(daemon.cli(['ssh-keys:add', 'admin', key.publicKey]).code, 0);
  gitRepo(repo, zeroDowntimeApp({ message: 'v1' }));
  const first = await push();
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stderr, /app\.json health checks for web/);
  assert.match(first.stderr, /Checking web\.1: ready/);
  const set = daemon.cli(['checks:set', APP, 'drain-timeout', '3']);
  assert.equal(set.code, 0, set.stderr);
});

after(async () => {
  daemon.cli(['apps:destroy', APP, '--force']);
  await daemon.stop();
});

test('16 connections of load get only 2xx answers and no socket error while the app is redeployed 10 times (pushes, config:set, ps:scale up and down, restart, rollback)', async (t) => {
  const loadStarted = Date.now();
  const wrk = startWrk(daemon.httpPort, host, { connections: 16, threads: 2 });
  await sleep(500);
  const redeploys: Array<[string, () => Promise<void>]> = [
    ['push', pushVersion],
    ['config:set', async () => assert.equal((await cli(['config:set', APP, 'GREETING=one'])).code, 0)],
    ['ps:scale web=2', async () => assert.equal((await cli(['ps:scale', APP, 'web=2'])).code, 0)],
    ['push', pushVersion],
    ['config:set', async () => assert.equal((await cli(['config:set', APP, 'GREETING=two'])).code, 0)],
    ['ps:scale web=1', async () => assert.equal((await cli(['ps:scale', APP, 'web=1'])).code, 0)],
    ['push', pushVersion],
    ['ps:restart', async () => assert.equal((await cli(['ps:restart', APP])).code, 0)],
    ['config:set', async () => assert.equal((await cli(['config:set', APP, 'GREETING=three'])).code, 0)],
    ['releases:rollback', async () => assert.equal((await cli(['releases:rollback', APP])).code, 0)],
  ];
  for (const [what, redeploy] of redeploys) {
    const started = Date.now();
    await redeploy();
    t.diagnostic(`${what}: ${Date.now() - started} ms`);
  }
  await sleep(500);
  const result = await wrk.stop();
  t.diagnostic(`wrk: ${result.requests} requests in ${result.seconds} s, latency max ${result.latencyMax}, non-2xx ${result.non2xx}, socket errors ${JSON.stringify(result.socketErrors)}`);
  const timings = swapTimings(logEvents(daemon.logs()).filter((e) => Date.parse(e.time) >= loadStarted)).filter((s) => s.app === APP);
  t.diagnostic(`health pass -> first request on the new release (ms): ${timings.map((s) => s.passToFirstRequestMs.toFixed(1)).join(', ')}`);
  assert.ok(result.requests > 100, `wrk kept load on the app: ${result.output}`);
  assert.equal(result.non2xx, 0, result.output);
  assert.deepEqual(result.socketErrors, { connect: 0, read: 0, write: 0, timeout: 0 }, result.output);
  assert.equal(timings.length, 9, `every redeploy that started web containers (all but the scale down) swapped to them under load: ${JSON.stringify(timings)}`);
  assert.match((await request(daemon.httpPort, host)).body, /^v4 two\n$/, 'the rollback brought back the release before the last config change');
});

test('a 2-second request started just before a redeploy completes with 200 from the old release', async () => {
  const before = (await get('/')).body;
  const slow = get('/slow');
  await sleep(200);
  const deploy = cli(['config:set', APP, 'GREETING=after-slow']);
  const [answer, deployed] = await Promise.all([slow, deploy]);
  assert.equal(deployed.code, 0, deployed.stderr);
  assert.equal(answer.status, 200);
  assert.equal(answer.body, `${before.split(' ')[0]} slow done`);
  const events = logEvents(daemon.logs());
  const swap = events.filter((e) => e.event === 'route_swapped' && e.app === APP).at(-1)!;
  assert.ok(Date.parse(swap.time) < answer.endedAt, 'the answer came after the route had moved to the new release');
  const drained = events.filter((e) => e.event === 'proxy_drained').at(-1)!;
  assert.equal(drained.requestsLeft, 0);
  assert.match((await get('/')).body, /after-slow/);
});

test('a WebSocket opened before a redeploy keeps working until its drain deadline, then is closed cleanly', async () => {
  const { ws, messages, closed } = await openWebSocket(daemon.httpPort, host);
  ws.send('hello');
  await waitFor('the echo', () => messages.length === 1, 5000);
  const oldRelease = messages[0]!.split(':')[0];
  const deploy = cli(['config:set', APP, 'GREETING=after-ws']);
  await waitFor('the new release to serve', async () => /after-ws/.test((await get('/')).body), 60_000);
  const swappedAt = Date.now();
  ws.send('still there');
  await waitFor('the echo after the swap', () => messages.length === 2, 5000);
  assert.deepEqual(messages, [`${oldRelease}: hello`, `${oldRelease}: still there`], 'the old container answers on the open WebSocket');
  const close = await closed;
  const deployed = await deploy;
  assert.equal(deployed.code, 0, deployed.stderr);
  assert.match(deployed.stdout, /closed 1 WebSocket 3\.\ds after the swap/);
  assert.equal(close.code, 1001);
  assert.equal(close.wasClean, true);
  const drained = logEvents(daemon.logs()).filter((e) => e.event === 'old_release_drained' && e.app === APP).at(-1)!;
  assert.equal(drained.tunnelsClosed, 1);
  // Its grace counts from the first swap, through the probation of the new release, not after it.
  assert.ok((drained.sinceSwapMs as number) >= 2900 && (drained.sinceSwapMs as number) < 4000, `the WebSocket had the drain-timeout from the swap (closed ${drained.sinceSwapMs} ms after it; seen ${close.at - swappedAt} ms after the swap was seen)`);
});

test('a deploy whose health check fails is rejected with the reason and the last log lines, and every request is answered by the old release', async () => {
  const old = (await get('/')).body;
  const load = startLoadLoop(daemon.httpPort, host, 4);
  gitRepo(repo, zeroDowntimeApp({ message: 'broken', healthStatus: 500, attempts: 3, wait: 1 }), 'broken health');
  const r = await push();
  await sleep(300);
  const records = await load.stop();
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /Checking web\.1: ready/);
  assert.match(r.stderr, /web\.1: ready: attempt [12]\/3 failed: status 500/);
  assert.match(r.stderr, /the last lines web\.1 wrote:/);
  assert.match(r.stderr, /health: database unreachable \(500\)/);
  assert.match(r.stderr, /web\.1: health check "ready" failed after 3 attempts: status 500/);
  assert.match(r.stderr, /! \[remote rejected\] main -> main/);
  assert.ok(records.length > 20, `requests ran during the failed deploy (${records.length})`);
  const other = records.filter((x) => x.status !== 200 || x.body !== old);
  assert.deepEqual(other.slice(0, 5), [], `every answer came from the old release (${records.length} requests)`);
  const left = mustRun('docker', ['ps', '-a', '--filter', `label=berth.instance=${daemon.instance}`, '--filter', `label=berth.app=${APP}`, '--format', '{{.Label "berth.release"}}']).trim().split('\n');
  assert.equal(new Set(left).size, 1, `only the old release's container is left: ${left.join(', ')}`);
  mustRun('git', ['reset', '-q', '--hard', 'HEAD~1'], { cwd: repo });
});

test('a web container killed with docker kill leaves the route when the engine reports it, and requests go to the other one', async (t) => {
  assert.equal((await cli(['ps:scale', APP, 'web=2'])).code, 0);
  const names = mustRun('docker', ['ps', '--filter', `label=berth.instance=${daemon.instance}`, '--filter', `label=berth.app=${APP}`, '--filter', 'label=berth.dyno=web.2', '--format', '{{.Names}}']).trim();
  assert.match(names, /^zd\.web\.2\./);
  const load = startLoadLoop(daemon.httpPort, host, 4);
  await sleep(500);
  const killedAt = Date.now();
  mustRun('docker', ['kill', names]);
  await waitFor('the withdrawal', () => logEvents(daemon.logs()).some((e) => e.event === 'route_target_withdrawn' && e.container === names), 10_000);
  await sleep(1000);
  const records = await load.stop();
  const events = logEvents(daemon.logs());
  const withdrawn = events.find((e) => e.event === 'route_target_withdrawn' && e.container === names)!;
  t.diagnostic(`withdrawn ${withdrawn.lagMs} ms after the engine reported "${withdrawn.reason}" (${Date.parse(withdrawn.time) - killedAt} ms after docker kill was started)`);
  const afterWithdrawal = events.filter((e) => e.event === 'proxy_upstream_error' && e.target === names && Date.parse(e.time) > Date.parse(withdrawn.time));
  assert.deepEqual(afterWithdrawal, [], 'no request was sent to the dead container once it was withdrawn');
  const failed = records.filter((x) => x.status !== 200);
  assert.deepEqual(failed, [], `every request was answered (${records.length})`);
  const served = records.filter((x) => x.at > Date.parse(withdrawn.time));
  assert.ok(served.length > 0, 'requests kept being served by web.1');
  assert.equal((await cli(['ps:scale', APP, 'web=1'])).code, 0);
});

test("a web container its image's HEALTHCHECK reports unhealthy leaves the route, and comes back once healthy and checked", async () => {
  version++;
  gitRepo(repo, zeroDowntimeApp({ message: `v${version}`, dockerHealthcheck: true }), 'with a Docker HEALTHCHECK');
  const pushed = await push();
  assert.equal(pushed.code, 0, pushed.stderr);
  const name = mustRun('docker', ['ps', '--filter', `label=berth.instance=${daemon.instance}`, '--filter', `label=berth.app=${APP}`, '--format', '{{.Names}}']).trim();
  assert.match(name, /^zd\.web\.1\./);
  mustRun('docker', ['exec', name, 'touch', '/tmp/sick']);
  await waitFor('the withdrawal', () => logEvents(daemon.logs()).some((e) => e.event === 'route_target_withdrawn' && e.container === name && e.reason === 'health_status: unhealthy'), 15_000);
  assert.equal((await get('/')).status, 503, 'its only web container is out of the route');
  mustRun('docker', ['exec', name, 'rm', '/tmp/sick']);
  await waitFor('the route back', async () => (await get('/')).status === 200, 15_000);
  assert.ok(logEvents(daemon.logs()).some((e) => e.event === 'routes_refreshed' && e.app === APP && (e.targets as string[]).some((t) => t.startsWith(name))));
});
