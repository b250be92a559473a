// The ACME order budget in-process, on an injected clock: the cap of orders per app per hour,
// the whole account's pause after a rate-limited answer, both kept across a restart; then the
// certificate manager driving it with an issuer that signs with a test CA (the same path against
// a real Pebble behind a rate-limiting forwarder is in e2e-domains.test.ts).
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ACME_ORDER_WINDOW_MS } from '../src/domain-caps.ts';
import { setLogSink } from '../src/log.ts';
import { AcmeRateLimited, retryAfterMs, type Issued, type OrderGate } from '../src/proxy/tls/acme-issuer.ts';
import { CertificateManager, type Issuer } from '../src/proxy/tls/certificate-manager.ts';
import { DEFAULT_RATE_LIMIT_PAUSE_MS, MAX_RATE_LIMIT_PAUSE_MS, OrderBudget, OrderDeferred } from '../src/proxy/tls/order-budget.ts';
import { retryDelay } from '../src/proxy/tls/renewal-schedule.ts';
import { CertStateStore } from '../src/state/cert-state-store.ts';
import { DomainStore } from '../src/state/domain-store.ts';
import { issueCert, makeCa, type TestCa } from './helpers/certs.ts';
import { tempDir, waitFor } from './helpers/daemon.ts';

const DIRECTORY = 'https://ca.example.test/dir';
const HOUR = ACME_ORDER_WINDOW_MS;
const ADMIN = { admin: true };

let ca: TestCa;
const logLines: Array<Record<string, unknown>> = [];
before(() => {
  setLogSink((line) => logLines.push(JSON.parse(line) as Record<string, unknown>));
  ca = makeCa('berth budget test CA');
});
after(() => setLogSink((line) => process.stderr.write(line + '\n')));

/** A clock that moves only when the test moves it. */
function clock(start = Date.parse('2026-01-05T10:00:00.000Z')) {
  const c = { now: start, read: () => c.now, advance: (ms: number) => void (c.now += ms) };
  return c;
}

async function budgetAt(file: string, now: () => number, maxPerHour = 3): Promise<OrderBudget> {
  const state = new CertStateStore(file);
  await state.load();
  return new OrderBudget({ state, directory: DIRECTORY, maxPerHour, now });
}

function deferred(pattern: RegExp, until?: number) {
  return (e: unknown) => e instanceof OrderDeferred && pattern.test(e.message) && (until === undefined || e.until === until);
}

test('an app places at most its cap of orders in any hour; the next waits until the oldest leaves the window, and other apps are not held', async () => {
  const t = clock();
  const file = path.join(tempDir('budget'), 'certs.json');
  const budget = await budgetAt(file, t.read);
  const first = t.now;
  for (let i = 0; i < 3; i++) {
    await budget.take('web', `d${i}.example.org`);
    t.advance(60_000);
  }
  await assert.rejects(budget.take('web', 'd3.example.org'), deferred(/d3\.example\.org: web placed 3 ACME orders in the last hour, its cap \(berth serve --max-app-acme-orders\)/, first + HOUR));
  assert.deepEqual(budget.report('web'), { lastHour: 3, cap: 3, nextOrderAt: new Date(first + HOUR).toISOString() });
  assert.equal(budget.nextOrderAt('web'), first + HOUR);
  await budget.take('api', 'api.example.org');
  assert.equal(budget.report('api').lastHour, 1, 'another app has its own hour');

  t.now = first + HOUR - 1;
  await assert.rejects(budget.take('web', 'd3.example.org'), deferred(/its cap/), 'a refused order is not counted: the window still ends at the same time');
  t.now = first + HOUR + 1;
  await budget.take('web', 'd3.example.org');
  assert.equal(budget.report('web').lastHour, 3, 'the oldest order left the window as the new one came in');

  const reloaded = await budgetAt(file, t.read);
  assert.deepEqual(reloaded.report('web'), budget.report('web'), 'the count survives a restart');
  await assert.rejects(reloaded.take('web', 'd4.example.org'), deferred(/its cap/));
});

