// bench:proxy-memory — the proxy's memory through dist/berth serve, one deployed app: RSS, its
// anonymous part and PSS (from /proc) idle, after `wrk -t2 -c64 -d10s` through the HTTP port and
// after `h2load -c16 -m10` through the HTTPS port (5 s and 30 s after, and the peak during it),
// with each tool's req/s; then V8's heap as the
// proxy sees it (read through the inspector, which SIGUSR1 opens on 127.0.0.1:9229). docs/memory.md
// has its figures.
//
//   H2=60 (seconds of HTTP/2 load)  DAEMON_NODE_OPTIONS='--max-semi-space-size=16' (given to the
//   daemon's processes as NODE_OPTIONS, after the proxy's own, so it wins: to compare settings)
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { gitRepo, makeKey, startDaemon, tempDir } from '../test/helpers/daemon.ts';
import { issueCert, makeCa } from '../test/helpers/certs.ts';
import { runAsync, sleep, zeroDowntimeApp } from '../test/helpers/zero-downtime.ts';

const H2 = Number(process.env.H2 ?? 60);
const APP = 'memorybench';
const work = tempDir('bench-proxy-memory');
const daemon = await startDaemon({ env: process.env.DAEMON_NODE_OPTIONS ? { NODE_OPTIONS: process.env.DAEMON_NODE_OPTIONS } : {} });

function run(command: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.once('error', reject);
    child.once('close', () => resolve(output));
  });
}

function proxyPid(): number {
  const line = daemon.cli(['status']).stdout.split('\n').find((l) => l.trim().startsWith('proxy '));
  if (!line) throw new Error('berth status shows no proxy');
  return Number(line.trim().split(/\s+/)[1]);
}

function memory(pid: number): string {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const mb = (text: string, key: string) => Math.round(Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(text)?.[1]) / 1024);
  const rollup = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  return `RSS ${mb(status, 'VmRSS')} MB (anonymous ${mb(status, 'RssAnon')}, executable and other files ${mb(status, 'RssFile')}), PSS ${mb(rollup, 'Pss')} MB; peak RSS so far ${mb(status, 'VmHWM')} MB`;
}

/** V8's heap in the proxy, through the inspector. */
async function heap(pid: number): Promise<string> {
  process.kill(pid, 'SIGUSR1');
  await sleep(1000);
  const targets = (await (await fetch('http://127.0.0.1:9229/json/list')).json()) as Array<{ webSocketDebuggerUrl: string }>;
  const ws = new WebSocket(targets[0]!.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    ws.addEventListener('open', resolve);
    ws.addEventListener('error', reject);
  });
  const expression = `JSON.stringify({ m: process.memoryUsage(), h: process.getBuiltinModule('v8').getHeapStatistics(), old: process.getBuiltinModule('v8').getHeapSpaceStatistics().find((s) => s.space_name === 'old_space') })`;
  const reply = new Promise<string>((resolve) => ws.addEventListener('message', (event) => resolve(String(event.data))));
  ws.send(JSON.stringify({ id: 1, method: 'Runtime.evaluate', params: { expression } }));
  const v = JSON.parse((JSON.parse(await reply) as { result: { result: { value: string } } }).result.result.value);
  ws.close();
  const mb = (n: number) => Math.round(n / 1e6);
  return `heap ${mb(v.m.heapTotal)} MB committed, ${mb(v.m.heapUsed)} MB used (old space ${mb(v.old.space_size)} committed, ${mb(v.old.space_used_size)} used); external ${mb(v.m.external)} MB; V8's malloc peak ${mb(v.h.peak_malloced_memory)} MB`;
}

const rows: Array<[string, string]> = [];
try {
  const key = makeKey(work, 'bench');
  daemon.cli(['ssh-keys:add', 'bench', key.publicKey]);
  const host = `${APP}.${daemon.domain}`;
  const repo = path.join(work, APP);
  gitRepo(repo, zeroDowntimeApp({ message: 'v1' }), 'v1');
  const pushed = await runAsync('git', ['push', '-q', daemon.remote(APP), 'main'], { cwd: repo, env: daemon.gitEnv(key.privateKey) });
  if (pushed.code !== 0) throw new Error(`push failed:\n${pushed.stderr}`);
  const cert = issueCert(makeCa('bench CA'), [host]);
  const added = daemon.cli(['certs:add', APP, cert.certFile, cert.keyFile]);
  if (added.code !== 0) throw new Error(`certs:add failed:\n${added.stderr}`);
  await sleep(3000);
  const pid = proxyPid();
  rows.push(['proxy idle (one app)', memory(pid)]);
  const wrk = await run('wrk', ['-t2', '-c64', '-d10s', '-H', `Host: ${host}`, `http://127.0.0.1:${daemon.httpPort}/`]);
  rows.push(['wrk -t2 -c64 -d10s', `${/Requests\/sec:\s+([\d.]+)/.exec(wrk)?.[1] ?? '?'} req/s ${/Non-2xx.*|Socket errors.*/.exec(wrk)?.[0] ?? ''}`]);
  rows.push(['proxy after wrk', memory(pid)]);
  const h2 = await run('h2load', ['-c16', '-m10', '-D', String(H2), `--connect-to=127.0.0.1:${daemon.httpsPort}`, `https://${host}:${daemon.httpsPort}/`]);
  const done = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(h2);
  rows.push([`h2load -c16 -m10 for ${H2} s`, done ? `${/finished in [\d.]+s, ([\d.]+) req\/s/.exec(h2)?.[1] ?? '?'} req/s; ${done[4]} succeeded, ${done[5]} failed, ${done[6]} errored` : h2.slice(-400)]);
  await sleep(5000);
  rows.push(['proxy 5 s after the HTTP/2 load', memory(pid)]);
  await sleep(25_000);
  rows.push(['proxy 30 s after the HTTP/2 load', memory(pid)]);
  rows.push(['its V8 heap then', await heap(pid)]);
  console.log('| figure | measured |');
  console.log('|---|---|');
  for (const [what, value] of rows) console.log(`| ${what} | ${value} |`);
} finally {
  daemon.cli(['apps:destroy', APP, '--force']);
  await daemon.stop();
}
