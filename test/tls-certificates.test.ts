// The certificate side of automatic HTTPS in-process: parsing and checks, the renewal schedule,
// and the certificate manager's per-domain loops with an issuer that signs with a test CA (the
// same paths against Pebble are in e2e-https.test.ts).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { isUserError } from '../src/errors.ts';
import { setLogSink } from '../src/log.ts';
import type { Issued } from '../src/proxy/tls/acme-issuer.ts';
import { covers, parseCertificateBundle, splitPem } from '../src/proxy/tls/certificate.ts';
import { CertificateManager, type Issuer } from '../src/proxy/tls/certificate-manager.ts';
import { directorySlug } from '../src/proxy/tls/certificate-store.ts';
import { DEFAULT_RENEWAL_POLICY, MAX_RETRY_DELAY_MS, RETRY_BASE_MS, renewalTime, retryDelay, type RenewalPolicy } from '../src/proxy/tls/renewal-schedule.ts';
import { DomainStore } from '../src/state/domain-store.ts';
import { issueCert, makeCa, opensslDate, type TestCa } from './helpers/certs.ts';
import { tempDir, waitFor } from './helpers/daemon.ts';

/** The local CLI: the admin, who may assign any name under DOMAIN not reserved for another app. */
const ADMIN = { admin: true };

let ca: TestCa;
let otherCa: TestCa;
const logLines: Array<Record<string, unknown>> = [];
before(() => {
  setLogSink((line) => logLines.push(JSON.parse(line) as Record<string, unknown>));
  ca = makeCa('berth test CA');
  otherCa = makeCa('another test CA');
});
after(() => setLogSink((line) => process.stderr.write(line + '\n')));

function refusedWith(code: string, pattern?: RegExp) {
  return (e: unknown) => isUserError(e) && e.code === code && (!pattern || pattern.test(e.message + '\n' + (e.hint ?? '')));
}

test('a bundle is checked with X.509: the key must match, the leaf goes first, names and dates are read', () => {
  const leaf = issueCert(ca, ['www.example.com', 'example.com']);
  const bundle = parseCertificateBundle(ca.pem + leaf.certPem, leaf.keyPem);
  assert.ok(bundle.certPem.startsWith(leaf.certPem.trim().split('\n')[0]!), 'the leaf is put first');
  assert.ok(bundle.certPem.trimEnd().endsWith(ca.pem.trimEnd()), 'the rest of the chain follows');
  assert.deepEqual(bundle.info.names, ['www.example.com', 'example.com']);
  assert.equal(bundle.info.issuer, 'berth test CA');
  assert.ok(bundle.info.notAfter.getTime() > Date.now());
  assert.ok(covers(bundle, 'www.example.com') && covers(bundle, 'EXAMPLE.com') && !covers(bundle, 'api.example.com'));

  const other = issueCert(ca, ['www.example.com']);
  assert.throws(() => parseCertificateBundle(leaf.certPem, other.keyPem), refusedWith('key_mismatch', /does not match/));
  assert.throws(() => parseCertificateBundle('not a certificate', leaf.keyPem), refusedWith('invalid_certificate'));
  assert.throws(() => parseCertificateBundle(leaf.certPem, 'no key here'), refusedWith('invalid_key'));
  assert.throws(() => parseCertificateBundle(leaf.certPem, leaf.keyPem + other.keyPem), refusedWith('invalid_key', /one private key/));
});

test('PEM blocks are split as the PEM grammar says, and 64 KiB of BEGIN lines without an END give nothing', () => {
  const cert = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----';
  const key = '-----BEGIN EC PRIVATE KEY-----\nMHcC\n-----END EC PRIVATE KEY-----';
  assert.deepEqual(splitPem(`junk\n${cert}\n${key}\n${cert}\n`), { certs: [`${cert}\n`, `${cert}\n`], keys: [`${key}\n`] });
  // A BEGIN without its END is skipped; an END of another label does not close a block.
  const open = '-----BEGIN CERTIFICATE-----\nxx\n-----END PRIVATE KEY-----\n';
  assert.deepEqual(splitPem(open + key), { certs: [], keys: [key + '\n'] });
  assert.deepEqual(splitPem('-----BEGIN CERTIFICATE----------END CERTIFICATE-----'), { certs: [], keys: [] });
  const hostile = '-----BEGIN CERTIFICATE-----\n'.repeat(Math.floor((64 * 1024) / 28)) + '-----BEGIN A-----'.repeat(100);
  assert.deepEqual(splitPem(hostile), { certs: [], keys: [] });
});

