// The dashboard's page in a real chromium against a small fake of the dashboard's API (the page is
// the module under test; test/e2e-dashboard.test.ts drives the same page against the real daemon).
// The fake answers as docs/dashboard.md's contract says, with the same security headers, so a CSP
// violation or a missing CSRF header shows up here.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test, type TestContext } from 'node:test';
import { dashboardAssets } from '../src/dashboard/assets.ts';
import { launchBrowser, newContext, screenshot, scrollsSideways, waitForText, watchProblems, type Browser, type Page } from './helpers/browser.ts';

const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
const CSRF = 'csrf-token-of-the-session';
const DAY = 24 * 3600_000;

interface Post {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: unknown;
}

/** The fake's answers, changed by the tests and by the actions the page posts. */
function initialState() {
  const now = Date.now();
  return {
    current: 3,
    deploying: false,
    runAnswer: null as null | { status: number; body: unknown },
    /** The app web is destroyed: its reads and streams answer 404. */
    webGone: false,
    /** Reads of this path that are cut off (the socket closed without an answer) before one is answered. */
    cutReads: { path: '', times: 0 },
    services: [{ kind: 'postgres', name: 'db', status: 'running', links: ['web'], backups: [{ name: 'db-1', size: 1024, createdAt: new Date(now - DAY).toISOString() }] as Array<{ name: string; size: number; createdAt: string }> | null }],
    metrics: Array.from({ length: 180 }, (_, i) => ({ t: now - (179 - i) * 10_000, rps: 5 + Math.sin(i / 9) * 4, p50: i % 40 === 0 ? null : 12 + (i % 7), p95: i % 40 === 0 ? null : 40 + (i % 11), p99: i % 40 === 0 ? null : 90 + (i % 13), errors: i % 30 === 0 ? 1 : 0 })),
  };
}

interface Fake {
  origin: string;
  state: ReturnType<typeof initialState>;
  posts: Post[];
  gets: string[];
  /** Open event streams of `path` (the pathname). */
  streams(path: string): number;
  /** Ends the open event streams of `path` (the browser reconnects). */
  drop(path: string): void;
  /** Ends every session, as a restart of the control plane does. */
  endSessions(): void;
  emit(path: string, event: string, data: unknown): void;
  close(): Promise<void>;
}

