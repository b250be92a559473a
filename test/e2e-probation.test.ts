// Fast and safe by default, on real parts under real load: dist/berth serve, pushes over OpenSSH,
// the Docker engine, wrk and Node clients through berth's proxy. An app without app.json checks is
// routed as soon as it answers and serves on probation while the old release is kept warm; one
// that crashes during probation is rolled back without a failed request; one that answers 500 on
// `/` is never routed; a daemon restart during probation leaves one release routed, the one on record.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { BINARY, gitRepo, makeKey, mustRun, request, startDaemon, tempDir, waitFor, type Daemon } from './helpers/daemon.ts';
import { logEvents, probationApp, runAsync, sleep, startLoadLoop, startWrk, type LogEvent } from './helpers/zero-downtime.ts';

const APP = 'zp';
let daemon: Daemon;
let key: { privateKey: string; publicKey: string };
let host: string;
const work = tempDir('e2e-probation');
const repo = path.join(work, APP);

const cli = (args: string[]) => runAsync(BINARY, ['--data-dir', daemon.dataDir, ...args]);
const push = () => runAsync('git', ['push', daemon.remote(APP), 'main'], { cwd: repo, env: daemon.gitEnv(key.privateKey) });
const record = () => JSON.parse(fs.readFileSync(path.join(daemon.dataDir, 'state', 'apps', `${APP}.json`), 'utf8')) as { current: number; releases: Array<{ number: number }> };
const events = (since: number, name: string): LogEvent[] => logEvents(daemon.logs()).filter((e) => e.event === name && Date.parse(e.time) >= since && (e.app === undefined || e.app === APP));
/** The release label of every container of the app, running or not. */
const containerReleases = () =>
  mustRun('docker', ['ps', '-a', '--filter', `label=berth.instance=${daemon.instance}`, '--filter', `label=berth.app=${APP}`, '--format', '{{.Label "berth.release"}}'])
    .trim()
    .split('\n')
    .filter(Boolean);

before(async () => {
  daemon = await startDaemon();
  host = `${APP}.${daemon.domain}`;
  key = makeKey(work, 'admin');
  assert.equal(daemon.cli(['ssh-keys:add', 'admin', key.publicKey]).code, 0);
  gitRepo(repo, probationApp({ message: 'v1' }));
  const first = await push();
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stderr, /Checking web\.1: port listening, then GET \/ answers/);
  assert.match(first.stderr, /web\.1 passed its checks at [\d.]+:5000 \(GET \/ answered 200 in \d+ ms\)/);
  assert.match(first.stderr, /-----> Serving v1; watching it for 1 s/);
});

after(async () => {
  daemon.cli(['apps:destroy', APP, '--force']);
  await daemon.stop();
});

test('under wrk load, a redeploy with the default checks serves the new version as soon as it answers, while the old one is kept warm until probation ends', async (t) => {
  assert.equal((await cli(['checks:set', APP, 'wait', '5'])).code, 0);
  const since = Date.now();
  const wrk = startWrk(daemon.httpPort, host, { connections: 16, threads: 2 });
  const load = startLoadLoop(daemon.httpPort, host, 4);
  await sleep(300);
  gitRepo(repo, probationApp({ message: 'v2' }), 'v2');
  const pushing = push();
  await waitFor('the probation', () => events(since, 'probation_started').length > 0, 60_000);
  const report = await cli(['ps:report', APP]);
  assert.equal(report.code, 0, report.stderr);
  assert.match(report.stdout, /Probation: v2 until \S+ \(\d s left\); kept warm: zp\.web\.1\.r1\.[0-9a-f]+ \(v1\)/);
  const pushed = await pushing;
  const pushedAt = Date.now();
  await sleep(300);
  const records = await load.stop();
  const result = await wrk.stop();
  assert.equal(pushed.code, 0, pushed.stderr);
  assert.match(pushed.stderr, /-----> Serving v2; keeping v1 ready for 5 s/);
  assert.ok(pushed.stderr.indexOf('Serving v2') < pushed.stderr.indexOf('Stopping 1 old container'), pushed.stderr);

  const started = Date.parse(mustRun('docker', ['inspect', '-f', '{{.State.StartedAt}}', `${mustRun('docker', ['ps', '-q', '--filter', `label=berth.instance=${daemon.instance}`, '--filter', `label=berth.app=${APP}`]).trim()}`]).trim());
  const swap = events(since, 'route_swapped').find((e) => e.release === 2)!;
  const firstNew = records.find((r) => r.body === 'v2\n')!;
  const passed = events(since, 'probation_passed').find((e) => e.release === 2)!;
  assert.ok(swap && firstNew && passed, 'swapped, served and passed');
  t.diagnostic(`container start -> swap ${Date.parse(swap.time) - started} ms; -> first v2 answer ${firstNew.at - started} ms; probation passed ${Date.parse(passed.time) - started} ms after start`);
  // The order of events: the container starts, the route swaps, v2 answers, probation ends, the push ends.
  assert.ok(started <= Date.parse(swap.time));
  assert.ok(Date.parse(swap.time) <= firstNew.at);
  assert.ok(firstNew.at < Date.parse(passed.time), 'v2 answered before its probation ended');
  assert.ok(Date.parse(passed.time) <= pushedAt);
  assert.ok(!records.some((r) => r.body === 'v1\n' && r.at > firstNew.at + 100), 'once v2 answered, v1 was no longer routed');
  assert.equal(result.non2xx, 0, result.output);
  assert.deepEqual(result.socketErrors, { connect: 0, read: 0, write: 0, timeout: 0 }, result.output);
  assert.deepEqual(records.filter((r) => r.status !== 200), []);
  assert.equal(record().current, 2);
  assert.deepEqual(containerReleases(), ['2']);
});

