// bench:push — a large push (10,000 files, about 100 MB of incompressible content, generated the
// same way every run) received by berth over SSH, side by side with `git push` of the same
// repository into a local bare repository (file://, git's own receive-pack). Prints the time of
// each, their ratio, the daemon's peak resident memory during the push (and the index-pack
// child's), and the latency of requests the proxy answers for another app meanwhile.
import { spawn } from 'node:child_process';
import { createCipheriv } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { gitRepo, makeKey, mustRun, nodeApp, request, run, startDaemon, tempDir, type Daemon } from '../test/helpers/daemon.ts';

const FILES = Number(process.env.FILES ?? 10_000);
const FILE_BYTES = Number(process.env.FILE_BYTES ?? 10_240);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const LOAD_CLIENTS = 4;
/** Pause between a client's requests: four clients make a steady stream of about 150 requests a second. */
const LOAD_PAUSE_MS = 25;

interface Latencies {
  count: number;
  errors: number;
  p50: number;
  p99: number;
  max: number;
}

const work = tempDir('bench-push');
const repo = path.join(work, 'big');

function generateRepository(): void {
  fs.mkdirSync(repo, { recursive: true });
  mustRun('git', ['init', '-q', '-b', 'main'], { cwd: repo });
  for (const [k, v] of [['user.email', 'bench@example.test'], ['user.name', 'Bench'], ['gc.auto', '0']]) mustRun('git', ['config', k!, v!], { cwd: repo });
  // AES-CTR of zeros under a fixed key: deterministic and incompressible, so the pack is as large as the files.
  const key = Buffer.alloc(16, 7);
  for (let i = 0; i < FILES; i++) {
    const iv = Buffer.alloc(16);
    iv.writeUInt32BE(i, 0);
    const dir = path.join(repo, `d${String(Math.floor(i / 100)).padStart(3, '0')}`);
    if (i % 100 === 0) fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, `f${String(i).padStart(5, '0')}.bin`), createCipheriv('aes-128-ctr', key, iv).update(Buffer.alloc(FILE_BYTES)));
  }
  mustRun('git', ['add', '-A'], { cwd: repo });
  mustRun('git', ['commit', '-q', '-m', 'a large repository'], { cwd: repo, env: { ...process.env, GIT_AUTHOR_DATE: '2026-01-01T00:00:00Z', GIT_COMMITTER_DATE: '2026-01-01T00:00:00Z' } });
  // Packed, as a real repository mostly is: both pushes then reuse the stored objects.
  mustRun('git', ['repack', '-adq'], { cwd: repo });
}

/** Runs a program without blocking this process's event loop (the load loop keeps running). */
function runAsync(cmd: string, args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv }): Promise<{ code: number; stderr: string; ms: number }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: options.cwd, env: options.env ?? process.env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stderr, ms: performance.now() - started }));
  });
}

/** Requests to one app through the proxy from a few keep-alive clients until stopped. */
function loadLoop(daemon: Daemon, host: string): { stop: () => Promise<Latencies> } {
  const agent = new http.Agent({ keepAlive: true, maxSockets: LOAD_CLIENTS });
  const samples: number[] = [];
  let errors = 0;
  let running = true;
  const one = () =>
    new Promise<void>((resolve) => {
      const started = performance.now();
      const req = http.request({ host: '127.0.0.1', port: daemon.httpPort, path: '/', headers: { host }, agent }, (res) => {
        res.resume();
        res.on('end', () => {
          if (res.statusCode === 200) samples.push(performance.now() - started);
          else errors++;
          resolve();
        });
      });
      req.on('error', () => {
        errors++;
        resolve();
      });
      req.end();
    });
  const clients = Array.from({ length: LOAD_CLIENTS }, async () => {
    while (running) {
      await one();
      await new Promise((r) => setTimeout(r, LOAD_PAUSE_MS));
    }
  });
  return {
    stop: async () => {
      running = false;
      await Promise.all(clients);
      agent.destroy();
      const sorted = samples.sort((a, b) => a - b);
      const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
      return { count: sorted.length, errors, p50: at(0.5), p99: at(0.99), max: sorted.at(-1) ?? NaN };
    },
  };
}

/**
 * Samples the memory of a process and its children (the index-pack child) until stopped:
 * resident sizes, and the proportional set size of both together (pages the two share, such as
 * the executable's, counted once rather than twice).
 */
