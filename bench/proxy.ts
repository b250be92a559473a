// bench:proxy — one upstream container (a tiny Node HTTP server built FROM the local base image and
// deployed to `dist/berth serve` by a real git push) reached three ways with wrk at 64 connections:
// directly at its container address, through nginx (Debian's; 1 and 2 workers, upstream
// keepalive, the same forwarded headers and a buffered JSON access log like berth's), and through
// berth's proxy. Rounds are interleaved so the machine's noise falls on every target alike; the
// medians and the ratios berth/nginx (best nginx by req/s) are printed. berth is measured twice:
// as it runs by default (its metrics counted, nobody scraping) and with its /metrics endpoint
// scraped every SCRAPE_MS (1 s, 15 times Prometheus' default interval) during the round; its CPU
// per request then counts the supervisor and the control plane too, which answer the scrapes.
//
//   npm run bench:proxy                    (defaults: ROUNDS=3 DURATION=10 CONNECTIONS=64 THREADS=2)
//   ROUNDS=5 DURATION=15 npm run bench:proxy
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { gitRepo, makeKey, mustRun, request, run, startDaemon, tempDir, BASE_IMAGE } from '../test/helpers/daemon.ts';

const ROUNDS = Number(process.env.ROUNDS ?? 3);
const DURATION = Number(process.env.DURATION ?? 10);
const WARMUP_SECONDS = Number(process.env.WARMUP_SECONDS ?? 2);
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 64);
const THREADS = Number(process.env.THREADS ?? 2);
const SCRAPE_MS = Number(process.env.SCRAPE_MS ?? 1000);
const APP = 'benchproxy';

interface Sample {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  non2xx: number;
  /** CPU time (user + system) the proxy's processes spent per request, in microseconds; undefined for direct. */
  cpuUs: number | undefined;
}

interface Variant {
  name: string;
  url: string;
  host?: string;
  /** The proxy's processes, whose CPU time is measured (berth: its proxy process). */
  pids: () => number[];
  /** Runs beside wrk during the round (the scraper); returns how to stop it. */
  alongside?: () => () => void;
  samples: Sample[];
}

const CLOCK_TICKS = Number(run('getconf', ['CLK_TCK']).stdout.trim()) || 100;

/** CPU time of processes (all their threads), in clock ticks, from /proc. */
function cpuTicks(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    ticks += Number(fields[11]) + Number(fields[12]); // utime, stime
  }
  return ticks;
}

/** A process and its direct children (nginx's master and workers). */
function withChildren(pid: number): number[] {
  const children = run('pgrep', ['-P', String(pid)]).stdout.trim().split('\n').filter(Boolean).map(Number);
  return [pid, ...children];
}

function need(cmd: string, pkg: string): void {
  if (run('sh', ['-c', `command -v ${cmd}`]).code === 0) return;
  if (process.getuid?.() !== 0) throw new Error(`${cmd} is missing: install it (apt-get install -y ${pkg}) or run the bench as root`);
  console.log(`-----> installing ${pkg} from Debian`);
  mustRun('apt-get', ['install', '-y', '-qq', pkg], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
}

/** wrk's latency figures come as 1.23ms, 845.00us, 1.01s. */
function millis(text: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(text.trim());
  if (!m) throw new Error(`unexpected wrk latency "${text}"`);
  return Number(m[1]) * (m[2] === 'us' ? 0.001 : m[2] === 's' ? 1000 : 1);
}

function wrk(v: Variant, seconds: number): Sample {
  const args = [`-t${THREADS}`, `-c${CONNECTIONS}`, `-d${seconds}s`, '--latency'];
  if (v.host) args.push('-H', `Host: ${v.host}`);
  const pids = v.pids();
  const before = cpuTicks(pids);
  const out = mustRun('wrk', [...args, v.url], { timeoutMs: (seconds + 30) * 1000 });
  const ticks = cpuTicks(pids) - before;
  const requests = Number(/(\d+) requests in/.exec(out)?.[1]);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const p50 = millis(/\s50%\s+(\S+)/.exec(out)?.[1] ?? '');
  const p99 = millis(/\s99%\s+(\S+)/.exec(out)?.[1] ?? '');
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const errors = socket ? socket.slice(1).reduce((n, x) => n + Number(x), 0) : 0;
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  if (!Number.isFinite(rps)) throw new Error(`could not read wrk's output:\n${out}`);
  return { rps, p50, p99, errors, non2xx, cpuUs: pids.length > 0 && requests > 0 ? (ticks / CLOCK_TICKS / requests) * 1e6 : undefined };
}

/**
 * A scraper beside wrk, as its own process (wrk runs synchronously here): GETs `url` every
 * `everyMs` and fails the bench if a scrape fails. Returns how to stop it.
 */
function scrapeEvery(url: string, everyMs: number): () => void {
  const script = `setInterval(async () => { const r = await fetch(${JSON.stringify(url)}); if (!r.ok) { console.error('scrape failed: ' + r.status); process.exit(1); } await r.arrayBuffer(); }, ${everyMs});`;
  const scraper = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'ignore', 'inherit'] });
  scraper.on('exit', (code) => {
    if (code) throw new Error(`the scraper exited with ${code}`);
  });
  return () => {
    scraper.removeAllListeners('exit');
    scraper.kill();
  };
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function nginxConfig(dir: string, workers: number, port: number, upstream: string): string {
  return `worker_processes ${workers};
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  log_format berthlike escape=json '{"time":"$time_iso8601","id":"$request_id","client":"$remote_addr","host":"$host",'
    '"method":"$request_method","path":"$uri","status":$status,"bytes":$bytes_sent,"ms":$request_time}';
  access_log ${dir}/access.log berthlike buffer=256k flush=1s;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream app { server ${upstream}; keepalive 64; keepalive_timeout 60s; }
  server {
    listen 127.0.0.1:${port} reuseport;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $http_host;
      proxy_set_header X-Forwarded-Port $server_port;
      proxy_set_header X-Request-Id $request_id;
    }
  }
}
`;
}