test('under wrk load, a release that crashes 5 s after start is rolled back without a failed request, the push fails with its last lines, and the old version answers', async (t) => {
  assert.equal((await cli(['checks:set', APP, 'wait', '10'])).code, 0);
  const since = Date.now();
  const wrk = startWrk(daemon.httpPort, host, { connections: 16, threads: 2 });
  const load = startLoadLoop(daemon.httpPort, host, 4);
  await sleep(300);
  gitRepo(repo, probationApp({ message: 'v-crash', crashAfterMs: 5000 }), 'crashes after 5 s');
  const pushed = await push();
  await sleep(500);
  const records = await load.stop();
  const result = await wrk.stop();
  assert.notEqual(pushed.code, 0);
  assert.match(pushed.stderr, /-----> Serving v3; keeping v2 ready for 10 s/);
  assert.match(pushed.stderr, /web\.1 exited \(exit code 1\) \d+\.\d s after v3 was routed; routed back to v2/);
  assert.match(pushed.stderr, /the last lines web\.1 wrote:/);
  assert.match(pushed.stderr, /crash: lost the connection to the database, giving up/);
  assert.match(pushed.stderr, /! \[remote rejected\] main -> main/);
  const failed = events(since, 'probation_failed').at(-1)!;
  const upstreamErrors = events(since, 'proxy_upstream_error');
  t.diagnostic(`routed back ${failed.lagMs} ms after the engine's die event; wrk: ${result.requests} requests, latency max ${result.latencyMax}; refused or reset by the dying container and retried on v2: ${upstreamErrors.length}`);
  assert.ok(records.some((r) => r.body === 'v-crash\n'), 'the new release served during its probation');
  assert.deepEqual(records.filter((r) => r.status !== 200).slice(0, 5), [], `every request was answered (${records.length})`);
  assert.equal(result.non2xx, 0, result.output);
  assert.deepEqual(result.socketErrors, { connect: 0, read: 0, write: 0, timeout: 0 }, result.output);
  assert.equal((await request(daemon.httpPort, host)).body, 'v2\n');
  assert.equal(record().current, 2, 'v2 stays the current release');
  assert.deepEqual(containerReleases(), ['2'], "v3's container was removed");
  mustRun('git', ['reset', '-q', '--hard', 'HEAD~1'], { cwd: repo });
});

test('a release that answers 500 on / is never routed, and the push fails with the status', async () => {
  const since = Date.now();
  const load = startLoadLoop(daemon.httpPort, host, 4);
  gitRepo(repo, probationApp({ message: 'v-500', rootStatus: 500 }), 'answers 500');
  const pushed = await push();
  const records = await load.stop();
  assert.notEqual(pushed.code, 0);
  assert.match(pushed.stderr, /web\.1: GET \/ answers: attempt 1\/20 failed: GET \/ answered 500/);
  assert.match(pushed.stderr, /health check "GET \/ answers" failed after 20 attempts: GET \/ answered 500/);
  assert.doesNotMatch(pushed.stderr, /Serving v3/);
  assert.deepEqual(events(since, 'route_swapped').filter((e) => e.release === 3), [], "no swap to it");
  assert.deepEqual(records.filter((r) => r.status !== 200 || r.body !== 'v2\n').slice(0, 5), [], `every answer came from v2 (${records.length})`);
  assert.deepEqual(containerReleases(), ['2']);
  mustRun('git', ['reset', '-q', '--hard', 'HEAD~1'], { cwd: repo });
});

test('a daemon restarted during probation routes the release on record (the old one) and removes the containers of the new one', async () => {
  assert.equal((await cli(['checks:set', APP, 'wait', '30'])).code, 0);
  const since = Date.now();
  gitRepo(repo, probationApp({ message: 'v-restart' }), 'deployed across a restart');
  const pushing = push();
  await waitFor('the probation', () => events(since, 'probation_started').length > 0, 60_000);
  assert.equal((await request(daemon.httpPort, host)).body, 'v-restart\n', 'the new release serves on probation');
  const dataDir = daemon.dataDir;
  await daemon.stop();
  const pushed = await pushing;
  daemon = await startDaemon({ dataDir });
  await waitFor('the adoption', () => logEvents(daemon.logs()).some((e) => e.event === 'app_adopted' && e.app === APP), 60_000);
  // Stopped 30 s before its probation would have ended: the release on record is still v2.
  assert.notEqual(pushed.code, 0, 'the push did not succeed');
  assert.equal(record().current, 2);
  assert.equal((await request(daemon.httpPort, host)).body, 'v2\n', 'v2 serves again');
  assert.deepEqual(containerReleases(), ['2'], "only v2 runs: the unfinished release's container was removed");
  assert.ok(logEvents(daemon.logs()).some((e) => e.event === 'container_kept' && e.app === APP), 'the old container, kept warm, was adopted');
  assert.equal((await cli(['checks:set', APP, 'wait', '1'])).code, 0);
});
