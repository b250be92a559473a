// The dashboard end to end in a real browser (test/e2e-dashboard.test.ts drives its HTTP API):
// dist/berth serve with Pebble for its certificates, a real chromium (test/helpers/browser.ts)
// reaching https://berth.example.test through berth's own proxy, logins from one-time links printed
// by a real `ssh berth@HOST dashboard`, apps pushed with the real git over the real OpenSSH client,
// and the rolled-back version checked over real HTTPS.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import { launchBrowser, newContext, screenshot, scrollsSideways, waitForText, watchProblems, type Browser, type Page } from './helpers/browser.ts';
import { httpsGet } from './helpers/certs.ts';
import { gitRepo, makeKey, nodeApp, run, tempDir, waitFor, type Daemon, type RunResult } from './helpers/daemon.ts';
import { startDaemonWithPebble, type Pebble } from './helpers/pebble.ts';

const DOMAIN = 'example.test';
const DASHBOARD = `berth.${DOMAIN}`;
const APP = 'shop';
const OTHER = 'ledger';
const ARTIFACTS = 'dashboard';
const work = tempDir('e2e-dashboard-browser');
let pebble: Pebble;
let daemon: Daemon;
let browser: Browser;
let admin: { privateKey: string; publicKey: string };
let origin: string;
const roots: string[] = [];

before(async () => {
  let root: string;
  ({ daemon, pebble, root } = await startDaemonWithPebble(DOMAIN));
  roots.push(root);
  admin = makeKey(work, 'admin');
  const added = daemon.cli(['ssh-keys:add', 'admin', admin.publicKey]);
  assert.equal(added.code, 0, added.stderr);
  origin = `https://${DASHBOARD}:${daemon.httpsPort}`;
  // The dashboard's host gets its certificate as an app's hostname does.
  await waitFor(`an HTTPS answer from ${DASHBOARD} with a Pebble certificate`, async () => (await httpsGet(daemon.httpsPort, DASHBOARD, '/', roots)).status === 200, 60_000);
  browser = await launchBrowser({ hosts: [DOMAIN, `*.${DOMAIN}`, 'elsewhere.test'] });
});

after(async () => {
  clearInterval(traffic);
  await browser?.close();
  for (const app of [APP, OTHER]) daemon?.cli(['apps:destroy', app, '--force']);
  await daemon?.stop();
  await pebble?.stop();
});

/** A one-time login link as `ssh berth@HOST dashboard` prints it for `key`. */
function loginLink(privateKey: string): string {
  const r = daemon.ssh(privateKey, 'dashboard');
  assert.equal(r.code, 0, r.stderr);
  const link = /https:\/\/berth\.example\.test(?::\d+)?\/login#\S+/.exec(r.stdout + r.stderr)?.[0];
  assert.ok(link, `a login link in:\n${r.stdout}${r.stderr}`);
  assert.equal(new URL(link).port, String(daemon.httpsPort), 'the link names the HTTPS port the proxy listens on');
  return link;
}

/** A page in a fresh profile (no cookies), closed with the test. */
async function openPage(t: TestContext, viewport = { width: 1200, height: 900 }) {
  const context = await newContext(browser, { viewport });
  t.after(() => context.close());
  const page = await context.newPage();
  page.setDefaultTimeout(30_000);
  return { page, problems: watchProblems(page) };
}

async function logIn(page: Page, privateKey: string): Promise<void> {
  await page.goto(loginLink(privateKey));
  await page.locator('[data-test="key-name"]').waitFor();
  assert.equal(page.url(), `${origin}/`, 'logged in, the token is out of the address bar');
}

