// Deploy checks end to end on the real binary: the checks:* commands, app.json read from the
// pushed commit (and from an image for git:from-image) and kept with the release, the default
// TCP + GET / checks and the probation after the swap, checks:skip and checks:disable, stop-timeout, and restart adoption.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { BASE_IMAGE, gitRepo, makeKey, mustRun, nodeApp, request, run, startDaemon, tempDir, waitFor, writeFiles, type Daemon } from './helpers/daemon.ts';
import { logEvents, zeroDowntimeApp } from './helpers/zero-downtime.ts';

const APP = 'chk';
const IMAGE = 'berth-test-e2e-checks/from-image:1';
let daemon: Daemon;
let key: { privateKey: string; publicKey: string };
const work = tempDir('e2e-checks');
const repo = path.join(work, APP);

/** The test app: answers its message; with the config var IGNORE_SIGTERM it ignores SIGTERM (only SIGKILL stops it). */
function stubbornApp(message: string, extra: Record<string, string> = {}): Record<string, string> {
  const app = nodeApp(message, extra);
  app['server.js'] = `${app['server.js']}if (process.env.IGNORE_SIGTERM) process.on('SIGTERM', () => console.log('ignoring SIGTERM'));\n`;
  return app;
}

const push = () => run('git', ['push', daemon.remote(APP), 'main'], { cwd: repo, env: daemon.gitEnv(key.privateKey) });
const releases = () => JSON.parse(fs.readFileSync(path.join(daemon.dataDir, 'state', 'apps', `${APP}.json`), 'utf8')).releases.length as number;

before(async () => {
  daemon = await startDaemon();
  key = makeKey(work, 'admin');
  assert.equal(daemon.cli(['ssh-keys:add', 'admin', key.publicKey]).code, 0);
});

after(async () => {
  for (const app of [APP, 'chkcli']) daemon.cli(['apps:destroy', app, '--force']);
  await daemon.stop();
  run('docker', ['rmi', IMAGE]);
});

test("checks:set, checks:disable, checks:enable, checks:skip and checks:report speak Dokku's vocabulary and refuse bad input", () => {
  assert.equal(daemon.cli(['apps:create', 'chkcli']).code, 0);
  const report = daemon.cli(['checks:report', 'chkcli']);
  assert.equal(report.code, 0, report.stderr);
  assert.match(report.stdout, /=====> chkcli checks information/);
  assert.match(report.stdout, /Checks disabled list:\s+none/);
  assert.match(report.stdout, /Checks wait:\s+1s \(default\)/);
  assert.match(report.stdout, /Checks drain timeout:\s+30s \(default\)/);
  assert.match(report.stdout, /Checks stop timeout:\s+10s \(default\)/);

  assert.match(daemon.cli(['checks:set', 'chkcli', 'wait', '5']).stdout, /Set wait of chkcli to 5s/);
  assert.match(daemon.cli(['checks:set', 'chkcli', 'wait-to-retire', '1m']).stdout, /Set drain-timeout of chkcli to 60s/);
  assert.equal(daemon.cli(['checks:report', 'chkcli', '--checks-wait']).stdout, '5s\n');
  assert.equal(daemon.cli(['checks:report', 'chkcli', '--checks-drain-timeout']).stdout, '60s\n');
  assert.match(daemon.cli(['checks:set', 'chkcli', 'wait']).stdout, /Reset wait of chkcli to the default \(1s\)/);

  assert.match(daemon.cli(['checks:disable', 'chkcli', 'worker']).stdout, /Disabled zero-downtime deploys for worker of chkcli/);
  assert.match(daemon.cli(['checks:skip', 'chkcli', 'web,worker']).stdout, /disabled: none; skipped: web,worker/);
  assert.equal(daemon.cli(['checks:report', 'chkcli', '--checks-skipped-list']).stdout, 'web,worker\n');
  assert.match(daemon.cli(['checks:disable', 'chkcli']).stdout, /disabled: _all_; skipped: none/);
  assert.match(daemon.cli(['checks:enable', 'chkcli', 'web']).stdout, /disabled: none; skipped: none|disabled: [a-z,]*; skipped: none/);
  assert.match(daemon.cli(['checks:enable', 'chkcli']).stdout, /disabled: none; skipped: none/);

  const badKey = daemon.cli(['checks:set', 'chkcli', 'patience', '3']);
  assert.equal(badKey.code, 1);
  assert.match(badKey.stderr, /unknown checks property "patience"/);
  const badValue = daemon.cli(['checks:set', 'chkcli', 'stop-timeout', 'soon']);
  assert.equal(badValue.code, 1);
  assert.match(badValue.stderr, /stop-timeout: "soon" is not a number of seconds/);
  assert.equal(daemon.cli(['checks:skip', 'chkcli', 'web;rm']).code, 2);
  assert.equal(daemon.cli(['checks:report', 'chkcli', '--checks-stop-timeout']).stdout, '10s (default)\n');
});

