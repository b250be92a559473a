// bench:services — backing services' figures on this machine, on containers of the local test
// image (berth-test/postgres:15) run as the postgres kind configures them: the time from a
// container created on an empty volume to accepting connections, and the export and import
// times of a database of about 100 MB (export to a file, import from that file, and an export
// streamed straight into the import of a second service), through the same data operations
// the postgres:export and postgres:import commands run.
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { setLogSink } from '../src/log.ts';
import { DockerEngine } from '../src/orchestrator/docker-engine.ts';
import { connect, exportData, importData, type ServiceHandle } from '../src/services/data-ops.ts';
import { postgres } from '../src/services/kinds/postgres.ts';
import { startTestService } from '../test/helpers/services.ts';
import { tempDir } from '../test/helpers/temp.ts';

/** The database's size to reach, in MB (as pg_database_size counts it). */
const TARGET_MB = Number(process.env.TARGET_MB ?? 100);

setLogSink(() => {});
const PREFIX = `berth-bench-services-${process.pid}`;
const NETWORK = `${PREFIX}-net`;
const engine = await DockerEngine.connect(process.env.DOCKER_HOST ?? '/var/run/docker.sock', `bench-services-${process.pid}`);
const containers: string[] = [];
const volumes: string[] = [];

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const mb = (bytes: number) => `${(bytes / 1024 ** 2).toFixed(1)} MB`;

async function start(name: string): Promise<{ handle: ServiceHandle; readyMs: number }> {
  const started = performance.now();
  const handle = await startTestService(engine, postgres, name, { prefix: PREFIX, network: NETWORK, containers, volumes });
  return { handle, readyMs: performance.now() - started };
}

async function sql(handle: ServiceHandle, text: string): Promise<string> {
  let out = '';
  let err = '';
  const code = await connect(handle, { stdin: Readable.from([Buffer.from(`\\set QUIET on\n\\pset tuples_only on\n\\pset format unaligned\n${text}\n`)]), stdout: (d) => void (out += d.toString()), stderr: (d) => void (err += d.toString()) });
  if (code !== 0) throw new Error(`psql exited with ${code}: ${err}`);
  return out.trim();
}

const fingerprint = (handle: ServiceHandle) => sql(handle, "SELECT count(*) || ' rows, ' || md5(string_agg(body, '' ORDER BY id)) FROM big;");

try {
  await engine.ensureNetwork(NETWORK);
  const a = await start('source');
  console.log(`postgres: container on an empty volume to accepting connections: ${seconds(a.readyMs)}`);
  // Rows of random text (dumps compress it about as well as real data): 4 md5s, ~180 bytes a row.
  const rows = Math.round((TARGET_MB * 1024 * 1024) / 190);
  await sql(a.handle, `CREATE TABLE big (id serial PRIMARY KEY, body text); INSERT INTO big (body) SELECT md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text) FROM generate_series(1, ${rows}); VACUUM ANALYZE big;`);
  const dbBytes = Number(await sql(a.handle, `SELECT pg_database_size('source');`));
  const expected = await fingerprint(a.handle);
  console.log(`postgres: database of ${mb(dbBytes)} (${expected.split(',')[0]})`);

  const file = path.join(tempDir('bench-services'), 'source.dump');
  let t = performance.now();
  const out = fs.createWriteStream(file);
  const dumpBytes = await exportData(a.handle, out);
  await new Promise<void>((resolve, reject) => out.end((e?: Error | null) => (e ? reject(e) : resolve())));
  const exportMs = performance.now() - t;
  console.log(`postgres:export of ${mb(dbBytes)} to a file: ${seconds(exportMs)} (dump ${mb(dumpBytes)}, pg_dump custom format)`);

  const b = await start('target');
  t = performance.now();
  await importData(b.handle, fs.createReadStream(file));
  const importMs = performance.now() - t;
  if ((await fingerprint(b.handle)) !== expected) throw new Error('the imported rows differ from the exported ones');
  console.log(`postgres:import of that dump into an empty service: ${seconds(importMs)} (rows identical)`);

  const c = await start('piped');
  const pipe = new PassThrough({ highWaterMark: 1024 * 1024 });
  t = performance.now();
  await Promise.all([exportData(a.handle, pipe).then(() => pipe.end()), importData(c.handle, pipe)]);
  const pipedMs = performance.now() - t;
  if ((await fingerprint(c.handle)) !== expected) throw new Error('the piped rows differ from the exported ones');
  console.log(`postgres:export piped into postgres:import of a second service: ${seconds(pipedMs)} (rows identical)`);
  console.log(`peak RSS of this process: ${mb(process.resourceUsage().maxRSS * 1024)}`);
} finally {
  for (const id of containers) await engine.stopAndRemove(id, 0).catch(() => {});
  for (const v of volumes) await engine.removeVolume(v);
  await engine.removeNetwork(NETWORK);
}