/** `git push` to the daemon, not blocking this process (the browser is driven meanwhile). */
function pushAsync(repo: string, app: string, privateKey: string): Promise<RunResult> {
  const child = spawn('git', ['push', daemon.remote(app), 'HEAD:main'], { cwd: repo, env: daemon.gitEnv(privateKey), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** A version of the app whose build takes a few seconds and says so, so its output can be watched. */
function shopVersion(version: string): Record<string, string> {
  const files = nodeApp(`${APP} ${version}`);
  files.Dockerfile = files.Dockerfile!.replace('COPY . /app\n', `COPY . /app\nRUN echo "building ${APP} ${version}" && sleep 2\n`);
  // Each request makes a log line, for the logs panel.
  files['server.js'] = files['server.js']!.replace('http.createServer((req, res) => {', "http.createServer((req, res) => {\n  console.log('request ' + req.url);");
  return files;
}

async function appAnswer(app: string): Promise<string> {
  const r = await httpsGet(daemon.httpsPort, `${app}.${DOMAIN}`, '/', roots);
  return `${r.status} ${r.body.trim()}`;
}

const repo = path.join(work, APP);

/** Requests to the app every 250 ms from its first deploy on, for the charts (stopped in `after`). */
let traffic: NodeJS.Timeout | undefined;
function startTraffic(): void {
  traffic ??= setInterval(() => void httpsGet(daemon.httpsPort, `${APP}.${DOMAIN}`, '/', roots).catch(() => {}), 250);
}

test('a link from `ssh berth@HOST dashboard` logs in once; the same link again, or a made-up one, is refused', async (t) => {
  const { page, problems } = await openPage(t);
  const link = loginLink(admin.privateKey);
  await page.goto(link);
  await page.locator('[data-test="key-name"]').waitFor();
  assert.equal(await page.locator('[data-test="key-name"]').textContent(), 'admin');
  assert.equal(await page.locator('[data-test="key-scope"]').textContent(), 'admin');
  assert.equal(page.url(), `${origin}/`);
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === '__Host-berth_session');
  assert.ok(session, 'a session cookie');
  assert.equal(session.httpOnly, true);
  assert.equal(session.secure, true);
  assert.equal(session.sameSite, 'Strict');
  assert.deepEqual(problems.list(), []);

  const { page: again, problems: againProblems } = await openPage(t);
  await again.goto(link);
  await waitForText(again, '[data-test="login-error"]', /this login link was used or has expired/);
  assert.match(await again.locator('[data-test="login-error"]').innerText(), /dashboard/);
  assert.equal(await again.locator('[data-test="key-name"]').count(), 0);
  await again.goto(`${origin}/login#${'A'.repeat(43)}`);
  await waitForText(again, '[data-test="login-error"]', /this login link was used or has expired/);
  await again.goto(`${origin}/`);
  await waitForText(again, '[data-test="login-needed"]', /Log in with ssh berth@example\.test dashboard/);
  assert.deepEqual(againProblems.list([/status of 40[13]/]), []);
});

test('an app appears after a real push, and a later push streams its output into the open app page', async (t) => {
  const { page, problems } = await openPage(t);
  await logIn(page, admin.privateKey);
  await page.locator('[data-test="no-apps"]').waitFor();

  gitRepo(repo, shopVersion('v1'), 'v1');
  const first = await pushAsync(repo, APP, admin.privateKey);
  assert.equal(first.code, 0, first.stderr);
  const row = page.locator(`[data-test="app-row"][data-app="${APP}"]`);
  await row.waitFor();
  await waitForText(page, `[data-test="app-row"][data-app="${APP}"] [data-test="current-release"]`, /^v1$/);
  assert.match(await row.innerText(), /web 1\/1/);
  startTraffic();

  await row.locator('a.app-name').click();
  await waitForText(page, '[data-test="deploy-status"]', /^No deploy running$/);
  gitRepo(repo, shopVersion('v2'), 'v2');
  const second = pushAsync(repo, APP, admin.privateKey);
  await waitForText(page, '[data-test="deploy-status"]', /^Deploying: started by admin/);
  await waitForText(page, '[data-test="deploy-output"]', /building shop v2/);
  const midPush = await page.locator('[data-test="deploy-status"]').textContent();
  assert.match(midPush!, /^Deploying/, 'the output shows while the push still runs');
  assert.equal(await page.locator('[data-test="deploy-panel"]').getAttribute('open'), '', 'the panel opened by itself');
  const pushed = await second;
  assert.equal(pushed.code, 0, pushed.stderr);
  await waitForText(page, '[data-test="deploy-status"]', /^Deployed release v2$/);
  const output = await page.locator('[data-test="deploy-output"]').textContent();
  assert.match(output!, /^-----> /m, 'the pusher\'s step lines');
  assert.doesNotMatch(output!, /\u001b\[/, 'no terminal escapes');
  await page.locator('[data-test="release-row"][data-release="2"].current').waitFor();
  await screenshot(page, ARTIFACTS, 'app-deployed', { fullPage: false });
  assert.equal(await appAnswer(APP), `200 ${APP} v2`);
  assert.deepEqual(problems.list(), []);
});

test('rolling back from the page makes the old version answer through the proxy, logged with the key', async (t) => {
  const { page, problems } = await openPage(t);
  await logIn(page, admin.privateKey);
  await page.goto(`${origin}/apps/${APP}`);
  await page.locator('[data-test="release-row"][data-release="1"] [data-test="rollback"]').click();
  await page.locator('[data-test="rollback-confirm"]').click();
  const result = page.locator('[data-test="action-result"], [data-test="action-error"]');
  await result.waitFor({ timeout: 120_000 });
  assert.equal(await result.getAttribute('data-test'), 'action-result', await result.innerText());
  assert.equal(await result.getAttribute('data-exit-code'), '0', await result.innerText());
  // A rollback is a new release (v3) made of v1's image and config; the page has read it.
  await page.locator('[data-test="release-row"][data-release="3"].current').waitFor();
  await waitFor(`${APP} answering v1 again`, async () => (await appAnswer(APP)) === `200 ${APP} v1`, 60_000);
  const logged = daemon.logs().split('\n').filter((l) => l.includes('"dashboard_action"')).map((l) => JSON.parse(l) as { key?: string; command?: string; app?: string });
  assert.ok(logged.some((e) => e.key === 'admin' && e.command === 'releases:rollback' && e.app === APP), `the action is logged with the key's name: ${JSON.stringify(logged)}`);
  await waitForText(page, '[data-test="logs"]', /web\.1.*request \//);
  // Attached, not visible: a flat series is a polyline of zero height, which playwright counts as hidden.
  await page.locator('[data-test="chart-rps"] polyline').first().waitFor({ state: 'attached' });
  await page.locator('[data-test="chart-latency"] polyline').first().waitFor({ state: 'attached' });
  assert.deepEqual(problems.list(), []);
});

test("a scoped key's session sees and reaches its own app only", async (t) => {
  const carol = makeKey(work, 'carol');
  const created = daemon.cli(['apps:create', OTHER]);
  assert.equal(created.code, 0, created.stderr);
  const added = daemon.cli(['ssh-keys:add', 'carol', carol.publicKey, '--apps', OTHER]);
  assert.equal(added.code, 0, added.stderr);
  const { page, problems } = await openPage(t);
  await logIn(page, carol.privateKey);
  assert.equal(await page.locator('[data-test="key-name"]').textContent(), 'carol');
  assert.match((await page.locator('[data-test="key-scope"]').textContent())!, /scoped/);
  await page.locator(`[data-test="app-row"][data-app="${OTHER}"]`).waitFor();
  assert.deepEqual(await page.locator('[data-test="app-row"]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-app'))), [OTHER]);

  await page.goto(`${origin}/apps/${APP}`);
  const refused = page.locator('[data-test="error"]');
  await refused.waitFor();
  assert.equal(await refused.getAttribute('data-code'), 'not_found');
  assert.equal(await page.locator('[data-test="release-row"]').count(), 0);
  // Straight at the API, with the session's own CSRF token: the other app is as good as missing.
  const answers = await page.evaluate<{ detail: number; run: { exitCode: number; output: string } }, string>(async (app) => {
    const session = (await (await fetch('/api/session')).json()) as { csrf: string };
    const detail = (await fetch(`/api/apps/${app}`)).status;
    const run = (await (await fetch('/api/run', { method: 'POST', headers: { 'content-type': 'application/json', 'x-berth-csrf': session.csrf }, body: JSON.stringify({ words: ['releases:rollback', app, '2'] }) })).json()) as { exitCode: number; output: string };
    return { detail, run };
  }, APP);
  assert.equal(answers.detail, 404);
  assert.notEqual(answers.run.exitCode, 0, answers.run.output);
  assert.equal(await appAnswer(APP), `200 ${APP} v1`, 'nothing changed');
  assert.deepEqual(problems.list([/status of 404/]), []);
});

test('a form on another site posting to the dashboard is refused, though the browser is logged in', async (t) => {
  const { page } = await openPage(t);
  await logIn(page, admin.privateKey);
  // The other site: a page that submits a form to the dashboard's run endpoint as soon as it loads.
  const body = `<!doctype html><form method="POST" action="${origin}/api/run" enctype="text/plain"><input type="hidden" name='{"words":["releases:rollback","${APP}","2"],"x":"' value='"}'></form><script>document.forms[0].submit()</script>`;
  const evil = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(body);
  });
  evil.listen(0, '127.0.0.1');
  await once(evil, 'listening');
  t.after(() => evil.close());
  const answer = page.waitForResponse((r) => r.url() === `${origin}/api/run`);
  await page.goto(`http://elsewhere.test:${(evil.address() as AddressInfo).port}/`);
  const response = await answer;
  assert.equal(response.status(), 403);
  assert.equal(((await response.json()) as { error: { code: string } }).error.code, 'cross_site');
  assert.equal(await appAnswer(APP), `200 ${APP} v1`, 'the rollback did not happen');
});

