// Links between apps and services on the real binary, real pushes over OpenSSH and the real
// Docker engine: a link sets DATABASE_URL as a release and opens the way on the network; an app
// not linked cannot open a TCP connection to the service (by name or by address); destroy is
// refused while linked; keys limited to apps manage only their apps' services; expose is the
// admin's and publishes a host port.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { BASE_IMAGE, gitRepo, makeKey, request, run, startDaemon, tempDir, waitFor, type Daemon } from './helpers/daemon.ts';
import { POSTGRES_TEST_IMAGE, REDIS_TEST_IMAGE, removeInstanceObjects } from './helpers/services.ts';
import { runAsync, sleep, startWrk } from './helpers/zero-downtime.ts';

const SERVICE_FLAGS = ['--postgres-image', POSTGRES_TEST_IMAGE, '--redis-image', REDIS_TEST_IMAGE];

let daemon: Daemon;
const work = tempDir('e2e-services-link');
let admin: { privateKey: string; publicKey: string };
let tenant: { privateKey: string; publicKey: string };
let plain: { privateKey: string; publicKey: string };

function docker(args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync('docker', args, { encoding: 'utf8' });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** An app whose /probe opens a TCP connection to ?host=&port= (default: DATABASE_URL's) and says whether it could. */
function probeApp(options: { refuseDatabase?: boolean } = {}): Record<string, string> {
  return {
    Dockerfile: `FROM ${BASE_IMAGE}\nCOPY . /app\nCMD ["node", "/app/server.js"]\n`,
    'server.js': `${options.refuseDatabase ? "if (process.env.DATABASE_URL) { console.error('this app does not want a database'); process.exit(1); }\n" : ''}const http = require('http');
const net = require('net');
http.createServer((req, res) => {
  const q = new URL(req.url, 'http://x').searchParams;
  if (req.url.startsWith('/probe')) {
    let host = q.get('host'), port = Number(q.get('port') || 0);
    if (!host && process.env.DATABASE_URL) { const u = new URL(process.env.DATABASE_URL); host = u.hostname; port = Number(u.port); }
    if (!host) return res.end('no DATABASE_URL');
    const s = net.connect({ host, port: port || 5432, timeout: 3000 });
    s.on('connect', () => { s.destroy(); res.end('open'); });
    s.on('timeout', () => { s.destroy(); res.end('closed: timeout'); });
    s.on('error', (e) => res.end('closed: ' + e.code));
    return;
  }
  res.end('ok');
}).listen(Number(process.env.PORT), '0.0.0.0');
`,
  };
}

async function probe(app: string, query = ''): Promise<string> {
  const r = await request(daemon.httpPort, `${app}.${daemon.domain}`, `/probe${query}`);
  assert.equal(r.status, 200, r.body);
  return r.body;
}

function push(app: string, options: { refuseDatabase?: boolean } = {}): void {
  const repo = path.join(work, app);
  gitRepo(repo, probeApp(options));
  const r = run('git', ['push', daemon.remote(app), 'main'], { cwd: repo, env: daemon.gitEnv(admin.privateKey) });
  assert.equal(r.code, 0, r.stderr);
}

before(async () => {
  daemon = await startDaemon({ args: SERVICE_FLAGS });
  admin = makeKey(work, 'admin');
  tenant = makeKey(work, 'tenant');
  plain = makeKey(work, 'plain');
  assert.equal(daemon.cli(['ssh-keys:add', 'admin', admin.publicKey]).code, 0);
  push('linked');
  push('other');
  const created = daemon.cli(['postgres:create', 'db']);
  assert.equal(created.code, 0, created.stderr);
  assert.equal(daemon.cli(['ssh-keys:add', 'tenant', tenant.publicKey, '--apps', 'other', '--services']).code, 0);
  assert.equal(daemon.cli(['ssh-keys:add', 'plain', plain.publicKey, '--apps', 'other']).code, 0);
});

after(async () => {
  for (const app of ['linked', 'other', 'picky', 'svc-postgres-lookalike']) daemon?.cli(['apps:destroy', app, '--force']);
  await daemon?.stop();
  if (!daemon) return;
  removeInstanceObjects(daemon.instance);
});

test('postgres:link sets DATABASE_URL as a new release under load, with no failed request, and the linked app opens a connection to the service', async (t) => {
  assert.match(await probe('linked'), /no DATABASE_URL/);
  const wrk = startWrk(daemon.httpPort, `linked.${daemon.domain}`, { connections: 8, threads: 2 });
  await sleep(500);
  const started = performance.now();
  const linking = runAsync('ssh', [...daemon.sshArgs(admin.privateKey), 'berth@127.0.0.1', 'postgres:link db linked']);
  // The moment the app serves with the new URL: its new containers took the route.
  let servingAfterMs = 0;
  await waitFor('the app to serve with DATABASE_URL', async () => {
    if ((await probe('linked')) !== 'open') return false;
    servingAfterMs = performance.now() - started;
    return true;
  }, 120_000);
  const linked = await linking;
  const commandMs = performance.now() - started;
  await sleep(500);
  const load = await wrk.stop();
  t.diagnostic(`postgres:link to serving with the new URL: ${Math.round(servingAfterMs)} ms (command done after ${Math.round(commandMs)} ms); wrk: ${load.requests} requests, non-2xx ${load.non2xx}, socket errors ${JSON.stringify(load.socketErrors)}, latency max ${load.latencyMax}`);
  assert.equal(linked.code, 0, linked.stderr);
  assert.match(linked.stdout, /Set DATABASE_URL; releasing v2 and restarting linked/);
  assert.equal(load.non2xx, 0, load.output);
  assert.deepEqual(load.socketErrors, { connect: 0, read: 0, write: 0, timeout: 0 }, load.output);
  const url = daemon.cli(['config:get', 'linked', 'DATABASE_URL']).stdout.trim();
  assert.match(url, /^postgres:\/\/postgres:[A-Za-z0-9_-]{32,}@berth-postgres-db:5432\/db$/);
  assert.match(daemon.cli(['postgres:info', 'db']).stdout, /Links:\s+linked \(DATABASE_URL\)/);
  const again = daemon.cli(['postgres:link', 'db', 'linked']);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /already linked to linked/);
});

test('a link whose release fails to deploy is undone: no variable, no link, no network shared', () => {
  push('picky', { refuseDatabase: true });
  const failed = daemon.cli(['postgres:link', 'db', 'picky']);
  assert.equal(failed.code, 1, failed.stdout);
  assert.match(failed.stdout + failed.stderr, /this app does not want a database/);
  assert.equal(daemon.cli(['config:get', 'picky', 'DATABASE_URL']).code, 1);
  assert.doesNotMatch(daemon.cli(['postgres:info', 'db']).stdout, /picky/);
  const networks = Object.keys(JSON.parse(docker(['inspect', `berth-${daemon.instance}-svc-postgres-db`]).stdout)[0].NetworkSettings.Networks);
  assert.ok(!networks.some((n) => n.endsWith('-picky')), networks.join(', '));
  assert.equal(daemon.cli(['apps:destroy', 'picky', '--force']).code, 0);
});

test('an app not linked to the service cannot open a TCP connection to it, by its name or by its address', async () => {
  assert.match(await probe('other', '?host=berth-postgres-db&port=5432'), /^closed: (ENOTFOUND|EAI_AGAIN)/);
  const inspect = JSON.parse(docker(['inspect', `berth-${daemon.instance}-svc-postgres-db`]).stdout)[0];
  const addresses = Object.values(inspect.NetworkSettings.Networks as Record<string, { IPAddress: string }>).map((n) => n.IPAddress).filter(Boolean);
  assert.ok(addresses.length >= 2, 'on its own network and the linked app\'s');
  for (const ip of addresses) assert.match(await probe('other', `?host=${ip}&port=5432`), /^closed: /, `the service's address ${ip} is out of reach`);
});

test("an app named like a service's network (svc-postgres-NAME) shares no network with it, and the service's destroy leaves it serving", async () => {
  assert.equal(daemon.cli(['postgres:create', 'lookalike']).code, 0);
  push('svc-postgres-lookalike');
  assert.match(await probe('svc-postgres-lookalike', '?host=berth-postgres-lookalike&port=5432'), /^closed: (ENOTFOUND|EAI_AGAIN)/);
  const inspect = JSON.parse(docker(['inspect', `berth-${daemon.instance}-svc-postgres-lookalike`]).stdout)[0];
  for (const ip of Object.values(inspect.NetworkSettings.Networks as Record<string, { IPAddress: string }>).map((n) => n.IPAddress).filter(Boolean)) {
    assert.match(await probe('svc-postgres-lookalike', `?host=${ip}&port=5432`), /^closed: /, `the service's address ${ip} is out of reach`);
  }
  const destroyed = daemon.cli(['postgres:destroy', 'lookalike', '--force']);
  assert.equal(destroyed.code, 0, destroyed.stderr);
  assert.match(await probe('svc-postgres-lookalike', '?host=127.0.0.1&port=1'), /^closed: /, 'the app still serves');
  assert.equal(daemon.cli(['apps:destroy', 'svc-postgres-lookalike', '--force']).code, 0);
});

test('destroy is refused while an app is linked, and says how to unlink', () => {
  const refused = daemon.cli(['postgres:destroy', 'db', '--force']);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /linked to linked; its data is not destroyed while an app uses it/);
  assert.match(refused.stderr, /postgres:unlink db linked/);
  assert.equal(docker(['inspect', `berth-${daemon.instance}-svc-postgres-db`]).code, 0);
});

