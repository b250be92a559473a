// The HTTPS listener in-process, in front of a real EdgeServer and real loopback upstreams:
// SNI, ALPN (HTTP/2, HTTP/1.1, acme-tls/1), forwarding with X-Forwarded-Proto: https, upgrades,
// and the HTTP listener's challenge answers and redirects.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import type net from 'node:net';
import { after, before, test, type TestContext } from 'node:test';
import tls, { createSecureContext, type SecureContext } from 'node:tls';
import { setLogSink } from '../src/log.ts';
import { EdgeServer } from '../src/proxy/edge-server.ts';
import { AcmeChallenges } from '../src/proxy/tls/acme-challenges.ts';
import { createChallengeResponder, createHttpsRedirect } from '../src/proxy/tls/https-redirect.ts';
import { TlsListener } from '../src/proxy/tls/tls-listener.ts';
import { RouteTable } from '../src/proxy/route-table.ts';
import { handshake, issueCert, makeCa, type TestCa } from './helpers/certs.ts';
import { request } from './helpers/daemon.ts';

let ca: TestCa;
let contexts: Map<string, SecureContext>;
before(() => {
  setLogSink(() => {});
  ca = makeCa('listener test CA');
  contexts = new Map();
  for (const name of ['app.example.test', 'other.example.test']) {
    const cert = issueCert(ca, [name]);
    contexts.set(name, createSecureContext({ cert: cert.certPem, key: cert.keyPem }));
  }
});
after(() => setLogSink((line) => process.stderr.write(line + '\n')));

interface Stack {
  edge: EdgeServer;
  listener: TlsListener;
  challenges: AcmeChallenges;
}

/** An upstream that echoes what it received as JSON; and answers upgrades by echoing bytes. */
async function startStack(t: TestContext, certified: Set<string> = new Set()): Promise<Stack> {
  const upstream = http.createServer((req, res) => {
    let bytes = 0;
    req.on('data', (d: Buffer) => (bytes += d.length));
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers, bytes }));
    });
  });
  upstream.on('upgrade', (req, socket: net.Socket) => {
    socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n');
    socket.on('data', (d: Buffer) => socket.write(`${req.headers['x-forwarded-proto']}:${d.toString()}`));
  });
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening');
  t.after(() => {
    upstream.closeAllConnections();
    upstream.close();
  });
  const edge = new EdgeServer({ httpPort: 0, bindHost: '127.0.0.1', drainTimeoutMs: 500 });
  await edge.start();
  t.after(() => edge.stop());
  const target = { id: 'up', host: '127.0.0.1', port: (upstream.address() as net.AddressInfo).port };
  edge.swap(RouteTable.empty().withApp('web', ['app.example.test', 'plain.example.test'], [target]));
  const challenges = new AcmeChallenges();
  const listener = new TlsListener({
    port: 0,
    bindHost: '127.0.0.1',
    handler: edge,
    drainTimeoutMs: 500,
    secureContext: (name, acmeTls) => (acmeTls ? challenges.alpnContext(name) : contexts.get(name)),
  });
  await listener.start();
  t.after(() => listener.stop());
  edge.setChallengeResponder(createChallengeResponder(challenges));
  edge.setHttpsRedirect(createHttpsRedirect({ hasCertificate: (h) => certified.has(h), httpsPort: () => listener.port }));
  return { edge, listener, challenges };
}