test('a wildcard certificate covers one label below its name and no more', () => {
  const wild = issueCert(ca, ['*.example.com']);
  const bundle = parseCertificateBundle(wild.certPem, wild.keyPem);
  assert.ok(covers(bundle, 'a.example.com'));
  assert.ok(!covers(bundle, 'a.b.example.com'));
  assert.ok(!covers(bundle, 'example.com'));
});

test('renewal starts when a third of the lifetime remains, and the default policy says so', () => {
  const notBefore = new Date('2026-01-01T00:00:00Z');
  const notAfter = new Date('2026-04-01T00:00:00Z'); // 90 days
  assert.equal(new Date(renewalTime({ notBefore, notAfter })).toISOString(), '2026-03-02T00:00:00.000Z');
  assert.equal(DEFAULT_RENEWAL_POLICY.renewAt({ notBefore, notAfter }), renewalTime({ notBefore, notAfter }));
  const first = DEFAULT_RENEWAL_POLICY.retryDelay(1);
  assert.ok(first >= RETRY_BASE_MS / 2 && first <= RETRY_BASE_MS, `the first retry waits about a minute: ${first} ms`);
});

test('retries back off exponentially with jitter in the upper half, up to a cap', () => {
  assert.equal(retryDelay(1, 60_000, () => 0), 30_000);
  assert.equal(retryDelay(1, 60_000, () => 1), 60_000);
  assert.equal(retryDelay(3, 60_000, () => 1), 240_000);
  assert.equal(retryDelay(40, 60_000, () => 1), MAX_RETRY_DELAY_MS);
  for (let n = 2; n < 12; n++) assert.ok(retryDelay(n, 1000, () => 0) >= retryDelay(n - 1, 1000, () => 1), 'a later wait is never shorter');
});

// ---------------------------------------------------------------------------------------------
// The manager, with an issuer that signs with the test CA and can be told to fail.

interface Fixture {
  manager: CertificateManager;
  domains: DomainStore;
  apps: string[];
  calls: Array<{ domain: string; at: number; ok: boolean }>;
  failing: Set<string>;
  /** While true, every order for a domain that already got a certificate fails. */
  renewalsFail: { value: boolean };
  dir: string;
}

/** Renewal `renewAfterMs` after a certificate's notBefore (default: the real schedule); retries from 40 ms. */
function fastPolicy(renewAfterMs?: number): RenewalPolicy {
  return {
    renewAt: (info) => (renewAfterMs === undefined ? renewalTime(info) : info.notBefore.getTime() + renewAfterMs),
    retryDelay: (failures) => retryDelay(failures, 40),
  };
}

async function fixture(options: { renewAfterMs?: number; dir?: string; apps?: string[] } = {}): Promise<Fixture> {
  const dir = options.dir ?? tempDir('certs');
  const apps = options.apps ?? ['web'];
  const domains = new DomainStore(path.join(dir, 'state', 'domains.json'), { domain: 'example.test', apps: () => apps });
  await domains.load();
  const calls: Fixture['calls'] = [];
  const failing = new Set<string>();
  const renewalsFail = { value: false };
  const issuer: Issuer = {
    directory: 'https://ca.example.test/dir',
    async issue(domain): Promise<Issued> {
      await new Promise((r) => setTimeout(r, 5));
      const renewal = calls.some((c) => c.domain === domain && c.ok);
      const ok = !failing.has(domain) && !(renewal && renewalsFail.value);
      calls.push({ domain, at: Date.now(), ok });
      if (!ok) throw new Error(`test CA refuses ${domain}`);
      const cert = issueCert(ca, [domain]);
      return { certPem: cert.certPem + ca.pem, keyPem: cert.keyPem, challenge: 'http-01' };
    },
  };
  const manager = new CertificateManager({
    config: { acmeDirectory: issuer.directory, acmeEmail: 'ops@example.test', acmeCaFile: '' },
    renewal: fastPolicy(options.renewAfterMs),
    certsDir: path.join(dir, 'certs'),
    stateFile: path.join(dir, 'state', 'certs.json'),
    apps: { list: () => apps.map((name) => ({ name })) },
    domains,
    issuer,
  });
  await manager.load();
  await manager.start();
  return { manager, domains, apps, calls, failing, renewalsFail, dir };
}

