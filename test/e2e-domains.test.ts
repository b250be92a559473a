// Domains between tenants, end to end on real parts: dist/berth serve with a key scoped to one
// app over the real OpenSSH client, a real Pebble that validates on berth's listeners, and a
// real HTTPS forwarder in front of it that the test arms to answer one new order rate-limited
// (HTTP 429, the ACME rateLimited problem, Retry-After), as Let's Encrypt would.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, test } from 'node:test';
import { handshake } from './helpers/certs.ts';
import { startAcmeForwarder, type AcmeForwarder } from './helpers/acme-forwarder.ts';
import { makeKey, startDaemon, tempDir, waitFor, type Daemon } from './helpers/daemon.ts';
import { preparePebble, type Pebble } from './helpers/pebble.ts';

const work = tempDir('e2e-domains');
const MAX_APP_DOMAINS = 3;
let pebble: Pebble;
let forwarder: AcmeForwarder;
let daemon: Daemon;
let contractor: { privateKey: string; publicKey: string };
const roots: string[] = [];

interface Report {
  limits: {
    domains: { used: number; cap: number };
    orders: { lastHour: number; cap: number; nextOrderAt: string | null };
    accountPause: { until: string; since: string; domain: string; detail: string } | null;
  };
  domains: Array<{ domain: string; certificate: { issuer: string } | null; attempts: { failures: number; lastError?: string }; waiting: string | null }>;
}

