// The metrics module: the text exposition (label escaping, histogram buckets, _sum and _count,
// families of several processes merged), the proxy's and control plane's counting, and the admin
// listener over real HTTP.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { loadConfig, parseListen } from '../src/config.ts';
import { log } from '../src/log.ts';
import { COUNTED_EVENTS, ControlMetrics } from '../src/metrics/control-metrics.ts';
import { MetricsServer } from '../src/metrics/metrics-server.ts';
import { ProxyMetrics } from '../src/metrics/proxy-metrics.ts';
import { escapeLabel, Registry, render } from '../src/metrics/registry.ts';
import { parseCertificateBundle } from '../src/proxy/tls/certificate.ts';
import { SniCache } from '../src/proxy/tls/sni-cache.ts';
import { issueCert, makeCa } from './helpers/certs.ts';

test('label values escape backslash, double quote and line feed; HELP escapes backslash and line feed', () => {
  assert.equal(escapeLabel('a\\b"c\nd'), 'a\\\\b\\"c\\nd');
  const r = new Registry();
  r.counter('berth_x_total', 'help with \\ and\nnewline', ['app']).inc(['we"ird\\app\n']);
  assert.equal(render(r.families()), '# HELP berth_x_total help with \\\\ and\\nnewline\n# TYPE berth_x_total counter\nberth_x_total{app="we\\"ird\\\\app\\n"} 1\n');
});

test('a histogram has cumulative buckets, +Inf, _sum and _count per label set', () => {
  const r = new Registry();
  const h = r.histogram('berth_t_seconds', 'time', ['app'], [0.1, 1]);
  h.observe(['a'], 0.05);
  h.observe(['a'], 0.1);
  h.observe(['a'], 0.5);
  h.observe(['a'], 3);
  h.observe(['b'], 2);
  assert.equal(
    render(r.families()),
    [
      '# HELP berth_t_seconds time',
      '# TYPE berth_t_seconds histogram',
      'berth_t_seconds_bucket{app="a",le="0.1"} 2',
      'berth_t_seconds_bucket{app="a",le="1"} 3',
      'berth_t_seconds_bucket{app="a",le="+Inf"} 4',
      'berth_t_seconds_sum{app="a"} 3.65',
      'berth_t_seconds_count{app="a"} 4',
      'berth_t_seconds_bucket{app="b",le="0.1"} 0',
      'berth_t_seconds_bucket{app="b",le="1"} 0',
      'berth_t_seconds_bucket{app="b",le="+Inf"} 1',
      'berth_t_seconds_sum{app="b"} 2',
      'berth_t_seconds_count{app="b"} 1',
      '',
    ].join('\n'),
  );
});

