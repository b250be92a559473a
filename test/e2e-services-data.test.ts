// Data through linked services on real parts: the fixture app (pg and redis clients) pushed over
// OpenSSH, linked to a postgres and a redis service, writes and reads a row and a key through
// berth's proxy; they survive postgres:restart, a redeploy and a daemon restart; an app whose
// service is down waits for it before its containers start; no password reaches the daemon's log.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { gitRepo, makeKey, request, run, startDaemon, tempDir, waitFor, type Daemon } from './helpers/daemon.ts';
import { POSTGRES_TEST_IMAGE, REDIS_TEST_IMAGE, removeInstanceObjects, serviceFixtureApp } from './helpers/services.ts';

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

/** `ssh ... COMMAND` with binary stdin (a file) and stdout (to a file): the bytes as they are. */
function sshFiles(command: string, options: { input?: string; output?: string } = {}): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('ssh', [...daemon.sshArgs(admin.privateKey), 'berth@127.0.0.1', command], {
      stdio: [options.input ? fs.openSync(options.input, 'r') : 'ignore', options.output ? fs.openSync(options.output, 'w') : 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code: code ?? -1, stderr }));
  });
}

/** SQL on stdin through postgres:connect over SSH; psql's output. */
function sql(name: string, text: string): string {
  const r = daemon.ssh(admin.privateKey, `postgres:connect ${name}`, text);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
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
  removeInstanceObjects(daemon.instance);
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

test('postgres:connect runs SQL piped on stdin, and exits with the client\'s status', () => {
  assert.match(sql('db', 'select count(*) as n from fixture_rows;\n'), /\bn\b[\s\S]*\b2\b/);
  const bad = daemon.ssh(admin.privateKey, 'postgres:connect db', '\\set ON_ERROR_STOP on\nselect * from no_such_table;\n');
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /no_such_table/);
});

test('postgres:connect over ssh -t is psql on a terminal', () => {
  const r = run('ssh', ['-tt', ...daemon.sshArgs(admin.privateKey), 'berth@127.0.0.1', 'postgres:connect db'], { input: 'select 6*7 as answer;\n\\q\n', timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /db=#/, 'the interactive prompt');
  assert.match(r.stdout, /\b42\b/);
});

test('postgres:export over SSH piped into postgres:import of a second service gives the same rows; redis the same with an RDB', async (t) => {
  assert.equal(daemon.ssh(admin.privateKey, 'postgres:create copy').code, 0);
  const dump = path.join(work, 'db.dump');
  let started = performance.now();
  const exported = await sshFiles('postgres:export db', { output: dump });
  t.diagnostic(`postgres:export of a small database: ${Math.round(performance.now() - started)} ms, ${fs.statSync(dump).size} bytes`);
  assert.equal(exported.code, 0, exported.stderr);
  assert.equal(fs.readFileSync(dump).subarray(0, 5).toString('latin1'), 'PGDMP', "pg_dump's custom format, byte for byte");
  started = performance.now();
  const imported = await sshFiles('postgres:import copy', { input: dump });
  t.diagnostic(`postgres:import: ${Math.round(performance.now() - started)} ms`);
  assert.equal(imported.code, 0, imported.stderr);
  assert.match(sql('copy', 'select string_agg(v, \',\' order by id) as vs from fixture_rows;\n'), /first,second/);
  // The local CLI carries the bytes as they are too.
  const local = spawnSync(daemon.process.spawnfile, ['--data-dir', dataDir, 'postgres:export', 'db']);
  assert.equal(local.status, 0, local.stderr.toString());
  assert.equal(local.stdout.subarray(0, 5).toString('latin1'), 'PGDMP');

  assert.equal(daemon.ssh(admin.privateKey, 'redis:create cache2').code, 0);
  const rdb = path.join(work, 'cache.rdb');
  assert.equal((await sshFiles('redis:export cache', { output: rdb })).code, 0);
  assert.equal(fs.readFileSync(rdb).subarray(0, 5).toString('latin1'), 'REDIS');
  const back = await sshFiles('redis:import cache2', { input: rdb });
  assert.equal(back.code, 0, back.stderr);
  const got = docker(['exec', `berth-${daemon.instance}-svc-redis-cache2`, 'redis-cli', '-a', passwordOf('redis', 'cache2'), '--no-auth-warning', 'get', 'fixture']);
  assert.equal(got.stdout.trim(), 'kept');
  for (const [kind, name] of [['postgres', 'copy'], ['redis', 'cache2']] as const) assert.equal(daemon.cli([`${kind}:destroy`, name, '--force']).code, 0);
});

test('backup-restore brings back a dropped table; backups are files only admins read', async () => {
  const made = daemon.ssh(admin.privateKey, 'postgres:backup db');
  assert.equal(made.code, 0, made.stderr);
  const name = /Backed up postgres service db: (\S+)/.exec(made.stdout)![1]!;
  assert.match(name, /^db-\d{8}-\d{6}\.dump$/);
  const dir = path.join(dataDir, 'services', 'postgres', 'db', 'backups');
  assert.equal(fs.statSync(dir).mode & 0o777, 0o700);
  assert.equal(fs.statSync(path.join(dir, name)).mode & 0o777, 0o600);
  assert.match(daemon.cli(['postgres:backups', 'db']).stdout, new RegExp(`^${name.replace('.', '\\.')}\\s+`, 'm'));
  sql('db', 'drop table fixture_rows;\n');
  assert.deepEqual(await rows(), []);
  const restored = daemon.ssh(admin.privateKey, `postgres:backup-restore db ${name}`);
  assert.equal(restored.code, 0, restored.stderr);
  assert.deepEqual(await rows(), ['first', 'second']);
  const missing = daemon.cli(['postgres:backup-restore', 'db', 'nope.dump']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /there is no backup named "nope.dump"/);
});

test('backup-schedule is kept in the record, refuses a bad expression, and survives a daemon restart', async () => {
  const bad = daemon.cli(['postgres:backup-schedule', 'db', '61', '*', '*', '*', '*']);
  assert.equal(bad.code, 1);
  const set = daemon.ssh(admin.privateKey, 'postgres:backup-schedule db "* * * * *"');
  assert.equal(set.code, 0, set.stderr);
  assert.match(set.stdout, /backed up on "\* \* \* \* \*" \(UTC\); next at \d{4}-/);
  assert.match(fs.readFileSync(path.join(dataDir, 'state', 'services.json'), 'utf8'), /"backupSchedule": "\* \* \* \* \*"/);
});

test('rows and keys survive a daemon restart; the adopted app reaches its services at once', async () => {
  await daemon.stop();
  daemon = await startDaemon({ dataDir, args: SERVICE_FLAGS });
  await waitFor('the app to be adopted', () => /"app_adopted".*"app":"shop"/.test(daemon.logs()), 60_000);
  assert.deepEqual(await rows(), ['first', 'second']);
  assert.equal((await get('/redis/get')).body, '"kept"');
  assert.match(daemon.cli(['postgres:backups', 'db']).stdout, /Schedule: \* \* \* \* \* \(UTC\), next at/);
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

test('the scheduled backup appears on time (every minute)', async () => {
  const dir = path.join(dataDir, 'services', 'postgres', 'db', 'backups');
  const before = fs.readdirSync(dir).filter((f) => !f.startsWith('.')).length;
  await waitFor('a scheduled backup', () => fs.readdirSync(dir).filter((f) => !f.startsWith('.')).length > before, 75_000);
  assert.match(daemon.logs(), /"service_backup_made".*"service":"db"/);
  assert.equal(daemon.cli(['postgres:backup-unschedule', 'db']).code, 0);
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