async function startFake(): Promise<Fake> {
  const assets = await dashboardAssets();
  const sessions = new Set<string>();
  const usedTokens = new Set<string>();
  const streams = new Map<string, Set<http.ServerResponse>>();
  const fake = { state: initialState(), posts: [] as Post[], gets: [] as string[] } as Fake;
  const json = (res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers });
    res.end(JSON.stringify(body));
  };
  const error = (res: http.ServerResponse, status: number, code: string, message: string, hint?: string) => json(res, status, { error: { code, message, ...(hint ? { hint } : {}) } });
  const app = (name: string) => {
    const s = fake.state;
    if (name === 'web')
      return {
        name: 'web',
        url: 'https://web.example.test',
        current: s.current,
        deploying: s.deploying,
        processes: [{ type: 'web', count: 2, running: 2 }, { type: 'worker', count: 1, running: 0 }],
        domains: [
          { host: 'web.example.test', https: true, expiresAt: new Date(Date.now() + 60 * DAY).toISOString(), lastError: null, auto: true },
          { host: 'shop.a-rather-long-customer-domain-name-that-must-wrap-on-a-phone.example.com', https: false, expiresAt: null, lastError: 'acme: no valid A record for shop.a-rather-long-customer-domain-name-that-must-wrap-on-a-phone.example.com', auto: false },
        ],
      };
    if (name === 'api') return { name: 'api', url: null, current: null, deploying: true, processes: [], domains: [] };
    return undefined;
  };
  const detail = () => ({
    ...app('web'),
    releases: [3, 2, 1].map((n) => ({ number: n, description: n === 1 ? 'first push' : `deploy of commit abc${n}`, builder: 'dockerfile', by: 'alice', createdAt: new Date(Date.now() - (4 - n) * DAY).toISOString(), current: n === fake.state.current, pruned: n === 1 })),
    containers: [
      { id: '0123456789ab', type: 'web', release: fake.state.current, state: 'running', startedAt: new Date().toISOString() },
      { id: 'ba9876543210', type: 'web', release: fake.state.current, state: 'running', startedAt: new Date().toISOString() },
    ],
    config: ['DATABASE_URL', 'SECRET_KEY_BASE'],
  });

  const server = http.createServer(async (req, res) => {
    res.setHeader('content-security-policy', CSP);
    res.setHeader('x-content-type-options', 'nosniff');
    res.setHeader('referrer-policy', 'no-referrer');
    const url = new URL(req.url!, fake.origin);
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString();
    const asset = assets.get(url.pathname) ?? (req.method === 'GET' && (url.pathname === '/login' || url.pathname.startsWith('/apps/')) ? assets.get('/') : undefined);
    if (asset && req.method === 'GET') {
      res.writeHead(200, { 'content-type': asset.contentType, etag: asset.etag });
      return res.end(asset.body);
    }
    if (!url.pathname.startsWith('/api/')) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      return res.end('not found');
    }
    const session = /(?:^|; )__Host-berth_session=([^;]+)/.exec(req.headers.cookie ?? '')?.[1];
    if (req.method === 'POST') {
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        body = text;
      }
      fake.posts.push({ path: url.pathname, headers: req.headers, body });
      const sameOrigin = req.headers.origin === fake.origin && req.headers['content-type'] === 'application/json';
      if (url.pathname === '/api/login') {
        if (!sameOrigin) return error(res, 403, 'cross_site', 'cross-site request refused');
        const token = (body as { token?: string }).token ?? '';
        if (!token.startsWith('good-') || usedTokens.has(token)) return error(res, 403, 'login_refused', 'this login link was used or has expired', 'run `ssh berth@HOST dashboard` for a new one');
        usedTokens.add(token);
        const id = `session-${sessions.size + 1}`;
        sessions.add(id);
        return json(res, 200, { ok: true }, { 'set-cookie': `__Host-berth_session=${id}; HttpOnly; Secure; SameSite=Strict; Path=/` });
      }
      if (!session || !sessions.has(session)) return error(res, 401, 'no_session', 'log in first');
      if (!sameOrigin || req.headers['x-berth-csrf'] !== CSRF) return error(res, 403, 'cross_site', 'cross-site request refused');
      if (url.pathname === '/api/logout') {
        sessions.delete(session);
        return json(res, 200, { ok: true });
      }
      if (url.pathname === '/api/run') {
        if (fake.state.runAnswer) return json(res, fake.state.runAnswer.status, fake.state.runAnswer.body);
        const words = (body as { words: string[] }).words;
        if (words[0] === 'releases:rollback' && words[1] === 'web') {
          fake.state.current = Number(words[2]);
          return json(res, 200, { exitCode: 0, output: `-----> Rolling back web to v${words[2]}\n=====> web is live at https://web.example.test` });
        }
        return json(res, 200, { exitCode: 1, output: ` !     unknown command ${words[0]}` });
      }
      return error(res, 404, 'not_found', `no ${url.pathname}`);
    }
    fake.gets.push(url.pathname);
    if (fake.state.cutReads.path === url.pathname && fake.state.cutReads.times > 0) {
      fake.state.cutReads.times--;
      return req.socket.destroy();
    }
    if (!session || !sessions.has(session)) return error(res, 401, 'no_session', 'log in first');
    if (fake.state.webGone && url.pathname.startsWith('/api/apps/web')) return error(res, 404, 'not_found', 'no app web');
    const stream = /^\/api\/apps\/([^/]+)\/(deploys\/live|logs)$/.exec(url.pathname);
    if (stream) {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
      res.flushHeaders();
      res.write('retry: 200\n\n');
      if (stream[2] === 'logs') for (const line of ['web.1 | listening on 5000', 'web.2 | listening on 5000']) res.write(`event: line\ndata: ${JSON.stringify(line)}\n\n`);
      else res.write('event: idle\ndata: {}\n\n');
      const open = streams.get(url.pathname) ?? new Set();
      streams.set(url.pathname, open);
      open.add(res);
      res.on('close', () => open.delete(res));
      return;
    }
    switch (url.pathname) {
      case '/api/session':
        return json(res, 200, { key: 'alice', admin: true, apps: null, csrf: CSRF, version: '0.1.0', domain: 'example.test', expiresAt: new Date(Date.now() + 12 * 3600_000).toISOString() });
      case '/api/apps':
        return json(res, 200, { apps: [app('api'), app('web')] });
      case '/api/apps/web':
        return json(res, 200, detail());
      case '/api/apps/web/metrics':
        return json(res, 200, { step: 10, points: fake.state.metrics });
      case '/api/services':
        return json(res, 200, { services: fake.state.services });
      default:
        return error(res, 404, 'not_found', `no app ${url.pathname.split('/')[3]}`, 'run `apps:list` to see the apps you may reach');
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  fake.origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  fake.streams = (path) => streams.get(path)?.size ?? 0;
  fake.endSessions = () => sessions.clear();
  fake.drop = (path) => {
    for (const res of streams.get(path) ?? []) res.end();
  };
  fake.emit = (path, event, data) => {
    for (const res of streams.get(path) ?? []) res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  };
  fake.close = async () => {
    server.closeAllConnections();
    server.close();
    await once(server, 'close');
  };
  return fake;
}

