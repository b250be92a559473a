// The fast path's behaviour on real loopback sockets: balancing, passive health, pooling,
// request ids, limits and timeouts, pipelining, HTTP/1.0 clients, the access log.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { after, before, beforeEach, test } from 'node:test';
import { setLogSink } from '../src/log.ts';
import { DEFAULT_APP_SETTINGS } from '../src/state/proxy-settings.ts';
import { GENERATED_ID } from '../src/proxy/request-id.ts';
import { RouteTable } from '../src/proxy/route-table.ts';
import { call, deferred, freePort, rawExchange, startNamedUpstream, startProxy, startUpstream } from './helpers/loopback.ts';
import { tempDir } from './helpers/temp.ts';

let logLines: Array<Record<string, unknown>> = [];
before(() => setLogSink((line) => logLines.push(JSON.parse(line) as Record<string, unknown>)));
beforeEach(() => {
  logLines = [];
});
after(() => setLogSink((line) => process.stderr.write(line + '\n')));

const logged = (event: string) => logLines.filter((l) => l.event === event);
const shop = (targets: Parameters<RouteTable['withApp']>[2]) => RouteTable.empty().withApp('shop', ['shop.example.com'], targets);

test('a request goes to the target with the fewest requests in flight', async (t) => {
  const arrived = deferred();
  const release = deferred();
  const a = await startUpstream(t, 'web-a', (req, res) => {
    req.resume();
    if (req.url === '/slow') {
      arrived.resolve();
      void release.promise.then(() => res.end('web-a slow'));
    } else res.end('web-a');
  });
  const b = await startNamedUpstream(t, 'web-b');
  const proxy = await startProxy(t, shop([a.target, b.target]));

  const slow = call(proxy.httpPort, { host: 'shop.example.com', path: '/slow' });
  await arrived.promise;
  const next = [];
  for (let i = 0; i < 3; i++) next.push((await call(proxy.httpPort, { host: 'shop.example.com' })).body.toString());
  assert.deepEqual(next, ['web-b', 'web-b', 'web-b'], 'web-a is busy with the slow request');
  release.resolve();
  assert.equal((await slow).body.toString(), 'web-a slow');
});

test('a target that refuses connections is taken out and even a POST is retried on another (nothing reached the app)', async (t) => {
  const good = await startUpstream(t, 'web-good', (req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => res.end(`web-good got ${body}`));
  });
  const gone = { id: 'web-gone', host: '127.0.0.1', port: await freePort() };
  const proxy = await startProxy(t, shop([gone, good.target]));

  for (let i = 0; i < 4; i++) {
    const reply = await call(proxy.httpPort, { host: 'shop.example.com', method: 'POST', body: Buffer.from(`order=${i}`) });
    assert.equal(reply.status, 200);
    assert.equal(reply.body.toString(), `web-good got order=${i}`);
  }
  const errors = logged('proxy_upstream_error');
  assert.equal(errors.length, 1, 'the refusing target was tried once, then left out');
  assert.equal(errors[0]?.target, 'web-gone');
  assert.equal(errors[0]?.code, 'ECONNREFUSED');
});

test('a target that resets a fresh connection before answering is taken out, and a GET is retried on another', async (t) => {
  let resets = 0;
  const reset = net.createServer((socket) => socket.once('data', () => (resets++, socket.resetAndDestroy())));
  reset.listen(0, '127.0.0.1');
  await new Promise((r) => reset.once('listening', r));
  t.after(() => reset.close());
  const good = await startNamedUpstream(t, 'web-good');
  const proxy = await startProxy(t, shop([{ id: 'web-reset', host: '127.0.0.1', port: (reset.address() as net.AddressInfo).port }, good.target]));

  const replies = [];
  for (let i = 0; i < 3; i++) replies.push((await call(proxy.httpPort, { host: 'shop.example.com' })).body.toString());
  assert.deepEqual(replies, ['web-good', 'web-good', 'web-good']);
  assert.equal(resets, 1, 'after its reset the target got no more requests');
});

test('connections to a target are kept alive and reused', async (t) => {
  const up = await startNamedUpstream(t, 'web-1');
  const proxy = await startProxy(t, shop([up.target]));
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  for (let i = 0; i < 20; i++) assert.equal((await call(proxy.httpPort, { host: 'shop.example.com', agent })).body.toString(), 'web-1');
  assert.equal(up.connections(), 1);
});