test('a rate-limited answer pauses every order of the account, for every app, until Retry-After; the pause survives a restart and never shortens', async () => {
  const t = clock();
  const file = path.join(tempDir('budget'), 'certs.json');
  const budget = await budgetAt(file, t.read);
  const pause = await budget.rateLimited('web.example.org', 'too many new orders recently', 30 * 60_000);
  const until = t.now + 30 * 60_000;
  assert.deepEqual(pause, { until: new Date(until).toISOString(), since: new Date(t.now).toISOString(), domain: 'web.example.org', detail: 'too many new orders recently' });
  for (const app of ['web', 'api', 'never-ordered']) {
    await assert.rejects(budget.take(app, `${app}.example.org`), deferred(/the ACME account is paused until .*: the CA answered rate-limited \(too many new orders recently\)/, until));
    assert.equal(budget.nextOrderAt(app), until);
  }
  assert.deepEqual(budget.report('api'), { lastHour: 0, cap: 3, nextOrderAt: null }, 'nothing was counted');

  t.advance(60_000);
  await budget.rateLimited('api.example.org', 'a shorter answer', 1000);
  assert.equal(budget.pause()?.until, new Date(until).toISOString(), 'a shorter Retry-After does not shorten the pause');

  const restarted = await budgetAt(file, t.read);
  assert.equal(restarted.pause()?.until, new Date(until).toISOString(), 'a restart does not forget the pause');
  await assert.rejects(restarted.take('api', 'api.example.org'), deferred(/paused/));
  const sameFile = new CertStateStore(file);
  await sameFile.load();
  const otherDirectory = new OrderBudget({ state: sameFile, directory: 'https://other.example.test/dir', maxPerHour: 3, now: t.read });
  assert.equal(otherDirectory.pause(), undefined, "another directory's account is not paused");

  t.now = until;
  assert.equal(restarted.pause(), undefined);
  await restarted.take('api', 'api.example.org');
});

test('without Retry-After the account pauses an hour, and a Retry-After beyond a week is held to a week', async () => {
  const t = clock();
  const budget = await budgetAt(path.join(tempDir('budget'), 'certs.json'), t.read);
  assert.equal(Date.parse((await budget.rateLimited('a.example.org', 'x', undefined)).until), t.now + DEFAULT_RATE_LIMIT_PAUSE_MS);
  assert.equal(Date.parse((await budget.rateLimited('a.example.org', 'x', 365 * 86_400_000)).until), t.now + MAX_RATE_LIMIT_PAUSE_MS);
});

test('Retry-After is read as seconds or as an HTTP date', () => {
  const now = Date.parse('2026-01-05T10:00:00.000Z');
  assert.equal(retryAfterMs('120', now), 120_000);
  assert.equal(retryAfterMs('Mon, 05 Jan 2026 11:00:00 GMT', now), HOUR);
  assert.equal(retryAfterMs(undefined, now), undefined);
  assert.equal(retryAfterMs('soon', now), undefined);
});

/** An issuer that passes the manager's gate before each order, as AcmeIssuer does, and answers rate-limited for the domains in `limited`. */
function gatedIssuer(calls: string[], limited: Map<string, number | undefined>): Issuer {
  return {
    directory: DIRECTORY,
    async issue(domain: string, beforeOrder: OrderGate): Promise<Issued> {
      await beforeOrder();
      calls.push(domain);
      await new Promise((r) => setTimeout(r, 5));
      if (limited.has(domain)) throw new AcmeRateLimited(`too many certificates for ${domain}`, limited.get(domain));
      const cert = issueCert(ca, [domain]);
      return { certPem: cert.certPem + ca.pem, keyPem: cert.keyPem, challenge: 'http-01' };
    },
  };
}

async function managerAt(dir: string, options: { apps: string[]; now: () => number; calls: string[]; limited?: Map<string, number | undefined>; maxOrdersPerHour?: number }) {
  const domains = new DomainStore(path.join(dir, 'state', 'domains.json'), { domain: 'example.test', apps: () => options.apps });
  await domains.load();
  const manager = new CertificateManager({
    config: { acmeDirectory: DIRECTORY, acmeEmail: 'ops@example.test', acmeCaFile: '' },
    renewal: { renewAt: (info) => info.notAfter.getTime(), retryDelay: (failures) => retryDelay(failures, 40) },
    certsDir: path.join(dir, 'certs'),
    stateFile: path.join(dir, 'state', 'certs.json'),
    apps: { list: () => options.apps.map((name) => ({ name })) },
    domains,
    issuer: gatedIssuer(options.calls, options.limited ?? new Map()),
    maxOrdersPerHour: options.maxOrdersPerHour ?? 20,
    now: options.now,
  });
  await manager.load();
  await manager.start();
  return { manager, domains };
}

