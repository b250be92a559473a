// The local service images (scripts/provision.sh) keep the official images' contract: run with
// the official environment on a named volume, reached from this machine with the real psql and
// redis-cli at the container's address, their data still there after a restart and in a new
// container on the same volume; an uninitialised Postgres without a password refuses to start.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import { DockerEngine } from '../src/orchestrator/docker-engine.ts';
import { APP_CAPABILITIES, type ContainerSpec } from '../src/orchestrator/engine.ts';
import { POSTGRES_TEST_IMAGE, REDIS_TEST_IMAGE, until } from './helpers/services.ts';

const exec = promisify(execFile);
const PREFIX = `berth-test-svcimg-${process.pid}`;
const NETWORK = `${PREFIX}-net`;
let engine: DockerEngine;
const containers: string[] = [];
const volumes: string[] = [];

before(async () => {
  engine = await DockerEngine.connect(process.env.DOCKER_HOST ?? '/var/run/docker.sock', `test-svcimg-${process.pid}`);
  for (const image of [POSTGRES_TEST_IMAGE, REDIS_TEST_IMAGE]) {
    assert.ok(await engine.imageExists(image), `${image} is missing: run scripts/provision.sh`);
  }
  await engine.ensureNetwork(NETWORK);
});

after(async () => {
  for (const id of containers) await engine.stopAndRemove(id, 0).catch(() => {});
  for (const v of volumes) await engine.removeVolume(v);
  await engine.removeNetwork(NETWORK);
});

/** A service container as berth runs one: its capabilities only, on the test network, its volume mounted. */
async function runService(name: string, image: string, volume: string, mount: string, env: Record<string, string>, cmd?: string[]) {
  await engine.ensureVolume(volume, {});
  if (!volumes.includes(volume)) volumes.push(volume);
  const spec: ContainerSpec = { name: `${PREFIX}-${name}`, image, env, labels: {}, network: NETWORK, aliases: [name], capabilities: APP_CAPABILITIES, binds: [`${volume}:${mount}`], ...(cmd ? { cmd } : {}) };
  const state = await engine.run(spec);
  containers.push(state.id);
  return state;
}

async function dockerRestart(id: string): Promise<string> {
  await exec('docker', ['restart', id]);
  const state = await engine.inspect(id);
  assert.ok(state.ip);
  return state.ip;
}


async function psql(ip: string, password: string, user: string, db: string, sql: string): Promise<string> {
  const { stdout } = await exec('psql', ['-h', ip, '-U', user, '-d', db, '-v', 'ON_ERROR_STOP=1', '-At', '-c', sql], { env: { ...process.env, PGPASSWORD: password, PGCONNECT_TIMEOUT: '3' } });
  return stdout.trim();
}

async function redisCli(ip: string, password: string, ...args: string[]): Promise<string> {
  const { stdout } = await exec('redis-cli', ['-h', ip, '--no-auth-warning', ...args], { env: { ...process.env, REDISCLI_AUTH: password } });
  return stdout.trim();
}

