// Automatic HTTPS end to end on real parts: dist/berth serve, a real Pebble ACME server that
// validates over HTTP-01 and TLS-ALPN-01 on berth's own listeners (names resolve to 127.0.0.1
// through pebble-challtestsrv), a pushed app in a real container, real HTTPS clients. The daemon
// runs berth's own renewal policy; renewal and retry timing, which take minutes on that policy,
// are tested in-process with a faster policy injected (tls-acme-renewal.test.ts).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http2 from 'node:http2';
import path from 'node:path';
import { after, before, test } from 'node:test';
import tls from 'node:tls';
import { handshake, httpsGet, issueCert, makeCa } from './helpers/certs.ts';
import { gitRepo, makeKey, nodeApp, request, run, tempDir, waitFor, type Daemon } from './helpers/daemon.ts';
import { freePorts, startDaemonWithPebble, type Pebble } from './helpers/pebble.ts';

const work = tempDir('e2e-https');
let pebble: Pebble;
let daemon: Daemon;
let key: { privateKey: string; publicKey: string };
/** Pebble's issuing roots: it makes a new one each time it starts, and certificates of each stay served. */
const roots: string[] = [];

interface DomainReport {
  domain: string;
  certificate: { source: string; issuer: string; serial: string; notAfter: string } | null;
  acme: string;
  attempts: { failures: number; lastAttemptAt?: string; lastSuccessAt?: string; lastError?: string; nextAttemptAt?: string; challenge?: string };
}