function report(app: string): Report {
  const r = daemon.cli(['certs:report', app, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Report;
}

function domainsOf(app: string): string[] {
  const r = daemon.cli(['domains:list', app]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim().split('\n').slice(1).filter((l) => !l.startsWith(' '));
}

/** state/domains.json as it is on disk (undefined before the first change). */
function domainsState(): string | undefined {
  const file = `${daemon.dataDir}/state/domains.json`;
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : undefined;
}

async function certified(host: string): Promise<boolean> {
  return (await handshake(daemon.httpsPort, host, { ca: roots })).authorized;
}

function serveArgs(): string[] {
  return ['--acme-directory', forwarder.directory, '--acme-ca-file', pebble.caFile, '--acme-email', 'ops@example.test', '--max-app-domains', String(MAX_APP_DOMAINS)];
}

before(async () => {
  pebble = await preparePebble();
  forwarder = await startAcmeForwarder(pebble);
  daemon = await startDaemon({ domain: 'example.test', args: serveArgs() });
  await pebble.start({ httpPort: daemon.httpPort, tlsPort: daemon.httpsPort });
  roots.push(await pebble.root());
  contractor = makeKey(work, 'contractor');
  assert.equal(daemon.cli(['apps:create', 'web']).code, 0);
  const added = daemon.cli(['ssh-keys:add', 'contractor', contractor.publicKey, '--apps', 'web']);
  assert.equal(added.code, 0, added.stderr);
});

after(async () => {
  await daemon?.stop();
  await forwarder?.stop();
  await pebble?.stop();
});

test('a key scoped to one app cannot squat billing.DOMAIN over SSH before app billing exists; apps:create billing then gets it and its certificate', async () => {
  const before = domainsState();
  for (const name of ['billing.example.test', 'www.billing.example.test', 'BILLING.example.test.']) {
    const squat = daemon.ssh(contractor.privateKey, `domains:add web ${name}`);
    assert.notEqual(squat.code, 0, `${name} is refused`);
    assert.match(squat.stderr, /billing\.example\.test is reserved for the app named billing/);
  }
  const viaSet = daemon.ssh(contractor.privateKey, 'domains:set web web.example.test billing.example.test');
  assert.notEqual(viaSet.code, 0);
  assert.match(viaSet.stderr, /reserved for the app named billing/);
  const apex = daemon.ssh(contractor.privateKey, 'domains:add web example.test');
  assert.notEqual(apex.code, 0);
  assert.match(apex.stderr, /only an admin assigns/);
  const admin = daemon.cli(['domains:add', 'web', 'billing.example.test']);
  assert.notEqual(admin.code, 0, 'the admin cannot give it to another app either');
  assert.match(admin.stderr, /reserved for the app named billing/);
  assert.equal(domainsState(), before, 'nothing changed');
  assert.deepEqual(domainsOf('web'), ['web.example.test']);

  const created = daemon.cli(['apps:create', 'billing']);
  assert.equal(created.code, 0, created.stderr);
  assert.deepEqual(domainsOf('billing'), ['billing.example.test'], 'the app gets its default domain when it is created');
  await waitFor('a certificate for billing.example.test', () => certified('billing.example.test'), 60_000);
  await waitFor('a certificate for web.example.test', () => certified('web.example.test'), 60_000);
  const taken = daemon.ssh(contractor.privateKey, 'domains:add web billing.example.test');
  assert.notEqual(taken.code, 0, 'still refused once the app exists');
});

test('the domain cap refuses the domain beyond it, for the scoped key and the admin, with nothing changed, and certs:report shows it', () => {
  const added = daemon.ssh(contractor.privateKey, 'domains:add web a.example.org b.example.org');
  assert.equal(added.code, 0, added.stderr);
  const before = domainsState();
  const over = daemon.ssh(contractor.privateKey, 'domains:add web c.example.org');
  assert.notEqual(over.code, 0);
  assert.match(over.stderr, /web would have 4 domains, and an app may have at most 3, its default domain included \(berth serve --max-app-domains\)/);
  const overByAdmin = daemon.cli(['domains:add', 'web', 'c.example.org']);
  assert.notEqual(overByAdmin.code, 0);
  assert.match(overByAdmin.stderr, /--max-app-domains/);
  const overBySet = daemon.ssh(contractor.privateKey, 'domains:set web web.example.test a.example.org b.example.org c.example.org');
  assert.notEqual(overBySet.code, 0);
  assert.match(overBySet.stderr, /--max-app-domains/);
  assert.equal(domainsState(), before, 'nothing changed');
  assert.deepEqual(domainsOf('web'), ['web.example.test', 'a.example.org', 'b.example.org']);
  assert.deepEqual(report('web').limits.domains, { used: 3, cap: 3 });
  assert.match(daemon.ssh(contractor.privateKey, 'certs:report web').stdout, /domains: 3 of at most 3 \(--max-app-domains\)/);
});

test("a rate-limited answer from the CA pauses the whole ACME account: no order for another app's domain goes out, certs:report shows it, and a restart keeps it", async () => {
  await waitFor('certificates for every domain so far', async () => (await Promise.all(['web.example.test', 'a.example.org', 'b.example.org', 'billing.example.test'].map(certified))).every(Boolean), 90_000);
  forwarder.rateLimitNextOrders(1, 3600);
  const asked = Date.now();
  assert.equal(daemon.cli(['domains:add', 'billing', 'pay.example.org']).code, 0);
  await waitFor('the rate-limited answer in certs:report', () => report('billing').limits.accountPause !== null, 60_000);
  assert.equal(forwarder.rateLimited, 1);
  const pause = report('billing').limits.accountPause!;
  assert.equal(pause.domain, 'pay.example.org');
  assert.match(pause.detail, /too many new orders/);
  const until = Date.parse(pause.until);
  assert.ok(until >= asked + 3_590_000 && until <= Date.now() + 3_600_000, `paused for the CA's Retry-After: until ${pause.until}`);
  const pay = report('billing').domains.find((d) => d.domain === 'pay.example.org')!;
  assert.match(pay.attempts.lastError ?? '', /the CA answered rate-limited: too many new orders/);

  // Another app's domain: its order would be due at once, but the account is paused.
  const ordersBefore = forwarder.newOrders;
  assert.equal(daemon.cli(['apps:create', 'api']).code, 0);
  assert.equal(daemon.cli(['domains:add', 'api', 'api.example.org']).code, 0);
  await waitFor('the pause in the report of api', () => (report('api').domains[0]?.waiting ?? '').includes('paused'), 10_000);
  await new Promise((r) => setTimeout(r, 3000));
  assert.equal(forwarder.newOrders, ordersBefore, 'no new order reached the CA');
  const api = report('api');
  assert.equal(api.limits.accountPause?.until, pause.until, 'every app sees the same pause');
  for (const d of api.domains) {
    assert.equal(d.certificate, null);
    assert.match(d.waiting ?? '', /the ACME account is paused until .*: the CA answered rate-limited/);
  }
  const text = daemon.cli(['certs:report', 'api']).stdout;
  assert.match(text, /ACME account: paused until \S+ \(in \d+ min\), for every app: the CA answered rate-limited at \S+ \(ordering pay\.example\.org\)/);
  assert.match(text, /ACME orders in the last hour: 0 of at most 20 \(--max-app-acme-orders\)/);
  assert.match(report('billing').limits.orders.lastHour.toString(), /^[1-9]/, 'the rate-limited order counted against billing');

  await daemon.stop();
  daemon = await startDaemon({ dataDir: daemon.dataDir, domain: 'example.test', args: serveArgs() });
  await new Promise((r) => setTimeout(r, 3000));
  assert.equal(forwarder.newOrders, ordersBefore, 'no order after a restart either');
  assert.equal(report('api').limits.accountPause?.until, pause.until, 'the restarted daemon keeps the pause');
});

test('after --domain changes, an app holding a name now reserved for another keeps it, both reports show the conflict, and creating that app is refused until it is released', async () => {
  // pay.example.org was added to billing while the domain was example.test; now it is pay's.
  await daemon.stop();
  daemon = await startDaemon({ dataDir: daemon.dataDir, domain: 'example.org', args: serveArgs() });
  assert.deepEqual(domainsOf('billing'), ['billing.example.org', 'pay.example.org'], 'the holder keeps serving it: nothing lost on load');
  const list = daemon.cli(['domains:list', 'billing']).stdout;
  assert.match(list, /conflict: billing holds pay\.example\.org, which is reserved for an app named pay/);
  assert.match(daemon.cli(['certs:report', 'billing']).stdout, /conflict: billing holds pay\.example\.org, reserved for an app named pay/);

  const refused = daemon.cli(['apps:create', 'pay']);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /names reserved for an app named pay are held by another app[\s\S]*pay\.example\.org \(held by app billing\)/);
  assert.match(refused.stderr, /domains:remove billing pay\.example\.org/);
  assert.doesNotMatch(daemon.cli(['apps:list']).stdout, /^pay\s/m, 'pay was not created');

  assert.equal(daemon.cli(['domains:remove', 'billing', 'pay.example.org']).code, 0);
  const created = daemon.cli(['apps:create', 'pay']);
  assert.equal(created.code, 0, created.stderr);
  assert.deepEqual(domainsOf('pay'), ['pay.example.org'], 'created with its default domain');
  assert.doesNotMatch(daemon.cli(['domains:list', 'billing']).stdout, /conflict/);
});
