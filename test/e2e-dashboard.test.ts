// End to end on the real binary: a one-time link from a real `ssh ... dashboard` logs in to the
// dashboard (on its admin listener and at berth.DOMAIN through the proxy), the session sees what
// its key may see, acts through the same commands as SSH (a rollback whose old version then
// answers through the proxy), streams a real push's output live, and refuses cross-site posts.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { REDIS_TEST_IMAGE } from './helpers/services.ts';
import { gitRepo, makeKey, nodeApp, request, run, startDaemon, tempDir, waitFor, type Daemon } from './helpers/daemon.ts';

let daemon: Daemon;
let port: number;
const work = tempDir('e2e-dashboard');
const APP = 'dash-a';
const OTHER = 'dash-b';
let admin: { privateKey: string; publicKey: string };
let deployer: { privateKey: string; publicKey: string };

before(async () => {
  daemon = await startDaemon({ args: ['--redis-image', REDIS_TEST_IMAGE] });
  admin = makeKey(work, 'admin');
  deployer = makeKey(work, 'deployer');
  assert.equal(daemon.cli(['ssh-keys:add', 'admin', admin.publicKey]).code, 0);
  assert.equal(daemon.cli(['ssh-keys:add', 'deployer', deployer.publicKey, '--apps', OTHER]).code, 0);
  for (const [app, key] of [[APP, admin], [OTHER, deployer]] as const) {
    const repo = path.join(work, app);
    gitRepo(repo, loggingApp(`${app} v1`));
    const push = run('git', ['push', daemon.remote(app), 'main'], { cwd: repo, env: daemon.gitEnv(key.privateKey) });
    assert.equal(push.code, 0, push.stderr);
  }
  const listening = daemon.logs().split('\n').find((l) => l.includes('"dashboard_listening"'));
  assert.ok(listening, `the dashboard listens:\n${daemon.logs()}`);
  port = (JSON.parse(listening) as { port: number }).port;
});

after(async () => {
  for (const service of SERVICES) {
    daemon.cli(['redis:unlink', service, OTHER]);
    daemon.cli(['redis:destroy', service, '--force']);
  }
  for (const app of [APP, OTHER]) daemon.cli(['apps:destroy', app, '--force']);
  await daemon.stop();
});

/** A web app that answers `message` and logs each request. */
function loggingApp(message: string): Record<string, string> {
  return nodeApp(message, {
    'server.js': `require('http').createServer((req, res) => { console.log('request ' + req.url); res.end(${JSON.stringify(message)} + '\\n'); }).listen(Number(process.env.PORT), '0.0.0.0');\n`,
  });
}

/** Waits for a line of the daemon's log (its output reaches this process a little later). */
function logged(line: RegExp): Promise<void> {
  return waitFor(`a log line ${line}`, () => line.test(daemon.logs()), 10_000);
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  json(): any;
}