test('postgres: POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB make the role and database, a password login from this machine works and a wrong one fails, and rows survive a restart and a new container on the volume', async () => {
  const env = { POSTGRES_PASSWORD: 'pw-Ab3-secret', POSTGRES_USER: 'shopper', POSTGRES_DB: 'shop' };
  const volume = `${PREFIX}-pgdata`;
  const first = await runService('pg', POSTGRES_TEST_IMAGE, volume, '/var/lib/postgresql/data', env);
  await until('postgres accepts a password login', () => psql(first.ip!, env.POSTGRES_PASSWORD, 'shopper', 'shop', 'SELECT 1'));
  assert.equal(await psql(first.ip!, env.POSTGRES_PASSWORD, 'shopper', 'shop', "SELECT current_user || ' ' || current_database() || ' ' || pg_encoding_to_char(encoding) FROM pg_database WHERE datname = 'shop'"), 'shopper shop UTF8');
  await assert.rejects(psql(first.ip!, 'wrong', 'shopper', 'shop', 'SELECT 1'), /password authentication failed/);
  await psql(first.ip!, env.POSTGRES_PASSWORD, 'shopper', 'shop', "CREATE TABLE notes (body text); INSERT INTO notes VALUES ('kept')");
  const { stdout: owner } = await exec('docker', ['exec', first.id, 'stat', '-c', '%u', '/var/lib/postgresql/data']);
  assert.equal(owner.trim(), '999', 'the data directory belongs to the postgres user');

  const ip = await dockerRestart(first.id);
  await until('postgres is back after a restart', () => psql(ip, env.POSTGRES_PASSWORD, 'shopper', 'shop', 'SELECT 1'));
  assert.equal(await psql(ip, env.POSTGRES_PASSWORD, 'shopper', 'shop', 'SELECT body FROM notes'), 'kept');
  const { stdout: logs } = await exec('docker', ['logs', first.id], { maxBuffer: 16 * 1024 * 1024 }).then((r) => ({ stdout: r.stdout + r.stderr }));
  assert.match(logs, /received fast shutdown request/, 'docker stop shuts postgres down fast (STOPSIGNAL SIGINT)');
  assert.doesNotMatch(logs, /redo starts/, 'a stopped postgres needs no recovery when it starts again');

  // A new container on the same volume: the data dir is not initialised again, the old password holds.
  await engine.stopAndRemove(first.id);
  const second = await runService('pg2', POSTGRES_TEST_IMAGE, volume, '/var/lib/postgresql/data', { ...env, POSTGRES_PASSWORD: 'ignored-now' });
  await until('postgres starts on the existing volume', () => psql(second.ip!, env.POSTGRES_PASSWORD, 'shopper', 'shop', 'SELECT 1'));
  assert.equal(await psql(second.ip!, env.POSTGRES_PASSWORD, 'shopper', 'shop', 'SELECT body FROM notes'), 'kept');
});

test('postgres: an empty volume without POSTGRES_PASSWORD is refused with the reason; POSTGRES_HOST_AUTH_METHOD=trust allows it', async () => {
  const refused = await runService('pg-nopw', POSTGRES_TEST_IMAGE, `${PREFIX}-pgnopw`, '/var/lib/postgresql/data', {});
  const { code } = await engine.wait(refused.id);
  assert.equal(code, 1);
  assert.match(await engine.logs(refused.id), /no superuser password is given[\s\S]*POSTGRES_PASSWORD/);
  await engine.stopAndRemove(refused.id, 0);

  const trusted = await runService('pg-trust', POSTGRES_TEST_IMAGE, `${PREFIX}-pgtrust`, '/var/lib/postgresql/data', { POSTGRES_HOST_AUTH_METHOD: 'trust' });
  assert.equal(await until('a trusted postgres answers', () => psql(trusted.ip!, '', 'postgres', 'postgres', 'SELECT current_user')), 'postgres');
});

test('redis: options after the image name reach redis-server, the password guards it from this machine, and keys survive a restart and a new container on /data', async () => {
  const volume = `${PREFIX}-redisdata`;
  const cmd = ['--requirepass', 'pw-redis-secret', '--save', '60', '1'];
  const first = await runService('redis', REDIS_TEST_IMAGE, volume, '/data', {}, cmd);
  await until('redis answers', async () => assert.equal(await redisCli(first.ip!, 'pw-redis-secret', 'PING'), 'PONG'));
  assert.match(await redisCli(first.ip!, '', 'GET', 'x'), /NOAUTH/);
  assert.equal(await redisCli(first.ip!, 'pw-redis-secret', 'SET', 'greeting', 'kept'), 'OK');
  const { stdout: user } = await exec('docker', ['exec', first.id, 'sh', '-c', 'stat -c %u /data && cat /proc/1/status /proc/*/status | grep -c "^Uid:.*999"']);
  assert.match(user, /^999\n[1-9]/, 'redis runs as uid 999 and owns /data');

  const ip = await dockerRestart(first.id);
  assert.equal(await until('redis is back after a restart', () => redisCli(ip, 'pw-redis-secret', 'GET', 'greeting')), 'kept');

  await engine.stopAndRemove(first.id);
  const second = await runService('redis2', REDIS_TEST_IMAGE, volume, '/data', {}, cmd);
  assert.equal(await until('redis starts on the existing volume', async () => {
    const v = await redisCli(second.ip!, 'pw-redis-secret', 'GET', 'greeting');
    if (/LOADING/.test(v)) throw new Error(v);
    return v;
  }), 'kept');
});