/** Lets any order that could start now start (real time: the scheduler's timers). */
const settle = () => new Promise((r) => setTimeout(r, 300));

test('the certificate manager: one rate-limited answer holds back the orders of every other domain and app until Retry-After, across a restart', async (t) => {
  const c = clock(Date.now());
  const dir = tempDir('budget-manager');
  const apps = ['web'];
  const calls: string[] = [];
  const limited = new Map<string, number | undefined>([['web.example.test', 3_600_000]]);
  const first = await managerAt(dir, { apps, now: c.read, calls, limited });
  t.after(() => first.manager.stop());
  await waitFor('the rate-limited answer', () => first.manager.limits('web').accountPause !== null, 10_000);
  const pause = first.manager.limits('web').accountPause!;
  assert.equal(Date.parse(pause.until), c.now + 3_600_000);
  assert.equal(pause.domain, 'web.example.test');
  const [web] = first.manager.report('web');
  assert.match(web!.attempts.lastError ?? '', /the CA answered rate-limited: too many certificates for web\.example\.test; every order of the ACME account waits until/);
  assert.equal(web!.attempts.failures, 0, "a rate limit is the account's, not a failure of the domain");
  assert.ok(logLines.some((l) => l.event === 'acme_rate_limited' && l.domain === 'web.example.test'));

  apps.push('api');
  await first.domains.add('web', ['www.example.org'], ADMIN);
  await first.manager.sync();
  await settle();
  assert.deepEqual(calls, ['web.example.test'], 'no order for another domain or another app while the account is paused');
  assert.match(first.manager.report('api')[0]!.waiting ?? '', /the ACME account is paused until .*rate-limited/);
  assert.equal(first.manager.limits('api').accountPause?.until, pause.until, 'every app sees the pause');

  await first.manager.stop();
  const second = await managerAt(dir, { apps, now: c.read, calls, limited });
  t.after(() => second.manager.stop());
  await settle();
  assert.deepEqual(calls, ['web.example.test'], 'a restarted manager keeps the pause');

  limited.clear();
  c.advance(3_600_000);
  await second.manager.sync();
  await waitFor('certificates for all three domains', () => ['web.example.test', 'www.example.org', 'api.example.test'].every((d) => second.manager.hasCertificate(d)), 10_000);
  assert.equal(second.manager.limits('web').accountPause, null);
});

test('the certificate manager: an app at its order cap waits for its hour to have room while another app orders, and certs:report says why', async (t) => {
  const c = clock(Date.now());
  const dir = tempDir('budget-manager');
  const apps = ['web', 'api'];
  const calls: string[] = [];
  const domains = new DomainStore(path.join(dir, 'state', 'domains.json'), { domain: 'example.test', apps: () => apps });
  await domains.load();
  await domains.add('web', ['a.example.org', 'b.example.org'], ADMIN);
  const { manager } = await managerAt(dir, { apps, now: c.read, calls, maxOrdersPerHour: 2 });
  t.after(() => manager.stop());
  await waitFor('two certificates of web and the one of api', () => calls.filter((d) => d !== 'api.example.test').length === 2 && manager.hasCertificate('api.example.test'), 10_000);
  await settle();
  const webCalls = calls.filter((d) => d !== 'api.example.test');
  assert.equal(webCalls.length, 2, `web placed two orders: ${calls.join(', ')}`);
  const limits = manager.limits('web');
  assert.deepEqual(limits.orders, { lastHour: 2, cap: 2, nextOrderAt: new Date(c.now + ACME_ORDER_WINDOW_MS).toISOString() });
  assert.deepEqual(limits.domains, { used: 3, cap: 20 });
  const waiting = manager.report('web').find((r) => !manager.hasCertificate(r.domain))!;
  assert.match(waiting.waiting ?? '', /web placed 2 ACME orders in the last hour, its cap \(berth serve --max-app-acme-orders\)/);
  assert.equal(waiting.attempts.failures, 0, 'waiting is no failure');
  assert.equal(manager.limits('api').orders.lastHour, 1);

  c.advance(ACME_ORDER_WINDOW_MS);
  await manager.sync();
  await waitFor('the third certificate once the hour has room', () => manager.hasCertificate(waiting.domain), 10_000);
  assert.equal(manager.limits('web').orders.lastHour, 1, 'the hour holds only the new order');
});