/** One request to the dashboard's admin listener (or, with `host`, to the proxy's HTTP port with that Host). */
function call(method: string, urlPath: string, options: { headers?: Record<string, string>; body?: string; viaProxy?: boolean } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const target = options.viaProxy ? { port: daemon.httpPort, headers: { host: `berth.${daemon.domain}` } } : { port, headers: { host: `127.0.0.1:${port}` } };
    const req = http.request({ host: '127.0.0.1', port: target.port, method, path: urlPath, headers: { ...target.headers, ...options.headers }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json: () => JSON.parse(body) }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

const ORIGIN = () => `http://127.0.0.1:${port}`;

/** A session for `key`: its cookie header and CSRF token, from a real `ssh ... dashboard` link. */
async function login(key: { privateKey: string }): Promise<{ cookie: string; csrf: string; token: string }> {
  const token = linkToken(key);
  const res = await call('POST', '/api/login', { headers: { origin: ORIGIN(), 'content-type': 'application/json' }, body: JSON.stringify({ token }) });
  assert.equal(res.status, 200, res.body);
  const cookie = String(res.headers['set-cookie']?.[0]).split(';')[0]!;
  const session = await call('GET', '/api/session', { headers: { cookie } });
  assert.equal(session.status, 200, session.body);
  return { cookie, csrf: session.json().csrf, token };
}

function linkToken(key: { privateKey: string }): string {
  const r = daemon.ssh(key.privateKey, 'dashboard');
  assert.equal(r.code, 0, r.stderr);
  // No certificate for berth.DOMAIN here: the admin listener's link, reached through an SSH tunnel.
  assert.match(r.stdout, new RegExp(`ssh -L ${port}:127\\.0\\.0\\.1:${port} YOU@`));
  const m = new RegExp(`^http://127\\.0\\.0\\.1:${port}/login#([A-Za-z0-9_-]{43})$`, 'm').exec(r.stdout);
  assert.ok(m, `a login link in:\n${r.stdout}`);
  return m[1]!;
}

function post(session: { cookie: string; csrf: string }, urlPath: string, body: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  return call('POST', urlPath, { headers: { origin: ORIGIN(), 'content-type': 'application/json', 'x-berth-csrf': session.csrf, cookie: session.cookie, ...headers }, body: JSON.stringify(body) });
}

test('a link from `ssh ... dashboard` logs in once: the cookie is HttpOnly, Secure, SameSite=Strict; a used link is refused', async () => {
  const token = linkToken(admin);
  const first = await call('POST', '/api/login', { headers: { origin: ORIGIN(), 'content-type': 'application/json' }, body: JSON.stringify({ token }) });
  assert.equal(first.status, 200, first.body);
  assert.deepEqual(first.json(), { ok: true });
  const cookie = String(first.headers['set-cookie']?.[0]);
  assert.match(cookie, /^__Host-berth_session=[A-Za-z0-9_-]{43}; /);
  for (const attribute of ['HttpOnly', 'Secure', 'SameSite=Strict', 'Path=/']) assert.ok(cookie.split('; ').includes(attribute), `${attribute} in ${cookie}`);

  const again = await call('POST', '/api/login', { headers: { origin: ORIGIN(), 'content-type': 'application/json' }, body: JSON.stringify({ token }) });
  assert.equal(again.status, 403);
  assert.equal(again.json().error.code, 'login_refused');
  assert.equal(again.json().error.message, 'this login link was used or has expired');
  assert.match(again.json().error.hint, /dashboard/);
  await logged(/"dashboard_login".*"key":"admin"/);
});

test('`berth dashboard` on the server without a certificate for berth.DOMAIN says why and prints the tunnel and the admin listener\'s link only; it logs in the local admin', async () => {
  const r = daemon.cli(['dashboard']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`berth\\.${daemon.domain.replace('.', '\\.')} has no HTTPS certificate yet`));
  assert.match(r.stdout, new RegExp(`ssh -L ${port}:127\\.0\\.0\\.1:${port} YOU@${daemon.domain.replace('.', '\\.')}`));
  const tokens = [...r.stdout.matchAll(/^(https?:\/\/[^/\s]+)\/login#([A-Za-z0-9_-]{43})$/gm)];
  assert.deepEqual(tokens.map((m) => m[1]), [ORIGIN()], 'no plain-HTTP link to berth.DOMAIN');
  const res = await call('POST', '/api/login', { headers: { origin: ORIGIN(), 'content-type': 'application/json' }, body: JSON.stringify({ token: tokens[0]![2] }) });
  assert.equal(res.status, 200, res.body);
  const session = (await call('GET', '/api/session', { headers: { cookie: String(res.headers['set-cookie']?.[0]).split(';')[0]! } })).json();
  assert.equal(session.key, 'local');
  assert.equal(session.admin, true);
});

test('the session is its key: /api/session and /api/apps after real pushes; no session is a 401', async () => {
  const s = await login(admin);
  const session = (await call('GET', '/api/session', { headers: { cookie: s.cookie } })).json();
  assert.equal(session.key, 'admin');
  assert.equal(session.admin, true);
  assert.equal(session.apps, null);
  assert.equal(session.domain, daemon.domain);
  assert.ok(Date.parse(session.expiresAt) > Date.now());

  const apps = await call('GET', '/api/apps', { headers: { cookie: s.cookie } });
  assert.equal(apps.status, 200);
  assert.equal(apps.headers['cache-control'], 'no-store');
  const list = apps.json().apps as any[];
  assert.deepEqual(list.map((a) => a.name), [APP, OTHER]);
  const a = list[0];
  assert.equal(a.current, 1);
  assert.equal(a.deploying, false);
  assert.match(a.url, new RegExp(`^http://${APP}\\.${daemon.domain.replace('.', '\\.')}:\\d+$`));
  assert.deepEqual(a.processes, [{ type: 'web', count: 1, running: 1 }]);
  assert.equal(a.domains[0].host, `${APP}.${daemon.domain}`);
  assert.equal(a.domains[0].https, false);

  const detail = (await call('GET', `/api/apps/${APP}`, { headers: { cookie: s.cookie } })).json();
  assert.equal(detail.releases[0].number, 1);
  assert.equal(detail.releases[0].current, true);
  assert.equal(detail.releases[0].by, 'admin');
  assert.equal(detail.containers.length, 1);
  assert.match(detail.containers[0].id, /^[0-9a-f]{12}$/);
  assert.equal(detail.containers[0].type, 'web');
  assert.deepEqual(detail.config, []);

  // A second cookie of the session's name (one an app of the same site could plant) is no session.
  const planted = await call('GET', '/api/apps', { headers: { cookie: `${s.cookie}; __Host-berth_session=planted` } });
  assert.equal(planted.status, 401);
  const none = await call('GET', '/api/apps');
  assert.equal(none.status, 401);
  assert.equal(none.json().error.code, 'no_session');
  const unknown = await call('GET', '/api/nothing', { headers: { cookie: s.cookie } });
  assert.equal(unknown.status, 404);
  assert.equal(unknown.json().error.code, 'not_found');

  const out = await post(s, '/api/logout', {});
  assert.equal(out.status, 200);
  assert.match(String(out.headers['set-cookie']?.[0]), /^__Host-berth_session=; .*Max-Age=0/);
  assert.equal((await call('GET', '/api/session', { headers: { cookie: s.cookie } })).status, 401, 'logged out');
});

test('a scoped key sees only its apps: another app is a 404, and its /api/run on another app is refused', async () => {
  const s = await login(deployer);
  const session = (await call('GET', '/api/session', { headers: { cookie: s.cookie } })).json();
  assert.equal(session.admin, false);
  assert.deepEqual(session.apps, [OTHER]);
  assert.deepEqual((await call('GET', '/api/apps', { headers: { cookie: s.cookie } })).json().apps.map((a: any) => a.name), [OTHER]);
  const hidden = await call('GET', `/api/apps/${APP}`, { headers: { cookie: s.cookie } });
  const missing = await call('GET', '/api/apps/no-such-app', { headers: { cookie: s.cookie } });
  assert.equal(hidden.status, 404);
  assert.equal(hidden.json().error.code, 'not_found');
  assert.equal(missing.status, 404);
  assert.equal((await call('GET', `/api/apps/${APP}/deploys/live`, { headers: { cookie: s.cookie } })).status, 404);

  const refused = await post(s, '/api/run', { words: ['ps:restart', APP] });
  assert.equal(refused.status, 200);
  assert.notEqual(refused.json().exitCode, 0);
  assert.match(refused.json().output, /key "deployer" may not run ps:restart on dash-a/);
  await logged(/"command_refused".*"key":"deployer".*"command":"ps:restart"/);
  const own = await post(s, '/api/run', { words: ['releases', OTHER] });
  assert.equal(own.json().exitCode, 0, own.json().output);
  assert.match(own.json().output, /v1 \*/);
});

const SERVICES = ['dash-cache', 'dash-lone'];

test("/api/services: an admin sees every service with its links and backups; a scoped key only the ones linked to its apps, without backups", async () => {
  for (const service of SERVICES) {
    const created = daemon.cli(['redis:create', service]);
    assert.equal(created.code, 0, created.stderr);
  }
  const linked = daemon.cli(['redis:link', SERVICES[0]!, OTHER]);
  assert.equal(linked.code, 0, linked.stderr);
  const backup = daemon.cli(['redis:backup', SERVICES[0]!]);
  assert.equal(backup.code, 0, backup.stderr);

  const adminSession = await login(admin);
  const all = (await call('GET', '/api/services', { headers: { cookie: adminSession.cookie } })).json().services;
  assert.deepEqual(all.map((s: any) => [s.kind, s.name, s.status, s.links]), [['redis', SERVICES[0], 'running', [OTHER]], ['redis', SERVICES[1], 'running', []]]);
  assert.equal(all[0].backups.length, 1);
  assert.ok(all[0].backups[0].size > 0 && !Number.isNaN(Date.parse(all[0].backups[0].createdAt)), JSON.stringify(all[0].backups));
  assert.deepEqual(all[1].backups, []);

  const scoped = await login(deployer);
  const own = (await call('GET', '/api/services', { headers: { cookie: scoped.cookie } })).json().services;
  assert.deepEqual(own.map((s: any) => [s.name, s.links, s.backups]), [[SERVICES[0], [OTHER], null]]);
});

test('a POST without the JSON type, the own Origin or the CSRF token is refused (403 cross_site), a form post too', async () => {
  const s = await login(admin);
  const crossToken = linkToken(admin);
  const words = JSON.stringify({ words: ['ps:restart', APP] });
  const base = { cookie: s.cookie, 'content-type': 'application/json', origin: ORIGIN(), 'x-berth-csrf': s.csrf };
  const without = (name: string) => Object.fromEntries(Object.entries(base).filter(([k]) => k !== name));
  for (const [what, headers] of [
    ['no Origin', without('origin')],
    ['another Origin', { ...base, origin: 'https://evil.example' }],
    ['no CSRF header', without('x-berth-csrf')],
    ['a wrong CSRF token', { ...base, 'x-berth-csrf': 'x'.repeat(s.csrf.length) }],
    ['a form body', { ...base, 'content-type': 'application/x-www-form-urlencoded' }],
  ] as const) {
    const res = await call('POST', '/api/run', { headers: headers as Record<string, string>, body: words });
    assert.equal(res.status, 403, what);
    assert.deepEqual(res.json(), { error: { code: 'cross_site', message: 'cross-site request refused' } }, what);
  }
  // What a cross-site HTML form sends: another origin, a form body, and (SameSite=Strict) no cookie.
  const form = await call('POST', '/api/run', { headers: { origin: 'https://evil.example', 'content-type': 'application/x-www-form-urlencoded' }, body: 'words=ps:restart' });
  assert.equal(form.status, 403);
  const crossLogin = await call('POST', '/api/login', { headers: { origin: 'https://evil.example', 'content-type': 'application/json' }, body: JSON.stringify({ token: crossToken }) });
  assert.equal(crossLogin.status, 403);
  assert.equal(crossLogin.json().error.code, 'cross_site');
  // A last action that is let through: its log line comes after any of the refused ones'.
  assert.equal((await post(s, '/api/run', { words: ['releases', APP] })).json().exitCode, 0);
  await logged(/"dashboard_action","key":"admin","command":"releases","app":"dash-a"/);
  assert.doesNotMatch(daemon.logs(), /"dashboard_action","key":"admin","command":"ps:restart"/, 'no refused request ran a command');
});

test('commands that need a terminal or standard input are for SSH: /api/run answers 400 use_ssh', async () => {
  const s = await login(admin);
  const res = await post(s, '/api/run', { words: ['run', APP, 'sh'] });
  assert.equal(res.status, 400);
  assert.equal(res.json().error.code, 'use_ssh');
  assert.equal(res.json().error.hint, `use ssh -p ${daemon.sshPort} berth@${daemon.domain} run dash-a sh`);
});

test('every answer carries the security headers; the page shell answers its paths, the assets their ETag', async () => {
  for (const p of ['/', '/login', `/apps/${APP}`, '/assets/app.js', '/assets/app.css', '/api/apps', '/nothing']) {
    const res = await call('GET', p);
    assert.equal(res.headers['content-security-policy'], "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'", p);
    assert.equal(res.headers['x-content-type-options'], 'nosniff', p);
    assert.equal(res.headers['referrer-policy'], 'no-referrer', p);
  }
  const shell = await call('GET', `/apps/${APP}`);
  assert.equal(shell.status, 200);
  assert.match(String(shell.headers['content-type']), /^text\/html/);
  const js = await call('GET', '/assets/app.js');
  assert.equal(js.status, 200);
  assert.ok(js.headers.etag);
  assert.equal((await call('GET', '/assets/app.js', { headers: { 'if-none-match': js.headers.etag! } })).status, 304);
  assert.equal((await call('GET', '/nothing')).status, 404);
  const rebound = await call('GET', '/', { headers: { host: `rebound.example:${port}` } });
  assert.equal(rebound.status, 421, 'a host name that merely resolves to the listener is not the dashboard');
});

test('berth.DOMAIN reaches the dashboard through the proxy, which refuses a login or a session over plain HTTP (https_required); no app may be called berth', async () => {
  const page = await call('GET', '/login', { viaProxy: true });
  assert.equal(page.status, 200);
  assert.match(String(page.headers['content-type']), /^text\/html/);
  assert.equal(page.headers['x-content-type-options'], 'nosniff');
  // Origin as the browser sends it there: the Host the proxy was given.
  const token = linkToken(admin);
  const res = await call('POST', '/api/login', { viaProxy: true, headers: { origin: `http://berth.${daemon.domain}`, 'content-type': 'application/json' }, body: JSON.stringify({ token }) });
  assert.equal(res.status, 403, res.body);
  assert.equal(res.json().error.code, 'https_required');
  assert.match(res.json().error.hint, new RegExp(`ssh -L ${port}:127\\.0\\.0\\.1:${port} YOU@`));
  const s = await login(admin);
  const used = await call('GET', '/api/session', { viaProxy: true, headers: { cookie: s.cookie } });
  assert.equal(used.status, 403, 'a session cookie carried over plain HTTP is not used');
  assert.equal(used.json().error.code, 'https_required');
  assert.equal((await call('GET', '/api/session', { headers: { cookie: s.cookie } })).status, 200, 'the admin listener, directly');
  const created = daemon.ssh(admin.privateKey, 'apps:create berth');
  assert.notEqual(created.code, 0);
  assert.match(created.stderr + created.stdout, /app name "berth" is berth.s own name/);
});

/** Server-Sent Events from the admin listener (or berth.DOMAIN through the proxy), as they come. */
function events(urlPath: string, cookie: string, options: { viaProxy?: boolean } = {}): { next(name: string, timeoutMs?: number): Promise<unknown>; close(): void; ended: Promise<void> } {
  let ended!: () => void;
  const endedPromise = new Promise<void>((resolve) => (ended = resolve));
  const queue: Array<{ event: string; data: unknown }> = [];
  let wake: (() => void) | undefined;
  let buffer = '';
  const target = options.viaProxy ? { port: daemon.httpPort, host: `berth.${daemon.domain}` } : { port, host: `127.0.0.1:${port}` };
  const req = http.request({ host: '127.0.0.1', port: target.port, path: urlPath, headers: { host: target.host, cookie }, agent: false }, (res) => {
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers['content-type']), /^text\/event-stream/);
    res.setEncoding('utf8');
    res.on('data', (d: string) => {
      buffer += d;
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (event && data !== undefined) queue.push({ event, data: JSON.parse(data) });
      }
      wake?.();
    });
    res.on('end', ended);
    res.on('close', ended);
  });
  req.on('error', () => {});
  req.end();
  return {
    async next(name, timeoutMs = 240_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const i = queue.findIndex((e) => e.event === name);
        if (i >= 0) return queue.splice(0, i + 1).at(-1)!.data;
        if (Date.now() > deadline) throw new Error(`no "${name}" event within ${timeoutMs} ms; got ${JSON.stringify(queue)}`);
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, 500);
        });
      }
    },
    close: () => req.destroy(),
    ended: endedPromise,
  };
}

