// The proxy's metrics through a real EdgeServer and TlsListener on loopback: requests counted by
// app, status class and protocol (HTTP/1.1 and HTTP/2), a refused upstream counted as a connect
// error and a retry, and open connections and WebSockets read at collect time.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { after, before, test, type TestContext } from 'node:test';
import tls, { createSecureContext } from 'node:tls';
import { setLogSink } from '../src/log.ts';
import { ProxyMetrics } from '../src/metrics/proxy-metrics.ts';
import { render } from '../src/metrics/registry.ts';
import { EdgeServer } from '../src/proxy/edge-server.ts';
import { RouteTable, type Target } from '../src/proxy/route-table.ts';
import { TlsListener } from '../src/proxy/tls/tls-listener.ts';
import { issueCert, makeCa, type TestCa } from './helpers/certs.ts';
import { call, freePort } from './helpers/loopback.ts';

let ca: TestCa;
before(() => {
  setLogSink(() => {});
  ca = makeCa('metrics test CA');
});
after(() => setLogSink((line) => process.stderr.write(line + '\n')));

/** An upstream that answers `ok`, and echoes the bytes of an upgraded connection. */
async function startUpstream(t: TestContext, id: string): Promise<Target> {
  const server = http.createServer((_req, res) => res.end('ok'));
  server.on('upgrade', (_req, socket: net.Socket) => {
    socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
    socket.on('data', (d: Buffer) => socket.write(d));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  return { id, host: '127.0.0.1', port: (server.address() as net.AddressInfo).port };
}

async function startEdge(t: TestContext, targets: Target[]): Promise<{ edge: EdgeServer; metrics: ProxyMetrics }> {
  const metrics = new ProxyMetrics();
  const edge = new EdgeServer({ httpPort: 0, bindHost: '127.0.0.1', drainTimeoutMs: 200, metrics });
  metrics.watch(() => edge.activity());
  await edge.start();
  t.after(() => edge.stop());
  edge.swap(RouteTable.empty().withApp('shop', ['shop.example.test'], targets));
  return { edge, metrics };
}

function sample(metrics: ProxyMetrics, series: string): number | undefined {
  const line = render(metrics.registry.families()).split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

test('HTTP/1.1 answers are counted by app and status class; a refused target is a connect error and a retry elsewhere', async (t) => {
  const live = await startUpstream(t, 'web-1');
  const { edge, metrics } = await startEdge(t, [live, { id: 'web-gone', host: '127.0.0.1', port: await freePort() }]);
  for (let i = 0; i < 4; i++) assert.equal((await call(edge.httpPort, { host: 'shop.example.test' })).status, 200);
  assert.equal((await call(edge.httpPort, { host: 'nobody.example.test' })).status, 404);
  assert.equal(sample(metrics, 'berth_http_requests_total{app="shop",code_class="2xx",protocol="http/1.1"}'), 4);
  assert.equal(sample(metrics, 'berth_http_requests_total{app="",code_class="4xx",protocol="http/1.1"}'), 1);
  assert.equal(sample(metrics, 'berth_http_request_duration_seconds_count{app="shop"}'), 4);
  assert.equal(sample(metrics, 'berth_upstream_connect_errors_total{app="shop"}'), 1, 'the refused target is tried once, then left out');
  assert.equal(sample(metrics, 'berth_upstream_retries_total{app="shop"}'), 1);
});

test('HTTP/2 answers are counted with protocol h2; the session is an open connection while it lasts', async (t) => {
  const live = await startUpstream(t, 'web-1');
  const { edge, metrics } = await startEdge(t, [live]);
  const cert = issueCert(ca, ['shop.example.test']);
  const context = createSecureContext({ cert: cert.certPem, key: cert.keyPem });
  const listener = new TlsListener({ port: 0, bindHost: '127.0.0.1', handler: edge, drainTimeoutMs: 200, secureContext: () => context });
  await listener.start();
  t.after(() => listener.stop());
  const client = http2.connect(`https://shop.example.test:${listener.port}`, { createConnection: () => tls.connect({ host: '127.0.0.1', port: listener.port, servername: 'shop.example.test', ca: ca.pem, ALPNProtocols: ['h2'] }) });
  t.after(() => client.close());
  for (let i = 0; i < 3; i++) {
    const stream = client.request({ ':path': '/' });
    stream.resume();
    const [headers] = (await once(stream, 'response')) as [http2.IncomingHttpHeaders];
    assert.equal(headers[':status'], 200);
    await once(stream, 'end');
  }
  // The stream's close is counted once the proxy sees it end.
  for (let i = 0; i < 50 && sample(metrics, 'berth_http_requests_total{app="shop",code_class="2xx",protocol="h2"}') !== 3; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(sample(metrics, 'berth_http_requests_total{app="shop",code_class="2xx",protocol="h2"}'), 3);
  assert.equal(sample(metrics, 'berth_http_connections'), 1);
});

test('an open WebSocket is counted apart from HTTP connections, and no longer once it closes', async (t) => {
  const live = await startUpstream(t, 'web-1');
  const { edge, metrics } = await startEdge(t, [live]);
  const socket = net.connect(edge.httpPort, '127.0.0.1');
  t.after(() => socket.destroy());
  socket.write('GET /ws HTTP/1.1\r\nHost: shop.example.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
  let text = '';
  socket.on('data', (d: Buffer) => (text += d.toString()));
  for (let i = 0; i < 200 && !text.includes('\r\n\r\n'); i++) await new Promise((r) => setTimeout(r, 10));
  assert.match(text, /^HTTP\/1.1 101/);
  assert.equal(sample(metrics, 'berth_websockets'), 1);
  assert.equal(sample(metrics, 'berth_http_connections'), 0, 'an upgraded connection is a WebSocket, no longer an HTTP connection');
  assert.equal(sample(metrics, 'berth_http_requests_total{app="shop",code_class="1xx",protocol="http/1.1"}'), 1);
  socket.destroy();
  for (let i = 0; i < 200 && sample(metrics, 'berth_websockets') !== 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(sample(metrics, 'berth_websockets'), 0);
  assert.equal(sample(metrics, 'berth_http_connections'), 0);
});
