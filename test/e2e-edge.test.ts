// The edge as the outside sees it, on real parts: dist/berth serve with a certificate from a real
// Pebble, a pushed app in a real container that echoes the request headers it gets, real HTTP/1.1,
// HTTPS and HTTP/2 clients that forge the forwarded headers, proxy:set hsts, and Debian's
// testssl.sh scanning the HTTPS port (its JSON findings asserted).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import http2 from 'node:http2';
import https from 'node:https';
import path from 'node:path';
import { after, before, test } from 'node:test';
import tls from 'node:tls';
import { TLS_CIPHERS } from '../src/proxy/tls/tls-profile.ts';
import { httpsGet } from './helpers/certs.ts';
import { gitRepo, makeKey, nodeApp, request, run, tempDir, waitFor, type Daemon } from './helpers/daemon.ts';
import { startDaemonWithPebble, type Pebble } from './helpers/pebble.ts';

const APP = 'edgeweb';
const HOST = `${APP}.example.test`;
/** A name of the app whose validation cannot succeed (Pebble looks for it where berth does not listen): served over plain HTTP. */
const PLAIN = 'plain.example.org'; // outside the daemon's domain: plain.example.test is reserved for an app "plain"
/** What a client claims about itself and the connection; none of it may reach the app. */
const FORGED = { Forwarded: 'for=10.9.9.9;proto=https;host=admin.internal', 'X-Real-IP': '10.9.9.9', 'X-Forwarded-Ssl': 'on', 'X-Forwarded-Host': 'admin.internal' };

const work = tempDir('e2e-edge');
let pebble: Pebble;
let daemon: Daemon;
let root: string;

before(async () => {
  ({ daemon, pebble, root } = await startDaemonWithPebble());
  await pebble.setAddress(PLAIN, '127.0.0.2'); // nothing of berth's listens there
  const key = makeKey(work, 'admin');
  assert.equal(daemon.cli(['ssh-keys:add', 'admin', key.publicKey]).code, 0);
  const repo = path.join(work, APP);
  gitRepo(repo, nodeApp('hello edge'));
  const push = run('git', ['push', daemon.remote(APP), 'main'], { cwd: repo, env: daemon.gitEnv(key.privateKey) });
  assert.equal(push.code, 0, push.stderr);
  assert.equal(daemon.cli(['domains:add', APP, PLAIN]).code, 0);
  await waitFor(`an HTTPS answer from ${HOST} with a Pebble certificate`, async () => (await httpsGet(daemon.httpsPort, HOST, '/', [root])).status === 200, 60_000);
});

after(async () => {
  daemon?.cli(['apps:destroy', APP, '--force']);
  await daemon?.stop();
  await pebble?.stop();
});

/** An HTTPS/1.1 GET with extra request headers, verified against Pebble's root. */
function httpsWith(urlPath: string, headers: Record<string, string>): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port: daemon.httpsPort, path: urlPath, servername: HOST, headers: { host: HOST, ...headers }, ca: root, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.setTimeout(15_000, () => req.destroy(new Error('request timed out')));
    req.end();
  });
}

/** One HTTP/2 GET with extra request headers; resolves with the answer's headers and body. */
async function h2With(urlPath: string, headers: Record<string, string>): Promise<{ alpn: string | false | undefined; headers: http2.IncomingHttpHeaders; body: string }> {
  const client = http2.connect(`https://${HOST}:${daemon.httpsPort}`, {
    createConnection: () => tls.connect({ host: '127.0.0.1', port: daemon.httpsPort, servername: HOST, ca: root, ALPNProtocols: ['h2'] }),
  });
  try {
    return await new Promise((resolve, reject) => {
      const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
      const stream = client.request({ ':path': urlPath, ...lower });
      let answer: http2.IncomingHttpHeaders = {};
      let body = '';
      stream.setEncoding('utf8');
      stream.on('response', (h) => (answer = h));
      stream.on('data', (d: string) => (body += d));
      stream.on('end', () => resolve({ alpn: client.alpnProtocol, headers: answer, body }));
      stream.on('error', reject);
    });
  } finally {
    client.close();
  }
}

