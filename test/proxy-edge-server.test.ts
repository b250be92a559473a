import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { after, before, beforeEach, test, type TestContext } from 'node:test';
import { isUserError } from '../src/errors.ts';
import { setLogSink } from '../src/log.ts';
import { EdgeServer } from '../src/proxy/edge-server.ts';
import { errorPage } from '../src/proxy/error-pages.ts';
import { DEFAULT_APP_SETTINGS } from '../src/state/proxy-settings.ts';
import { RouteTable, type Target } from '../src/proxy/route-table.ts';
import { call, deferred, freePort, startNamedUpstream, startProxy, startUpstream } from './helpers/loopback.ts';

// ---------------------------------------------------------------------------------------------
// Fixtures: real loopback upstreams, a real EdgeServer, a plain node:http client.

let logLines: Array<Record<string, unknown>> = [];
before(() => setLogSink((line) => logLines.push(JSON.parse(line) as Record<string, unknown>)));
beforeEach(() => {
  logLines = [];
});
after(() => setLogSink((line) => process.stderr.write(line + '\n')));

function logged(event: string): Array<Record<string, unknown>> {
  return logLines.filter((l) => l.event === event);
}

/** Reads from a raw socket until `done` holds for everything read so far. */
function readUntil(socket: net.Socket, done: (text: string) => boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (d: Buffer) => {
      text += d.toString('latin1');
      if (done(text)) {
        socket.off('data', onData);
        socket.off('error', reject);
        socket.off('close', onClose);
        resolve(text);
      }
    };
    const onClose = () => reject(new Error(`socket closed after: ${JSON.stringify(text)}`));
    socket.on('data', onData);
    socket.on('error', reject);
    socket.on('close', onClose);
  });
}

function sha256(data: Buffer | Buffer[]): string {
  const hash = createHash('sha256');
  for (const chunk of Array.isArray(data) ? data : [data]) hash.update(chunk);
  return hash.digest('hex');
}

// ---------------------------------------------------------------------------------------------
// Routing

test('a request is routed by its Host header to the app target, with the port and case ignored', async (t) => {
  const shop = await startNamedUpstream(t, 'shop-web-1');
  const blog = await startNamedUpstream(t, 'blog-web-1');
  const table = RouteTable.empty().withApp('shop', ['shop.example.com'], [shop.target]).withApp('blog', ['blog.example.com'], [blog.target]);
  const proxy = await startProxy(t, table);

  assert.equal((await call(proxy.httpPort, { host: 'SHOP.Example.com:8080' })).body.toString(), 'shop-web-1');
  assert.equal((await call(proxy.httpPort, { host: 'blog.example.com.' })).body.toString(), 'blog-web-1');
});

test('a request line in absolute form without a Host header is routed by the URL host', async (t) => {
  let seenPath = '';
  const shop = await startUpstream(t, 'shop-web-1', (req, res) => {
    seenPath = req.url ?? '';
    res.end('shop');
  });
  const proxy = await startProxy(t, RouteTable.empty().withApp('shop', ['shop.example.com'], [shop.target]));

  const socket = net.connect(proxy.httpPort, '127.0.0.1');
  t.after(() => socket.destroy());
  socket.write('GET http://shop.example.com/cart?id=7 HTTP/1.0\r\n\r\n');
  const text = await readUntil(socket, (s) => s.endsWith('shop'));
  assert.match(text, /^HTTP\/1\.1 200 /);
  assert.equal(seenPath, '/cart?id=7');
});

test('an unknown host gets a 404 page that names the host', async (t) => {
  const proxy = await startProxy(t, RouteTable.empty());

  const reply = await call(proxy.httpPort, { host: 'nobody.example.com' });
  assert.equal(reply.status, 404);
  assert.equal(reply.headers['content-type'], 'text/html; charset=utf-8');
  assert.match(reply.body.toString(), /No app is served at nobody\.example\.com/);
  assert.deepEqual(logged('proxy_upstream_error'), []);
});

test('a Host header with characters no host name has gets a 400 page that does not echo it', async (t) => {
  const proxy = await startProxy(t, RouteTable.empty());

  const reply = await call(proxy.httpPort, { host: '<b>evil</b>.example.com' });
  assert.equal(reply.status, 400);
  assert.match(reply.body.toString(), /invalid Host header/);
  assert.doesNotMatch(reply.body.toString(), /<b>/);
});