async function startNginx(work: string, workers: number, port: number, upstream: string): Promise<ChildProcess> {
  const dir = path.join(work, `nginx-${workers}w`);
  fs.mkdirSync(dir, { recursive: true });
  const conf = path.join(dir, 'nginx.conf');
  fs.writeFileSync(conf, nginxConfig(dir, workers, port, upstream));
  const child = spawn('nginx', ['-e', path.join(dir, 'error.log'), '-p', dir, '-c', conf], { stdio: 'ignore' });
  for (let i = 0; i < 50; i++) {
    const answered = await fetch(`http://127.0.0.1:${port}/`).then((r) => r.ok, () => false);
    if (answered) return child;
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nginx (${workers} workers) did not answer on port ${port}:\n${fs.readFileSync(path.join(dir, 'error.log'), 'utf8')}`);
}

function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGQUIT');
    setTimeout(() => child.kill('SIGKILL'), 5000).unref();
  });
}

function fmt(n: number, digits = 2): string {
  return n.toFixed(digits);
}

need('wrk', 'wrk');
need('nginx', 'nginx');

const work = tempDir('bench-proxy');
const daemon = await startDaemon();
const nginxes: ChildProcess[] = [];
try {
  const key = makeKey(work, 'bench');
  const added = daemon.cli(['ssh-keys:add', 'bench', key.publicKey]);
  if (added.code !== 0) throw new Error(`ssh-keys:add failed:\n${added.stderr}`);
  const repo = path.join(work, APP);
  gitRepo(repo, {
    Dockerfile: `FROM ${BASE_IMAGE}\nCOPY server.js /app/server.js\nCMD ["node", "/app/server.js"]\n`,
    // keepAliveTimeout above every proxy's pool idle time, so no proxy meets the keep-alive race.
    'server.js': `const server = require('http').createServer((req, res) => res.end('ok\\n'));
server.keepAliveTimeout = 65000;
server.listen(Number(process.env.PORT), '0.0.0.0');
`,
  });
  const push = run('git', ['push', '-q', daemon.remote(APP), 'main'], { cwd: repo, env: daemon.gitEnv(key.privateKey) });
  if (push.code !== 0) throw new Error(`git push failed:\n${push.stderr}`);
  const host = `${APP}.${daemon.domain}`;
  const through = await request(daemon.httpPort, host);
  if (through.body !== 'ok\n') throw new Error(`berth did not serve the app: ${through.status} ${through.body}`);
  const ip = mustRun('docker', ['ps', '--filter', `label=berth.app=${APP}`, '--format', '{{.ID}}']).trim().split('\n')[0]!;
  const address = mustRun('docker', ['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', ip]).trim();
  const upstream = `${address}:5000`;

  const nginxPorts = [18081 + (process.pid % 1000) * 2, 18082 + (process.pid % 1000) * 2];
  nginxes.push(await startNginx(work, 1, nginxPorts[0]!, upstream));
  nginxes.push(await startNginx(work, 2, nginxPorts[1]!, upstream));

  const variants: Variant[] = [
    { name: 'direct', url: `http://${upstream}/`, pids: () => [], samples: [] },
    { name: 'nginx, 1 worker', url: `http://127.0.0.1:${nginxPorts[0]}/`, pids: () => withChildren(nginxes[0]!.pid!), samples: [] },
    { name: 'nginx, 2 workers', url: `http://127.0.0.1:${nginxPorts[1]}/`, pids: () => withChildren(nginxes[1]!.pid!), samples: [] },
    { name: 'berth', url: `http://127.0.0.1:${daemon.httpPort}/`, host, pids: () => [daemon.pidOf('proxy')], samples: [] },
    {
      name: `berth, scraped every ${SCRAPE_MS / 1000} s`,
      url: `http://127.0.0.1:${daemon.httpPort}/`,
      host,
      pids: () => [daemon.process.pid!, daemon.pidOf('proxy'), daemon.pidOf('control')],
      alongside: () => scrapeEvery(`http://127.0.0.1:${daemon.metricsPort}/metrics`, SCRAPE_MS),
      samples: [],
    },
  ];
  const cores = (await import('node:os')).availableParallelism();
  console.log(`=====> bench:proxy: wrk -t${THREADS} -c${CONNECTIONS}, ${ROUNDS} interleaved rounds of ${DURATION} s (+${WARMUP_SECONDS} s warm-up) per target, ${cores} cores`);
  console.log(`       upstream: one container (${BASE_IMAGE}, node http server answering "ok\\n") at ${upstream}`);
  for (let round = 1; round <= ROUNDS; round++) {
    for (const v of variants) {
      if (WARMUP_SECONDS > 0) wrk(v, WARMUP_SECONDS);
      const stop = v.alongside?.();
      const s = wrk(v, DURATION);
      stop?.();
      v.samples.push(s);
      console.log(`       round ${round} ${v.name.padEnd(17)} ${fmt(s.rps, 0).padStart(7)} req/s  p50 ${fmt(s.p50).padStart(6)} ms  p99 ${fmt(s.p99).padStart(7)} ms${s.cpuUs === undefined ? '' : `  cpu ${fmt(s.cpuUs, 1).padStart(5)} us/req`}${s.errors || s.non2xx ? `  (${s.non2xx} non-2xx, ${s.errors} socket errors)` : ''}`);
    }
  }
  const summary = variants.map((v) => ({
    name: v.name,
    rps: median(v.samples.map((s) => s.rps)),
    p50: median(v.samples.map((s) => s.p50)),
    p99: median(v.samples.map((s) => s.p99)),
    cpuUs: v.samples[0]?.cpuUs === undefined ? undefined : median(v.samples.map((s) => s.cpuUs!)),
    errors: v.samples.reduce((n, s) => n + s.errors + s.non2xx, 0),
  }));
  console.log('');
  console.log('| target | req/s (median) | p50 ms | p99 ms | proxy CPU us/req | errors |');
  console.log('|---|---:|---:|---:|---:|---:|');
  for (const s of summary) console.log(`| ${s.name} | ${fmt(s.rps, 0)} | ${fmt(s.p50)} | ${fmt(s.p99)} | ${s.cpuUs === undefined ? '-' : fmt(s.cpuUs, 1)} | ${s.errors} |`);
  const nginx = summary.filter((s) => s.name.startsWith('nginx')).sort((a, b) => b.rps - a.rps)[0]!;
  const berth = summary.find((s) => s.name === 'berth')!;
  const scraped = summary.find((s) => s.name.startsWith('berth, scraped'))!;
  const rpsRatio = berth.rps / nginx.rps;
  const p99Ratio = berth.p99 / nginx.p99;
  console.log('');
  console.log(`berth / ${nginx.name}: req/s ${fmt(rpsRatio)}x (target >= 0.60x: ${rpsRatio >= 0.6 ? 'met' : 'NOT met'}), p99 ${fmt(p99Ratio)}x (target <= 2.00x: ${p99Ratio <= 2 ? 'met' : 'NOT met'})`);
  console.log(`berth scraped every ${SCRAPE_MS / 1000} s / not scraped: req/s ${fmt(scraped.rps / berth.rps)}x, CPU of all berth's processes per request ${fmt(scraped.cpuUs!, 1)} us (proxy alone, unscraped: ${fmt(berth.cpuUs!, 1)} us)`);
} finally {
  daemon.cli(['apps:destroy', APP, '--force']);
  for (const n of nginxes) await stopProcess(n);
  await daemon.stop();
  fs.rmSync(work, { recursive: true, force: true });
  fs.rmSync(daemon.dataDir, { recursive: true, force: true });
}