test("a client's Forwarded, X-Real-IP and X-Forwarded-Ssl never reach the app in its container, over HTTP/1.1, HTTPS and HTTP/2", async () => {
  const plain = await request(daemon.httpPort, PLAIN, '/headers', FORGED);
  assert.equal(plain.status, 200, 'the name without a certificate is served over plain HTTP');
  const overHttp = JSON.parse(plain.body) as Record<string, string>;
  assert.equal(overHttp['x-real-ip'], '127.0.0.1');
  assert.equal(overHttp['x-forwarded-ssl'], 'off');
  assert.equal(overHttp.forwarded, `for=127.0.0.1;proto=http;host=${PLAIN}`);
  assert.equal(overHttp['x-forwarded-host'], PLAIN);

  const h1 = JSON.parse((await httpsWith('/headers', { ...FORGED, 'X-Forwarded-Ssl': 'off' })).body) as Record<string, string>;
  assert.equal(h1['x-real-ip'], '127.0.0.1');
  assert.equal(h1['x-forwarded-ssl'], 'on');
  assert.equal(h1.forwarded, `for=127.0.0.1;proto=https;host=${HOST}`);
  assert.equal(h1['x-forwarded-host'], HOST);

  const h2 = await h2With('/headers', { ...FORGED, 'X-Forwarded-Ssl': 'off' });
  assert.equal(h2.alpn, 'h2');
  const overH2 = JSON.parse(h2.body) as Record<string, string>;
  assert.equal(overH2['x-real-ip'], '127.0.0.1');
  assert.equal(overH2['x-forwarded-ssl'], 'on');
  // Node's HTTP/2 client names the port in :authority, so host= is a quoted-string.
  assert.equal(overH2.forwarded, `for=127.0.0.1;proto=https;host="${HOST}:${daemon.httpsPort}"`);
  for (const seen of [overHttp, h1, overH2]) assert.ok(!JSON.stringify(seen).includes('10.9.9.9') && !JSON.stringify(seen).includes('admin.internal'), 'nothing forged got through');
});

test('proxy:set hsts sends Strict-Transport-Security on the app\'s HTTPS answers only, shows in proxy:report, and off removes it', async () => {
  const set = daemon.cli(['proxy:set', APP, 'hsts', 'max-age=31536000', 'includeSubDomains']);
  assert.equal(set.code, 0, set.stderr);
  assert.match(set.stdout, /Set hsts of edgeweb to max-age=31536000; includeSubDomains/);
  assert.match(daemon.cli(['proxy:report', APP]).stdout, /hsts\s+max-age=31536000; includeSubDomains\s+set for the app/);
  await waitFor('the HSTS header over HTTPS', async () => (await httpsWith('/', {})).headers['strict-transport-security'] === 'max-age=31536000; includeSubDomains');
  assert.equal((await h2With('/', {})).headers['strict-transport-security'], 'max-age=31536000; includeSubDomains');
  assert.equal((await request(daemon.httpPort, PLAIN, '/')).headers['strict-transport-security'], undefined, 'never over plain HTTP');

  const bad = daemon.cli(['proxy:set', APP, 'hsts', 'max-age=1y']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /hsts: "max-age=1y" is not understood/);
  const twoWords = daemon.cli(['proxy:set', APP, 'read-timeout', '5s', '6s']);
  assert.notEqual(twoWords.code, 0);
  assert.match(twoWords.stderr, /read-timeout takes one value/);

  const off = daemon.cli(['proxy:set', APP, 'hsts', 'off']);
  assert.equal(off.code, 0, off.stderr);
  assert.match(daemon.cli(['proxy:report', APP]).stdout, /hsts\s+off\s+default/);
  await waitFor('no HSTS header once it is off', async () => (await httpsWith('/', {})).headers['strict-transport-security'] === undefined);
});

interface Finding {
  id: string;
  severity: string;
  finding: string;
}