test('a HEAD request to an unknown host gets the 404 status and length but no body', async (t) => {
  const proxy = await startProxy(t, RouteTable.empty());

  const reply = await call(proxy.httpPort, { host: 'nobody.example.com', method: 'HEAD' });
  assert.equal(reply.status, 404);
  assert.equal(reply.body.length, 0);
  assert.equal(Number(reply.headers['content-length']), Buffer.byteLength(errorPage(404, 'No app is served at nobody.example.com.').body));
});

test('an app with no targets gets a 503 page', async (t) => {
  const proxy = await startProxy(t, RouteTable.empty().withApp('shop', ['shop.example.com'], []));

  const reply = await call(proxy.httpPort, { host: 'shop.example.com' });
  assert.equal(reply.status, 503);
  assert.match(reply.body.toString(), /no running web process/);
  assert.equal(logged('proxy_no_targets').length, 1);
});

test('requests are spread round-robin across two targets', async (t) => {
  const a = await startNamedUpstream(t, 'web-a');
  const b = await startNamedUpstream(t, 'web-b');
  const proxy = await startProxy(t, RouteTable.empty().withApp('shop', ['shop.example.com'], [a.target, b.target]));

  const seen: string[] = [];
  for (let i = 0; i < 4; i++) seen.push((await call(proxy.httpPort, { host: 'shop.example.com' })).body.toString());
  assert.deepEqual(seen, ['web-a', 'web-b', 'web-a', 'web-b']);
});

test('swap() changes where the next request goes while a slow request in flight on the old target still completes with 200', async (t) => {
  const arrived = deferred();
  const release = deferred();
  const old = await startUpstream(t, 'old', (req, res) => {
    req.resume();
    arrived.resolve();
    void release.promise.then(() => res.end('old finished'));
  });
  const next = await startNamedUpstream(t, 'new');
  const proxy = await startProxy(t, RouteTable.empty().withApp('shop', ['shop.example.com'], [old.target]));

  const slow = call(proxy.httpPort, { host: 'shop.example.com' });
  await arrived.promise;
  proxy.swap(proxy.routes.withApp('shop', ['shop.example.com'], [next.target]));
  assert.equal((await call(proxy.httpPort, { host: 'shop.example.com' })).body.toString(), 'new');
  release.resolve();
  const reply = await slow;
  assert.equal(reply.status, 200);
  assert.equal(reply.body.toString(), 'old finished');
});

// ---------------------------------------------------------------------------------------------
// Headers

test('X-Forwarded-For/Proto/Host/Port reach the upstream and an incoming X-Forwarded-For is appended to', async (t) => {
  let seen: http.IncomingHttpHeaders = {};
  const shop = await startUpstream(t, 'shop-web-1', (req, res) => {
    seen = req.headers;
    res.end();
  });
  const proxy = await startProxy(t, RouteTable.empty().withApp('shop', ['shop.example.com'], [shop.target]));

  const host = `Shop.example.com:${proxy.httpPort}`;
  await call(proxy.httpPort, { host, headers: { 'x-forwarded-for': '203.0.113.7', 'x-forwarded-proto': 'https', 'x-forwarded-port': '443' } });
  assert.equal(seen['x-forwarded-for'], '203.0.113.7, 127.0.0.1');
  assert.equal(seen['x-forwarded-proto'], 'http');
  assert.equal(seen['x-forwarded-host'], host);
  assert.equal(seen['x-forwarded-port'], String(proxy.httpPort));
  assert.equal(seen.host, host, 'the Host header reaches the app as the client sent it');

  await call(proxy.httpPort, { host });
  assert.equal(seen['x-forwarded-for'], '127.0.0.1');
});