let browser: Browser;
let fake: Fake;
let tokens = 0;

before(async () => {
  fake = await startFake();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await fake?.close();
});

/** A page in a fresh profile, closed with the test; its problems are asserted by `clean`. */
async function openPage(t: TestContext, viewport = { width: 1200, height: 900 }): Promise<{ page: Page; clean: (allowed?: RegExp[]) => void }> {
  const context = await newContext(browser, { viewport });
  t.after(() => context.close());
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  const problems = watchProblems(page);
  return { page, clean: (allowed) => assert.deepEqual(problems.list(allowed), [], 'the page reported no console error, exception or CSP violation') };
}

async function waitFor(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Logs in through a fresh one-time link and waits for the apps. */
async function logIn(page: Page): Promise<void> {
  await page.goto(`${fake.origin}/login#good-${++tokens}`);
  await page.locator('[data-test="app-row"]').first().waitFor();
}

test('a login link logs in, takes its token out of the address bar, and shows the apps with processes, domains and certificates', async (t) => {
  fake.state = initialState();
  const { page, clean } = await openPage(t);
  await page.goto(`${fake.origin}/login#good-${++tokens}`);
  await page.locator('[data-test="app-row"]').first().waitFor();
  assert.equal(page.url(), `${fake.origin}/`, 'the token is gone from the address bar');
  const login = fake.posts.filter((p) => p.path === '/api/login').at(-1)!;
  assert.deepEqual(login.body, { token: `good-${tokens}` });
  assert.equal(login.headers['content-type'], 'application/json');
  assert.equal(login.headers.origin, fake.origin);
  assert.equal(await page.locator('[data-test="key-name"]').textContent(), 'alice');
  assert.equal(await page.locator('[data-test="key-scope"]').textContent(), 'admin');
  assert.deepEqual(await page.locator('[data-test="app-row"]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-app'))), ['api', 'web']);
  const web = page.locator('[data-test="app-row"][data-app="web"]');
  assert.match(await web.innerText(), /v3/);
  assert.match(await web.innerText(), /web 2\/2/);
  assert.match(await web.innerText(), /worker 0\/1/);
  assert.match(await web.innerText(), /HTTPS, valid until \d{4}-\d\d-\d\d/);
  assert.match(await web.innerText(), /last error: acme: no valid A record/);
  assert.equal(await web.locator('[data-test="deploying"]').count(), 0);
  assert.equal(await page.locator('[data-test="app-row"][data-app="api"] [data-test="deploying"]').count(), 1, 'the app being deployed has the badge');
  assert.match(await page.locator('[data-test="services"]').innerText(), /db\s+postgres\s+running\s+web\s+1 backup/);
  await screenshot(page, 'dashboard-page', 'apps');
  clean();
});

test('the services section is left out when there are no services', async (t) => {
  fake.state = initialState();
  fake.state.services = [];
  const { page, clean } = await openPage(t);
  await logIn(page);
  assert.equal(await page.locator('[data-test="services"]').count(), 0);
  clean();
});

