// The services fixture app (test/helpers/services.ts) as a container next to a Postgres and a
// Redis container of the test images on one network, no berth involved: it writes and reads a
// row and a key through DATABASE_URL and REDIS_URL, and answers 503 with the reason when a URL
// is missing or its service is unreachable.
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { DockerEngine } from '../src/orchestrator/docker-engine.ts';
import { APP_CAPABILITIES } from '../src/orchestrator/engine.ts';
import { makeTar } from '../src/orchestrator/tar-files.ts';
import { POSTGRES_TEST_IMAGE, REDIS_TEST_IMAGE, until, serviceFixtureApp } from './helpers/services.ts';
import { tempDir } from './helpers/temp.ts';

const PREFIX = `berth-test-fixture-${process.pid}`;
const NETWORK = `${PREFIX}-net`;
const IMAGE = `${PREFIX}:latest`;
const PG_PASSWORD = 'fixture-pg-password';
const REDIS_PASSWORD = 'fixture-redis-password';
const DATABASE_URL = `postgres://postgres:${PG_PASSWORD}@fixture-pg:5432/shop`;
const REDIS_URL = `redis://:${REDIS_PASSWORD}@fixture-redis:6379`;
let engine: DockerEngine;
const containers: string[] = [];
const volumes = [`${PREFIX}-pg`, `${PREFIX}-redis`];

before(async () => {
  engine = await DockerEngine.connect(process.env.DOCKER_HOST ?? '/var/run/docker.sock', `test-fixture-${process.pid}`);
  await engine.ensureNetwork(NETWORK);
  const dir = serviceFixtureApp(path.join(tempDir('fixture'), 'app'));
  await engine.build({ context: makeTar([{ name: '.', type: 'tree', from: dir }]), tag: IMAGE, onLine: () => {}, cacheFrom: [], network: 'bridge' });
  for (const v of volumes) await engine.ensureVolume(v, {});
  await start('fixture-pg', POSTGRES_TEST_IMAGE, { POSTGRES_PASSWORD: PG_PASSWORD, POSTGRES_DB: 'shop' }, [`${volumes[0]}:/var/lib/postgresql/data`]);
  await start('fixture-redis', REDIS_TEST_IMAGE, {}, [`${volumes[1]}:/data`], ['redis-server', '--requirepass', REDIS_PASSWORD]);
});

after(async () => {
  for (const id of containers) await engine.stopAndRemove(id, 0).catch(() => {});
  for (const v of volumes) await engine.removeVolume(v);
  await engine.removeNetwork(NETWORK);
  await engine.removeImage(IMAGE);
});

async function start(alias: string, image: string, env: Record<string, string>, binds: string[] = [], cmd?: string[]) {
  const state = await engine.run({ name: `${PREFIX}-${alias}`, image, env, labels: {}, network: NETWORK, aliases: [alias], capabilities: APP_CAPABILITIES, binds, ...(cmd ? { cmd } : {}) });
  containers.push(state.id);
  return state;
}

async function app(name: string, env: Record<string, string>): Promise<string> {
  const state = await start(name, IMAGE, { PORT: '5000', ...env });
  await until(`${name} answers /health`, async () => assert.equal((await get(state.ip!, '/health')).status, 200));
  return state.ip!;
}

function get(ip: string, urlPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: ip, port: 5000, path: urlPath, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${urlPath} timed out`)));
    req.on('error', reject);
  });
}


test('the fixture writes and reads rows through DATABASE_URL and a key through REDIS_URL', async () => {
  const ip = await app('fixture-app', { DATABASE_URL, REDIS_URL });
  await until('the fixture reaches postgres', async () => assert.equal((await get(ip, '/pg/read')).status, 200));
  assert.equal((await get(ip, '/pg/read')).body, '[]', 'no table yet: no rows');
  const writes = await Promise.all(['first', 'second'].map((v) => get(ip, `/pg/write?v=${v}`)));
  assert.deepEqual(writes.map((w) => w.status), [200, 200], writes.map((w) => w.body).join(' '));
  assert.deepEqual(JSON.parse((await get(ip, '/pg/read')).body).sort(), ['first', 'second']);

  assert.equal((await get(ip, '/redis/get')).body, 'null');
  assert.deepEqual(await get(ip, '/redis/set?v=hello%20redis'), { status: 200, body: '"OK"' });
  assert.deepEqual(await get(ip, '/redis/get'), { status: 200, body: '"hello redis"' });
  assert.deepEqual(await get(ip, '/redis/set?k=other&v=2'), { status: 200, body: '"OK"' });
  assert.deepEqual(await get(ip, '/redis/get?k=other'), { status: 200, body: '"2"' });
});

test('the fixture answers 503 with the reason when a URL is missing or its service does not answer', async () => {
  const bare = await app('fixture-bare', {});
  assert.deepEqual(await get(bare, '/pg/read'), { status: 503, body: 'DATABASE_URL is not set\n' });
  assert.deepEqual(await get(bare, '/redis/get'), { status: 503, body: 'REDIS_URL is not set\n' });

  // Names that resolve to nothing on this network, and a wrong password.
  const lost = await app('fixture-lost', { DATABASE_URL: `postgres://postgres:${PG_PASSWORD}@fixture-nowhere:5432/shop`, REDIS_URL: `redis://:wrong@fixture-redis:6379` });
  const pg = await get(lost, '/pg/write?v=x');
  assert.equal(pg.status, 503);
  assert.match(pg.body, /fixture-nowhere|ENOTFOUND|EAI_AGAIN|did not answer/);
  const redis = await get(lost, '/redis/set?v=x');
  assert.equal(redis.status, 503);
  assert.match(redis.body, /WRONGPASS|invalid username-password/i);
  assert.equal((await get(lost, '/health')).status, 200, 'the app itself keeps answering');
});
