// End to end on the real binary: a pushed app's requests through the proxy show in the admin
// listener's /metrics (counter by app, status class and protocol; latency histogram), with the
// push, build, deploy and route swap; the scrape passes `promtool check metrics`; the proxy's
// metrics still come while the control plane is down; and a real Prometheus scrapes berth and
// answers a query for the app's request rate.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { gitRepo, makeKey, nodeApp, request, run, startDaemon, tempDir, waitFor, type Daemon } from './helpers/daemon.ts';

let daemon: Daemon;
const work = tempDir('e2e-metrics');
const APP = 'metered';

before(async () => {
  daemon = await startDaemon();
  const key = makeKey(work, 'admin');
  assert.equal(daemon.cli(['ssh-keys:add', 'admin', key.publicKey]).code, 0);
  const repo = path.join(work, APP);
  gitRepo(repo, nodeApp('metered v1'));
  const push = run('git', ['push', daemon.remote(APP), 'main'], { cwd: repo, env: daemon.gitEnv(key.privateKey) });
  assert.equal(push.code, 0, push.stderr);
});

after(async () => {
  daemon.cli(['apps:destroy', APP, '--force']);
  await daemon.stop();
});

async function scrape(): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${daemon.metricsPort}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return res.text();
}

/** The value of one sample line, or undefined when the scrape has no such line. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

async function sendRequests(n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const r = await request(daemon.httpPort, `${APP}.${daemon.domain}`);
    assert.equal(r.status, 200);
  }
}

test("the app's requests, latency, push, build, deploy and route swap show in /metrics, and promtool check metrics passes", async () => {
  const before = sample(await scrape(), `berth_http_requests_total{app="${APP}",code_class="2xx",protocol="http/1.1"}`) ?? 0;
  await sendRequests(20);
  const missing = await request(daemon.httpPort, `nothing.${daemon.domain}`);
  assert.equal(missing.status, 404);
  const text = await scrape();

  assert.equal(sample(text, `berth_http_requests_total{app="${APP}",code_class="2xx",protocol="http/1.1"}`), before + 20);
  assert.ok((sample(text, `berth_http_requests_total{app="",code_class="4xx",protocol="http/1.1"}`) ?? 0) >= 1, 'a request no app has is counted with app=""');
  const count = sample(text, `berth_http_request_duration_seconds_count{app="${APP}"}`)!;
  assert.ok(count >= 20, `histogram count ${count}`);
  assert.equal(sample(text, `berth_http_request_duration_seconds_bucket{app="${APP}",le="+Inf"}`), count);
  assert.ok(sample(text, `berth_http_request_duration_seconds_sum{app="${APP}"}`)! > 0);
  assert.equal(sample(text, `berth_deploys_total{app="${APP}",result="succeeded"}`), 1);
  assert.equal(sample(text, `berth_builds_total{app="${APP}",result="succeeded"}`), 1);
  assert.equal(sample(text, `berth_route_swaps_total{app="${APP}"}`), 1);
  assert.equal(sample(text, `berth_git_pushes_total{app="${APP}"}`), 1);
  assert.ok(sample(text, `berth_git_push_received_bytes_total{app="${APP}"}`)! > 0);
  for (const role of ['supervisor', 'proxy', 'control']) {
    assert.ok(sample(text, `berth_process_resident_memory_bytes{role="${role}"}`)! > 1e6, `${role} reports its memory`);
    assert.notEqual(sample(text, `berth_process_event_loop_delay_max_seconds{role="${role}"}`), undefined, `${role} reports its event-loop delay`);
  }
  assert.notEqual(sample(text, 'berth_http_connections'), undefined);
  assert.equal(sample(text, 'berth_websockets'), 0);

  const check = run('promtool', ['check', 'metrics'], { input: text });
  assert.equal(check.code, 0, `promtool check metrics:\n${check.stdout}${check.stderr}`);
  assert.equal((check.stdout + check.stderr).trim(), '', 'promtool has no lint warnings');
});

test("while the control plane is down, the proxy still serves and /metrics still has the proxy's samples", async () => {
  const control = daemon.pidOf('control');
  process.kill(control, 'SIGKILL');
  await waitFor('the control plane gone', () => {
    try {
      process.kill(control, 0);
      return false;
    } catch {
      return true;
    }
  });
  await sendRequests(1);
  const text = await scrape();
  assert.ok(sample(text, `berth_http_requests_total{app="${APP}",code_class="2xx",protocol="http/1.1"}`)! >= 21);
  assert.ok(sample(text, `berth_process_resident_memory_bytes{role="proxy"}`)! > 0);
  // The supervisor starts a new control plane; its metrics come back with it.
  await waitFor('the new control plane in /metrics', async () => (await scrape()).includes('berth_process_resident_memory_bytes{role="control"}'), 60_000);
});

test("a real Prometheus scrapes berth and answers a query for the app's request rate", async () => {
  const dir = tempDir('prometheus');
  const port = await freePort();
  fs.writeFileSync(
    path.join(dir, 'prometheus.yml'),
    `global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: berth\n    static_configs:\n      - targets: ['127.0.0.1:${daemon.metricsPort}']\n`,
  );
  const prometheus = spawn('prometheus', [`--config.file=${path.join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let output = '';
  prometheus.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const stop = () => {
    if (prometheus.exitCode === null && prometheus.signalCode === null) prometheus.kill('SIGKILL');
  };
  process.once('exit', stop);
  const exited = new Promise((resolve) => prometheus.once('exit', resolve));
  try {
    const query = `sum(rate(berth_http_requests_total{app="${APP}"}[10s]))`;
    let rate = 0;
    await waitFor(
      `Prometheus answering ${query} above 0`,
      async () => {
        await sendRequests(5);
        const res = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(query)}`).catch(() => undefined);
        if (!res?.ok) return false;
        const body = (await res.json()) as { status: string; data: { result: Array<{ value: [number, string] }> } };
        assert.equal(body.status, 'success');
        rate = Number(body.data.result[0]?.value[1] ?? 0);
        return rate > 0;
      },
      90_000,
    ).catch((e: Error) => {
      throw new Error(`${e.message}\n${output.slice(-3000)}`);
    });
    assert.ok(rate > 0);
    const targets = (await (await fetch(`http://127.0.0.1:${port}/api/v1/targets`)).json()) as { data: { activeTargets: Array<{ health: string; lastError: string }> } };
    assert.equal(targets.data.activeTargets[0]?.health, 'up', targets.data.activeTargets[0]?.lastError);
  } finally {
    stop();
    await exited;
    process.removeListener('exit', stop);
  }
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}
