// Backing services on the real binary and the real Docker engine: postgres and redis created from
// the local test images, their containers, volumes and passwords; info, list, logs, restart and
// destroy; the password in no log; a dead service brought back; adoption by a restarted daemon.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { startDaemon, tempDir, waitFor, type Daemon } from './helpers/daemon.ts';
import { POSTGRES_TEST_IMAGE as POSTGRES_IMAGE, REDIS_TEST_IMAGE as REDIS_IMAGE, removeInstanceObjects } from './helpers/services.ts';
const SERVICE_FLAGS = ['--postgres-image', POSTGRES_IMAGE, '--redis-image', REDIS_IMAGE];

let daemon: Daemon;
const dataDir = tempDir('e2e-services');

function docker(args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync('docker', args, { encoding: 'utf8' });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function containerOf(kind: string, name: string): string {
  return `berth-${daemon.instance}-svc-${kind}-${name}`;
}

function passwordOf(kind: string, name: string): string {
  return fs.readFileSync(path.join(dataDir, 'services', kind, name, 'secret'), 'utf8').trim();
}

/** SQL through psql inside the service container, as the service's own user. */
function psql(name: string, sql: string): string {
  const r = docker(['exec', '-e', `PGPASSWORD=${passwordOf('postgres', name)}`, containerOf('postgres', name), 'psql', '-h', '127.0.0.1', '-U', 'postgres', '-d', name, '-tAc', sql]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

before(async () => {
  daemon = await startDaemon({ dataDir, args: SERVICE_FLAGS });
});

after(async () => {
  await daemon?.stop();
  // Whatever a failed test left: this daemon's service containers, volumes and networks.
  if (daemon) removeInstanceObjects(daemon.instance);
});

test('postgres:create starts a labelled container on a named volume with a generated password kept 0600, and waits until it accepts connections', () => {
  const created = daemon.cli(['postgres:create', 'db', '--memory', '256m']);
  assert.equal(created.code, 0, created.stderr);
  assert.match(created.stdout, /postgres service db accepts connections \(\d+\.\d s\)/);
  const password = passwordOf('postgres', 'db');
  assert.ok(password.length >= 32 && /^[A-Za-z0-9_-]+$/.test(password), 'a url-safe password of 32+ characters');
  assert.equal(fs.statSync(path.join(dataDir, 'services', 'postgres', 'db', 'secret')).mode & 0o777, 0o600);
  assert.equal(fs.statSync(path.join(dataDir, 'services', 'postgres', 'db')).mode & 0o777, 0o700);
  const inspect = JSON.parse(docker(['inspect', containerOf('postgres', 'db')]).stdout)[0];
  assert.equal(inspect.Config.Labels['berth.service'], 'postgres/db');
  assert.equal(inspect.Config.Image, POSTGRES_IMAGE);
  assert.equal(inspect.HostConfig.Memory, 256 * 1024 ** 2);
  assert.deepEqual(inspect.HostConfig.PortBindings ?? {}, {}, 'no host port');
  assert.ok(inspect.Mounts.some((m: { Type: string; Name: string }) => m.Type === 'volume' && m.Name === `${containerOf('postgres', 'db')}-data`));
  assert.equal(psql('db', 'select 1'), '1');
  assert.doesNotMatch(JSON.stringify(JSON.parse(fs.readFileSync(path.join(dataDir, 'state', 'services.json'), 'utf8'))), new RegExp(password));
});

test('postgres:info shows status, version, volume and the URL with the password hidden unless --show-password', () => {
  const info = daemon.cli(['postgres:info', 'db']);
  assert.equal(info.code, 0, info.stderr);
  const password = passwordOf('postgres', 'db');
  assert.doesNotMatch(info.stdout, new RegExp(password));
  assert.match(info.stdout, /Status:\s+running/);
  assert.match(info.stdout, new RegExp(`Version:\\s+\\d+\\.\\d+.* \\(${POSTGRES_IMAGE}\\)`), 'the server\'s own version, and its image');
  assert.match(info.stdout, new RegExp(`Volume:\\s+${containerOf('postgres', 'db')}-data`));
  assert.match(info.stdout, /URL:\s+postgres:\/\/postgres:\*\*\*@berth-postgres-db:5432\/db/);
  const shown = daemon.cli(['postgres:info', 'db', '--show-password']);
  assert.match(shown.stdout, new RegExp(`postgres://postgres:${password}@berth-postgres-db:5432/db`));
  const list = daemon.cli(['postgres:list']);
  assert.match(list.stdout, new RegExp(`^db\\s+running\\s+${POSTGRES_IMAGE}\\s+-$`, 'm'));
});

test('redis:create makes a redis service the same way, and redis:logs shows its output', () => {
  const created = daemon.cli(['redis:create', 'cache']);
  assert.equal(created.code, 0, created.stderr);
  const ping = docker(['exec', containerOf('redis', 'cache'), 'redis-cli', '-a', passwordOf('redis', 'cache'), '--no-auth-warning', 'ping']);
  assert.equal(ping.stdout.trim(), 'PONG');
  const logs = daemon.cli(['redis:logs', 'cache']);
  assert.equal(logs.code, 0, logs.stderr);
  assert.match(logs.stdout, /Ready to accept connections/i);
  assert.doesNotMatch(daemon.cli(['redis:info', 'cache']).stdout, new RegExp(passwordOf('redis', 'cache')));
});

test('rows survive postgres:restart, and a service container that dies is brought back with its data', async () => {
  psql('db', 'create table kept (v text); insert into kept values (\'before restart\')');
  const restarted = daemon.cli(['postgres:restart', 'db']);
  assert.equal(restarted.code, 0, restarted.stderr);
  assert.equal(psql('db', 'select v from kept'), 'before restart');
  // Killed from outside (as the OOM killer would): the engine's restart policy brings it back.
  const pid = docker(['inspect', '-f', '{{.State.Pid}}', containerOf('postgres', 'db')]).stdout.trim();
  assert.equal(spawnSync('kill', ['-9', pid]).status, 0);
  await waitFor('postgres to come back', () => {
    const r = docker(['exec', '-e', `PGPASSWORD=${passwordOf('postgres', 'db')}`, containerOf('postgres', 'db'), 'psql', '-h', '127.0.0.1', '-U', 'postgres', '-d', 'db', '-tAc', 'select v from kept']);
    return r.code === 0 && r.stdout.trim() === 'before restart';
  }, 60_000);
});

test('a restarted daemon adopts the running service, and recreates a removed container on its volume', async () => {
  const before = docker(['inspect', '-f', '{{.Id}}', containerOf('postgres', 'db')]).stdout.trim();
  await daemon.stop();
  docker(['rm', '-f', containerOf('redis', 'cache')]);
  daemon = await startDaemon({ dataDir, args: SERVICE_FLAGS });
  await waitFor('the services to be adopted', () => /"service_adopted".*redis\/cache/.test(daemon.logs()), 60_000);
  assert.equal(docker(['inspect', '-f', '{{.Id}}', containerOf('postgres', 'db')]).stdout.trim(), before, 'the running container is kept');
  assert.equal(psql('db', 'select v from kept'), 'before restart');
  await waitFor('redis to accept connections', () => docker(['exec', containerOf('redis', 'cache'), 'redis-cli', '-a', passwordOf('redis', 'cache'), '--no-auth-warning', 'ping']).stdout.trim() === 'PONG', 30_000);
});

test('bad input is refused with a clear message and changes nothing', () => {
  const badName = daemon.cli(['postgres:create', 'Bad_Name']);
  assert.equal(badName.code, 1);
  assert.match(badName.stderr, /invalid service name/);
  const twice = daemon.cli(['postgres:create', 'db']);
  assert.equal(twice.code, 1);
  assert.match(twice.stderr, /a postgres service named "db" already exists/);
  const missing = daemon.cli(['postgres:info', 'nope']);
  assert.match(missing.stderr, /no postgres service named "nope"/);
  const noForce = daemon.cli(['redis:destroy', 'cache']);
  assert.equal(noForce.code, 2);
  assert.match(noForce.stderr, /give --force/);
  const badImage = daemon.cli(['redis:create', 'other', '--image', 'berth-test/no-such-image:1']);
  assert.equal(badImage.code, 1);
  assert.match(badImage.stderr, /could not pull berth-test\/no-such-image:1/);
  assert.doesNotMatch(daemon.cli(['redis:list']).stdout, /other/);
  assert.equal(docker(['volume', 'inspect', `${containerOf('redis', 'other')}-data`]).code, 1, 'no volume is left');
});

test('destroy removes the container, the volume and the password', () => {
  const destroyed = daemon.cli(['redis:destroy', 'cache', '--force']);
  assert.equal(destroyed.code, 0, destroyed.stderr);
  assert.equal(docker(['inspect', containerOf('redis', 'cache')]).code, 1);
  assert.equal(docker(['volume', 'inspect', `${containerOf('redis', 'cache')}-data`]).code, 1);
  assert.equal(fs.existsSync(path.join(dataDir, 'services', 'redis', 'cache')), false);
  assert.match(daemon.cli(['redis:list']).stdout, /no redis services/);
});

test("no service's password is in the daemon's log", () => {
  assert.doesNotMatch(daemon.logs(), new RegExp(passwordOf('postgres', 'db')));
});
