// Data through linked services on real parts: the fixture app (pg and redis clients) pushed over
// OpenSSH, linked to a postgres and a redis service, writes and reads a row and a key through
// berth's proxy; they survive postgres:restart, a redeploy and a daemon restart; an app whose
// service is down waits for it before its containers start; no password reaches the daemon's log.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { gitRepo, makeKey, request, run, startDaemon, tempDir, waitFor, type Daemon } from './helpers/daemon.ts';
import { POSTGRES_TEST_IMAGE, REDIS_TEST_IMAGE, serviceFixtureApp } from './helpers/services.ts';

const SERVICE_FLAGS = ['--postgres-image', POSTGRES_TEST_IMAGE, '--redis-image', REDIS_TEST_IMAGE];
const APP = 'shop';

let daemon: Daemon;
const dataDir = tempDir('e2e-services-data');
const work = tempDir('e2e-services-data-work');
const repo = path.join(work, APP);
let admin: { privateKey: string; publicKey: string };

function docker(args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync('docker', args, { encoding: 'utf8' });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

async function get(urlPath: string): Promise<{ status: number; body: string }> {
  return request(daemon.httpPort, `${APP}.${daemon.domain}`, urlPath);
}

async function rows(): Promise<string[]> {
  const r = await get('/pg/read');
  assert.equal(r.status, 200, r.body);
  return JSON.parse(r.body) as string[];
}

function push(message: string): void {
  gitRepo(repo, { 'VERSION': message + '\n' }, message);
  const r = run('git', ['push', daemon.remote(APP), 'main'], { cwd: repo, env: daemon.gitEnv(admin.privateKey) });
  assert.equal(r.code, 0, r.stderr);
}

function passwordOf(kind: string, name: string): string {
  return fs.readFileSync(path.join(dataDir, 'services', kind, name, 'secret'), 'utf8').trim();
}

before(async () => {
  daemon = await startDaemon({ dataDir, args: SERVICE_FLAGS });
  admin = makeKey(work, 'admin');
  assert.equal(daemon.cli(['ssh-keys:add', 'admin', admin.publicKey]).code, 0);
  serviceFixtureApp(repo);
  push('v1');
});

after(async () => {
  daemon?.cli(['apps:destroy', APP, '--force']);
  await daemon?.stop();
  if (!daemon) return;
  const ids = docker(['ps', '-aq', '--filter', `label=berth.instance=${daemon.instance}`]).stdout.split('\n').filter(Boolean);
  if (ids.length) docker(['rm', '-f', ...ids]);
  const volumes = docker(['volume', 'ls', '-q', '--filter', `label=berth.instance=${daemon.instance}`]).stdout.split('\n').filter(Boolean);
  if (volumes.length) docker(['volume', 'rm', '-f', ...volumes]);
  const networks = docker(['network', 'ls', '-q', '--filter', `label=berth.instance=${daemon.instance}`]).stdout.split('\n').filter(Boolean);
  if (networks.length) docker(['network', 'rm', ...networks]);
});

test('create, link, and the app writes and reads a row and a key through the proxy', async (t) => {
  const before = await get('/pg/read');
  assert.equal(before.status, 503, 'no DATABASE_URL yet');
  const started = performance.now();
  const created = daemon.ssh(admin.privateKey, 'postgres:create db');
  t.diagnostic(`postgres:create to accepting connections: ${Math.round(performance.now() - started)} ms (the command's own figure: ${/accepts connections \(([\d.]+ s)\)/.exec(created.stdout)?.[1]})`);
  assert.equal(created.code, 0, created.stderr);
  assert.equal(daemon.ssh(admin.privateKey, 'redis:create cache').code, 0);
  const pg = daemon.ssh(admin.privateKey, `postgres:link db ${APP}`);
  assert.equal(pg.code, 0, pg.stderr);
  const redis = daemon.ssh(admin.privateKey, `redis:link cache ${APP}`);
  assert.equal(redis.code, 0, redis.stderr);
  assert.match(daemon.cli(['config:show', APP]).stdout, /REDIS_URL:\s+redis:\/\//);
  assert.equal((await get('/pg/write?v=first')).status, 200);
  assert.deepEqual(await rows(), ['first']);
  assert.equal((await get('/redis/set?v=kept')).status, 200);
  assert.equal((await get('/redis/get')).body, '"kept"');
});

test('rows survive postgres:restart and a redeploy', async () => {
  const restarted = daemon.cli(['postgres:restart', 'db']);
  assert.equal(restarted.code, 0, restarted.stderr);
  await waitFor('the app to reach postgres again', async () => (await get('/pg/read')).status === 200, 30_000);
  assert.deepEqual(await rows(), ['first']);
  assert.equal((await get('/pg/write?v=second')).status, 200);
  push('v2');
  assert.deepEqual(await rows(), ['first', 'second']);
  assert.equal((await get('/redis/get')).body, '"kept"');
});

test('rows and keys survive a daemon restart; the adopted app reaches its services at once', async () => {
  await daemon.stop();
  daemon = await startDaemon({ dataDir, args: SERVICE_FLAGS });
  await waitFor('the app to be adopted', () => /"app_adopted".*"app":"shop"/.test(daemon.logs()), 60_000);
  assert.deepEqual(await rows(), ['first', 'second']);
  assert.equal((await get('/redis/get')).body, '"kept"');
});

test("an app whose linked service is down starts its new containers only once the service accepts connections", async () => {
  assert.equal(docker(['stop', `berth-${daemon.instance}-svc-postgres-db`]).code, 0);
  const restarted = daemon.cli(['ps:restart', APP]);
  assert.equal(restarted.code, 0, restarted.stderr);
  const out = restarted.stdout;
  const waited = out.indexOf('Waiting for postgres service db to accept connections');
  assert.ok(waited >= 0, out);
  assert.ok(waited < out.indexOf('Starting web.1'), 'the wait comes before the container starts');
  assert.deepEqual(await rows(), ['first', 'second']);
});

test("no service's password is in the daemon's log, nor in the kept deploy output", () => {
  const kept = fs.readdirSync(path.join(dataDir, 'logs'), { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => fs.readFileSync(path.join(e.parentPath, e.name), 'utf8'));
  assert.ok(kept.some((text) => text.includes('Waiting for postgres service db to accept connections')), 'the output of the push after the link is kept');
  for (const [kind, name] of [['postgres', 'db'], ['redis', 'cache']] as const) {
    const password = passwordOf(kind, name);
    assert.doesNotMatch(daemon.logs(), new RegExp(password));
    for (const text of kept) assert.ok(!text.includes(password));
  }
});