test("a key limited to apps cannot see or touch a service of another app, and creates services only when allowed", async () => {
  for (const command of ['postgres:info db', 'postgres:restart db', 'postgres:destroy db --force', 'postgres:link db other', 'postgres:unlink db linked', 'postgres:logs db']) {
    const r = daemon.ssh(tenant.privateKey, command);
    assert.equal(r.code, 1, command);
    assert.match(r.stderr, /key "tenant" may not run postgres:\S+ on postgres service db/, command);
  }
  assert.doesNotMatch(daemon.ssh(tenant.privateKey, 'postgres:list').stdout, /\bdb\b/);
  const noServices = daemon.ssh(plain.privateKey, 'postgres:create mine');
  assert.equal(noServices.code, 1);
  assert.match(noServices.stderr, /key "plain" may not create services/);
  assert.match(noServices.stderr, /--services/);
  const image = daemon.ssh(tenant.privateKey, `postgres:create mine --image ${POSTGRES_TEST_IMAGE}`);
  assert.equal(image.code, 1);
  assert.match(image.stderr, /may not choose the image of a service/);
  for (const command of ['postgres:backup db', 'postgres:backups db', 'postgres:backup-restore db x.dump', 'postgres:backup-schedule db "0 3 * * *"']) {
    const r = daemon.ssh(tenant.privateKey, command);
    assert.equal(r.code, 1, command);
    assert.match(r.stderr, /for admin keys/, command);
  }
  const expose = daemon.ssh(tenant.privateKey, 'postgres:expose db 15432');
  assert.equal(expose.code, 1);
  assert.match(expose.stderr, /for admin keys/);
  await waitFor('the refusal in the log', () => /"command_refused".*"key":"tenant".*"reason":"service_scope"/.test(daemon.logs()), 5_000);
});