test('screenshots of the apps and an app page; both fit a 390 px phone; the first paint is measured', async (t) => {
  const { page: wide, problems: wideProblems } = await openPage(t);
  await logIn(wide, admin.privateKey);
  await wide.locator(`[data-test="app-row"][data-app="${OTHER}"]`).waitFor();
  await screenshot(wide, ARTIFACTS, 'apps', { fullPage: false });
  await wide.goto(`${origin}/apps/${APP}`);
  await wide.locator('[data-test="release-row"]').first().waitFor();
  await wide.locator('[data-test="chart-latency"] polyline').first().waitFor({ state: 'attached' });
  await waitForText(wide, '[data-test="logs"]', /request \//);
  await screenshot(wide, ARTIFACTS, 'app');
  await screenshot(wide, ARTIFACTS, 'app-top', { fullPage: false });
  assert.deepEqual(wideProblems.list(), []);

  const { page, problems } = await openPage(t, { width: 390, height: 844 });
  await logIn(page, admin.privateKey);
  assert.equal(await scrollsSideways(page), false);
  await screenshot(page, ARTIFACTS, 'apps-phone');
  await page.goto(`${origin}/apps/${APP}`);
  await page.locator('[data-test="release-row"]').first().waitFor();
  await page.locator('[data-test="chart-latency"]').waitFor();
  assert.equal(await scrollsSideways(page), false);
  await screenshot(page, ARTIFACTS, 'app-phone');

  // First contentful paint of the logged-in apps page, and when its first app row shows (not asserted: a measure).
  const paints: number[] = [];
  const rows: number[] = [];
  for (let i = 0; i < 5; i++) {
    await page.goto(`${origin}/`);
    await page.locator('[data-test="app-row"]').first().waitFor();
    paints.push(await page.evaluate<number>("performance.getEntriesByType('paint').find((e) => e.name === 'first-contentful-paint')?.startTime ?? -1"));
    rows.push(await page.evaluate<number>('performance.now()'));
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  t.diagnostic(`first-contentful-paint of / over HTTPS through the proxy, median of 5: ${median(paints).toFixed(0)} ms (runs ${paints.map((p) => p.toFixed(0)).join(', ')}); app rows shown by about ${median(rows).toFixed(0)} ms`);
  assert.ok(paints.every((p) => p > 0), 'every load painted');
  assert.deepEqual(problems.list(), []);
});