function report(app: string): DomainReport[] {
  const r = daemon.cli(['certs:report', app, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { domains: DomainReport[] }).domains;
}

function domainReport(app: string, domain: string): DomainReport {
  const entry = report(app).find((d) => d.domain === domain);
  assert.ok(entry, `${domain} is in the report of ${app}`);
  return entry;
}

/** Resolves once `host` answers over HTTPS with a certificate that chains to Pebble's current root. */
async function waitForHttps(host: string, timeoutMs = 30_000): Promise<Awaited<ReturnType<typeof httpsGet>>> {
  let last: Awaited<ReturnType<typeof httpsGet>> | undefined;
  await waitFor(`an HTTPS answer from ${host} with a Pebble certificate`, async () => {
    last = await httpsGet(daemon.httpsPort, host, '/', roots);
    return true;
  }, timeoutMs);
  return last!;
}

/** The daemon's log lines of one event (its output is read between awaits: CLI calls block this process). */
function logEvents(event: string): Array<Record<string, unknown>> {
  return daemon
    .logs()
    .split('\n')
    .filter((l) => l.includes(`"event":"${event}"`))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

before(async () => {
  let root: string;
  ({ daemon, pebble, root } = await startDaemonWithPebble());
  roots.push(root);
  key = makeKey(work, 'admin');
  const added = daemon.cli(['ssh-keys:add', 'admin', key.publicKey]);
  assert.equal(added.code, 0, added.stderr);
});

after(async () => {
  for (const app of ['tlsweb', 'tlsapi']) daemon?.cli(['apps:destroy', app, '--force']);
  await daemon?.stop();
  await pebble?.stop();
});

test('a pushed app gets a certificate from the ACME CA for its default domain, validated over HTTP-01', async () => {
  const repo = path.join(work, 'tlsweb');
  gitRepo(repo, nodeApp('hello tlsweb'));
  const push = run('git', ['push', daemon.remote('tlsweb'), 'main'], { cwd: repo, env: daemon.gitEnv(key.privateKey) });
  assert.equal(push.code, 0, push.stderr);
  const res = await waitForHttps('tlsweb.example.test');
  assert.equal(res.status, 200);
  assert.equal(res.body, 'hello tlsweb\n');
  assert.match(res.issuer ?? '', /^Pebble Intermediate CA/);
  const entry = domainReport('tlsweb', 'tlsweb.example.test');
  assert.equal(entry.certificate?.source, 'acme');
  assert.equal(entry.attempts.challenge, 'http-01');
  assert.match(pebble.logs(), /Attempting to validate w\/ HTTP: http:\/\/tlsweb\.example\.test:\d+\/\.well-known\/acme-challenge\//);
  const files = fs.readdirSync(path.join(daemon.dataDir, 'certs', 'acme'));
  const file = path.join(daemon.dataDir, 'certs', 'acme', files[0]!, 'tlsweb.example.test.pem');
  assert.equal(fs.statSync(file).mode & 0o777, 0o600);
  const accounts = fs.readdirSync(path.join(daemon.dataDir, 'certs', 'accounts'));
  assert.equal(accounts.length, 1, 'one account for the directory');
  assert.equal(fs.statSync(path.join(daemon.dataDir, 'certs', 'accounts', accounts[0]!)).mode & 0o777, 0o600);
});

test('domains:add gives the domain its own certificate, and the app sees X-Forwarded-Proto https over HTTP/1.1 and HTTP/2', async (t) => {
  const started = performance.now();
  const added = daemon.cli(['domains:add', 'tlsweb', 'shop.example.org']);
  assert.equal(added.code, 0, added.stderr);
  assert.match(added.stdout, /Added shop\.example\.org to tlsweb/);
  await waitForHttps('shop.example.org');
  t.diagnostic(`domains:add to the first HTTPS answer with a Pebble certificate: ${Math.round(performance.now() - started)} ms`);

  const h1 = await httpsGet(daemon.httpsPort, 'shop.example.org', '/headers', roots);
  const headers = JSON.parse(h1.body) as Record<string, string>;
  assert.equal(headers['x-forwarded-proto'], 'https');
  assert.equal(headers['x-forwarded-port'], String(daemon.httpsPort));

  const client = http2.connect(`https://shop.example.org:${daemon.httpsPort}`, {
    createConnection: () => tls.connect({ host: '127.0.0.1', port: daemon.httpsPort, servername: 'shop.example.org', ca: roots, ALPNProtocols: ['h2', 'http/1.1'] }),
  });
  t.after(() => client.close());
  const body = await new Promise<string>((resolve, reject) => {
    const stream = client.request({ ':path': '/headers' });
    let text = '';
    stream.setEncoding('utf8');
    stream.on('data', (d: string) => (text += d));
    stream.on('end', () => resolve(text));
    stream.on('error', reject);
  });
  assert.equal(client.alpnProtocol, 'h2');
  assert.equal((JSON.parse(body) as Record<string, string>)['x-forwarded-proto'], 'https');

  const list = daemon.cli(['domains:list', 'tlsweb']);
  assert.deepEqual(list.stdout.trim().split('\n').slice(1), ['tlsweb.example.test', 'shop.example.org']);
  const conflict = daemon.cli(['domains:add', 'tlsweb', 'bad_name!.example.test']);
  assert.notEqual(conflict.code, 0);
  assert.match(conflict.stderr, /invalid domain/);
});

test('HTTP redirects to HTTPS once a domain has a certificate, except the challenge path; a domain without one stays on HTTP', async () => {
  const redirect = await request(daemon.httpPort, 'tlsweb.example.test', '/some/path?x=1');
  assert.equal(redirect.status, 308);
  assert.equal(redirect.headers.location, `https://tlsweb.example.test:${daemon.httpsPort}/some/path?x=1`);
  const challenge = await request(daemon.httpPort, 'tlsweb.example.test', '/.well-known/acme-challenge/not-ours');
  assert.equal(challenge.status, 200, 'a challenge path is not redirected; an unknown token goes to the app');
  assert.equal(challenge.body, 'hello tlsweb\n');

  assert.equal(daemon.cli(['domains:add', 'tlsweb', 'tlsweb.localhost']).code, 0);
  const plain = await request(daemon.httpPort, 'tlsweb.localhost', '/');
  assert.equal(plain.status, 200, 'no certificate yet (or ever, for .localhost): served over HTTP');
  await assert.rejects(handshake(daemon.httpsPort, 'tlsweb.localhost'), 'and no TLS handshake for it');
  assert.match(domainReport('tlsweb', 'tlsweb.localhost').acme, /no public CA/);
  assert.equal(daemon.cli(['domains:remove', 'tlsweb', 'tlsweb.localhost']).code, 0);
  assert.equal((await request(daemon.httpPort, 'tlsweb.localhost', '/')).status, 404, 'a removed domain is no longer routed');
  assert.equal(daemon.cli(['domains:add', 'tlsweb', 'tlsweb.localhost']).code, 0);
});

test('a custom certificate is refused when its key does not match or it misses a domain, and otherwise served instead of ACME', async () => {
  const ca = makeCa('berth e2e CA');
  const all = issueCert(ca, ['tlsweb.example.test', 'shop.example.org', 'tlsweb.localhost']);
  const partial = issueCert(ca, ['tlsweb.example.test']);
  const mismatch = daemon.cli(['certs:add', 'tlsweb', all.certFile, partial.keyFile]);
  assert.notEqual(mismatch.code, 0);
  assert.match(mismatch.stderr, /the private key does not match the certificate/);
  const uncovered = daemon.cli(['certs:add', 'tlsweb', partial.certFile, partial.keyFile]);
  assert.notEqual(uncovered.code, 0);
  assert.match(uncovered.stderr, /does not cover shop\.example\.org, tlsweb\.localhost/);

  // Over SSH the chain and key come on standard input.
  const addedOverSsh = daemon.ssh(key.privateKey, 'certs:add tlsweb -', all.certPem + all.keyPem);
  assert.equal(addedOverSsh.code, 0, addedOverSsh.stderr);
  const custom = await httpsGet(daemon.httpsPort, 'shop.example.org', '/', ca.pem);
  assert.equal(custom.issuer, 'berth e2e CA');
  assert.equal(custom.body, 'hello tlsweb\n');
  assert.equal((await httpsGet(daemon.httpsPort, 'tlsweb.localhost', '/', ca.pem)).status, 200, 'the custom certificate also serves the name ACME cannot');
  assert.equal(domainReport('tlsweb', 'shop.example.org').certificate?.source, 'custom');
  assert.equal(fs.statSync(path.join(daemon.dataDir, 'certs', 'custom', 'tlsweb.pem')).mode & 0o777, 0o600);

  const removed = daemon.cli(['certs:remove', 'tlsweb']);
  assert.equal(removed.code, 0, removed.stderr);
  const back = await waitForHttps('shop.example.org');
  assert.match(back.issuer ?? '', /^Pebble/, 'the ACME certificate serves again');

  assert.equal(daemon.cli(['certs:auto', 'tlsweb', 'off']).code, 0);
  await assert.rejects(handshake(daemon.httpsPort, 'shop.example.org'), 'opted out: no automatic certificate is served');
  assert.equal((await request(daemon.httpPort, 'shop.example.org', '/')).status, 200, 'and HTTP serves the app without a redirect');
  assert.equal(daemon.cli(['certs:auto', 'tlsweb', 'on']).code, 0);
  await waitForHttps('shop.example.org', 5000);
});

test('when HTTP-01 cannot reach berth, the order falls back to TLS-ALPN-01 on the HTTPS listener', async () => {
  // A restarted Pebble forgets every account, and its validator now finds nothing on "port 80".
  const [closedPort] = await freePorts(1);
  await pebble.stopCa();
  await pebble.startCa({ httpPort: closedPort });
  roots.push(await pebble.root());
  assert.equal(daemon.cli(['apps:create', 'tlsapi']).code, 0);
  const taken = daemon.cli(['domains:add', 'tlsapi', 'shop.example.org']);
  assert.notEqual(taken.code, 0);
  assert.match(taken.stderr, /shop\.example\.org already belongs to app tlsweb/);
  assert.equal(daemon.cli(['domains:add', 'tlsapi', 'alpn.example.org']).code, 0);
  await waitFor('a TLS-ALPN-01 certificate', async () => (await handshake(daemon.httpsPort, 'alpn.example.org', { ca: roots })).authorized, 60_000);
  const entry = domainReport('tlsapi', 'alpn.example.org');
  assert.equal(entry.attempts.challenge, 'tls-alpn-01');
  await waitFor('the failed HTTP-01 attempt in the log', () => logEvents('acme_challenge_failed').some((e) => e.domain === 'alpn.example.org' && e.challenge === 'http-01'));
  assert.match(pebble.logs(), /Attempting to validate w\/ HTTP: http:\/\/alpn\.example\.org:/, 'Pebble tried HTTP-01 first');
});

test('a domain that fails validation neither delays nor breaks the others; its failure and backoff show in certs:report', async () => {
  await pebble.setAddress('broken.example.org', '127.0.0.2'); // nothing of berth's listens there
  const started = Date.now();
  assert.equal(daemon.cli(['domains:add', 'tlsapi', 'broken.example.org', 'ok.example.org']).code, 0);
  await waitFor('a certificate for ok.example.org', async () => (await handshake(daemon.httpsPort, 'ok.example.org', { ca: roots })).authorized, 60_000);
  await waitFor('a failed order for broken.example.org', () => domainReport('tlsapi', 'broken.example.org').attempts.failures >= 1, 60_000);
  const broken = domainReport('tlsapi', 'broken.example.org');
  assert.equal(broken.certificate, null);
  assert.ok(broken.attempts.lastError && broken.attempts.lastError.length > 0, 'the last error is shown');
  // berth's own policy: the first retry comes after 30-60 s (a minute, jittered into its upper half).
  const backoff = Date.parse(broken.attempts.nextAttemptAt!) - Date.parse(broken.attempts.lastAttemptAt!);
  assert.ok(backoff >= 30_000, `the retry waits at least 30 s: ${backoff} ms`);
  await waitFor('the failure in the log', () => logEvents('certificate_order_failed').some((e) => e.domain === 'broken.example.org'));
  const [failed] = logEvents('certificate_order_failed').filter((e) => e.domain === 'broken.example.org');
  assert.ok((failed!.retryInMs as number) >= 30_000 && (failed!.retryInMs as number) <= 60_000, `the first retry is in 30-60 s: ${failed!.retryInMs} ms`);
  await waitFor('the good certificate in the log', () => logEvents('certificate_obtained').some((e) => e.domain === 'ok.example.org'));
  const ok = logEvents('certificate_obtained').find((e) => e.domain === 'ok.example.org');
  assert.ok(ok && Date.parse(ok.time as string) - started < 30_000, 'the good domain did not wait for the broken one');
  const text = daemon.cli(['certs:report', 'tlsapi']).stdout;
  assert.match(text, /broken\.example\.org\n\s+certificate:\s+none: served over HTTP only[\s\S]*last error:/);
});

test('with the CA down, berth keeps serving the certificates it has and answers HTTPS for every app', async () => {
  await pebble.stopCa();
  const served = await handshake(daemon.httpsPort, 'ok.example.org', { ca: roots });
  assert.equal(served.authorized, true);
  assert.equal(daemon.cli(['domains:add', 'tlsapi', 'later.example.org']).code, 0);
  await waitFor('a failed order for later.example.org', () => domainReport('tlsapi', 'later.example.org').attempts.failures >= 1, 60_000);
  assert.ok(domainReport('tlsapi', 'later.example.org').attempts.lastError, 'the error is reported');
  const still = await handshake(daemon.httpsPort, 'ok.example.org', { ca: roots });
  assert.equal(still.serial, served.serial, 'the certificate it has is still served');
  const res = await httpsGet(daemon.httpsPort, 'shop.example.org', '/', roots);
  assert.equal(res.body, 'hello tlsweb\n');
});