test('ssh-keys:list shows which keys may create services; --services without --apps is refused', () => {
  const list = daemon.cli(['ssh-keys:list']);
  assert.match(list.stdout, /^tenant\s+SHA256:\S+\s+apps: other \+services$/m);
  assert.match(list.stdout, /^plain\s+SHA256:\S+\s+apps: other$/m);
  const alone = daemon.cli(['ssh-keys:add', 'nobody', plain.publicKey, '--services']);
  assert.equal(alone.code, 2);
  assert.match(alone.stderr, /--services goes with --apps/);
});

test('a key allowed services creates one, sees it, may not link it to an app outside its scope, and destroys it', () => {
  const greedy = daemon.ssh(tenant.privateKey, 'redis:create tenantcache --memory 64g');
  assert.equal(greedy.code, 1);
  assert.match(greedy.stderr, /may not give a service more memory than the default/);
  const created = daemon.ssh(tenant.privateKey, 'redis:create tenantcache');
  assert.equal(created.code, 0, created.stderr);
  assert.match(daemon.ssh(tenant.privateKey, 'redis:list').stdout, /^tenantcache\s+running/m);
  assert.equal(daemon.ssh(tenant.privateKey, 'redis:info tenantcache').code, 0);
  const ping = daemon.ssh(tenant.privateKey, 'redis:connect tenantcache', 'PING\n');
  assert.equal(ping.code, 0, ping.stderr);
  assert.match(ping.stdout, /PONG/);
  assert.match(daemon.ssh(tenant.privateKey, 'redis:backup tenantcache').stderr, /for admin keys/);
  const elsewhere = daemon.ssh(tenant.privateKey, 'redis:link tenantcache linked');
  assert.equal(elsewhere.code, 1);
  assert.match(elsewhere.stderr, /key "tenant" may not link services to linked/);
  assert.doesNotMatch(daemon.ssh(plain.privateKey, 'redis:list').stdout, /tenantcache/, "another key of the same app does not manage what it did not create until it is linked");
  const destroyed = daemon.ssh(tenant.privateKey, 'redis:destroy tenantcache --force');
  assert.equal(destroyed.code, 0, destroyed.stderr);
});