function rssSampler(pid: number): { stop: () => { daemonMb: number; withChildrenMb: number; pssMb: number } } {
  let daemonMax = 0;
  let sumMax = 0;
  let pssMax = 0;
  const field = (file: string, name: string) => {
    try {
      return Number(new RegExp(`${name}:\\s+(\\d+) kB`).exec(fs.readFileSync(file, 'utf8'))?.[1] ?? 0);
    } catch {
      return 0;
    }
  };
  const rssKb = (p: number) => field(`/proc/${p}/status`, 'VmRSS');
  const pssKb = (p: number) => field(`/proc/${p}/smaps_rollup`, 'Pss');
  const children = (p: number): number[] => {
    try {
      return fs.readFileSync(`/proc/${p}/task/${p}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    } catch {
      return [];
    }
  };
  let tick = 0;
  const timer = setInterval(() => {
    const own = rssKb(pid);
    const kids = children(pid);
    daemonMax = Math.max(daemonMax, own);
    sumMax = Math.max(sumMax, own + kids.reduce((s, c) => s + rssKb(c), 0));
    if (tick++ % 5 === 0) pssMax = Math.max(pssMax, pssKb(pid) + kids.reduce((s, c) => s + pssKb(c), 0));
  }, 20);
  return {
    stop: () => {
      clearInterval(timer);
      return { daemonMb: daemonMax / 1024, withChildrenMb: sumMax / 1024, pssMb: pssMax / 1024 };
    },
  };
}

/** CPU time (user + system) a process has used so far, in milliseconds. */
function cpuMs(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

function vmHwmMb(pid: number): number {
  return Number(/VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
}

/** Resets the kernel's peak-RSS mark of a process, so VmHWM covers only what follows. */
function resetPeak(pid: number): boolean {
  try {
    fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function fmt(l: Latencies): string {
  return `${l.count} requests, ${l.errors} errors, p50 ${l.p50.toFixed(1)} ms, p99 ${l.p99.toFixed(1)} ms, max ${l.max.toFixed(1)} ms`;
}

const loadAverage = () => fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
console.log(`machine: ${os.cpus().length} cores, load average ${loadAverage()} (timings are only comparable on a quiet machine)`);
const t0 = performance.now();
generateRepository();
const packBytes = fs.readdirSync(path.join(repo, '.git', 'objects', 'pack')).filter((n) => n.endsWith('.pack')).reduce((s, n) => s + fs.statSync(path.join(repo, '.git', 'objects', 'pack', n)).size, 0);
console.log(`repository: ${FILES} files of ${FILE_BYTES} bytes, pack ${(packBytes / 1e6).toFixed(1)} MB (generated in ${((performance.now() - t0) / 1000).toFixed(1)} s)`);

const daemon = await startDaemon();
// Pushes are received by the control plane (its children index the packs).
const pid = daemon.pidOf('control');
let pushes = 0;
try {
  const key = makeKey(work, 'bench');
  daemon.cli(['ssh-keys:add', 'bench', key.publicKey]);
  const web = path.join(work, 'web');
  gitRepo(web, nodeApp('still here'));
  const deployed = run('git', ['push', '-q', daemon.remote('benchweb'), 'main'], { cwd: web, env: daemon.gitEnv(key.privateKey) });
  if (deployed.code !== 0) throw new Error(`deploying the app the load goes to failed:\n${deployed.stderr}`);
  const host = `benchweb.${daemon.domain}`;
  if ((await request(daemon.httpPort, host)).body !== 'still here\n') throw new Error('the load app does not answer');

  const idle = loadLoop(daemon, host);
  await new Promise((r) => setTimeout(r, 3000));
  const idleLatency = await idle.stop();

  const gitMs: number[] = [];
  const berthMs: number[] = [];
  const hwm: number[] = [];
  const sampled: { daemonMb: number; withChildrenMb: number; pssMb: number }[] = [];
  const daemonCpu: number[] = [];
  const during: Latencies[] = [];
  let hwmReset = true;
  /** One push of the repository to a new app on berth, with its memory and CPU watched. */
  const pushToBerth = async (withLoad: boolean) => {
    hwmReset = resetPeak(pid) && hwmReset;
    const load = withLoad ? loadLoop(daemon, host) : undefined;
    const memory = rssSampler(pid);
    const cpuBefore = cpuMs(pid);
    const pushed = await runAsync('git', ['push', '-q', daemon.remote(`bigpush${++pushes}`), 'main:refs/heads/big'], { cwd: repo, env: daemon.gitEnv(key.privateKey) });
    const rss = memory.stop();
    const cpu = cpuMs(pid) - cpuBefore;
    const latency = await load?.stop();
    if (pushed.code !== 0) throw new Error(`git push to berth failed:\n${pushed.stderr}`);
    hwm.push(vmHwmMb(pid));
    sampled.push(rss);
    const memoryLine = `control plane VmHWM ${hwm.at(-1)!.toFixed(0)} MB, control + index-pack child RSS ${rss.withChildrenMb.toFixed(0)} MB (PSS ${rss.pssMb.toFixed(0)} MB)`;
    return { ms: pushed.ms, cpu, latency, memoryLine };
  };
  // Timed pushes run alone, as git's own push does; the proxy's latency is measured in pushes of
  // their own, under a steady stream of requests.
  for (let round = 1; round <= ROUNDS; round++) {
    const bare = path.join(work, `bare-${round}.git`);
    mustRun('git', ['init', '-q', '--bare', bare]);
    const local = await runAsync('git', ['push', '-q', `file://${bare}`, 'main'], { cwd: repo });
    if (local.code !== 0) throw new Error(`git push file:// failed:\n${local.stderr}`);
    gitMs.push(local.ms);
    fs.rmSync(bare, { recursive: true, force: true });
    const timed = await pushToBerth(false);
    berthMs.push(timed.ms);
    daemonCpu.push(timed.cpu);
    console.log(`round ${round}: git push file:// ${(local.ms / 1000).toFixed(2)} s, git push to berth ${(timed.ms / 1000).toFixed(2)} s (daemon CPU ${timed.cpu} ms); ${timed.memoryLine}`);
  }
  for (let round = 1; round <= ROUNDS; round++) {
    const loaded = await pushToBerth(true);
    during.push(loaded.latency!);
    console.log(`push under load ${round}: ${(loaded.ms / 1000).toFixed(2)} s; proxy: ${fmt(loaded.latency!)}; ${loaded.memoryLine}`);
  }
  const received = daemon
    .logs()
    .split('\n')
    .filter((l) => l.includes('"git_push_received"') && l.includes('bigpush'))
    .map((l) => JSON.parse(l) as { ms: number; receiveMs: number; indexMs: number; indexedIn: string; indexerMaxRssMb: number; indexerCpuMs: number });
  const timedLogs = received.slice(0, ROUNDS);

  const ratio = median(berthMs) / median(gitMs);
  console.log('');
  console.log(`load average at the end: ${loadAverage()}`);
  console.log(`push of ${(packBytes / 1e6).toFixed(0)} MB / ${FILES} files, median of ${ROUNDS}:`);
  console.log(`  git push file:// (git's own receive-pack): ${(median(gitMs) / 1000).toFixed(2)} s (fastest ${(Math.min(...gitMs) / 1000).toFixed(2)} s)`);
  console.log(`  git push to berth over SSH:                 ${(median(berthMs) / 1000).toFixed(2)} s (fastest ${(Math.min(...berthMs) / 1000).toFixed(2)} s)`);
  console.log(`  ratio berth / git:                          ${ratio.toFixed(2)} of the medians, ${(Math.min(...berthMs) / Math.min(...gitMs)).toFixed(2)} of the fastest (target at most 1.5)`);
  console.log(
    `  inside berth (receive-pack log): session ${median(timedLogs.map((r) => r.ms))} ms, pack received and indexed as it came ${median(timedLogs.map((r) => r.receiveMs))} ms, ` +
      `index finished after it ${median(timedLogs.map((r) => r.indexMs))} ms (indexed in the ${timedLogs[0]?.indexedIn} process)`,
  );
  console.log(`  CPU per push: daemon ${median(daemonCpu)} ms, index-pack child ${median(timedLogs.map((r) => r.indexerCpuMs))} ms`);
  console.log(`  daemon peak RSS during the push: ${Math.max(...hwm).toFixed(0)} MB (VmHWM${hwmReset ? ', reset before each push' : ', since start: clear_refs not writable'}); target under 300 MB`);
  console.log(
    `  index-pack child peak RSS: ${Math.max(...received.map((r) => r.indexerMaxRssMb))} MB; daemon + child sampled together: RSS ${Math.max(...sampled.map((s) => s.withChildrenMb)).toFixed(0)} MB, ` +
      `PSS ${Math.max(...sampled.map((s) => s.pssMb)).toFixed(0)} MB (shared pages of the executable counted once)`,
  );
  console.log(`  proxy while no push runs:   ${fmt(idleLatency)}`);
  console.log(`  proxy while a push is received: p99 ${median(during.map((l) => l.p99)).toFixed(1)} ms (median of rounds; worst ${Math.max(...during.map((l) => l.p99)).toFixed(1)} ms), p50 ${median(during.map((l) => l.p50)).toFixed(1)} ms, ${during.reduce((s, l) => s + l.errors, 0)} errors`);
} finally {
  // Also after a failure: the apps' containers and images go with them.
  for (let n = 1; n <= pushes; n++) daemon.cli(['apps:destroy', `bigpush${n}`, '--force']);
  daemon.cli(['apps:destroy', 'benchweb', '--force']);
  await daemon.stop();
  fs.rmSync(work, { recursive: true, force: true });
}
