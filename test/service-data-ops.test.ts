// The data operations of backing services on real containers of the test images, run as the
// kinds configure them: export from one service streamed into the import of a second gives the
// same data; a backup, then the data dropped, then a restore brings it back; connect runs the
// client with SQL or commands piped in and on a terminal; a bad input changes nothing.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough, Readable, Writable } from 'node:stream';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import { isUserError } from '../src/errors.ts';
import { setLogSink } from '../src/log.ts';
import { DockerEngine } from '../src/orchestrator/docker-engine.ts';
import { BackupStore } from '../src/services/backups.ts';
import { backup, connect, exportData, importData, restore, waitReady, type ServiceHandle } from '../src/services/data-ops.ts';
import { serviceKind, type ServiceKind } from '../src/services/kinds/index.ts';
import { startTestService } from './helpers/services.ts';
import { tempDir } from './helpers/temp.ts';

setLogSink(() => {});
const exec = promisify(execFile);
const PREFIX = `berth-test-dataops-${process.pid}`;
const NETWORK = `${PREFIX}-net`;
let engine: DockerEngine;
const containers: string[] = [];
const volumes: string[] = [];

before(async () => {
  engine = await DockerEngine.connect(process.env.DOCKER_HOST ?? '/var/run/docker.sock', `test-dataops-${process.pid}`);
  await engine.ensureNetwork(NETWORK);
});

after(async () => {
  for (const id of containers) await engine.stopAndRemove(id, 0).catch(() => {});
  for (const v of volumes) await engine.removeVolume(v);
  await engine.removeNetwork(NETWORK);
});

function startService(kindName: string, name: string): Promise<ServiceHandle> {
  return startTestService(engine, serviceKind(kindName)!, name, { prefix: PREFIX, network: NETWORK, containers, volumes });
}

/** The client with `input` piped in; its output (a UserError when it exits non-zero). */
async function client(handle: ServiceHandle, input: string): Promise<string> {
  let out = '';
  let err = '';
  const code = await connect(handle, { stdin: Readable.from([Buffer.from(input)]), stdout: (d) => void (out += d.toString()), stderr: (d) => void (err += d.toString()) });
  if (code !== 0) throw new Error(`the client exited with ${code}: ${err}`);
  return out;
}

const sql = (handle: ServiceHandle, text: string) => client(handle, `\\set QUIET on\n\\pset tuples_only on\n\\pset format unaligned\n${text}\n`).then((o) => o.trim());

async function exportInto(handle: ServiceHandle, file: string): Promise<number> {
  const out = fs.createWriteStream(file);
  const bytes = await exportData(handle, out);
  await new Promise<void>((resolve, reject) => out.end((e?: Error | null) => (e ? reject(e) : resolve())));
  return bytes;
}