test("a key that is not an admin's sees its services' backups as for admins only", async (t) => {
  fake.state = initialState();
  fake.state.services = [{ kind: 'redis', name: 'cache', status: 'running', links: ['web'], backups: null }];
  const { page, clean } = await openPage(t);
  await logIn(page);
  assert.match(await page.locator('[data-test="service-row"][data-service="cache"]').innerText(), /cache\s+redis\s+running\s+web\s+admins only/);
  clean();
});

test('a used or expired login link shows the refusal and the hint, not the apps', async (t) => {
  const { page, clean } = await openPage(t);
  await page.goto(`${fake.origin}/login#good-${++tokens}`);
  await page.locator('[data-test="app-row"]').first().waitFor();
  const { page: second } = await openPage(t);
  const problems = watchProblems(second);
  await second.goto(`${fake.origin}/login#good-${tokens}`);
  const refusal = second.locator('[data-test="login-error"]');
  await refusal.waitFor();
  assert.match(await refusal.innerText(), /this login link was used or has expired/);
  assert.match(await refusal.innerText(), /run ssh berth@HOST dashboard for a new one/);
  assert.equal(await refusal.locator('code').textContent(), 'ssh berth@HOST dashboard', 'the command in the hint shows as code');
  assert.equal(new URL(second.url()).hash, '', 'the refused token is gone from the address bar too');
  assert.equal(await second.locator('[data-test="app-row"]').count(), 0);
  assert.deepEqual(problems.list([/status of 403/]), []);
  clean();
});

test('without a session the page shows only how to log in', async (t) => {
  const { page, clean } = await openPage(t);
  await page.goto(`${fake.origin}/apps/web`);
  const screen = page.locator('[data-test="login-needed"]');
  await screen.waitFor();
  assert.match(await screen.innerText(), /Log in with ssh berth@127\.0\.0\.1 dashboard/);
  assert.equal(await page.locator('[data-test="key-name"]').count(), 0, 'no header');
  assert.equal(await page.locator('main').count(), 0, 'no other content');
  await screenshot(page, 'dashboard-page', 'login-needed');
  clean([/status of 401/]);
});

test('an app page shows releases, processes, containers, domains, config names, charts and logs', async (t) => {
  fake.state = initialState();
  const { page, clean } = await openPage(t);
  await logIn(page);
  await page.locator('[data-test="app-row"][data-app="web"] a.app-name').click();
  await page.locator('[data-test="release-row"]').first().waitFor();
  assert.equal(new URL(page.url()).pathname, '/apps/web');
  assert.deepEqual(await page.locator('[data-test="release-row"]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-release'))), ['3', '2', '1']);
  assert.equal(await page.locator('[data-test="release-row"][data-release="3"] [data-test="rollback"]').count(), 0, 'no rollback to the current release');
  assert.equal(await page.locator('[data-test="release-row"][data-release="1"] [data-test="rollback"]').count(), 0, 'no rollback to a pruned release');
  assert.equal(await page.locator('[data-test="release-row"][data-release="2"] [data-test="rollback"]').textContent(), 'Roll back to v2');
  assert.equal(await page.locator('[data-test="container-row"]').count(), 2);
  assert.match(await page.locator('[data-test="processes"]').innerText(), /worker\s+0\/1/);
  assert.deepEqual(await page.locator('[data-test="config"] code').allTextContents(), ['DATABASE_URL', 'SECRET_KEY_BASE']);
  assert.match(await page.locator('[data-test="domain"][data-host="web.example.test"]').innerText(), /HTTPS, valid until/);
  await page.locator('[data-test="chart-rps"] polyline').first().waitFor();
  assert.equal(await page.locator('[data-test="chart-rps"]').getAttribute('data-points'), '180');
  assert.ok((await page.locator('[data-test="chart-latency"] polyline').count()) >= 3 * 2, 'p50, p95 and p99 lines, broken where a point has no value');
  await waitForText(page, '[data-test="logs"]', /web\.2 \| listening on 5000/);
  assert.equal(await page.locator('[data-test="deploy-status"]').textContent(), 'No deploy running');
  await screenshot(page, 'dashboard-page', 'app');
  clean();
});