test("the app gets an X-Request-Id: a new one, or the client's when it is well formed; new ones never repeat", async (t) => {
  const seen: Array<string | undefined> = [];
  const up = await startUpstream(t, 'web-1', (req, res) => {
    seen.push(req.headers['x-request-id'] as string | undefined);
    res.end();
  });
  const proxy = await startProxy(t, shop([up.target]));
  await call(proxy.httpPort, { host: 'shop.example.com' });
  await call(proxy.httpPort, { host: 'shop.example.com', headers: { 'x-request-id': 'client-chosen-id-0123456789' } });
  await call(proxy.httpPort, { host: 'shop.example.com', headers: { 'x-request-id': 'bad id' } });
  assert.match(seen[0]!, GENERATED_ID);
  assert.equal(seen[1], 'client-chosen-id-0123456789');
  assert.match(seen[2]!, GENERATED_ID);
  assert.notEqual(seen[0], seen[2]);
});

test("a body over the app's max-body-size gets 413 and never reaches the app, by length or chunked", async (t) => {
  let reached = 0;
  const up = await startUpstream(t, 'web-1', (req, res) => {
    reached++;
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  const proxy = await startProxy(t, shop([up.target]));
  proxy.setAppSettings(new Map([['shop', { ...DEFAULT_APP_SETTINGS, maxBodySize: 1024 }]]));

  const byLength = await call(proxy.httpPort, { host: 'shop.example.com', method: 'POST', body: Buffer.alloc(2000) });
  assert.equal(byLength.status, 413);
  assert.match(byLength.body.toString(), /413 Content Too Large/);
  assert.equal(reached, 0);
  const small = await call(proxy.httpPort, { host: 'shop.example.com', method: 'POST', body: Buffer.alloc(1000) });
  assert.equal(small.status, 200);

  const chunked = await rawExchange(
    proxy.httpPort,
    `POST / HTTP/1.1\r\nHost: shop.example.com\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n${'a'.repeat(1024)}\r\n10\r\n${'b'.repeat(16)}\r\n0\r\n\r\n`,
  );
  assert.match(chunked, /^HTTP\/1\.1 413 /);
});

test('a request head larger than the limit gets 431', async (t) => {
  const up = await startNamedUpstream(t, 'web-1');
  const proxy = await startProxy(t, shop([up.target]), { limits: { maxHeaderBytes: 4096 } });
  const text = await rawExchange(proxy.httpPort, `GET / HTTP/1.1\r\nHost: shop.example.com\r\nX-Big: ${'x'.repeat(5000)}\r\n\r\n`);
  assert.match(text, /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
});

test('a client that sends its head or body too slowly gets 408; an idle keep-alive connection is closed', async (t) => {
  const up = await startUpstream(t, 'web-1', (req, res) => {
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  const proxy = await startProxy(t, shop([up.target]), { limits: { headerTimeout: 200, bodyTimeout: 200 }, sweepIntervalMs: 20 });
  proxy.setAppSettings(new Map([['shop', { ...DEFAULT_APP_SETTINGS, idleTimeout: 200 }]]));

  const started = Date.now();
  const slowHead = await rawExchange(proxy.httpPort, 'GET / HTTP/1.1\r\nHost: shop.exa');
  assert.match(slowHead, /^HTTP\/1\.1 408 Request Timeout\r\n/);
  assert.ok(Date.now() - started < 2000);

  const slowBody = await rawExchange(proxy.httpPort, 'POST / HTTP/1.1\r\nHost: shop.example.com\r\nContent-Length: 10\r\n\r\nabc');
  assert.match(slowBody, /^HTTP\/1\.1 408 Request Timeout\r\n/);

  const idle = await rawExchange(proxy.httpPort, 'GET / HTTP/1.1\r\nHost: shop.example.com\r\n\r\n');
  assert.match(idle, /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nok$/, 'answered, then closed after the idle timeout without another byte');
});

test('pipelined requests are answered in order on one connection', async (t) => {
  const up = await startUpstream(t, 'web-1', (req, res) => {
    const delay = req.url === '/first' ? 50 : 0;
    setTimeout(() => res.end(req.url), delay);
  });
  const proxy = await startProxy(t, shop([up.target]));
  const text = await rawExchange(
    proxy.httpPort,
    'GET /first HTTP/1.1\r\nHost: shop.example.com\r\n\r\nGET /second HTTP/1.1\r\nHost: shop.example.com\r\n\r\nGET /third HTTP/1.1\r\nHost: shop.example.com\r\nConnection: close\r\n\r\n',
  );
  const bodies = text.split('HTTP/1.1 200 OK').slice(1).map((part) => part.slice(part.indexOf('\r\n\r\n') + 4));
  assert.deepEqual(bodies, ['/first', '/second', '/third']);
});

test('an HTTP/1.0 client gets a chunked answer decoded, then the connection closes', async (t) => {
  const up = await startUpstream(t, 'web-1', (_req, res) => {
    res.write('hello ');
    res.end('world');
  });
  const proxy = await startProxy(t, shop([up.target]));
  const text = await rawExchange(proxy.httpPort, 'GET / HTTP/1.0\r\nHost: shop.example.com\r\n\r\n');
  const [head = '', body] = text.split('\r\n\r\n');
  assert.doesNotMatch(head, /transfer-encoding/i);
  assert.match(head, /\r\nConnection: close/);
  assert.equal(body, 'hello world');
});

test('each answered request is one JSON line in the access log, with the id the app saw', async (t) => {
  let appSaw = '';
  const up = await startUpstream(t, 'web-1', (req, res) => {
    appSaw = req.headers['x-request-id'] as string;
    res.end('ok');
  });
  const file = path.join(tempDir('access'), 'access.log');
  const proxy = await startProxy(t, shop([up.target]), { accessLogFile: file });
  await call(proxy.httpPort, { host: 'shop.example.com', path: '/cart?token=secret' });
  await call(proxy.httpPort, { host: 'nobody.example.com' });
  await proxy.stop();
  const lines = fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(lines.length, 2);
  assert.deepEqual(
    { ...lines[0], time: undefined, ms: undefined },
    { time: undefined, ms: undefined, id: appSaw, client: '127.0.0.1', proto: 'http', host: 'shop.example.com', method: 'GET', path: '/cart', status: 200, bytes: lines[0].bytes, app: 'shop', target: 'web-1' },
  );
  assert.equal(lines[1].status, 404);
  assert.equal(lines[1].app, null);
});

test("berth's own error pages are small", async (t) => {
  const proxy = await startProxy(t, shop([{ id: 'web-gone', host: '127.0.0.1', port: await freePort() }]));
  const reply = await call(proxy.httpPort, { host: 'shop.example.com' });
  assert.equal(reply.status, 502);
  assert.ok(reply.body.length < 1024, `${reply.body.length} bytes`);
  assert.match(reply.headers['x-request-id'] as string, GENERATED_ID);
});

test('an app that answers before the whole body arrived gets its answer through, then the connection closes', async (t) => {
  const up = await startUpstream(t, 'web-1', (_req, res) => {
    res.statusCode = 413;
    res.end('too big for me');
  });
  const proxy = await startProxy(t, shop([up.target]));
  const socket = net.connect(proxy.httpPort, '127.0.0.1');
  t.after(() => socket.destroy());
  let text = '';
  socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
  socket.on('error', () => undefined);
  socket.write('POST / HTTP/1.1\r\nHost: shop.example.com\r\nContent-Length: 100000\r\n\r\n' + 'x'.repeat(1000));
  await new Promise((r) => socket.once('close', r));
  assert.match(text, /^HTTP\/1\.1 413 Payload Too Large\r\n/);
  assert.match(text, /\r\nConnection: close\r\n/);
  assert.ok(text.endsWith('too big for me'));
});

test('a client that leaves in the middle of an answer takes the upstream connection with it', async (t) => {
  const closed = deferred();
  const up = await startUpstream(t, 'web-1', (req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('first part');
    req.socket.once('close', () => closed.resolve());
  });
  const proxy = await startProxy(t, shop([up.target]));
  const socket = net.connect(proxy.httpPort, '127.0.0.1');
  socket.write('GET / HTTP/1.1\r\nHost: shop.example.com\r\n\r\n');
  await new Promise<void>((resolve) => socket.on('data', (d: Buffer) => d.toString().includes('first part') && resolve()));
  socket.destroy();
  await closed.promise;
});

test('a client that stops reading a large answer is cut after the body timeout, and so is the app connection', async (t) => {
  const closed = deferred();
  const up = await startUpstream(t, 'web-1', (req, res) => {
    req.socket.once('close', () => closed.resolve());
    const chunk = Buffer.alloc(64 * 1024, 'x');
    const pump = () => {
      while (res.write(chunk));
      res.once('drain', pump);
    };
    pump();
  });
  const proxy = await startProxy(t, shop([up.target]), { limits: { bodyTimeout: 300 }, sweepIntervalMs: 20 });
  const socket = net.connect(proxy.httpPort, '127.0.0.1');
  t.after(() => socket.destroy());
  socket.write('GET /big HTTP/1.1\r\nHost: shop.example.com\r\n\r\n');
  await new Promise((r) => socket.once('data', r));
  socket.pause(); // never reads again
  const started = Date.now();
  await closed.promise;
  assert.ok(Date.now() - started < 5000, `${Date.now() - started} ms`);
});