test('postgres: an export streamed into the import of a second service gives the same rows; plain SQL imports too; a failing import changes nothing', async () => {
  const [a, b] = await Promise.all([startService('postgres', 'orders'), startService('postgres', 'orders-copy')]);
  await sql(a, "CREATE TABLE orders (id serial PRIMARY KEY, item text, qty int); INSERT INTO orders (item, qty) SELECT 'item ' || n, n FROM generate_series(1, 5000) n;");
  await sql(b, 'CREATE TABLE leftovers (x int); INSERT INTO leftovers VALUES (1);');

  const pipe = new PassThrough({ highWaterMark: 64 * 1024 });
  const [bytes] = await Promise.all([exportData(a, pipe).then((n) => (pipe.end(), n)), importData(b, pipe)]);
  assert.ok(bytes > 1000, `the dump had ${bytes} bytes`);
  assert.equal(await sql(b, 'SELECT count(*), sum(qty), max(item) FROM orders;'), '5000|12502500|item 999');
  assert.equal(await sql(b, "SELECT count(*) FROM pg_tables WHERE tablename = 'leftovers';"), '1', 'tables the dump does not have are left alone, as pg_restore --clean does');
  // Imported again over itself: --clean --if-exists replaces, no duplicates.
  const file = path.join(tempDir('pg-export'), 'orders.dump');
  await exportInto(a, file);
  assert.equal(fs.readFileSync(file).subarray(0, 5).toString(), 'PGDMP');
  await importData(b, fs.createReadStream(file));
  assert.equal(await sql(b, 'SELECT count(*) FROM orders;'), '5000');

  await importData(b, Readable.from([Buffer.from("CREATE TABLE notes (body text); INSERT INTO notes VALUES ('plain sql');\n")]));
  assert.equal(await sql(b, 'SELECT body FROM notes;'), 'plain sql');

  await assert.rejects(importData(b, Readable.from([Buffer.from("INSERT INTO notes VALUES ('half');\nTHIS IS NOT SQL;\n")])), (e: unknown) => {
    assert.ok(isUserError(e));
    assert.equal(e.code, 'service_import_failed');
    assert.match(e.message, /^import of postgres orders-copy failed: psql exited with status 3: .*syntax error at or near "THIS"/s);
    return true;
  });
  assert.equal(await sql(b, 'SELECT count(*) FROM notes;'), '1', 'the failed import ran in one transaction: nothing of it stayed');
  await assert.rejects(importData(b, Readable.from([])), (e: unknown) => isUserError(e) && e.code === 'service_import_empty');
  await assert.rejects(importData(b, Readable.from([Buffer.from([0x1f, 0x8b, 8, 0, 0, 0])])), (e: unknown) => isUserError(e) && e.code === 'service_import_compressed');
});

test('postgres: a plain-SQL import cut off mid-stream (its input broken, or its caller gone after the input ended) leaves the database as it was', async () => {
  const db = await startService('postgres', 'cutoff');
  await sql(db, 'CREATE TABLE t (i int); INSERT INTO t VALUES (10), (20), (30);');
  const partial = 'DROP TABLE t; CREATE TABLE t(i int); COPY t FROM stdin;\n1\n';
  // The input breaks part way (a dropped connection, a local Ctrl-C).
  const broken = new Readable({ read() {} });
  broken.push(Buffer.from(partial));
  setTimeout(() => broken.destroy(new Error('the connection dropped')), 300);
  await assert.rejects(importData(db, broken), /the connection dropped|cancelled|reading the input/);
  assert.equal(await sql(db, 'SELECT string_agg(i::text, \',\' ORDER BY i) FROM t;'), '10,20,30', 'nothing of the broken input was committed');
  // The input ends "normally" and then the caller goes away (ssh2 ends a dropped channel's stream before its close).
  const ended = Readable.from([Buffer.from(partial)]);
  const caller = new AbortController();
  ended.once('end', () => setImmediate(() => caller.abort(new Error('the client went away'))));
  await assert.rejects(importData(db, ended, { signal: caller.signal }), /the client went away|cancelled/);
  assert.equal(await sql(db, 'SELECT string_agg(i::text, \',\' ORDER BY i) FROM t;'), '10,20,30', 'nothing of the cut-off input was committed');
  const { stdout: left } = await exec('docker', ['exec', db.container, 'sh', '-c', 'ls -A /tmp']);
  assert.equal(left.trim(), '', 'no staged input left behind');
});

test('postgres: a backup, then DROP TABLE, then a restore of that backup brings the table back', async () => {
  const db = await startService('postgres', 'shop');
  await sql(db, "CREATE TABLE products (name text); INSERT INTO products VALUES ('lamp'), ('desk');");
  const store = new BackupStore(path.join(tempDir('pg-backups'), 'backups'), 2);
  const file = await backup(db, store);
  assert.match(file.name, /^shop-\d{8}-\d{6}\.dump$/);
  assert.equal(fs.statSync(file.path).mode & 0o777, 0o600);
  assert.equal(fs.statSync(store.dir).mode & 0o777, 0o700);
  assert.deepEqual((await store.list()).map((f) => f.name), [file.name]);

  await sql(db, 'DROP TABLE products;');
  assert.equal(await sql(db, "SELECT count(*) FROM pg_tables WHERE tablename = 'products';"), '0');
  await restore(db, store, file.name);
  assert.equal(await sql(db, 'SELECT string_agg(name, \',\' ORDER BY name) FROM products;'), 'desk,lamp');
  await assert.rejects(restore(db, store, 'shop-nope.dump'), (e: unknown) => isUserError(e) && e.code === 'backup_not_found');
});

