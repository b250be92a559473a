// Draining a target set after a swap: requests in flight finish, WebSockets keep their grace until
// the deadline and are then closed with a close frame on both sides. Real loopback upstreams and
// Node's own WebSocket client.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { after, before, test, type TestContext } from 'node:test';
import { setLogSink } from '../src/log.ts';
import { RouteTable, type Target } from '../src/proxy/route-table.ts';
import { FrameTracker } from '../src/proxy/tunnel.ts';
import { call, deferred, startNamedUpstream, startProxy } from './helpers/loopback.ts';

before(() => setLogSink(() => {}));
after(() => setLogSink((line) => process.stderr.write(line + '\n')));

interface WsUpstream {
  target: Target;
  /** Close codes received from the proxy, per connection. */
  closeCodes: number[];
  release: () => void;
  slowArrived: Promise<void>;
}

/** An app with a slow HTTP route (/slow waits for release()) and a WebSocket echo (text frames). */
async function startWsApp(t: TestContext, id: string): Promise<WsUpstream> {
  const closeCodes: number[] = [];
  const released = deferred();
  const arrived = deferred();
  const server = http.createServer((req, res) => {
    req.resume();
    if (req.url === '/slow') {
      arrived.resolve();
      void released.promise.then(() => res.end(`${id} slow done`));
    } else res.end(id);
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex) => {
    const accept = createHash('sha1').update(`${req.headers['sec-websocket-key']}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    let buffered = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      buffered = Buffer.concat([buffered, d]);
      for (;;) {
        const frame = readMaskedFrame(buffered);
        if (!frame) return;
        buffered = buffered.subarray(frame.size);
        if (frame.opcode === 0x1) socket.write(textFrame(`${id}: ${frame.payload.toString()}`));
        if (frame.opcode === 0x8) {
          closeCodes.push(frame.payload.readUInt16BE(0));
          socket.end(Buffer.from([0x88, 0x02, frame.payload[0]!, frame.payload[1]!]));
        }
      }
    });
    socket.on('error', () => socket.destroy());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  return { target: { id, host: '127.0.0.1', port: (server.address() as net.AddressInfo).port }, closeCodes, release: () => released.resolve(), slowArrived: arrived.promise };
}

function readMaskedFrame(buf: Buffer): { opcode: number; payload: Buffer; size: number } | undefined {
  if (buf.length < 2) return undefined;
  const len = buf[1]! & 0x7f; // the tests send short frames only
  const masked = (buf[1]! & 0x80) !== 0;
  const size = 2 + (masked ? 4 : 0) + len;
  if (buf.length < size) return undefined;
  const payload = Buffer.from(buf.subarray(size - len, size));
  if (masked) for (let i = 0; i < len; i++) payload[i]! ^= buf[2 + (i % 4)]!;
  return { opcode: buf[0]! & 0x0f, payload, size };
}

function textFrame(text: string): Buffer {
  const payload = Buffer.from(text);
  return Buffer.concat([Buffer.from([0x81, payload.length]), payload]);
}

function openWebSocket(port: number, host: string): Promise<{ ws: WebSocket; messages: string[]; closed: Promise<CloseEvent> }> {
  // Node's WebSocket sends the Host of the URL: a name that resolves to loopback and the route's host name.
  const ws = new WebSocket(`ws://${host}:${port}/socket`);
  const messages: string[] = [];
  ws.addEventListener('message', (e) => messages.push(String(e.data)));
  const closed = new Promise<CloseEvent>((resolve) => ws.addEventListener('close', (e) => resolve(e)));
  return new Promise((resolve, reject) => {
    ws.addEventListener('open', () => resolve({ ws, messages, closed }));
    ws.addEventListener('error', () => reject(new Error('WebSocket failed to open')));
  });
}

async function until(what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

// "localhost" resolves to 127.0.0.1 here, and makes a valid route host name for Node's WebSocket client.
const HOST = 'localhost';
const table = (targets: Target[]) => RouteTable.empty().withApp('chat', [HOST], targets);

test('a drain waits for the requests in flight on the old targets, then resolves at once', async (t) => {
  const old = await startWsApp(t, 'old');
  const next = await startNamedUpstream(t, 'new');
  const proxy = await startProxy(t, table([old.target]));

  const slow = call(proxy.httpPort, { host: HOST, path: '/slow' });
  await old.slowArrived;
  proxy.swap(table([next.target]));
  assert.equal((await call(proxy.httpPort, { host: HOST })).body.toString(), 'new');
  const started = Date.now();
  const drained = proxy.drain([old.target], { deadlineMs: 5000 });
  setTimeout(() => old.release(), 200);
  const report = await drained;
  assert.equal((await slow).body.toString(), 'old slow done');
  assert.equal(report.requestsLeft, 0);
  assert.equal(report.tunnelsClosed, 0);
  assert.ok(Date.now() - started < 2000, `resolved once the request finished, not at the deadline (${report.waitedMs} ms)`);
});

test('a drain that reaches its deadline reports the requests still in flight', async (t) => {
  const old = await startWsApp(t, 'old');
  const proxy = await startProxy(t, table([old.target]));
  const slow = call(proxy.httpPort, { host: HOST, path: '/slow' });
  await old.slowArrived;
  proxy.swap(RouteTable.empty());
  const report = await proxy.drain([old.target], { deadlineMs: 150 });
  assert.equal(report.requestsLeft, 1);
  assert.ok(report.waitedMs >= 140, `${report.waitedMs}`);
  old.release();
  assert.equal((await slow).status, 200, 'a drain never cuts an HTTP request itself');
});

test('a WebSocket on a drained target keeps working until the deadline, then both sides get a 1001 close frame', async (t) => {
  const old = await startWsApp(t, 'old');
  const next = await startWsApp(t, 'new');
  const proxy = await startProxy(t, table([old.target]));

  const { ws, messages, closed } = await openWebSocket(proxy.httpPort, HOST);
  ws.send('hello');
  await until('the echo', () => messages.length === 1);
  proxy.swap(table([next.target]));
  const drained = proxy.drain([old.target], { deadlineMs: 400, reason: 'redeploy' });
  await new Promise((r) => setTimeout(r, 100));
  ws.send('still there');
  await until('the second echo', () => messages.length === 2);
  assert.deepEqual(messages, ['old: hello', 'old: still there']);

  const report = await drained;
  const event = await closed;
  assert.equal(event.code, 1001);
  assert.equal(event.reason, 'redeploy');
  assert.equal(event.wasClean, true);
  assert.equal(report.tunnelsClosed, 1);
  assert.ok(report.waitedMs >= 390, `the WebSocket had its grace: ${report.waitedMs} ms`);
  await until('the app side close frame', () => old.closeCodes.length === 1);
  assert.deepEqual(old.closeCodes, [1001]);

  const again = await openWebSocket(proxy.httpPort, HOST);
  again.ws.send('hi');
  await until('the echo from the new target', () => again.messages.length === 1);
  assert.deepEqual(again.messages, ['new: hi']);
  again.ws.close();
});

test('the frame tracker finds boundaries across any split of frames of every length form', () => {
  const frames = [
    Buffer.concat([Buffer.from([0x81, 5]), Buffer.from('hello')]),
    Buffer.concat([Buffer.from([0x82, 126, 0x01, 0x00]), Buffer.alloc(256, 1)]),
    Buffer.concat([Buffer.from([0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]), Buffer.alloc(65536, 2)]),
    Buffer.concat([Buffer.from([0x81, 0x83, 1, 2, 3, 4]), Buffer.from('abc')]),
  ];
  const stream = Buffer.concat(frames);
  const ends = frames.reduce<number[]>((acc, f) => [...acc, (acc.at(-1) ?? 0) + f.length], []);
  for (const split of [1, 2, 3, 7, 100, 260, 270, 65000, stream.length - 1]) {
    const tracker = new FrameTracker();
    tracker.scan(stream.subarray(0, split));
    const next = ends.find((e) => e > split);
    const inFirst = ends.includes(split);
    assert.equal(tracker.atBoundary, inFirst, `split ${split}`);
    const rest = stream.subarray(split);
    const boundary = tracker.firstBoundary(rest);
    assert.equal(boundary, inFirst ? 0 : next! - split, `split ${split}`);
  }
});