function httpsGet(port: number, host: string, path = '/'): Promise<{ status: number; body: string; alpn: string | false }> {
  return new Promise((resolve, reject) => {
    const options: https.RequestOptions = { host: '127.0.0.1', port, path, headers: { host }, agent: false, servername: host, ca: ca.pem };
    const req = https.request(
      options,
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, alpn: (res.socket as tls.TLSSocket).alpnProtocol ?? false }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

test('HTTPS requests reach the app with X-Forwarded-Proto https and the TLS port', async (t) => {
  const { listener } = await startStack(t);
  const res = await httpsGet(listener.port, 'app.example.test', '/path?q=1');
  assert.equal(res.status, 200);
  assert.equal(res.alpn, false, 'a client without ALPN is served HTTP/1.1');
  const echo = JSON.parse(res.body) as { url: string; headers: Record<string, string> };
  assert.equal(echo.url, '/path?q=1');
  assert.equal(echo.headers['x-forwarded-proto'], 'https');
  assert.equal(echo.headers['x-forwarded-port'], String(listener.port));
  assert.equal(echo.headers.host, 'app.example.test');
});

test('HTTP/2 is chosen by ALPN and its requests are forwarded as HTTP/1.1, bodies without a length included', async (t) => {
  const { listener } = await startStack(t);
  const client = http2.connect(`https://app.example.test:${listener.port}`, { ca: ca.pem, createConnection: () => tls.connect({ host: '127.0.0.1', port: listener.port, servername: 'app.example.test', ca: ca.pem, ALPNProtocols: ['h2'] }) });
  t.after(() => client.close());
  const send = (headers: http2.OutgoingHttpHeaders, body?: Buffer) =>
    new Promise<{ status: number; json: { method: string; headers: Record<string, string>; bytes: number } }>((resolve, reject) => {
      const stream = client.request(headers, { endStream: body === undefined });
      let status = 0;
      let text = '';
      stream.on('response', (h) => (status = Number(h[':status'])));
      stream.setEncoding('utf8');
      stream.on('data', (d: string) => (text += d));
      stream.on('end', () => resolve({ status, json: JSON.parse(text) }));
      stream.on('error', reject);
      if (body) stream.end(body);
    });
  const get = await send({ ':path': '/h2', cookie: ['a=1', 'b=2'], 'x-extra': 'y' } as http2.OutgoingHttpHeaders);
  assert.equal(get.status, 200);
  assert.equal(get.json.headers.host, `app.example.test:${listener.port}`, ':authority becomes Host');
  assert.equal(get.json.headers['x-forwarded-proto'], 'https');
  assert.equal(get.json.headers['x-extra'], 'y');
  assert.equal(get.json.headers.cookie, 'a=1; b=2', 'HTTP/2 cookie fields are joined for HTTP/1.1');
  assert.ok(!Object.keys(get.json.headers).some((k) => k.startsWith(':')), 'no pseudo-header reaches the app');
  const post = await send({ ':path': '/upload', ':method': 'POST' }, Buffer.alloc(200_000, 7));
  assert.equal(post.json.method, 'POST');
  assert.equal(post.json.bytes, 200_000);
  assert.equal(client.alpnProtocol, 'h2');

  const other = http2.connect(`https://other.example.test:${listener.port}`, { createConnection: () => tls.connect({ host: '127.0.0.1', port: listener.port, servername: 'other.example.test', ca: ca.pem, ALPNProtocols: ['h2'] }) });
  t.after(() => other.close());
  const page = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const stream = other.request({ ':path': '/' });
    let status = 0;
    let body = '';
    stream.on('response', (h) => (status = Number(h[':status'])));
    stream.setEncoding('utf8');
    stream.on('data', (d: string) => (body += d));
    stream.on('end', () => resolve({ status, body }));
    stream.on('error', reject);
  });
  assert.equal(page.status, 404, "berth's own error pages work over HTTP/2");
  assert.match(page.body, /No app is served at other\.example\.test/);
});

test('a WebSocket-style upgrade over TLS is spliced through to the app', async (t) => {
  const { listener } = await startStack(t);
  const socket = tls.connect({ host: '127.0.0.1', port: listener.port, servername: 'app.example.test', ca: ca.pem, ALPNProtocols: ['http/1.1'] });
  t.after(() => socket.destroy());
  await once(socket, 'secureConnect');
  socket.write('GET /ws HTTP/1.1\r\nHost: app.example.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n');
  let received = '';
  socket.setEncoding('utf8');
  socket.on('data', (d: string) => {
    received += d;
    if (received.includes('\r\n\r\n') && !received.includes('ping')) socket.write('ping');
  });
  const deadline = Date.now() + 5000;
  while (!received.includes('https:ping') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.match(received, /^HTTP\/1\.1 101/);
  assert.match(received, /https:ping/);
});

test('a name without a certificate fails its handshake and leaves the others served', async (t) => {
  const { listener } = await startStack(t);
  await assert.rejects(handshake(listener.port, 'nocert.example.test'));
  const ok = await handshake(listener.port, 'app.example.test', { ca: ca.pem });
  assert.equal(ok.authorized, true);
});

test('a client offering only acme-tls/1 gets the challenge certificate while others keep the real one', async (t) => {
  const { listener, challenges } = await startStack(t);
  const challengeCa = makeCa('challenge CA');
  const challengeCert = issueCert(challengeCa, ['app.example.test']);
  await assert.rejects(handshake(listener.port, 'app.example.test', { alpn: ['acme-tls/1'] }), 'no challenge in flight: refused');
  challenges.setAlpn('app.example.test', { certPem: challengeCert.certPem, keyPem: challengeCert.keyPem });
  const validator = await handshake(listener.port, 'app.example.test', { alpn: ['acme-tls/1'] });
  assert.equal(validator.alpn, 'acme-tls/1');
  assert.equal(validator.issuer, 'challenge CA');
  const browser = await handshake(listener.port, 'app.example.test', { alpn: ['h2', 'http/1.1'], ca: ca.pem });
  assert.equal(browser.alpn, 'h2');
  assert.equal(browser.authorized, true);
  assert.equal(browser.issuer, 'listener test CA');
});

test('the HTTP listener answers HTTP-01 tokens, sends certified hosts to HTTPS with 308, and never redirects the challenge path', async (t) => {
  const { edge, listener, challenges } = await startStack(t, new Set(['app.example.test']));
  challenges.setHttp('tok123', 'tok123.thumbprint');
  const answer = await request(edge.httpPort, 'app.example.test', '/.well-known/acme-challenge/tok123');
  assert.equal(answer.status, 200);
  assert.equal(answer.body, 'tok123.thumbprint');
  const unknown = await request(edge.httpPort, 'app.example.test', '/.well-known/acme-challenge/other');
  assert.equal(unknown.status, 200, 'an unknown token goes on to the app');
  assert.match(unknown.body, /"url":"\/\.well-known\/acme-challenge\/other"/);
  const redirected = await request(edge.httpPort, 'APP.example.test:8080', '/a/b?c=d');
  assert.equal(redirected.status, 308);
  assert.equal(redirected.headers.location, `https://app.example.test:${listener.port}/a/b?c=d`);
  const plain = await request(edge.httpPort, 'plain.example.test', '/x');
  assert.equal(plain.status, 200, 'a host without a certificate is served over HTTP');
  assert.equal((JSON.parse(plain.body) as { headers: Record<string, string> }).headers['x-forwarded-proto'], 'http');
});
