// bench:proxy-threads — the numbers behind running berth's proxy as one event loop: the same
// EdgeServer code serving one upstream container (a tiny Node server FROM the local base image)
// from the main thread, from 1 worker thread, and from 2 worker threads that share the port with
// SO_REUSEPORT. wrk at 64 connections, interleaved rounds; req/s, p99 and the proxy's CPU time
// per request (user + system, all threads).
//
//   npm run bench:proxy-threads            (ROUNDS=3 DURATION=8 CONNECTIONS=64 THREADS=2)
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import { availableParallelism } from 'node:os';
import { isMainThread, Worker, workerData } from 'node:worker_threads';
import { setLogSink } from '../src/log.ts';
import { EdgeServer } from '../src/proxy/edge-server.ts';
import { RouteTable } from '../src/proxy/route-table.ts';
import { BASE_IMAGE, mustRun, run } from '../test/helpers/daemon.ts';

const HOST = 'bench.threads.test';

if (!isMainThread) {
  // A worker thread: one whole proxy loop on the shared port.
  await serveOne(workerData as { port: number; upstream: string });
} else if (process.argv[2] === '--serve') {
  // A proxy process: 0 = the loop in the main thread, N = N worker threads.
  const [threads, port, upstream] = [Number(process.argv[3]), Number(process.argv[4]), process.argv[5]!];
  if (threads === 0) await serveOne({ port, upstream });
  else for (let i = 0; i < threads; i++) new Worker(new URL(import.meta.url), { workerData: { port, upstream } });
  process.on('SIGTERM', () => process.exit(0));
} else {
  await main();
}

async function serveOne(options: { port: number; upstream: string }): Promise<void> {
  setLogSink(() => {});
  const [host, port] = options.upstream.split(':') as [string, string];
  const edge = new EdgeServer({ httpPort: options.port, bindHost: '127.0.0.1', reusePort: true });
  await edge.start();
  edge.swap(RouteTable.empty().withApp('bench', [HOST], [{ id: 'upstream', host, port: Number(port) }]));
}

async function main(): Promise<void> {
  const ROUNDS = Number(process.env.ROUNDS ?? 3);
  const DURATION = Number(process.env.DURATION ?? 8);
  const CONNECTIONS = Number(process.env.CONNECTIONS ?? 64);
  const WRK_THREADS = Number(process.env.THREADS ?? 2);
  const ticksPerSecond = Number(run('getconf', ['CLK_TCK']).stdout.trim()) || 100;
  const name = `berth-bench-threads-${process.pid}`;
  mustRun('docker', ['network', 'create', name]);
  const children: ChildProcess[] = [];
  try {
    mustRun('docker', ['run', '-d', '--name', name, '--network', name, '--label', 'berth.bench=proxy-threads', BASE_IMAGE, 'node', '-e',
      "const s=require('http').createServer((q,r)=>r.end('ok\\n'));s.keepAliveTimeout=65000;s.listen(5000,'0.0.0.0')"]);
    const ip = mustRun('docker', ['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', name]).trim();
    const upstream = `${ip}:5000`;
    const variants = [
      { name: 'main thread', threads: 0 },
      { name: '1 worker thread', threads: 1 },
      { name: '2 worker threads', threads: 2 },
    ].map((v, i) => ({ ...v, port: 19100 + (process.pid % 500) * 3 + i, child: undefined as ChildProcess | undefined, samples: [] as Array<{ rps: number; p99: number; cpuUs: number }> }));
    for (const v of variants) {
      v.child = spawn(process.execPath, [new URL(import.meta.url).pathname, '--serve', String(v.threads), String(v.port), upstream], { stdio: 'inherit' });
      children.push(v.child);
    }
    for (const v of variants) await waitForAnswer(v.port);
    console.log(`=====> bench:proxy-threads: wrk -t${WRK_THREADS} -c${CONNECTIONS}, ${ROUNDS} interleaved rounds of ${DURATION} s, ${availableParallelism()} cores, upstream ${upstream}`);
    for (let round = 1; round <= ROUNDS; round++) {
      for (const v of variants) {
        wrk(v.port, 2, CONNECTIONS, WRK_THREADS);
        const before = cpuTicks(v.child!.pid!);
        const out = wrk(v.port, DURATION, CONNECTIONS, WRK_THREADS);
        const ticks = cpuTicks(v.child!.pid!) - before;
        const requests = Number(/(\d+) requests in/.exec(out)?.[1]);
        const sample = {
          rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]),
          p99: millis(/\s99%\s+(\S+)/.exec(out)?.[1] ?? ''),
          cpuUs: (ticks / ticksPerSecond / requests) * 1e6,
        };
        v.samples.push(sample);
        console.log(`       round ${round} ${v.name.padEnd(17)} ${sample.rps.toFixed(0).padStart(7)} req/s  p99 ${sample.p99.toFixed(2).padStart(7)} ms  cpu ${sample.cpuUs.toFixed(1).padStart(5)} us/req`);
      }
    }
    console.log('\n| proxy loop | req/s (median) | p99 ms | CPU us/req |\n|---|---:|---:|---:|');
    for (const v of variants) {
      console.log(`| ${v.name} | ${median(v.samples.map((s) => s.rps)).toFixed(0)} | ${median(v.samples.map((s) => s.p99)).toFixed(2)} | ${median(v.samples.map((s) => s.cpuUs)).toFixed(1)} |`);
    }
  } finally {
    for (const child of children) child.kill('SIGTERM');
    run('docker', ['rm', '-f', name]);
    run('docker', ['network', 'rm', name]);
  }
}

function wrk(port: number, seconds: number, connections: number, threads: number): string {
  return mustRun('wrk', [`-t${threads}`, `-c${connections}`, `-d${seconds}s`, '--latency', '-H', `Host: ${HOST}`, `http://127.0.0.1:${port}/`], { timeoutMs: (seconds + 30) * 1000 });
}

async function waitForAnswer(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      http.get({ host: '127.0.0.1', port, headers: { host: HOST }, agent: false }, (res) => resolve(res.statusCode === 200)).on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the proxy on port ${port} did not answer`);
}

function cpuTicks(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

function millis(text: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(text.trim());
  return m ? Number(m[1]) * (m[2] === 'us' ? 0.001 : m[2] === 's' ? 1000 : 1) : NaN;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}