test('with no app.json, a web container must accept connections and answer GET /, then serves on probation for the wait', () => {
  gitRepo(repo, stubbornApp('chk v1'));
  const first = push();
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stderr, /Checking web\.1: port listening, then GET \/ answers/);
  assert.match(first.stderr, /web\.1 passed its checks at [\d.]+:5000 \(GET \/ answered 200 in \d+ ms\)/);
  assert.match(first.stderr, /-----> Serving v1; watching it for 1 s/);
});

test('a bad app.json is refused at push with the field it is about, before anything is built', async () => {
  fs.writeFileSync(path.join(repo, 'app.json'), JSON.stringify({ healthchecks: { web: [{ path: 'health', attempts: 2 }] } }));
  mustRun('git', ['add', '-A'], { cwd: repo });
  mustRun('git', ['commit', '-qm', 'bad app.json'], { cwd: repo });
  const count = releases();
  const r = push();
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /app\.json: healthchecks\.web\[0\]\.path must be a path starting with "\/"/);
  assert.doesNotMatch(r.stderr, /Building/);
  assert.equal(releases(), count);
  assert.equal((await request(daemon.httpPort, `${APP}.${daemon.domain}`)).body, 'chk v1\n');
  mustRun('git', ['reset', '-q', '--hard', 'HEAD~1'], { cwd: repo });
});

test('a container that exits during its probation fails the deploy with its log, and the old release serves again', async () => {
  assert.equal(daemon.cli(['checks:set', APP, 'wait', '4']).code, 0);
  gitRepo(repo, { 'server.js': `${stubbornApp('chk v-dies')['server.js']}setTimeout(() => { console.error('giving up: lost the queue'); process.exit(4); }, 1000);\n` }, 'dies after a second');
  const r = push();
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /Checking web\.1: port listening, then GET \/ answers/);
  assert.match(r.stderr, /Serving v2; keeping v1 ready for 4 s/);
  assert.match(r.stderr, /web\.1 exited \(exit code 4\) \d\.\d s after v2 was routed; routed back to v1/);
  assert.match(r.stderr, /giving up: lost the queue/);
  assert.equal((await request(daemon.httpPort, `${APP}.${daemon.domain}`)).body, 'chk v1\n');
  // No release records the image this push built: it is not left behind for the next push's build to orphan.
  assert.equal(releases(), 1);
  assert.notEqual(run('docker', ['image', 'inspect', `${daemon.imageRepo(APP)}:r2`]).code, 0, 'the failed build image r2 was left tagged');
  mustRun('git', ['reset', '-q', '--hard', 'HEAD~1'], { cwd: repo });
  assert.equal(daemon.cli(['checks:set', APP, 'wait']).code, 0);
});