test('rolling back asks first, then posts the command as JSON with the CSRF token, shows its output and re-reads the app', async (t) => {
  fake.state = initialState();
  const { page, clean } = await openPage(t);
  await logIn(page);
  await page.goto(`${fake.origin}/apps/web`);
  await page.locator('[data-test="release-row"][data-release="2"] [data-test="rollback"]').click();
  const confirm = page.locator('[data-test="rollback-confirm"]');
  await confirm.waitFor();
  assert.match(await page.locator('[data-test="release-row"][data-release="2"]').innerText(), /Roll web back to v2\?/);
  assert.equal(fake.posts.filter((p) => p.path === '/api/run').length, 0, 'nothing is posted before the confirm');
  await page.locator('[data-test="rollback-cancel"]').click();
  assert.equal(await confirm.count(), 0);
  await page.locator('[data-test="release-row"][data-release="2"] [data-test="rollback"]').click();
  const readsBefore = fake.gets.filter((p) => p === '/api/apps/web').length;
  await confirm.click();
  const result = page.locator('[data-test="action-result"]');
  await result.waitFor();
  const run = fake.posts.filter((p) => p.path === '/api/run');
  assert.equal(run.length, 1);
  assert.deepEqual(run[0]!.body, { words: ['releases:rollback', 'web', '2'] });
  assert.equal(run[0]!.headers['content-type'], 'application/json');
  assert.equal(run[0]!.headers['x-berth-csrf'], CSRF);
  assert.equal(run[0]!.headers.origin, fake.origin);
  assert.equal(await result.getAttribute('data-exit-code'), '0');
  assert.match(await result.innerText(), /Rolling back web to v2/);
  await page.locator('[data-test="release-row"][data-release="2"].current').waitFor();
  assert.ok(fake.gets.filter((p) => p === '/api/apps/web').length > readsBefore, 'the app is read again after the action');
  assert.equal(await page.locator('[data-test="release-row"][data-release="3"] [data-test="rollback"]').count(), 1, 'the old current release can be rolled back to now');
  clean();
});

test('an action refused by the API shows its message and hint', async (t) => {
  fake.state = initialState();
  fake.state.runAnswer = { status: 400, body: { error: { code: 'use_ssh', message: 'releases:rollback is not available from the dashboard', hint: 'use `ssh berth@HOST releases:rollback web 2`' } } };
  const { page, clean } = await openPage(t);
  await logIn(page);
  await page.goto(`${fake.origin}/apps/web`);
  await page.locator('[data-test="release-row"][data-release="2"] [data-test="rollback"]').click();
  await page.locator('[data-test="rollback-confirm"]').click();
  const failure = page.locator('[data-test="action-error"]');
  await failure.waitFor();
  assert.equal(await failure.getAttribute('data-code'), 'use_ssh');
  assert.match(await failure.innerText(), /releases:rollback is not available from the dashboard\n+use ssh berth@HOST releases:rollback web 2/);
  clean([/status of 400/]);
});

test('an app the key may not see shows the 404 message with its hint', async (t) => {
  const { page, clean } = await openPage(t);
  await logIn(page);
  await page.goto(`${fake.origin}/apps/secret`);
  const failure = page.locator('[data-test="error"]');
  await failure.waitFor();
  assert.equal(await failure.getAttribute('data-code'), 'not_found');
  assert.match(await failure.innerText(), /no app secret\n+run apps:list to see the apps you may reach/);
  clean([/status of 404/]);
});

test('a deploy streams into the deploy panel line by line, opening it, and its end re-reads the app', async (t) => {
  fake.state = initialState();
  const { page, clean } = await openPage(t);
  await logIn(page);
  await page.goto(`${fake.origin}/apps/web`);
  const status = page.locator('[data-test="deploy-status"]');
  await waitForText(page, '[data-test="deploy-status"]', /^No deploy running$/);
  const live = '/api/apps/web/deploys/live';
  assert.equal(fake.streams(live), 1);
  assert.equal(await page.locator('[data-test="deploy-panel"]').getAttribute('open'), null, 'closed while nothing runs');
  fake.emit(live, 'start', { by: 'bob', startedAt: new Date().toISOString() });
  fake.emit(live, 'line', '-----> Building web from a Dockerfile');
  await waitForText(page, '[data-test="deploy-output"]', /^-----> Building web from a Dockerfile\s*$/);
  assert.match((await status.textContent())!, /^Deploying: started by bob at \d\d:\d\d$/);
  assert.equal(await page.locator('[data-test="deploy-panel"]').getAttribute('open'), '', 'opened when a deploy starts');
  fake.emit(live, 'line', '       Step 1/3 : FROM berth-test/base');
  await waitForText(page, '[data-test="deploy-output"]', /Dockerfile\s+Step 1\/3 : FROM berth-test\/base\s*$/);
  const readsBefore = fake.gets.filter((p) => p === '/api/apps/web').length;
  fake.state.current = 4;
  fake.emit(live, 'end', { ok: true, release: 4 });
  await waitForText(page, '[data-test="deploy-status"]', /^Deployed release v4$/);
  await page.locator('[data-test="release-row"][data-release="3"] [data-test="rollback"]').waitFor();
  assert.ok(fake.gets.filter((p) => p === '/api/apps/web').length > readsBefore);
  fake.emit(live, 'start', { by: 'bob', startedAt: new Date().toISOString() });
  fake.emit(live, 'end', { ok: false, error: 'the health check of web.1 failed' });
  await waitForText(page, '[data-test="deploy-status"]', /^Deploy failed: the health check of web\.1 failed$/);
  clean();
});

