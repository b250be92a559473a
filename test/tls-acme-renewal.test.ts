// Renewal and retry timing against a real Pebble, in-process: the certificate manager with the
// real ACME issuer, given a renewal policy that makes time short (no switch in berth's code does
// that), validated over HTTP-01 on a real HTTP listener and served by the real TLS listener. The
// daemon end to end, on the default policy, is in e2e-https.test.ts.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { setLogSink } from '../src/log.ts';
import { CertificateManager } from '../src/proxy/tls/certificate-manager.ts';
import { retryDelay, type RenewalPolicy } from '../src/proxy/tls/renewal-schedule.ts';
import { TlsListener } from '../src/proxy/tls/tls-listener.ts';
import { DomainStore } from '../src/state/domain-store.ts';
import { handshake, type Handshake } from './helpers/certs.ts';
import { tempDir, waitFor } from './helpers/daemon.ts';
import { preparePebble, type Pebble } from './helpers/pebble.ts';

/** The local CLI: the admin, who may assign any name under DOMAIN not reserved for another app. */
const ADMIN = { admin: true };

/** A certificate is due this long after its notBefore; a failed order is retried after 0.5-1 s, doubling. */
const RENEW_AFTER_MS = 6_000;
const policy: RenewalPolicy = {
  renewAt: (info) => info.notBefore.getTime() + RENEW_AFTER_MS,
  retryDelay: (failures) => retryDelay(failures, 1_000),
};

const work = tempDir('acme-renewal');
const apps = ['web', 'api'];
const logLines: Array<Record<string, unknown>> = [];
/** Pebble's issuing roots: a new one each time it starts. */
const roots: string[] = [];
let pebble: Pebble;
let manager: CertificateManager;
let domains: DomainStore;
let httpServer: http.Server;
let tlsListener: TlsListener;

before(async () => {
  setLogSink((line) => logLines.push(JSON.parse(line) as Record<string, unknown>));
  pebble = await preparePebble();
  domains = new DomainStore(path.join(work, 'state', 'domains.json'), { domain: 'example.test', apps: () => apps });
  await domains.load();
  manager = new CertificateManager({
    config: { acmeDirectory: pebble.directory, acmeEmail: 'ops@example.test', acmeCaFile: pebble.caFile },
    certsDir: path.join(work, 'certs'),
    stateFile: path.join(work, 'state', 'certs.json'),
    apps: { list: () => apps.map((name) => ({ name })) },
    domains,
    renewal: policy,
  });
  // HTTP-01 answers on a real listener; everything else is 404 (no app behind it here).
  httpServer = http.createServer((req, res) => {
    const token = /^\/\.well-known\/acme-challenge\/([^/?]+)$/.exec(req.url ?? '')?.[1];
    const answer = token === undefined ? undefined : manager.challenges.httpAnswer(token);
    if (answer === undefined) res.writeHead(404).end();
    else res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(answer);
  });
  await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
  const page = http.createServer((_req, res) => res.end('ok\n'));
  tlsListener = new TlsListener({
    port: 0,
    bindHost: '127.0.0.1',
    secureContext: (name, acmeTls) => manager.secureContext(name, acmeTls),
    handler: {
      serveConnection: (socket) => page.emit('connection', socket),
      serveHttp2: (socket) => socket.destroy(),
      closeHttp2: () => {},
    },
  });
  await tlsListener.start();
  await pebble.start({ httpPort: (httpServer.address() as AddressInfo).port, tlsPort: tlsListener.port });
  roots.push(await pebble.root());
  await manager.load();
});

after(async () => {
  await manager?.stop();
  await manager?.idle(); // an order in flight finishes against the CA before it goes
  await tlsListener?.stop();
  httpServer?.closeAllConnections();
  await new Promise((r) => (httpServer ? httpServer.close(r) : r(undefined)));
  await pebble?.stop();
  setLogSink((line) => process.stderr.write(line + '\n'));
});

function served(domain: string): Promise<Handshake> {
  return handshake(tlsListener.port, domain, { ca: roots });
}

function events(event: string, domain: string, since = ''): Array<Record<string, unknown>> {
  return logLines.filter((l) => l.event === event && l.domain === domain && (l.time as string) > since);
}