test('every domain of an app gets its own certificate, stored with mode 0600 and served from memory', async (t) => {
  const f = await fixture();
  t.after(() => f.manager.stop());
  await f.domains.add('web', ['www.example.org'], ADMIN);
  await f.manager.sync();
  await waitFor('both certificates', () => f.manager.hasCertificate('web.example.test') && f.manager.hasCertificate('www.example.org'), 10_000);
  assert.equal(f.manager.cache.lookup('www.example.org')?.source, 'acme');
  assert.notEqual(f.manager.cache.lookup('www.example.org')?.bundle.info.serial, f.manager.cache.lookup('web.example.test')?.bundle.info.serial);
  const file = path.join(f.dir, 'certs', 'acme', directorySlug('https://ca.example.test/dir'), 'www.example.org.pem');
  assert.equal(fs.statSync(file).mode & 0o777, 0o600);
  assert.match(fs.readFileSync(file, 'utf8'), /BEGIN CERTIFICATE[\s\S]*BEGIN PRIVATE KEY/);
  const [report] = f.manager.report('web').filter((r) => r.domain === 'www.example.org');
  assert.equal(report?.certificate?.issuer, 'berth test CA');
  assert.equal(report?.attempts.challenge, 'http-01');
  assert.ok(report?.renewAt && Date.parse(report.renewAt) < Date.parse(report.certificate!.notAfter));

  // A restart serves the stored certificates at once and orders nothing new.
  await f.manager.stop();
  const again = await fixture({ dir: f.dir });
  t.after(() => again.manager.stop());
  await again.domains.add('web', ['www.example.org'], ADMIN);
  assert.ok(again.manager.hasCertificate('web.example.test') && again.manager.hasCertificate('www.example.org'));
  await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(again.calls, []);
});

test('an order failing for one domain neither delays nor breaks another, and backs off', async (t) => {
  const f = await fixture({ apps: ['web', 'api'] });
  t.after(() => f.manager.stop());
  f.failing.add('bad.example.org');
  await f.domains.add('api', ['bad.example.org'], ADMIN);
  await waitFor('the good domains', () => f.manager.hasCertificate('web.example.test') && f.manager.hasCertificate('api.example.test'), 10_000);
  await waitFor('four failed orders', () => f.calls.filter((c) => c.domain === 'bad.example.org').length >= 4, 10_000);
  const waits = logLines.filter((l) => l.event === 'certificate_order_failed' && l.domain === 'bad.example.org').map((l) => l.retryInMs as number);
  assert.ok(waits[2]! > waits[0]! && waits[1]! >= waits[0]!, `the waits grow: ${waits.join(', ')} ms`);
  const times = f.calls.filter((c) => c.domain === 'bad.example.org').map((c) => c.at);
  assert.ok(times[3]! - times[0]! >= waits[0]! + waits[1]! + waits[2]! - 5, 'and each retry waited for its delay');
  const bad = f.manager.report('api').find((r) => r.domain === 'bad.example.org')!;
  assert.equal(bad.certificate, null);
  assert.match(bad.attempts.lastError ?? '', /test CA refuses bad\.example\.org/);
  assert.ok(bad.attempts.failures >= 3);
  assert.ok(Date.parse(bad.attempts.nextAttemptAt!) > Date.parse(bad.attempts.lastAttemptAt!));
  assert.equal(f.calls.filter((c) => c.domain === 'web.example.test').length, 1, 'the good domain was ordered once');
  assert.ok(f.manager.report('api').find((r) => r.domain === 'api.example.test')!.certificate);
});

