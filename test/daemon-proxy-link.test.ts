// The control plane's link to the proxy and the proxy's receiver, composed in one process: every
// message goes through JSON, as it does over the IPC channel between the two processes, to a real
// EdgeServer on loopback with real upstreams. (test/e2e-processes.test.ts runs the two processes.)
import assert from 'node:assert/strict';
import { after, before, test, type TestContext } from 'node:test';
import { ProxyLink } from '../src/daemon/proxy-link.ts';
import { ProxyStateReceiver } from '../src/daemon/proxy-state.ts';
import type { FromProxy, ToProxy } from '../src/daemon/messages.ts';
import { setLogSink } from '../src/log.ts';
import { RouteTable } from '../src/proxy/route-table.ts';
import { AcmeChallenges } from '../src/proxy/tls/acme-challenges.ts';
import { parseCertificateBundle } from '../src/proxy/tls/certificate.ts';
import { createChallengeResponder } from '../src/proxy/tls/https-redirect.ts';
import { SniCache } from '../src/proxy/tls/sni-cache.ts';
import { DEFAULT_APP_SETTINGS, type AppProxySettings } from '../src/state/proxy-settings.ts';
import { issueCert, makeCa } from './helpers/certs.ts';
import { call, deferred, startNamedUpstream, startProxy, startUpstream } from './helpers/loopback.ts';

before(() => setLogSink(() => {}));
after(() => setLogSink((line) => process.stderr.write(line + '\n')));

/** A link and a receiver joined as the two processes are: JSON each way. */
async function compose(t: TestContext) {
  const edge = await startProxy(t, RouteTable.empty());
  const proxyCertificates = new SniCache();
  const proxyChallenges = new AcmeChallenges();
  edge.setChallengeResponder(createChallengeResponder(proxyChallenges));
  const sent: ToProxy[] = [];
  let synced = 0;
  let link!: ProxyLink;
  const receiver = new ProxyStateReceiver({
    edge,
    certificates: proxyCertificates,
    challenges: proxyChallenges,
    answer: (message: FromProxy) => link.receive(JSON.parse(JSON.stringify(message)) as FromProxy),
    synced: () => synced++,
  });
  link = new ProxyLink((message) => {
    sent.push(message);
    receiver.apply(JSON.parse(JSON.stringify(message)) as ToProxy);
  });
  const settings = new Map<string, AppProxySettings>();
  const certificates = new SniCache();
  const challenges = new AcmeChallenges();
  link.attach({ settings: () => settings, certificates, challenges });
  return { edge, link, sent, settings, certificates, challenges, proxyCertificates, synced: () => synced };
}

test('the link sends nothing before it is live (the proxy keeps what it had), then the whole state, and every change after', async (t) => {
  const { edge, link, sent, synced } = await compose(t);
  const a = await startNamedUpstream(t, 'a');
  const b = await startNamedUpstream(t, 'b');
  edge.swap(RouteTable.empty().withApp('web', ['web.test'], [a.target]));
  // A new control plane before it has adopted the containers: its empty table is not sent.
  link.swap(RouteTable.empty());
  assert.equal(sent.length, 0);
  assert.equal((await call(edge.httpPort, { host: 'web.test' })).body.toString(), 'a');
  link.swap(RouteTable.empty().withApp('web', ['web.test'], [b.target]));
  link.goLive();
  assert.equal(synced(), 1, 'the proxy is told it has everything');
  assert.equal((await call(edge.httpPort, { host: 'web.test' })).body.toString(), 'b');
  // A release on probation: the old target stands by in the proxy's table too.
  link.swap(RouteTable.empty().withApp('web', ['web.test'], [b.target], [a.target]));
  assert.deepEqual(edge.routes.route('web')?.standby.map((t) => t.id), [a.target.id], 'standby targets cross the link');
  link.swap(link.routes.withoutApp('web'));
  assert.equal((await call(edge.httpPort, { host: 'web.test' })).status, 404);
  // A restarted proxy asks again (the supervisor's resync): everything once more.
  const before = sent.length;
  link.sendAll();
  assert.deepEqual(sent.slice(before).map((m) => m.t), ['routes', 'settings', 'certificates', 'challenges', 'synced']);
});

test('per-app settings, certificates and challenge answers reach the proxy as plain data', async (t) => {
  const { edge, link, settings, certificates, challenges, proxyCertificates } = await compose(t);
  const app = await startNamedUpstream(t, 'app');
  link.goLive();
  link.swap(RouteTable.empty().withApp('web', ['web.test'], [app.target]));
  settings.set('web', { ...DEFAULT_APP_SETTINGS, maxBodySize: 10 });
  link.settingsChanged();
  assert.equal((await call(edge.httpPort, { host: 'web.test', method: 'POST', body: Buffer.alloc(100) })).status, 413);
  challenges.setHttp('token-1', 'token-1.thumbprint');
  const answer = await call(edge.httpPort, { host: 'web.test', path: '/.well-known/acme-challenge/token-1' });
  assert.equal(answer.status, 200);
  assert.equal(answer.body.toString(), 'token-1.thumbprint');
  const issued = issueCert(makeCa('link test CA'), ['web.test']);
  certificates.replace(new Map([['web.test', { bundle: parseCertificateBundle(issued.certPem, issued.keyPem), source: 'custom' as const }]]));
  const served = proxyCertificates.lookup('web.test');
  assert.ok(served, 'the proxy serves the certificate');
  assert.equal(served.bundle.certPem, certificates.lookup('web.test')!.bundle.certPem);
  assert.equal(served.source, 'custom');
  challenges.deleteHttp('token-1');
  assert.equal((await call(edge.httpPort, { host: 'web.test', path: '/.well-known/acme-challenge/token-1' })).body.toString(), 'app');
});

test('a drain asked over the link waits for the request in flight on the old target, and one the proxy can no longer answer ends when it is gone', async (t) => {
  const { edge, link } = await compose(t);
  const release = deferred();
  const arrived = deferred();
  const slow = await startUpstream(t, 'old', (req, res) => {
    req.resume();
    arrived.resolve();
    void release.promise.then(() => res.end('old done'));
  });
  const fresh = await startNamedUpstream(t, 'new');
  link.goLive();
  link.swap(RouteTable.empty().withApp('web', ['web.test'], [slow.target]));
  const inFlight = call(edge.httpPort, { host: 'web.test' });
  await arrived.promise;
  link.swap(RouteTable.empty().withApp('web', ['web.test'], [fresh.target]));
  let drained = false;
  const drain = link.drain([slow.target], { deadlineMs: 10_000 }).then((report) => {
    drained = true;
    return report;
  });
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(drained, false, 'the drain waits for the request in flight');
  release.resolve();
  assert.equal((await inFlight).body.toString(), 'old done');
  const report = await drain;
  assert.equal(report.requestsLeft, 0);
  assert.equal((await call(edge.httpPort, { host: 'web.test' })).body.toString(), 'new');

  const lost = new ProxyLink(() => undefined);
  const pending = lost.drain([fresh.target], { deadlineMs: 60_000 });
  lost.proxyGone();
  assert.deepEqual({ ...(await pending), waitedMs: 0 }, { waitedMs: 0, requestsLeft: 0, tunnelsClosed: 0 });
});