test('postgres: an export whose output breaks fails with the output\'s error, and leaves no pg_dump behind in the container', async () => {
  const db = await startService('postgres', 'broken-out');
  await sql(db, "CREATE TABLE filler AS SELECT n, md5(n::text) AS body FROM generate_series(1, 200000) n;");
  let writes = 0;
  const out = new Writable({
    highWaterMark: 16 * 1024,
    write(_chunk, _enc, done) {
      if (++writes === 3) return done(new Error('no space left on the backup disk'));
      setTimeout(done, 5);
    },
  });
  await assert.rejects(exportData(db, out), /no space left on the backup disk/);
  let ps = '';
  for (let i = 0; i < 20; i++) {
    ps = '';
    await db.engine.exec(db.container, { cmd: ['ps', '-o', 'args'], onStdout: (d) => void (ps += d.toString()), onStderr: () => {} });
    if (!ps.includes('pg_dump')) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.doesNotMatch(ps, /pg_dump/);
  assert.equal(await sql(db, 'SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = \'filler\';'), '0', 'no lock held on the table');
});

test('postgres: connect runs psql on a terminal, and its exit status is the client\'s', async () => {
  const db = await startService('postgres', 'term');
  let out = '';
  // Typed once the prompt shows, as a person would (the terminal's size is set by then).
  const typed = new PassThrough();
  let sent = false;
  const code = await connect(db, {
    stdin: typed,
    terminal: { term: 'xterm', rows: 24, cols: 80, onResize: () => {} },
    stdout: (d) => {
      out += d.toString();
      if (!sent && out.includes('term=#')) {
        sent = true;
        setTimeout(() => typed.write('SELECT 40 + 2 AS answer;\n\\q\n'), 200);
      }
    },
    stderr: () => assert.fail('a terminal has one stream'),
  });
  assert.equal(code, 0);
  assert.match(out, /term=#/, 'the prompt names the database');
  assert.match(out, /answer[\s\S]*42/);
  const failed = await connect(db, { stdin: Readable.from([Buffer.from('SELECT nope;\n')]), stdout: () => {}, stderr: () => {} });
  assert.notEqual(failed, 0, 'ON_ERROR_STOP: a failing statement fails the client');
});

test('redis: an export imported into a second service gives the same keys (the RDB file replaced, the server restarted); a backup, FLUSHALL, restore brings them back; a bad input changes nothing', async () => {
  const [a, b] = await Promise.all([startService('redis', 'cache'), startService('redis', 'cache-copy')]);
  assert.equal((await client(a, 'CONFIG GET save\n')).trim().split('\n').pop(), '60 1', 'a snapshot a minute after a change');
  await client(a, 'SET greeting hello\nRPUSH queue one two three\nHSET user:1 name ada\n');
  await client(b, 'SET stale yes\n');

  const pipe = new PassThrough();
  await Promise.all([exportData(a, pipe).then(() => pipe.end()), importData(b, pipe)]);
  assert.equal((await client(b, 'GET greeting\n')).trim(), 'hello');
  assert.equal((await client(b, 'LRANGE queue 0 -1\n')).trim(), 'one\ntwo\nthree');
  assert.equal((await client(b, 'HGET user:1 name\n')).trim(), 'ada');
  assert.equal((await client(b, 'EXISTS stale\n')).trim(), '0', 'the import replaced the data');
  assert.equal((await client(b, 'CONFIG GET save\n')).trim().split('\n').pop(), '60 1', 'snapshots are back on after the restart');

  const store = new BackupStore(path.join(tempDir('redis-backups'), 'backups'));
  const file = await backup(b, store);
  assert.match(file.name, /^cache-copy-\d{8}-\d{6}\.rdb$/);
  assert.equal(fs.readFileSync(file.path).subarray(0, 5).toString(), 'REDIS');
  await client(b, 'FLUSHALL\n');
  assert.equal((await client(b, 'DBSIZE\n')).trim(), '0');
  await restore(b, store, file.name);
  assert.equal((await client(b, 'DBSIZE\n')).trim(), '3');
  assert.equal((await client(b, 'GET greeting\n')).trim(), 'hello');

  const before = (await exec('docker', ['inspect', '-f', '{{.State.StartedAt}}', b.container])).stdout;
  await assert.rejects(importData(b, Readable.from([Buffer.from('REDIS0010 this is not an RDB file')])), (e: unknown) => isUserError(e) && e.code === 'service_import_invalid' && /redis cache-copy is unchanged/.test(e.message));
  assert.equal((await exec('docker', ['inspect', '-f', '{{.State.StartedAt}}', b.container])).stdout, before, 'not restarted');
  assert.equal((await client(b, 'DBSIZE\n')).trim(), '3');
  const { stdout: left } = await exec('docker', ['exec', b.container, 'ls', '-A', '/data']);
  assert.deepEqual(left.trim().split('\n').sort(), ['appendonlydir', 'dump.rdb'], 'the rejected input was removed, and the previous data of the import before it too');
});

test('redis: a write acknowledged a second before the server is killed (SIGKILL, no snapshot) is there after its restart', async () => {
  const db = await startService('redis', 'durable');
  await client(db, 'SET survivor yes\n');
  await new Promise((resolve) => setTimeout(resolve, 1500));
  await exec('docker', ['kill', '-s', 'KILL', db.container]);
  await exec('docker', ['start', db.container]);
  await waitReady(db.engine, db.container, db.kind, db.service, { timeoutMs: 60_000 });
  assert.equal((await client(db, 'GET survivor\n')).trim(), 'yes');
  // An import replaces it, and the append-only file goes on from the imported data.
  const source = await startService('redis', 'durable-source');
  await client(source, 'SET imported 1\n');
  const pipe = new PassThrough();
  await Promise.all([exportData(source, pipe).then(() => pipe.end()), importData(db, pipe)]);
  await client(db, 'SET after-import 2\n');
  await new Promise((resolve) => setTimeout(resolve, 1500));
  await exec('docker', ['kill', '-s', 'KILL', db.container]);
  await exec('docker', ['start', db.container]);
  await waitReady(db.engine, db.container, db.kind, db.service, { timeoutMs: 60_000 });
  assert.equal((await client(db, 'EXISTS survivor\n')).trim(), '0', 'the import replaced what was before');
  assert.equal((await client(db, 'GET imported\n')).trim(), '1');
  assert.equal((await client(db, 'GET after-import\n')).trim(), '2', 'what came after the import is in its append-only file');
});

test('the kinds give the URL an app gets, and their version commands print the server\'s version', async () => {
  const pg = serviceKind('postgres') as ServiceKind;
  const redis = serviceKind('redis') as ServiceKind;
  const s = { kind: 'postgres', name: 'shop', password: 'p@ss/word' };
  assert.equal(pg.url(s, 'berth-postgres-shop'), 'postgres://postgres:p%40ss%2Fword@berth-postgres-shop:5432/shop');
  assert.equal(redis.url({ ...s, kind: 'redis' }, 'berth-redis-shop'), 'redis://:p%40ss%2Fword@berth-redis-shop:6379');
  for (const kind of [pg, redis]) {
    const handle = await startService(kind.name, 'version');
    const command = kind.versionCommand(handle.service);
    let out = '';
    const { code } = await engine.exec(handle.container, { cmd: command.cmd, ...(command.env ? { env: command.env } : {}), onStdout: (d) => void (out += d.toString()), onStderr: () => {} });
    assert.equal(code, 0);
    assert.match(out.trim(), kind.name === 'postgres' ? /^15\.\d+ \(Debian/ : /^7\.\d+\.\d+$/);
  }
});