/** Resolves to whether `promise` settled within `ms`. */
async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([promise.then(() => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

test("a push's output streams live to /api/apps/APP/deploys/live, and a rollback through /api/run brings the old version back through the proxy", async () => {
  const s = await login(admin);
  const stream = events(`/api/apps/${APP}/deploys/live`, s.cookie);
  try {
    assert.deepEqual(await stream.next('idle', 10_000), {});
    const repo = path.join(work, APP);
    gitRepo(repo, loggingApp(`${APP} v2`), 'v2');
    const push = spawn('git', ['push', daemon.remote(APP), 'main'], { cwd: repo, env: daemon.gitEnv(admin.privateKey), stdio: 'ignore' });
    const pushed = new Promise<number | null>((resolve) => push.once('exit', resolve));
    const start = (await stream.next('start')) as { by: string; startedAt: string };
    assert.equal(start.by, 'admin');
    const line = (await stream.next('line')) as string;
    assert.equal(typeof line, 'string');
    assert.doesNotMatch(line, /\x1b/);
    const end = (await stream.next('end')) as { ok: boolean; release: number };
    assert.deepEqual(end, { ok: true, release: 2 });
    assert.equal(await pushed, 0);
  } finally {
    stream.close();
  }
  assert.match((await request(daemon.httpPort, `${APP}.${daemon.domain}`)).body, /dash-a v2/);

  const rollback = await post(s, '/api/run', { words: ['releases:rollback', APP, '1'] });
  assert.equal(rollback.status, 200);
  assert.equal(rollback.json().exitCode, 0, rollback.json().output);
  assert.doesNotMatch(rollback.json().output, /\x1b/);
  assert.match((await request(daemon.httpPort, `${APP}.${daemon.domain}`)).body, /dash-a v1/);
  await logged(/"dashboard_action","key":"admin","command":"releases:rollback","app":"dash-a","address"/);
  // A restart (as ps:scale and config:set with a restart) is on the deploy feed too.
  const restart = events(`/api/apps/${APP}/deploys/live`, s.cookie);
  try {
    assert.deepEqual(await restart.next('idle', 10_000), {});
    const restarted = post(s, '/api/run', { words: ['ps:restart', APP] });
    assert.equal(((await restart.next('start', 60_000)) as { by: string }).by, 'admin');
    assert.deepEqual(await restart.next('end', 120_000), { ok: true, release: 3 });
    assert.equal((await restarted).json().exitCode, 0);
  } finally {
    restart.close();
  }
  const detail = (await call('GET', `/api/apps/${APP}`, { headers: { cookie: s.cookie } })).json();
  assert.equal(detail.current, 3);
  assert.match(detail.releases[0].description, /Rollback to v1/i);
});

test("an app's logs stream as `logs APP -t` prints them, and its request rate shows in /api/apps/APP/metrics", async () => {
  const s = await login(admin);
  for (let i = 0; i < 10; i++) assert.equal((await request(daemon.httpPort, `${APP}.${daemon.domain}`)).status, 200);
  const logs = events(`/api/apps/${APP}/logs?tail=5`, s.cookie);
  try {
    const first = await logs.next('line', 30_000);
    assert.equal(typeof first, 'string');
  } finally {
    logs.close();
  }
  await waitFor(
    'a point with requests in the metrics',
    async () => {
      for (let i = 0; i < 5; i++) await request(daemon.httpPort, `${APP}.${daemon.domain}`);
      const m = (await call('GET', `/api/apps/${APP}/metrics`, { headers: { cookie: s.cookie } })).json();
      assert.equal(m.step, 10);
      return m.points.some((p: any) => p.rps > 0 && typeof p.p50 === 'number' && p.p99 >= p.p50 && p.errors === 0);
    },
    60_000,
  );
});

test("a logs stream ends within about a second once its key is removed, and once its app is destroyed", async () => {
  const watcher = makeKey(work, 'watcher');
  assert.equal(daemon.cli(['ssh-keys:add', 'watcher', watcher.publicKey, '--apps', APP]).code, 0);
  const s = await login(watcher);
  const logs = events(`/api/apps/${APP}/logs?tail=1`, s.cookie);
  try {
    await logs.next('line', 30_000);
    assert.equal(await within(logs.ended, 1500), false, 'open while the key is there');
    assert.equal(daemon.cli(['ssh-keys:remove', 'watcher']).code, 0);
    assert.equal(await within(logs.ended, 3000), true, 'ended after the key went');
  } finally {
    logs.close();
  }

  const a = await login(admin);
  assert.equal(daemon.cli(['apps:create', 'dash-gone']).code, 0);
  const doomed = events('/api/apps/dash-gone/logs?tail=1', a.cookie);
  try {
    assert.equal(await within(doomed.ended, 1500), false, 'open while the app is there');
    assert.equal(daemon.cli(['apps:destroy', 'dash-gone', '--force']).code, 0);
    assert.equal(await within(doomed.ended, 3000), true, 'ended after the app went');
  } finally {
    doomed.close();
    daemon.cli(['apps:destroy', 'dash-gone', '--force']);
  }
});

test("a re-scoped key's sessions see its new scope at once, and a removed key's sessions end", async () => {
  const s = await login(deployer);
  assert.equal(daemon.cli(['ssh-keys:scope', 'deployer', '--apps', APP]).code, 0);
  assert.deepEqual((await call('GET', '/api/apps', { headers: { cookie: s.cookie } })).json().apps.map((a: any) => a.name), [APP]);
  assert.equal((await call('GET', `/api/apps/${OTHER}`, { headers: { cookie: s.cookie } })).status, 404);
  assert.equal(daemon.cli(['ssh-keys:remove', 'deployer']).code, 0);
  const gone = await call('GET', '/api/session', { headers: { cookie: s.cookie } });
  assert.equal(gone.status, 401);
  assert.equal(gone.json().error.code, 'no_session');
});

test('with its address taken the dashboard does not start but berth serves, and the dashboard command says why; off, it says it is off', async () => {
  const taken = await startDaemon({ args: ['--dashboard-listen', `127.0.0.1:${port}`] });
  try {
    await waitFor('dashboard_not_started in the log', () => /"dashboard_not_started".*cannot listen on 127\.0\.0\.1:\d+ \(dashboard\): the port is already in use/.test(taken.logs()), 10_000);
    const r = taken.cli(['dashboard']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /the dashboard is not running: it could not listen on its address \(--dashboard-listen\)/);
    assert.equal(taken.cli(['apps:list']).code, 0, 'berth serves without it');
  } finally {
    await taken.stop();
  }
  const off = await startDaemon({ args: ['--dashboard-listen', 'off'] });
  try {
    const r = off.cli(['dashboard']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /the dashboard is off on this server \(berth serve --dashboard-listen off\)/);
    assert.doesNotMatch(off.logs(), /"dashboard_listening"/);
  } finally {
    await off.stop();
  }
});