test('a dropped stream comes back: the logs show their tail once, and a deploy whose end was missed re-reads the app', async (t) => {
  fake.state = initialState();
  const { page, clean } = await openPage(t);
  await logIn(page);
  await page.goto(`${fake.origin}/apps/web`);
  await waitForText(page, '[data-test="logs"]', /web\.2 \| listening on 5000/);
  const logs = '/api/apps/web/logs';
  const connects = fake.gets.filter((p) => p === logs).length;
  fake.drop(logs);
  await waitFor(() => fake.gets.filter((p) => p === logs).length === connects + 1);
  await waitForText(page, '[data-test="logs-state"]', /^live$/);
  await waitForText(page, '[data-test="logs"]', /web\.2 \| listening on 5000/);
  assert.equal(await page.locator('[data-test="logs"]').textContent(), 'web.1 | listening on 5000\nweb.2 | listening on 5000\n', 'the replayed tail replaces what was shown');

  const live = '/api/apps/web/deploys/live';
  await waitForText(page, '[data-test="deploy-status"]', /^No deploy running$/);
  fake.emit(live, 'start', { by: 'bob', startedAt: new Date().toISOString() });
  fake.emit(live, 'line', '-----> Building web');
  await waitForText(page, '[data-test="deploy-status"]', /^Deploying/);
  const readsBefore = fake.gets.filter((p) => p === '/api/apps/web').length;
  fake.state.current = 2;
  fake.drop(live); // the end comes while the stream is down; the fake's new stream says idle
  await waitForText(page, '[data-test="deploy-status"]', /^The deploy ended while the connection was down/);
  await page.locator('[data-test="release-row"][data-release="2"].current').waitFor();
  assert.ok(fake.gets.filter((p) => p === '/api/apps/web').length > readsBefore);
  assert.match((await page.locator('[data-test="deploy-output"]').textContent())!, /Building web/, 'the output seen so far stays');
  clean();
});

test('a read cut off by the network is tried again before the page shows an error', async (t) => {
  fake.state = initialState();
  const { page, clean } = await openPage(t);
  await logIn(page);
  fake.state.cutReads = { path: '/api/apps/web', times: 2 };
  await page.goto(`${fake.origin}/apps/web`);
  await page.locator('[data-test="release-row"]').first().waitFor();
  assert.equal(fake.state.cutReads.times, 0);
  assert.equal(await page.locator('[data-test="error"]').count(), 0);
  clean([/ERR_EMPTY_RESPONSE/]);
});

test('restart and scale post their commands; a command that fails shows its exit code and output', async (t) => {
  fake.state = initialState();
  const { page, clean } = await openPage(t);
  await logIn(page);
  await page.goto(`${fake.origin}/apps/web`);
  await page.locator('[data-test="restart"]').click();
  const result = page.locator('[data-test="action-result"]');
  await result.waitFor();
  assert.deepEqual(fake.posts.at(-1)!.body, { words: ['ps:restart', 'web'] });
  assert.equal(await result.getAttribute('data-exit-code'), '1');
  assert.match(await result.innerText(), /ps:restart web failed \(exit code 1\)/);
  assert.match(await result.innerText(), /unknown command ps:restart/);
  const worker = page.locator('[data-test="process-row"][data-type="worker"]');
  await worker.locator('[data-test="scale-count"]').fill('3');
  await worker.locator('[data-test="scale"]').click();
  await waitForText(page, '[data-test="action-result"]', /ps:scale web worker=3/);
  assert.deepEqual(fake.posts.at(-1)!.body, { words: ['ps:scale', 'web', 'worker=3'] });
  assert.equal(fake.posts.at(-1)!.headers['x-berth-csrf'], CSRF);
  clean();
});