test('checks:skip deploys without checks; checks:disable stops the old container before the new one starts; stop-timeout bounds SIGTERM', async () => {
  assert.equal(daemon.cli(['checks:skip', APP]).code, 0);
  const skipped = daemon.cli(['config:set', APP, 'IGNORE_SIGTERM=1']);
  assert.equal(skipped.code, 0, skipped.stderr);
  assert.match(skipped.stdout, /web\.1: checks skipped for web/);
  assert.doesNotMatch(skipped.stdout, /Checking web\.1/);

  assert.equal(daemon.cli(['checks:disable', APP, 'web']).code, 0);
  assert.equal(daemon.cli(['checks:set', APP, 'stop-timeout', '1']).code, 0);
  const stubborn = mustRun('docker', ['ps', '--filter', `label=berth.instance=${daemon.instance}`, '--filter', `label=berth.app=${APP}`, '--format', '{{.Names}}']).trim();
  const started = Date.now();
  const disabled = daemon.cli(['config:unset', APP, 'IGNORE_SIGTERM']);
  const took = Date.now() - started;
  assert.equal(disabled.code, 0, disabled.stderr);
  const out = disabled.stdout;
  assert.match(out, /Zero-downtime deploys are disabled for web: stopping the old containers first/);
  assert.match(out, /Stopping 1 old container \(SIGTERM, then SIGKILL after 1s\)/);
  assert.ok(out.indexOf('Stopping 1 old container') < out.indexOf('Starting web.1'), out);
  assert.ok(took < 8000, `the old container ignored SIGTERM: it was killed after the 1 s stop-timeout, not Docker's 10 s (${took} ms)`);
  const kills = mustRun('docker', ['events', '--since', String(Math.floor(started / 1000) - 1), '--until', String(Math.ceil(Date.now() / 1000) + 1), '--filter', `container=${stubborn}`, '--filter', 'event=kill', '--format', '{{.Actor.Attributes.signal}}']);
  assert.deepEqual(kills.trim().split('\n'), ['15', '9'], 'SIGTERM first, then SIGKILL');
  await waitFor('the new container to serve', async () => (await request(daemon.httpPort, `${APP}.${daemon.domain}`)).status === 200, 10_000);
  assert.equal(daemon.cli(['checks:enable', APP]).code, 0);
  assert.equal(daemon.cli(['checks:set', APP, 'stop-timeout']).code, 0);
});

test("a rollback checks with the app.json of the release it brings back", () => {
  writeFiles(repo, zeroDowntimeApp({ message: 'chk v2' }));
  mustRun('git', ['add', '-A'], { cwd: repo });
  mustRun('git', ['commit', '-qm', 'with app.json'], { cwd: repo });
  const withChecks = push();
  assert.equal(withChecks.code, 0, withChecks.stderr);
  assert.match(withChecks.stderr, /Checking web\.1: ready/);
  mustRun('git', ['rm', '-q', 'app.json'], { cwd: repo });
  mustRun('git', ['commit', '-qm', 'without app.json'], { cwd: repo });
  const without = push();
  assert.equal(without.code, 0, without.stderr);
  assert.match(without.stderr, /Checking web\.1: port listening, then GET \/ answers/);
  const back = daemon.cli(['releases:rollback', APP]);
  assert.equal(back.code, 0, back.stderr);
  assert.match(back.stdout, /Checking web\.1: ready/);
  const report = daemon.cli(['checks:report', APP, '--checks-app-json']);
  assert.match(report.stdout, /^web \(1\) in v\d+$/m);
});

test("git:from-image checks with the app.json in the image's working directory, and checks:run runs them on demand", () => {
  const dir = path.join(work, 'image');
  writeFiles(dir, { ...zeroDowntimeApp({ message: 'from image' }), Dockerfile: `FROM ${BASE_IMAGE}\nCOPY server.js app.json /app/\nCMD ["node", "/app/server.js"]\n` });
  mustRun('docker', ['build', '-q', '-t', IMAGE, dir]);
  const r = daemon.cli(['git:from-image', APP, IMAGE]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Checking web\.1: ready/);
  const checked = daemon.cli(['checks:run', APP, 'web']);
  assert.equal(checked.code, 0, checked.stderr);
  assert.match(checked.stdout, /Running checks for web\.1: ready\n\s+web\.1 passed \(status 200 in \d+ ms\)/);
  assert.equal(daemon.cli(['checks:run', APP, 'worker']).code, 1);
});

test("a restarted daemon adopts the running container after checking it with the release's checks", async () => {
  const serving = (await request(daemon.httpPort, `${APP}.${daemon.domain}`)).body;
  const dataDir = daemon.dataDir;
  await daemon.stop();
  daemon = await startDaemon({ dataDir });
  await waitFor('the adoption', () => logEvents(daemon.logs()).some((e) => e.event === 'app_adopted' && e.app === APP), 30_000);
  const kept = logEvents(daemon.logs()).find((e) => e.event === 'container_kept' && e.app === APP);
  assert.ok(kept, daemon.logs());
  assert.deepEqual(kept.checks, ['ready']);
  const adopted = logEvents(daemon.logs()).find((e) => e.event === 'app_adopted' && e.app === APP)!;
  assert.deepEqual(adopted.started, [], 'nothing had to be started again');
  assert.equal((await request(daemon.httpPort, `${APP}.${daemon.domain}`)).body, serving);
});