test('a certificate is renewed when the policy says it is due, and the old one serves until the new one is in', async () => {
  await manager.start();
  await waitFor('a certificate for web.example.test', async () => (await served('web.example.test')).authorized, 60_000);
  const first = await served('web.example.test');
  assert.match(first.issuer ?? '', /^Pebble Intermediate CA/);
  const [report] = manager.report('web');
  assert.equal(report?.attempts.challenge, 'http-01');
  assert.equal(Date.parse(report!.renewAt!), Date.parse(report!.certificate!.notBefore) + RENEW_AFTER_MS, 'the report shows the policy');

  // Every handshake until the renewal lands gets the first certificate, verified: no gap.
  const seen: Handshake[] = [];
  await waitFor('a renewed certificate', async () => {
    seen.push(await served('web.example.test'));
    return seen.at(-1)!.serial !== first.serial;
  }, RENEW_AFTER_MS + 60_000);
  assert.ok(seen.every((h) => h.authorized), `every handshake verified: ${seen.map((h) => h.authorizationError).filter(Boolean).join(', ')}`);
  assert.ok(seen.slice(0, -1).every((h) => h.serial === first.serial), 'the old certificate served until the new one');
  assert.ok(events('certificate_renewed', 'web.example.test').length >= 1, 'the renewal is in the log');
  assert.equal(manager.report('web')[0]!.attempts.failures, 0);
});

test('a domain that fails validation backs off with growing waits and never holds up another', async () => {
  await pebble.setAddress('broken.example.org', '127.0.0.2'); // nothing listens there for Pebble
  const started = new Date().toISOString();
  await domains.add('api', ['broken.example.org', 'ok.example.org'], ADMIN);
  await manager.sync();
  await waitFor('a certificate for ok.example.org', async () => (await served('ok.example.org')).authorized, 60_000);
  await waitFor('three failed orders for broken.example.org', () => events('certificate_order_failed', 'broken.example.org', started).length >= 3, 90_000);
  const waits = events('certificate_order_failed', 'broken.example.org', started).map((e) => e.retryInMs as number);
  assert.ok(waits[1]! >= waits[0]! && waits[2]! > waits[0]!, `the retry waits grow: ${waits.join(', ')} ms`);
  const starts = events('certificate_order_started', 'broken.example.org', started).map((e) => Date.parse(e.time as string));
  assert.ok(starts[1]! - starts[0]! >= waits[0]!, 'the second order waited for the first backoff');
  const obtained = events('certificate_obtained', 'ok.example.org', started)[0];
  assert.ok(obtained, 'the good domain got its certificate');
  assert.ok(Date.parse(obtained.time as string) < starts[1]!, 'before the broken domain even retried');
  const broken = manager.report('api').find((r) => r.domain === 'broken.example.org')!;
  assert.equal(broken.certificate, null);
  assert.ok(broken.attempts.failures >= 3);
  assert.ok((broken.attempts.lastError ?? '').length > 0, 'the last error is kept for certs:report');
  await domains.remove('api', ['broken.example.org']);
  await manager.sync();
});

test('with the CA down when renewals are due, orders back off, the old certificate keeps serving, and a later retry renews it', async () => {
  await pebble.stopCa();
  const stoppedAt = new Date().toISOString();
  await new Promise((r) => setTimeout(r, 500)); // an order that finished just before the stop is swapped in by now
  const old = await served('ok.example.org');
  assert.equal(old.authorized, true);
  await waitFor('two failed renewals of ok.example.org', () => events('certificate_order_failed', 'ok.example.org', stoppedAt).length >= 2, RENEW_AFTER_MS + 60_000);
  const waits = events('certificate_order_failed', 'ok.example.org', stoppedAt).map((e) => e.retryInMs as number);
  assert.ok(waits[1]! >= waits[0]!, `the retry waits grow: ${waits.join(', ')} ms`);
  const during = await served('ok.example.org');
  assert.equal(during.serial, old.serial, 'the old certificate is still served');
  assert.equal(during.authorized, true);
  const entry = manager.report('api').find((r) => r.domain === 'ok.example.org')!;
  assert.ok(entry.attempts.failures >= 2 && entry.attempts.lastError, 'the failures and the last error are reported');

  await pebble.startCa();
  roots.push(await pebble.root());
  await waitFor('a renewed certificate once the CA is back', async () => (await served('ok.example.org')).serial !== old.serial, 90_000);
  assert.equal((await served('ok.example.org')).authorized, true);
  await waitFor('the failure count reset', () => manager.report('api').find((r) => r.domain === 'ok.example.org')!.attempts.failures === 0);
});