test('hop-by-hop headers are not forwarded in either direction', async (t) => {
  let seenRaw: string[] = [];
  const shop = await startUpstream(t, 'shop-web-1', (req, res) => {
    seenRaw = req.rawHeaders;
    res.setHeader('Connection', 'keep-alive, X-Upstream-Secret');
    res.setHeader('X-Upstream-Secret', 'u');
    res.setHeader('Keep-Alive', 'timeout=99');
    res.setHeader('Proxy-Connection', 'keep-alive');
    res.setHeader('Upgrade', 'nothing');
    res.setHeader('Trailer', 'X-Checksum');
    res.setHeader('X-Kept', 'yes');
    res.write('ok'); // no Content-Length: the body goes out chunked
    res.end();
  });
  const proxy = await startProxy(t, RouteTable.empty().withApp('shop', ['shop.example.com'], [shop.target]));

  // A raw client, because node:http refuses to send some of these on a request without a body.
  const client = net.connect(proxy.httpPort, '127.0.0.1');
  t.after(() => client.destroy());
  client.write(
    'GET / HTTP/1.1\r\nHost: shop.example.com\r\nConnection: keep-alive, X-Client-Secret\r\nX-Client-Secret: c\r\n' +
      'Keep-Alive: timeout=50\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-Checksum\r\nUpgrade: h2c\r\n' +
      'X-Also-Kept: yes\r\n\r\n',
  );
  const text = await readUntil(client, (s) => s.endsWith('0\r\n\r\n'));
  const [head = '', body = ''] = text.split('\r\n\r\n');
  const received = new Map<string, string>();
  for (const line of head.split('\r\n').slice(1)) {
    const colon = line.indexOf(':');
    received.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
  }

  const sent = new Map<string, string>();
  for (let i = 0; i < seenRaw.length; i += 2) sent.set(seenRaw[i]!.toLowerCase(), seenRaw[i + 1]!);
  for (const name of ['x-client-secret', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade', 'transfer-encoding']) {
    assert.equal(sent.has(name), false, `request header ${name} reached the upstream`);
  }
  assert.doesNotMatch(sent.get('connection') ?? '', /secret/i);
  assert.equal(sent.get('x-also-kept'), 'yes');

  assert.match(body, /^2\r\nok\r\n/);
  for (const name of ['x-upstream-secret', 'proxy-connection', 'upgrade', 'trailer']) {
    assert.equal(received.has(name), false, `response header ${name} reached the client`);
  }
  assert.notEqual(received.get('keep-alive'), 'timeout=99');
  assert.doesNotMatch(received.get('connection') ?? '', /secret/i);
  assert.equal(received.get('x-kept'), 'yes');
});

test('response headers that repeat, like Set-Cookie, all reach the client', async (t) => {
  const shop = await startUpstream(t, 'shop-web-1', (_req, res) => {
    res.setHeader('Set-Cookie', ['a=1; Path=/', 'b=2; Path=/']);
    res.end();
  });
  const proxy = await startProxy(t, RouteTable.empty().withApp('shop', ['shop.example.com'], [shop.target]));

  const reply = await call(proxy.httpPort, { host: 'shop.example.com' });
  assert.deepEqual(reply.headers['set-cookie'], ['a=1; Path=/', 'b=2; Path=/']);
});

// ---------------------------------------------------------------------------------------------
// Bodies

test('a POST body of several MB streams through intact, with a Content-Length or chunked', async (t) => {
  const shop = await startUpstream(t, 'shop-web-1', (req, res) => {
    res.writeHead(200, { 'x-request-framing': req.headers['content-length'] ? 'length' : String(req.headers['transfer-encoding']) });
    req.pipe(res);
  });
  const proxy = await startProxy(t, RouteTable.empty().withApp('shop', ['shop.example.com'], [shop.target]));
  const chunks = Array.from({ length: 12 }, () => randomBytes(512 * 1024));
  const total = chunks.reduce((n, c) => n + c.length, 0);

  const withLength = await call(proxy.httpPort, { host: 'shop.example.com', method: 'POST', headers: { 'content-length': total }, body: chunks });
  assert.equal(withLength.status, 200);
  assert.equal(withLength.headers['x-request-framing'], 'length');
  assert.equal(withLength.body.length, total);
  assert.equal(sha256(withLength.body), sha256(chunks));

  const chunked = await call(proxy.httpPort, { host: 'shop.example.com', method: 'PUT', body: chunks });
  assert.equal(chunked.headers['x-request-framing'], 'chunked');
  assert.equal(sha256(chunked.body), sha256(chunks));
});

test('a POST with an empty body reaches the upstream with Content-Length 0', async (t) => {
  let seenLength: string | undefined;
  const shop = await startUpstream(t, 'shop-web-1', (req, res) => {
    seenLength = req.headers['content-length'];
    req.resume();
    req.on('end', () => res.end('done'));
  });
  const proxy = await startProxy(t, RouteTable.empty().withApp('shop', ['shop.example.com'], [shop.target]));

  const reply = await call(proxy.httpPort, { host: 'shop.example.com', method: 'POST', headers: { 'content-length': 0 } });
  assert.equal(reply.body.toString(), 'done');
  assert.equal(seenLength, '0');
});

test('a request sent with Expect: 100-continue gets its body through', async (t) => {
  const shop = await startUpstream(t, 'shop-web-1', (req, res) => req.pipe(res));
  const proxy = await startProxy(t, RouteTable.empty().withApp('shop', ['shop.example.com'], [shop.target]));

  const body = await new Promise<string>((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port: proxy.httpPort,
      method: 'POST',
      agent: false,
      headers: { host: 'shop.example.com', expect: '100-continue', 'content-length': 5 },
    });
    req.on('continue', () => req.end('hello'));
    req.on('response', (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve(text));
    });
    req.on('error', reject);
  });
  assert.equal(body, 'hello');
});