test('a session that ends while the page is open leaves only how to log in', async (t) => {
  fake.state = initialState();
  const { page, clean } = await openPage(t);
  await logIn(page);
  fake.endSessions();
  await page.locator('[data-test="login-needed"]').waitFor(); // at the next refresh of the apps
  assert.equal(await page.locator('[data-test="app-row"]').count(), 0);
  assert.equal(new URL(page.url()).pathname, '/');
  clean([/status of 401/]);
});

test("the served CSP holds and its violations are caught, so the other tests' \"no violation\" means none", async (t) => {
  const { page } = await openPage(t);
  const problems = watchProblems(page);
  await page.goto(`${fake.origin}/`);
  await page.locator('[data-test="login-needed"]').waitFor();
  await page.evaluate("document.body.insertAdjacentHTML('beforeend', '<p style=\"color: red\">inline</p>')");
  await waitFor(() => problems.list().some((p) => /Content Security Policy/.test(p)));
  assert.match(problems.list([/status of 401/]).join('\n'), /inline style violates the following Content Security Policy directive 'style-src 'self''/);
});

test('an app destroyed under its open page: the page says it is gone and stops its streams', async (t) => {
  fake.state = initialState();
  const { page, clean } = await openPage(t);
  await logIn(page);
  await page.goto(`${fake.origin}/apps/web`);
  await waitForText(page, '[data-test="deploy-status"]', /^No deploy running$/);
  const live = '/api/apps/web/deploys/live';
  fake.state.webGone = true;
  fake.drop(live);
  fake.drop('/api/apps/web/logs');
  const failure = page.locator('[data-test="error"]');
  await failure.waitFor();
  assert.equal(await failure.getAttribute('data-code'), 'not_found');
  assert.equal(await page.locator('[data-test="deploy-panel"]').count(), 0);
  const tries = fake.gets.filter((p) => p === live).length;
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(fake.gets.filter((p) => p === live).length, tries, 'no more reconnects');
  clean([/status of 404/]);
});

test('logging out ends the session and leaves only how to log in', async (t) => {
  const { page, clean } = await openPage(t);
  await logIn(page);
  await page.locator('[data-test="logout"]').click();
  await page.locator('[data-test="login-needed"]').waitFor();
  const logout = fake.posts.filter((p) => p.path === '/api/logout').at(-1)!;
  assert.equal(logout.headers['x-berth-csrf'], CSRF);
  assert.match(await page.locator('[data-test="login-needed"]').innerText(), /You are logged out/);
  await page.reload();
  await page.locator('[data-test="login-needed"]').waitFor();
  clean([/status of 401/]);
});

test('on a 390 px phone neither the apps nor an app page scrolls sideways', async (t) => {
  fake.state = initialState();
  const { page, clean } = await openPage(t, { width: 390, height: 844 });
  await logIn(page);
  assert.equal(await scrollsSideways(page), false, 'the apps list fits');
  await screenshot(page, 'dashboard-page', 'apps-phone');
  await page.goto(`${fake.origin}/apps/web`);
  await page.locator('[data-test="chart-latency"]').waitFor();
  await waitForText(page, '[data-test="logs"]', /web\.2/);
  fake.emit('/api/apps/web/deploys/live', 'start', { by: 'bob', startedAt: new Date().toISOString() });
  fake.emit('/api/apps/web/deploys/live', 'line', `-----> ${'a-very-long-build-output-line-without-spaces-'.repeat(6)}`);
  await waitForText(page, '[data-test="deploy-output"]', /a-very-long/);
  assert.equal(await scrollsSideways(page), false, 'the app page fits; tables and output scroll inside their boxes');
  await screenshot(page, 'dashboard-page', 'app-phone');
  clean();
});