test('testssl.sh finds only the intermediate profile on the HTTPS port: no CBC, ARIA or CCM, no secp521r1 or X448, no TLS 1.0 or 1.1, nothing vulnerable', async (t) => {
  assert.equal(daemon.cli(['proxy:set', APP, 'hsts', 'max-age=31536000']).code, 0);
  await waitFor('the HSTS header', async () => (await httpsWith('/', {})).headers['strict-transport-security'] === 'max-age=31536000');
  const dir = tempDir('testssl');
  const json = path.join(dir, 'findings.json');
  const rootFile = path.join(dir, 'root.pem');
  fs.writeFileSync(rootFile, root);
  // Protocols, each cipher per protocol, forward secrecy (groups), vulnerabilities, server
  // defaults (certificate, OCSP) and headers (HSTS); --ip keeps it on this machine with the name as SNI.
  const args = ['--quiet', '--color', '0', '--warnings', 'off', '--ip', '127.0.0.1', '--add-ca', rootFile, '-p', '-E', '-f', '-U', '-S', '-h', '--jsonfile', json, `${HOST}:${daemon.httpsPort}`];
  const output = await new Promise<string>((resolve, reject) => {
    execFile('testssl', args, { timeout: 180_000, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, TMPDIR: dir } }, (error, stdout, stderr) => {
      // testssl's exit status counts findings; the JSON is what is asserted.
      if (error && error.killed) reject(new Error(`testssl did not finish: ${stdout}${stderr}`));
      else resolve(stdout + stderr);
    });
  });
  assert.ok(fs.existsSync(json), `testssl wrote its findings:\n${output}`);
  const findings = JSON.parse(fs.readFileSync(json, 'utf8')) as Finding[];
  const byId = (id: string) => {
    const found = findings.find((f) => f.id === id);
    assert.ok(found, `testssl reported ${id}:\n${output}`);
    return found;
  };

  for (const id of ['SSLv2', 'SSLv3', 'TLS1', 'TLS1_1']) assert.equal(byId(id).finding, 'not offered', id);
  assert.equal(byId('TLS1_2').finding, 'offered');
  assert.match(byId('TLS1_3').finding, /^offered/);
  assert.equal(byId('ALPN_HTTP2').finding, 'h2', 'HTTP/2 is offered by ALPN');

  const allowed = new Set(TLS_CIPHERS.split(':'));
  const offered = findings.filter((f) => f.id.startsWith('cipher-')).map((f) => f.finding.split(/\s+/)[3]!);
  assert.ok(offered.length >= 4, `testssl listed the offered suites:\n${output}`);
  for (const cipher of offered) {
    assert.ok(allowed.has(cipher), `only the profile's suites are offered, not ${cipher}`);
    assert.doesNotMatch(cipher, /CBC|ARIA|CCM|-SHA$/);
  }
  const groups = byId('PFS_ECDHE_curves').finding.split(/\s+/).sort();
  assert.deepEqual(groups, ['X25519', 'prime256v1', 'secp384r1'], 'no secp521r1, no X448');

  t.diagnostic(`testssl findings above INFO: ${JSON.stringify(findings.filter((f) => !['OK', 'INFO'].includes(f.severity)).map((f) => [f.id, f.severity, f.finding]))}`);
  assert.deepEqual(findings.filter((f) => /(?<!not )vulnerable/i.test(f.finding)), [], 'nothing vulnerable');
  // Findings of medium severity or worse are allowed only about what the listener does not
  // choose: the CA's certificate (Pebble's carries no CRL or OCSP URI and lives 5 years) and the
  // app's own security headers.
  const notListener: Record<string, RegExp> = {
    cert_revocation: /^Neither CRL nor OCSP URI provided$/,
    cert_validityPeriod: /^\d+ days$/,
    security_headers: /^--$/,
  };
  for (const f of findings.filter((f) => ['MEDIUM', 'HIGH', 'CRITICAL'].includes(f.severity))) {
    assert.ok(notListener[f.id]?.test(f.finding), `a ${f.severity} finding about the listener: ${f.id}: ${f.finding}`);
  }
  assert.equal(byId('secure_client_renego').severity, 'OK', 'client-initiated renegotiation is refused');
  assert.equal(byId('LUCKY13').severity, 'OK');
  // testssl 3.0 checks RFC 5746 without SNI, which berth answers with no certificate (it serves
  // names only); the same check with the name shows secure renegotiation supported.
  const renego = byId('secure_renego');
  if (renego.severity !== 'OK') {
    assert.equal(renego.finding, "OpenSSL handshake didn't succeed");
    const sClient = run('openssl', ['s_client', '-connect', `127.0.0.1:${daemon.httpsPort}`, '-servername', HOST, '-tls1_2'], { input: '', timeoutMs: 15_000 });
    assert.match(sClient.stdout, /Secure Renegotiation IS supported/);
  }
  assert.equal(byId('HSTS_time').severity, 'OK');
  assert.match(byId('HSTS_time').finding, /=31536000 seconds/);
  // Pebble's certificates name no OCSP responder, so there is nothing to staple (docs/https.md).
  assert.equal(byId('cert_ocspURL').finding, '--');
  assert.equal(byId('OCSP_stapling').finding, 'not offered');
  t.diagnostic(`testssl: ${['TLS1', 'TLS1_1', 'TLS1_2', 'TLS1_3', 'ALPN_HTTP2', 'PFS_ECDHE_curves', 'HSTS_time', 'OCSP_stapling', 'cert_ocspURL', 'secure_client_renego', 'LUCKY13'].map((id) => `${id}=${findings.find((f) => f.id === id)?.finding ?? '?'}`).join('; ')}; suites: ${offered.join(' ')}; scan ${findings.find((f) => f.id === 'scanTime')?.finding ?? '?'} s`);
});
