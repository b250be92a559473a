// The dashboard's chart data from berth's own metrics: request and 5xx rates per second and latency
// quantiles (histogram_quantile's interpolation) of each 10 s step, as differences of the proxy's
// counters; a counter that went down (a new proxy) counts from zero.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseSample, quantile, RequestHistory } from '../src/dashboard/request-history.ts';
import { ProxyMetrics } from '../src/metrics/proxy-metrics.ts';

/** Apps by name; `web` only. */
let apps: Record<string, string> = { web: 'id-web' };
const ids = (name: string) => apps[name];

function near(actual: number | null, expected: number): void {
  assert.ok(actual !== null && Math.abs(actual - expected) < 1e-9, `${actual} is ${expected}`);
}

test('each step after the first gives each app its request rate, 5xx rate and latency quantiles', () => {
  const proxy = new ProxyMetrics();
  const history = new RequestHistory(ids);
  proxy.request('web', 200, 'http/1.1', 3);
  history.sample(proxy.registry.families(), 0);
  assert.deepEqual(history.series('web').points, [], 'the first sample is the baseline');
  for (let i = 0; i < 90; i++) proxy.request('web', 200, 'http/1.1', 7);
  for (let i = 0; i < 10; i++) proxy.request('web', 503, 'h2', 300);
  proxy.request(undefined, 404, 'http/1.1', 1);
  history.sample(proxy.registry.families(), 10_000);
  const [point] = history.series('id-web').points;
  assert.equal(point!.t, 10_000);
  assert.equal(point!.rps, 10);
  assert.equal(point!.errors, 1);
  // 90 of 100 in (5 ms, 10 ms], 10 in (250 ms, 500 ms].
  near(point!.p50, 5 + (5 * 50) / 90);
  near(point!.p95, 250 + (250 * (95 - 90)) / 10);
  near(point!.p99, 250 + (250 * (99 - 90)) / 10);
  assert.equal(history.series('id-web').step, 10);

  history.sample(proxy.registry.families(), 20_000);
  assert.deepEqual(history.series('id-web').points[1], { t: 20_000, rps: 0, p50: null, p95: null, p99: null, errors: 0 });
});

test('a counter that went down counts from zero, a sample without the proxy is skipped, and 30 minutes of points are kept', () => {
  const history = new RequestHistory(ids);
  const families = (n: number) => [{ name: 'berth_http_requests_total', help: '', type: 'counter' as const, lines: [`berth_http_requests_total{app="web",code_class="2xx",protocol="http/1.1"} ${n}`] }];
  history.sample(families(1000), 0);
  history.sample([], 5_000);
  history.sample(families(50), 10_000);
  assert.equal(history.series('id-web').points[0]!.rps, 5);
  for (let i = 2; i < 200; i++) history.sample(families(50 + i), i * 10_000);
  const points = history.series('id-web').points;
  assert.equal(points.length, 180);
  assert.equal(points.at(-1)!.t, 199 * 10_000);
});

test('quantiles follow histogram_quantile: interpolated in the bucket, the last finite bound in +Inf, null without requests', () => {
  assert.equal(quantile(0.5, new Map([[0.1, 0], [Infinity, 0]])), null);
  assert.equal(quantile(0.5, new Map([[0.1, 10], [0.2, 20], [Infinity, 20]])), 100);
  near(quantile(0.75, new Map([[0.1, 10], [0.2, 20], [Infinity, 20]])), 150);
  assert.equal(quantile(0.99, new Map([[0.1, 10], [Infinity, 20]])), 100);
});

test('sample lines are parsed with their escaped label values', () => {
  assert.deepEqual(parseSample('x_total{app="a\\"b",le="+Inf"} 3'), { name: 'x_total', labels: { app: 'a"b', le: '+Inf' }, value: 3 });
  assert.deepEqual(parseSample('up 1'), { name: 'up', labels: {}, value: 1 });
  assert.equal(parseSample('# HELP x y'), undefined);
});

test("an app's history is kept by its id: a destroyed app's goes, and a new app of its name starts empty", () => {
  apps = { web: 'id-web' };
  const proxy = new ProxyMetrics();
  const history = new RequestHistory(ids);
  history.sample(proxy.registry.families(), 0);
  proxy.request('web', 200, 'http/1.1', 3);
  history.sample(proxy.registry.families(), 10_000);
  assert.equal(history.series('id-web').points.length, 1);
  apps = {};
  history.sample(proxy.registry.families(), 20_000);
  assert.deepEqual(history.series('id-web').points, []);
  apps = { web: 'id-new' };
  history.sample(proxy.registry.families(), 30_000);
  assert.equal(history.series('id-new').points.length, 1);
  assert.equal(history.series('id-new').points[0]!.rps, 0);
});