// ---------------------------------------------------------------------------------------------
// Upstream failures

test('an upstream that refuses the connection gets a 502 page and one log line', async (t) => {
  const closedPort = await freePort();
  const proxy = await startProxy(t, RouteTable.empty().withApp('shop', ['shop.example.com'], [{ id: 'web-gone', host: '127.0.0.1', port: closedPort }]));

  const reply = await call(proxy.httpPort, { host: 'shop.example.com', method: 'POST', body: Buffer.from('x') });
  assert.equal(reply.status, 502);
  assert.match(reply.body.toString(), /502 Bad Gateway/);
  const errors = logged('proxy_upstream_error');
  assert.equal(errors.length, 1);
  assert.equal(errors[0]?.app, 'shop');
  assert.equal(errors[0]?.target, 'web-gone');
  assert.equal(errors[0]?.code, 'ECONNREFUSED');
});

test("an upstream that sends no headers within the app's read timeout gets a 504 page", async (t) => {
  const shop = await startUpstream(t, 'shop-web-1', (req) => req.resume());
  const proxy = await startProxy(t, RouteTable.empty().withApp('shop', ['shop.example.com'], [shop.target]), { sweepIntervalMs: 20 });
  proxy.setAppSettings(new Map([['shop', { ...DEFAULT_APP_SETTINGS, readTimeout: 200 }]]));

  const reply = await call(proxy.httpPort, { host: 'shop.example.com' });
  assert.equal(reply.status, 504);
  assert.equal(logged('proxy_upstream_error')[0]?.code, 'ETIMEDOUT');
});

test('an upstream that dies in the middle of a body cuts the client response instead of ending it cleanly', async (t) => {
  const shop = await startUpstream(t, 'shop-web-1', (req, res) => {
    res.writeHead(200, { 'content-length': '100' });
    res.write('0123456789', () => req.socket.destroy());
  });
  const proxy = await startProxy(t, RouteTable.empty().withApp('shop', ['shop.example.com'], [shop.target]));

  await assert.rejects(call(proxy.httpPort, { host: 'shop.example.com' }));
});

test('a bodiless GET is retried once when the upstream drops the connection, a POST is not', async (t) => {
  let requests = 0;
  const flaky = await startUpstream(t, 'web-flaky', (req, res) => {
    requests += 1;
    req.resume();
    if (requests % 2 === 1) req.socket.destroy();
    else res.end('second try');
  });
  const proxy = await startProxy(t, RouteTable.empty().withApp('shop', ['shop.example.com'], [flaky.target]));

  const get = await call(proxy.httpPort, { host: 'shop.example.com' });
  assert.equal(get.status, 200);
  assert.equal(get.body.toString(), 'second try');
  assert.equal(requests, 2);

  const post = await call(proxy.httpPort, { host: 'shop.example.com', method: 'POST', body: Buffer.from('order=1') });
  assert.equal(post.status, 502);
  assert.equal(requests, 3);
});

// ---------------------------------------------------------------------------------------------
// Upgrades

interface RawUpstream {
  target: Target;
  heads: string[];
  closed: Promise<void>;
}

