// The backing services' test parts: the local Postgres and Redis images scripts/provision.sh
// builds (Debian's packages behind the official images' entrypoint contract), and the fixture
// app that writes and reads through DATABASE_URL and REDIS_URL.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { APP_CAPABILITIES, type Engine } from '../../src/orchestrator/engine.ts';
import { waitReady, type ServiceHandle } from '../../src/services/data-ops.ts';
import type { ServiceKind } from '../../src/services/kinds/kind.ts';
import { sleep } from '../../src/sleep.ts';
import { BASE_IMAGE, run } from './daemon.ts';

/** `berth serve --postgres-image` in tests. */
export const POSTGRES_TEST_IMAGE = process.env.BERTH_TEST_POSTGRES_IMAGE ?? 'berth-test/postgres:15';
/** `berth serve --redis-image` in tests. */
export const REDIS_TEST_IMAGE = process.env.BERTH_TEST_REDIS_IMAGE ?? 'berth-test/redis:7';
/** What the fixture app's Dockerfile builds FROM (it has node). */
export const FIXTURE_BASE_IMAGE = BASE_IMAGE;

/**
 * Writes the services fixture app into `dir`: a Node web app on $PORT (built FROM the base
 * image) that uses the `pg` and `redis` packages, copied with their dependency closure from
 * the repository's node_modules. What it answers:
 * - `GET /health`: 200 `ok`.
 * - `GET /pg/write?v=X`: inserts X as a row of `fixture_rows` (made when missing); 200 `{"id":N}`.
 * - `GET /pg/read`: 200, the rows' values in insertion order as a JSON array (`[]` with no table).
 * - `GET /redis/set?v=X[&k=KEY]`: sets KEY (default `fixture`); 200 `"OK"`.
 * - `GET /redis/get[?k=KEY]`: 200, its value as JSON (`null` when unset).
 * Each of them answers 503 with the error's text when DATABASE_URL / REDIS_URL is missing or
 * the service does not answer within 3 s. Returns `dir`.
 */
export function serviceFixtureApp(dir: string): string {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'Dockerfile'), `FROM ${FIXTURE_BASE_IMAGE}\nCOPY . /app\nWORKDIR /app\nCMD ["node", "/app/server.js"]\n`);
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'berth-services-fixture', private: true, dependencies: { pg: packageVersion('pg'), redis: packageVersion('redis') } }, null, 2) + '\n');
  fs.writeFileSync(path.join(dir, 'server.js'), FIXTURE_SERVER);
  copyPackageClosure(['pg', 'redis'], path.join(dir, 'node_modules'));
  return dir;
}

const REPO = path.resolve(import.meta.dirname, '..', '..');