test('families several processes share are printed once; wrong names, label counts and buckets are refused', () => {
  const a = new Registry();
  const b = new Registry();
  a.gauge('berth_g_bytes', 'g', ['role']).set(['proxy'], 5);
  b.gauge('berth_g_bytes', 'g', ['role']).set(['control'], 7);
  const text = render([...a.families(), ...b.families()]);
  assert.equal(text.match(/# TYPE berth_g_bytes gauge/g)?.length, 1);
  assert.match(text, /berth_g_bytes\{role="proxy"\} 5\nberth_g_bytes\{role="control"\} 7\n/);
  assert.throws(() => a.counter('bad name', 'x'));
  assert.throws(() => a.gauge('berth_g_bytes', 'again'), /registered twice/);
  assert.throws(() => a.counter('berth_c_total', 'c', ['app']).inc(['a', 'b']), /takes 1 label values/);
  assert.throws(() => a.histogram('berth_h_seconds', 'h', [], [1, 1]), /buckets must increase/);
  assert.throws(() => a.histogram('berth_l_seconds', 'h', ['le']), /"le"/);
});

test('the proxy counts requests by app, status class and protocol, with their duration; connections are read on collect', () => {
  const m = new ProxyMetrics();
  m.watch(() => ({ connections: 3, websockets: 1 }));
  m.request('web', 200, 'http/1.1', 12);
  m.request('web', 204, 'http/1.1', 3);
  m.request('web', 499, 'h2', 40);
  m.request(undefined, 404, 'http/1.1', 1);
  m.connectError('web');
  m.retry('web');
  const text = render(m.registry.families());
  assert.match(text, /^berth_http_requests_total\{app="web",code_class="2xx",protocol="http\/1.1"\} 2$/m);
  assert.match(text, /^berth_http_requests_total\{app="web",code_class="4xx",protocol="h2"\} 1$/m);
  assert.match(text, /^berth_http_requests_total\{app="",code_class="4xx",protocol="http\/1.1"\} 1$/m);
  assert.match(text, /^berth_http_request_duration_seconds_count\{app="web"\} 3$/m);
  assert.match(text, /^berth_http_request_duration_seconds_sum\{app="web"\} 0.055$/m);
  assert.match(text, /^berth_http_request_duration_seconds_bucket\{app="web",le="0.005"\} 1$/m);
  assert.match(text, /^berth_upstream_connect_errors_total\{app="web"\} 1$/m);
  assert.match(text, /^berth_upstream_retries_total\{app="web"\} 1$/m);
  assert.match(text, /^berth_http_connections 3$/m);
  assert.match(text, /^berth_websockets 1$/m);
});

test('the control plane counts the events it logs, and reads certificate expiry on collect', () => {
  const m = new ControlMetrics(() => [{ name: 'shop.example.com', notAfter: new Date('2027-01-01T00:00:00Z') }]);
  try {
    log.debug('route_swapped', { app: 'web' });
    log.debug('old_release_drained', { app: 'web', sinceSwapMs: 1500 });
    log.debug('deploy_finished', { app: 'web', result: 'succeeded', ms: 2500 });
    log.debug('build_finished', { app: 'web', result: 'failed', ms: 700 });
    log.debug('git_push_received', { app: 'web', packBytes: 1234 });
    log.debug('certificate_order_failed', { domain: 'shop.example.com' });
    log.debug('acme_rate_limited', { domain: 'shop.example.com' });
    const text = render(m.registry.families());
    assert.match(text, /^berth_route_swaps_total\{app="web"\} 1$/m);
    assert.match(text, /^berth_route_drain_duration_seconds_bucket\{le="1"\} 0$/m);
    assert.match(text, /^berth_route_drain_duration_seconds_bucket\{le="2.5"\} 1$/m);
    assert.match(text, /^berth_deploys_total\{app="web",result="succeeded"\} 1$/m);
    assert.match(text, /^berth_deploy_duration_seconds_sum\{result="succeeded"\} 2.5$/m);
    assert.match(text, /^berth_builds_total\{app="web",result="failed"\} 1$/m);
    assert.match(text, /^berth_build_duration_seconds_bucket\{result="failed",le="1"\} 1$/m);
    assert.match(text, /^berth_git_pushes_total\{app="web"\} 1$/m);
    assert.match(text, /^berth_git_push_received_bytes_total\{app="web"\} 1234$/m);
    assert.match(text, /^berth_acme_failures_total\{reason="error"\} 1$/m);
    assert.match(text, /^berth_acme_failures_total\{reason="rate_limited"\} 1$/m);
    assert.match(text, /^berth_certificate_expiry_timestamp_seconds\{domain="shop.example.com"\} 1798761600$/m);
    assert.match(text, /^berth_process_resident_memory_bytes\{role="control"\} [1-9]\d*$/m);
  } finally {
    m.stop();
  }
});

test("the certificate expiry gauge reads the served certificates' notAfter from the SNI cache", () => {
  const ca = makeCa('metrics expiry CA');
  const issued = issueCert(ca, ['shop.example.test']);
  const bundle = parseCertificateBundle(issued.certPem, issued.keyPem);
  const cache = new SniCache();
  cache.replace(new Map([['shop.example.test', { bundle, source: 'custom' as const }]]));
  const m = new ControlMetrics(() => cache.expiries());
  try {
    const text = render(m.registry.families());
    assert.match(text, new RegExp(`^berth_certificate_expiry_timestamp_seconds\\{domain="shop\\.example\\.test"\\} ${Math.floor(bundle.info.notAfter.getTime() / 1000)}$`, 'm'));
    cache.replace(new Map());
    assert.doesNotMatch(render(m.registry.families()), /domain="shop/, 'a certificate no longer served has no series');
  } finally {
    m.stop();
  }
});

test('every event the control plane counts is logged somewhere in src/', () => {
  const src = path.resolve(import.meta.dirname, '..', 'src');
  const text = fs
    .readdirSync(src, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts') && !f.startsWith('metrics'))
    .map((f) => fs.readFileSync(path.join(src, f), 'utf8'))
    .join('\n');
  for (const event of COUNTED_EVENTS) assert.match(text, new RegExp(`log\\.(debug|info|warn|error)\\('${event}'`), `${event} is logged`);
});

test('--metrics-listen takes HOST:PORT or off, defaults to 127.0.0.1:9180, and refuses anything else', () => {
  assert.equal(loadConfig([], {}).metricsListen, '127.0.0.1:9180');
  assert.deepEqual(parseListen('127.0.0.1:9180', '--metrics-listen'), { host: '127.0.0.1', port: 9180 });
  assert.deepEqual(parseListen('[::1]:0', '--metrics-listen'), { host: '::1', port: 0 });
  assert.equal(parseListen('off', '--metrics-listen'), undefined);
  assert.equal(parseListen('', '--metrics-listen'), undefined);
  assert.equal(loadConfig(['--metrics-listen', 'off'], {}).metricsListen, 'off');
  assert.throws(() => loadConfig(['--metrics-listen', '9180'], {}), /--metrics-listen: "9180" is not HOST:PORT/);
  assert.throws(() => loadConfig(['--metrics-listen', 'localhost:70000'], {}), /--metrics-listen/);
});

test('the admin listener answers GET /metrics in the text format, 404 elsewhere, 405 for other methods', async () => {
  const r = new Registry();
  r.counter('berth_scrapes_total', 'scrapes').inc();
  const server = new MetricsServer({ host: '127.0.0.1', port: 0, gather: async () => r.families() });
  await server.start();
  try {
    const ok = await fetch(`http://127.0.0.1:${server.port}/metrics`);
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
    assert.equal(await ok.text(), '# HELP berth_scrapes_total scrapes\n# TYPE berth_scrapes_total counter\nberth_scrapes_total 1\n');
    const other = await fetch(`http://127.0.0.1:${server.port}/`);
    assert.equal(other.status, 404);
    await other.arrayBuffer();
    const post = await fetch(`http://127.0.0.1:${server.port}/metrics`, { method: 'POST' });
    assert.equal(post.status, 405);
    await post.arrayBuffer();
  } finally {
    await server.stop();
  }
});