test('a renewal that fails keeps the old certificate serving until a new one is in', async (t) => {
  const f = await fixture({ renewAfterMs: 400 });
  t.after(() => f.manager.stop());
  f.renewalsFail.value = true;
  await waitFor('the first certificate', () => f.manager.hasCertificate('web.example.test'), 10_000);
  const first = f.manager.cache.lookup('web.example.test')!.bundle.info.serial;
  await waitFor('two failed renewals', () => f.calls.filter((c) => !c.ok).length >= 2, 10_000);
  assert.equal(f.manager.cache.lookup('web.example.test')?.bundle.info.serial, first, 'the old certificate is still served');
  assert.ok(f.manager.report('web')[0]!.attempts.failures >= 2);
  f.renewalsFail.value = false;
  await waitFor('a renewed certificate', () => f.manager.cache.lookup('web.example.test')?.bundle.info.serial !== first, 10_000);
  assert.equal(f.manager.report('web')[0]!.attempts.failures, 0);
  assert.ok(logLines.some((l) => l.event === 'certificate_renewed' && l.domain === 'web.example.test'));
});

test('a custom certificate is refused unless its key matches and it covers every domain of the app, and then it replaces ACME', async (t) => {
  const f = await fixture();
  t.after(() => f.manager.stop());
  await f.domains.add('web', ['www.example.org'], ADMIN);
  const good = issueCert(otherCa, ['web.example.test', 'www.example.org']);
  const partial = issueCert(otherCa, ['web.example.test']);
  const expired = issueCert(otherCa, ['web.example.test', 'www.example.org'], { startDate: opensslDate(Date.now() - 10 * 86_400_000), endDate: opensslDate(Date.now() - 86_400_000) });
  await assert.rejects(f.manager.addCustom('web', good.certPem, partial.keyPem), refusedWith('key_mismatch'));
  await assert.rejects(f.manager.addCustom('web', partial.certPem, partial.keyPem), refusedWith('certificate_does_not_cover', /www\.example\.org[\s\S]*domains:remove web/));
  await assert.rejects(f.manager.addCustom('web', expired.certPem, expired.keyPem), refusedWith('certificate_expired'));
  assert.equal(f.manager.customCertificate('web'), undefined, 'nothing was stored by a refused certificate');

  await f.manager.addCustom('web', good.certPem, good.keyPem);
  assert.equal(f.manager.cache.lookup('www.example.org')?.source, 'custom');
  assert.equal(f.manager.cache.lookup('www.example.org')?.bundle.info.issuer, 'another test CA');
  assert.equal(fs.statSync(path.join(f.dir, 'certs', 'custom', 'web.pem')).mode & 0o777, 0o600);
  const ordersBefore = f.calls.length;
  await f.manager.sync();
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(f.calls.length, ordersBefore, 'no order for names the custom certificate covers');
  assert.match(f.manager.report('web')[0]!.acme, /custom certificate/);

  await f.manager.removeCustom('web');
  await waitFor('automatic certificates again', () => f.manager.cache.lookup('www.example.org')?.source === 'acme', 10_000);
  await assert.rejects(f.manager.removeCustom('web'), refusedWith('no_custom_certificate'));
});

test('certs:auto off stops serving and ordering automatic certificates for that app only', async (t) => {
  const f = await fixture({ apps: ['web', 'api'] });
  t.after(() => f.manager.stop());
  await waitFor('certificates', () => f.manager.hasCertificate('web.example.test') && f.manager.hasCertificate('api.example.test'), 10_000);
  await f.manager.setAuto('web', false);
  assert.equal(f.manager.hasCertificate('web.example.test'), false);
  assert.equal(f.manager.hasCertificate('api.example.test'), true);
  assert.match(f.manager.report('web')[0]!.acme, /certs:auto web off/);
  const calls = f.calls.length;
  await f.manager.setAuto('web', true);
  assert.equal(f.manager.hasCertificate('web.example.test'), true, 'the stored certificate serves again at once');
  assert.equal(f.calls.length, calls);
});