/** A raw TCP upstream that answers any upgrade with 101, then echoes every byte back. */
async function startEchoUpstream(t: TestContext): Promise<RawUpstream> {
  const heads: string[] = [];
  const closed = deferred();
  const server = net.createServer((socket) => {
    let buffered = Buffer.alloc(0);
    let upgraded = false;
    socket.on('close', () => closed.resolve());
    socket.on('data', (d: Buffer) => {
      if (upgraded) {
        socket.write(d);
        return;
      }
      buffered = Buffer.concat([buffered, d]);
      const end = buffered.indexOf('\r\n\r\n');
      if (end === -1) return;
      upgraded = true;
      heads.push(buffered.subarray(0, end).toString('latin1'));
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n');
      const rest = buffered.subarray(end + 4);
      if (rest.length > 0) socket.write(rest);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  return { heads, closed: closed.promise, target: { id: 'web-echo', host: '127.0.0.1', port: (server.address() as net.AddressInfo).port } };
}

test('a WebSocket-style upgrade is spliced both ways', async (t) => {
  const upstream = await startEchoUpstream(t);
  const proxy = await startProxy(t, RouteTable.empty().withApp('chat', ['chat.example.com'], [upstream.target]));

  const client = net.connect(proxy.httpPort, '127.0.0.1');
  t.after(() => client.destroy());
  // The first bytes of the new protocol ride in the same packet as the request: they arrive as `head`.
  client.write('GET /socket?room=1 HTTP/1.1\r\nHost: chat.example.com\r\nConnection: Upgrade\r\nUpgrade: echo\r\nX-Forwarded-For: 198.51.100.1\r\n\r\nhello');
  const first = await readUntil(client, (s) => s.includes('\r\n\r\n') && s.endsWith('hello'));
  assert.match(first, /^HTTP\/1\.1 101 Switching Protocols\r\n/);

  const head = upstream.heads[0] ?? '';
  assert.match(head, /^GET \/socket\?room=1 HTTP\/1\.1\r\n/);
  assert.match(head, /\r\nHost: chat\.example\.com\r\n/);
  assert.match(head, /\r\nUpgrade: echo\r\n/);
  assert.match(head, /\r\nX-Forwarded-For: 198\.51\.100\.1, 127\.0\.0\.1\r\n/);
  assert.match(head, /\r\nX-Forwarded-Proto: http\r\n/);
  assert.match(head, /\r\nX-Forwarded-Host: chat\.example\.com\r\n/);

  client.write('and again');
  await readUntil(client, (s) => s === 'and again');

  client.end();
  await upstream.closed; // the client leaving tears down the upstream side too
});

test('an upgraded connection delivers everything the upstream sent before it closed', async (t) => {
  const payload = randomBytes(16 * 1024 * 1024);
  const server = net.createServer((socket) => {
    socket.once('data', () => {
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: dump\r\nConnection: Upgrade\r\n\r\n');
      socket.end(payload);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  const target = { id: 'web-dump', host: '127.0.0.1', port: (server.address() as net.AddressInfo).port };
  const proxy = await startProxy(t, RouteTable.empty().withApp('dump', ['dump.example.com'], [target]));

  const client = net.connect(proxy.httpPort, '127.0.0.1');
  t.after(() => client.destroy());
  const chunks: Buffer[] = [];
  client.on('data', (d: Buffer) => chunks.push(d));
  client.write('GET / HTTP/1.1\r\nHost: dump.example.com\r\nConnection: Upgrade\r\nUpgrade: dump\r\n\r\n');
  await once(client, 'close');
  const all = Buffer.concat(chunks);
  const body = all.subarray(all.indexOf('\r\n\r\n') + 4);
  assert.equal(body.length, payload.length);
  assert.equal(sha256(body), sha256(payload));
});

test('an upgrade to an unknown host gets a 404 page and the connection is closed', async (t) => {
  const proxy = await startProxy(t, RouteTable.empty());

  const client = net.connect(proxy.httpPort, '127.0.0.1');
  t.after(() => client.destroy());
  const text = new Promise<string>((resolve) => {
    let s = '';
    client.on('data', (d: Buffer) => (s += d.toString()));
    client.on('close', () => resolve(s));
  });
  client.write('GET / HTTP/1.1\r\nHost: nobody.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
  const reply = await text;
  assert.match(reply, /^HTTP\/1\.1 404 Not Found\r\n/);
  assert.match(reply, /No app is served at nobody\.example\.com/);
});

test('an upgrade to a target that refuses the connection gets a 502 page', async (t) => {
  const closedPort = await freePort();
  const proxy = await startProxy(t, RouteTable.empty().withApp('chat', ['chat.example.com'], [{ id: 'web-gone', host: '127.0.0.1', port: closedPort }]));

  const client = net.connect(proxy.httpPort, '127.0.0.1');
  t.after(() => client.destroy());
  const text = new Promise<string>((resolve) => {
    let s = '';
    client.on('data', (d: Buffer) => (s += d.toString()));
    client.on('close', () => resolve(s));
  });
  client.write('GET / HTTP/1.1\r\nHost: chat.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
  assert.match(await text, /^HTTP\/1\.1 502 Bad Gateway\r\n/);
  assert.equal(logged('proxy_upstream_error')[0]?.phase, 'connect');
});

// ---------------------------------------------------------------------------------------------
// Challenge responder

test('a challenge responder is asked first for challenge tokens and may answer for any host', async (t) => {
  const shop = await startNamedUpstream(t, 'shop-web-1');
  const proxy = await startProxy(t, RouteTable.empty().withApp('shop', ['shop.example.com'], [shop.target]));
  proxy.setChallengeResponder((token) => (token === 'abc' ? 'token' : undefined));

  assert.equal((await call(proxy.httpPort, { host: 'new.example.com', path: '/.well-known/acme-challenge/abc' })).body.toString(), 'token');
  assert.equal((await call(proxy.httpPort, { host: 'shop.example.com', path: '/' })).body.toString(), 'shop-web-1');
  proxy.setChallengeResponder(undefined);
  assert.equal((await call(proxy.httpPort, { host: 'new.example.com', path: '/.well-known/acme-challenge/abc' })).status, 404);
});

test('a challenge responder that throws gets a 500 page and a log line', async (t) => {
  const proxy = await startProxy(t, RouteTable.empty());
  proxy.setChallengeResponder(() => {
    throw new Error('key store unreadable');
  });

  assert.equal((await call(proxy.httpPort, { host: 'shop.example.com', path: '/.well-known/acme-challenge/abc' })).status, 500);
  assert.equal(logged('proxy_challenge_error').length, 1);
});

// ---------------------------------------------------------------------------------------------
// Lifecycle

test('stop() after a failed start (port in use) does not throw', async () => {
  const busy = net.createServer().listen(0, '127.0.0.1');
  await once(busy, 'listening');
  try {
    const port = (busy.address() as net.AddressInfo).port;
    const proxy = new EdgeServer({ httpPort: port, bindHost: '127.0.0.1' });
    await assert.rejects(proxy.start(), (e: unknown) => isUserError(e) && e.code === 'port_in_use');
    await proxy.stop();
    await proxy.stop();
  } finally {
    busy.close();
  }
});

test('stop() called while start() is pending leaves no listener behind', async () => {
  const proxy = new EdgeServer({ httpPort: 0, bindHost: '127.0.0.1' });
  const started = proxy.start();
  await proxy.stop();
  await started;
  const probe = net.connect(proxy.httpPort, '127.0.0.1');
  const [error] = (await once(probe, 'error')) as [NodeJS.ErrnoException];
  assert.equal(error.code, 'ECONNREFUSED');
});

test('stop() before start() does not throw', async () => {
  await new EdgeServer({ httpPort: 0 }).stop();
});

test('stop() lets a request in flight finish, then resolves with the keep-alive connection closed', async (t) => {
  const arrived = deferred();
  const release = deferred();
  const slow = await startUpstream(t, 'web-slow', (req, res) => {
    req.resume();
    arrived.resolve();
    void release.promise.then(() => res.end('finished'));
  });
  const proxy = new EdgeServer({ httpPort: 0, bindHost: '127.0.0.1' });
  await proxy.start();
  proxy.swap(RouteTable.empty().withApp('shop', ['shop.example.com'], [slow.target]));

  const agent = new http.Agent({ keepAlive: true });
  t.after(() => agent.destroy());
  let socket: net.Socket | undefined;
  const reply = new Promise<{ status: number; body: string }>((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port: proxy.httpPort, headers: { host: 'shop.example.com' }, agent }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('socket', (s) => (socket = s))
      .on('error', reject);
  });
  await arrived.promise;
  const stopped = proxy.stop();
  release.resolve();
  const { status, body } = await reply;
  assert.equal(status, 200);
  assert.equal(body, 'finished');
  await stopped;
  assert.ok(socket);
  if (!socket.destroyed) await once(socket, 'close');
});