test('postgres:expose publishes the port on 127.0.0.1 for admins, and unexpose takes it back', async () => {
  const port = await freePort();
  const exposed = daemon.cli(['postgres:expose', 'db', String(port)]);
  assert.equal(exposed.code, 0, exposed.stderr);
  await new Promise<void>((resolve, reject) => net.connect({ host: '127.0.0.1', port }).once('connect', function (this: net.Socket) { this.destroy(); resolve(); }).once('error', reject));
  assert.equal(await probe('linked'), 'open', 'still linked after the container was recreated');
  const unexposed = daemon.cli(['postgres:unexpose', 'db']);
  assert.equal(unexposed.code, 0, unexposed.stderr);
  await assert.rejects(new Promise<void>((resolve, reject) => net.connect({ host: '127.0.0.1', port }).once('connect', function (this: net.Socket) { this.destroy(); resolve(); }).once('error', reject)));
});

test('a renamed app keeps its link: the service joins the network of the new name', async () => {
  const renamed = daemon.cli(['apps:rename', 'linked', 'linked2']);
  assert.equal(renamed.code, 0, renamed.stderr);
  assert.equal(await probe('linked2'), 'open');
  assert.match(daemon.cli(['postgres:info', 'db']).stdout, /Links:\s+linked2 \(DATABASE_URL\)/);
  const back = daemon.cli(['apps:rename', 'linked2', 'linked']);
  assert.equal(back.code, 0, back.stderr);
  assert.equal(await probe('linked'), 'open');
});

test('postgres:unlink unsets DATABASE_URL with a new release and cuts the app off; then destroy goes ahead', async () => {
  const ip = Object.values(JSON.parse(docker(['inspect', `berth-${daemon.instance}-svc-postgres-db`]).stdout)[0].NetworkSettings.Networks as Record<string, { IPAddress: string }>).map((n) => n.IPAddress)[0];
  const unlinked = daemon.cli(['postgres:unlink', 'db', 'linked']);
  assert.equal(unlinked.code, 0, unlinked.stderr);
  assert.match(unlinked.stdout, /Unset DATABASE_URL; releasing v\d+ and restarting linked/);
  assert.equal(daemon.cli(['config:get', 'linked', 'DATABASE_URL']).code, 1);
  assert.match(await probe('linked', '?host=berth-postgres-db&port=5432'), /^closed: /);
  assert.match(await probe('linked', `?host=${ip}&port=5432`), /^closed: /);
  const destroyed = daemon.cli(['postgres:destroy', 'db', '--force']);
  assert.equal(destroyed.code, 0, destroyed.stderr);
  await waitFor('the volume to go', () => docker(['volume', 'inspect', `berth-${daemon.instance}-svc-postgres-db-data`]).code === 1, 10_000);
  assert.equal(fs.existsSync(path.join(daemon.dataDir, 'services', 'postgres', 'db')), false);
});

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