function packageVersion(name: string): string {
  return (JSON.parse(fs.readFileSync(path.join(REPO, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
}

/**
 * Copies each package and everything it needs at run time (dependencies, and the optional ones
 * that are installed) as Node would resolve them from the repository, into `target`; type
 * declarations, source maps and docs are left out.
 */
function copyPackageClosure(names: string[], target: string): void {
  const top = path.join(REPO, 'node_modules');
  const seen = new Set<string>();
  const visit = (name: string, from: string, optional: boolean) => {
    const dir = resolvePackage(name, from);
    if (!dir) {
      if (optional) return;
      throw new Error(`the services fixture needs ${name}, which is not installed (npm ci)`);
    }
    if (seen.has(dir)) return;
    seen.add(dir);
    const rel = path.relative(top, dir);
    // A package nested in another's node_modules comes along with that one.
    if (!rel.includes(`node_modules${path.sep}`)) {
      fs.cpSync(dir, path.join(target, rel), { recursive: true, dereference: true, filter: (src) => !/(\.d\.[cm]?ts|\.ts|\.map|\.md)$/.test(src) });
    }
    const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { dependencies?: Record<string, string>; optionalDependencies?: Record<string, string> };
    for (const dep of Object.keys(pkg.dependencies ?? {})) visit(dep, dir, false);
    for (const dep of Object.keys(pkg.optionalDependencies ?? {})) visit(dep, dir, true);
  };
  for (const name of names) visit(name, REPO, false);
}

/** The folder `require(name)` from a file in `from` would load the package from. */
function resolvePackage(name: string, from: string): string | undefined {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'node_modules', name);
    if (fs.existsSync(path.join(candidate, 'package.json'))) return candidate;
    if (path.dirname(dir) === dir) return undefined;
  }
}

const FIXTURE_SERVER = String.raw`// The berth services fixture: writes and reads a row through DATABASE_URL and a key through
// REDIS_URL; 503 with the reason when a URL is missing or its service does not answer.
const http = require('node:http');
const { Pool } = require('pg');
const { createClient } = require('redis');

const TIMEOUT_MS = 3000;
let pool;
let redis;

function within(promise, what, lastError, ms = TIMEOUT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => {
      const why = lastError && lastError();
      reject(new Error(what + ' did not answer within ' + ms / 1000 + ' s' + (why ? ': ' + why.message : '')));
    }, ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function pgPool() {
  if (!process.env.DATABASE_URL) throw new Error('DATABASE_URL is not set');
  if (!pool) {
    pool = new Pool({ connectionString: process.env.DATABASE_URL, connectionTimeoutMillis: TIMEOUT_MS, query_timeout: TIMEOUT_MS, max: 4 });
    pool.on('error', (e) => console.error('postgres: ' + e.message));
  }
  return pool;
}

async function redisClient() {
  if (!process.env.REDIS_URL) throw new Error('REDIS_URL is not set');
  if (!redis) {
    const client = createClient({ url: process.env.REDIS_URL, disableOfflineQueue: true, socket: { connectTimeout: TIMEOUT_MS, reconnectStrategy: (n) => Math.min(100 * n, 1000) } });
    redis = { client, connecting: client.connect(), error: undefined };
    const current = redis;
    client.on('error', (e) => {
      current.error = e;
      console.error('redis: ' + e.message);
    });
    redis.connecting.catch(() => {
      // A client whose first connection failed is dropped: the next request makes a new one.
      if (redis && redis.client === client) redis = undefined;
      client.destroy();
    });
  }
  const current = redis;
  if (!current.client.isReady) await within(current.connecting, 'redis', () => current.error);
  return current.client;
}

async function pgWrite(v) {
  const insert = () => pgPool().query('INSERT INTO fixture_rows (v) VALUES ($1) RETURNING id', [v]);
  try {
    return (await insert()).rows[0];
  } catch (e) {
    if (e.code !== '42P01') throw e;
    try {
      await pgPool().query('CREATE TABLE IF NOT EXISTS fixture_rows (id serial PRIMARY KEY, v text NOT NULL)');
    } catch (raced) {
      // Two first writes at once: the other one made it.
      if (raced.code !== '23505' && raced.code !== '42P07') throw raced;
    }
    return (await insert()).rows[0];
  }
}

async function pgRead() {
  try {
    return (await pgPool().query('SELECT v FROM fixture_rows ORDER BY id')).rows.map((r) => r.v);
  } catch (e) {
    if (e.code === '42P01') return [];
    throw e;
  }
}

const routes = {
  '/health': async () => 'ok',
  '/pg/write': async (q) => pgWrite(q.get('v') ?? ''),
  '/pg/read': async () => pgRead(),
  '/redis/set': async (q) => (await redisClient()).set(q.get('k') ?? 'fixture', q.get('v') ?? ''),
  '/redis/get': async (q) => (await redisClient()).get(q.get('k') ?? 'fixture'),
};

http
  .createServer(async (req, res) => {
    const url = new URL(req.url, 'http://fixture');
    const route = routes[url.pathname];
    if (!route) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      return res.end('not found\n');
    }
    try {
      // The services' own waits end first, with their reasons; this one catches anything else.
      const result = await within(route(url.searchParams), url.pathname.split('/')[1], undefined, 2 * TIMEOUT_MS);
      if (url.pathname === '/health') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        return res.end('ok\n');
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(result ?? null));
    } catch (e) {
      res.writeHead(503, { 'content-type': 'text/plain' });
      res.end(String((e && e.message) || e) + '\n');
    }
  })
  .listen(Number(process.env.PORT || 5000), '0.0.0.0');
`;

/**
 * Starts a container of the test image of `kind` as the kind configures it (environment,
 * command, its volume at the kind's data dir, the capabilities berth gives a service) on
 * `network`, and waits until it accepts connections; what a test needs to act on it. The
 * container and volume are named PREFIX-KIND-NAME; the caller removes them (`containers`,
 * `volumes` get their names).
 */
export async function startTestService(
  engine: Engine,
  kind: ServiceKind,
  name: string,
  options: { prefix: string; network: string; containers: string[]; volumes: string[] },
): Promise<ServiceHandle> {
  const service = { kind: kind.name, name, password: randomBytes(24).toString('base64url') };
  const volume = `${options.prefix}-${kind.name}-${name}`;
  await engine.ensureVolume(volume, {});
  options.volumes.push(volume);
  const cmd = kind.containerCommand(service);
  const state = await engine.run({
    name: `${options.prefix}-${kind.name}-${name}`,
    image: kind.name === 'postgres' ? POSTGRES_TEST_IMAGE : REDIS_TEST_IMAGE,
    env: Object.fromEntries(kind.containerEnv(service).map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)])),
    labels: {},
    network: options.network,
    aliases: [`berth-${kind.name}-${name}`],
    capabilities: APP_CAPABILITIES,
    binds: [`${volume}:${kind.dataDir}`],
    ...(cmd ? { cmd } : {}),
  });
  options.containers.push(state.id);
  await waitReady(engine, state.id, kind, service, { timeoutMs: 120_000 });
  return {
    engine,
    container: state.id,
    kind,
    service,
    // What the service manager does: the container stopped and started, then ready again.
    restart: async () => {
      await promisify(execFile)('docker', ['restart', state.id]);
      await waitReady(engine, state.id, kind, service, { timeoutMs: 120_000 });
      return state.id;
    },
    current: async () => state.id,
  };
}

/**
 * Whatever a failed test left of a daemon's instance: its containers (services included), volumes
 * and networks, found by their `berth.instance` label.
 */
export function removeInstanceObjects(instance: string): void {
  const labelled = (list: string[]) => run('docker', [...list, '-q', '--filter', `label=berth.instance=${instance}`]).stdout.split('\n').filter(Boolean);
  const ids = labelled(['ps', '-a']);
  if (ids.length) run('docker', ['rm', '-f', ...ids]);
  const volumes = labelled(['volume', 'ls']);
  if (volumes.length) run('docker', ['volume', 'rm', '-f', ...volumes]);
  const networks = labelled(['network', 'ls']);
  if (networks.length) run('docker', ['network', 'rm', ...networks]);
}

/** `probe`'s answer once it stops throwing, trying every 250 ms; its last error after `timeoutMs`. */
export async function until<T>(what: string, probe: () => Promise<T>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await probe();
    } catch (e) {
      if (Date.now() > deadline) throw new Error(`${what} within ${timeoutMs / 1000} s: ${(e as Error).message}`, { cause: e });
      await sleep(250);
    }
  }
}
