// bench:tls — automatic HTTPS figures, measured on this machine:
//  1. time from `domains:add` to the first HTTPS answer from the app with a certificate that
//     chains to Pebble's root (real HTTP-01 validation against a local Pebble);
//  2. TLS handshakes per second on berth's HTTPS listener, new connections without session
//     resumption, beside nginx (Debian's, installed here if missing) serving the same
//     certificate, one worker each; also handshakes per CPU-second of the server process, and
//     the same for a bare node:tls server (no SNI or ALPN callbacks, no HTTP) as a reference.
//   ROUNDS=5 HANDSHAKE_SECONDS=8 npm run bench:tls
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { splitPem } from '../src/proxy/tls/certificate.ts';
import { httpsGet } from '../test/helpers/certs.ts';
import { gitRepo, makeKey, mustRun, nodeApp, ROOT, run, startDaemon, tempDir, type Daemon } from '../test/helpers/daemon.ts';
import { freePorts, preparePebble } from '../test/helpers/pebble.ts';

const ROUNDS = Number(process.env.ROUNDS ?? 5);
const HANDSHAKE_SECONDS = Number(process.env.HANDSHAKE_SECONDS ?? 8);
const HANDSHAKE_ROUNDS = Number(process.env.HANDSHAKE_ROUNDS ?? 3);
const NODE = path.join(ROOT, 'node_modules', '.bin', 'node');
const CLOCK_TICKS = 100; // USER_HZ on Linux

function stats(values: number[], unit: string, digits = 0): string {
  const sorted = [...values].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  return `median ${median.toFixed(digits)} ${unit} (min ${sorted[0]!.toFixed(digits)}, max ${sorted.at(-1)!.toFixed(digits)}, n=${values.length})`;
}

/** CPU seconds (user + system) used so far by the processes. */
function cpuSeconds(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    ticks += Number(fields[11]) + Number(fields[12]); // utime, stime
  }
  return ticks / CLOCK_TICKS;
}

function ensureNginx(): string {
  const found = spawnSync('sh', ['-c', 'command -v nginx || ls /usr/sbin/nginx'], { encoding: 'utf8' }).stdout.trim().split('\n')[0];
  if (found) return found;
  if (process.getuid?.() !== 0) throw new Error('nginx is missing and installing it needs root: apt-get install -y nginx');
  console.log('-----> installing nginx from Debian');
  mustRun('apt-get', ['update', '-qq'], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  mustRun('apt-get', ['install', '-y', '-qq', 'nginx'], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  return '/usr/sbin/nginx';
}

async function startNginx(binary: string, dir: string, port: number, certFile: string, keyFile: string): Promise<{ process: ChildProcess; pids: () => number[]; stop: () => Promise<void> }> {
  fs.mkdirSync(path.join(dir, 'logs'), { recursive: true });
  const conf = path.join(dir, 'nginx.conf');
  fs.writeFileSync(conf, `worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fastcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  server {
    listen 127.0.0.1:${port} ssl;
    server_name _;
    ssl_certificate ${certFile};
    ssl_certificate_key ${keyFile};
    location / { return 200 "ok\\n"; }
  }
}
`);
  const child = spawn(binary, ['-p', dir, '-c', conf, '-g', 'daemon off;'], { stdio: ['ignore', 'inherit', 'inherit'] });
  for (let i = 0; i < 100 && !fs.existsSync(path.join(dir, 'nginx.pid')); i++) await new Promise((r) => setTimeout(r, 50));
  if (child.exitCode !== null) throw new Error(`nginx exited with ${child.exitCode}; see ${dir}/logs/error.log`);
  const pids = () => {
    const children = fs.readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    return [child.pid!, ...children];
  };
  return {
    process: child,
    pids,
    stop: async () => {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGQUIT');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

function handshakeLoad(port: number, servername: string): { handshakes: number; errors: number; ms: number } {
  const out = mustRun(NODE, [path.join(ROOT, 'bench', 'tls-handshake-client.ts'), String(port), servername, String(HANDSHAKE_SECONDS)], { timeoutMs: (HANDSHAKE_SECONDS + 60) * 1000 });
  return JSON.parse(out.trim().split('\n').at(-1)!) as { handshakes: number; errors: number; ms: number };
}

async function main(): Promise<void> {
  if (!fs.existsSync(path.join(ROOT, 'dist', 'berth'))) throw new Error('dist/berth is missing: run `npm run build` (npm run bench:tls does)');
  const nginx = ensureNginx();
  const work = tempDir('bench-tls');
  const pebble = await preparePebble();
  let daemon: Daemon | undefined;
  try {
    daemon = await startDaemon({
      domain: 'example.test',
      args: ['--acme-directory', pebble.directory, '--acme-ca-file', pebble.caFile, '--acme-email', 'ops@example.test'],
    });
    const d = daemon;
    await pebble.start({ httpPort: d.httpPort, tlsPort: d.httpsPort });
    const root = await pebble.root();
    const key = makeKey(work, 'bench');
    mustRun(path.join(ROOT, 'dist', 'berth'), ['--data-dir', d.dataDir, 'ssh-keys:add', 'bench', key.publicKey]);
    const repo = path.join(work, 'benchtls');
    gitRepo(repo, nodeApp('bench tls'));
    const push = run('git', ['push', '-q', d.remote('benchtls'), 'main'], { cwd: repo, env: d.gitEnv(key.privateKey) });
    if (push.code !== 0) throw new Error(`push failed:\n${push.stderr}`);

    // 1. domains:add → first HTTPS answer with a Pebble certificate.
    const times: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const domain = `round${round}-${Date.now().toString(36)}.example.org`;
      const started = performance.now();
      const added = d.cli(['domains:add', 'benchtls', domain]);
      if (added.code !== 0) throw new Error(added.stderr);
      for (;;) {
        const res = await httpsGet(d.httpsPort, domain, '/', root).catch(() => undefined);
        if (res?.body === 'bench tls\n') break;
        if (performance.now() - started > 120_000) throw new Error(`no HTTPS answer for ${domain} within 120 s`);
        await new Promise((r) => setTimeout(r, 10));
      }
      times.push(performance.now() - started);
    }
    console.log(`domains:add -> first HTTPS answer with a Pebble certificate (HTTP-01): ${stats(times, 'ms')}`);

    // 2. Handshakes: berth and nginx with the same certificate and key, interleaved.
    const domain = 'benchtls.example.test';
    const slug = fs.readdirSync(path.join(d.dataDir, 'certs', 'acme'))[0]!;
    const bundle = fs.readFileSync(path.join(d.dataDir, 'certs', 'acme', slug, `${domain}.pem`), 'utf8');
    const { certs, keys } = splitPem(bundle);
    const certFile = path.join(work, 'chain.pem');
    const keyFile = path.join(work, 'key.pem');
    fs.writeFileSync(certFile, certs.join(''), { mode: 0o600 });
    fs.writeFileSync(keyFile, keys.join(''), { mode: 0o600 });
    const [nginxPort] = await freePorts(1);
    const server = await startNginx(nginx, path.join(work, 'nginx'), nginxPort!, certFile, keyFile);
    const berthPid = d.process.pid!;
    const bare = spawn(NODE, [path.join(ROOT, 'bench', 'tls-bare-server.ts'), certFile, keyFile], { stdio: ['ignore', 'pipe', 'inherit'] });
    const barePort = await new Promise<number>((resolve, reject) => {
      bare.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
      bare.once('exit', (code) => reject(new Error(`the bare node:tls server exited with ${code}`)));
    });
    const results: Record<'berth' | 'nginx' | 'node:tls', { rate: number[]; perCpu: number[]; errors: number }> = {
      berth: { rate: [], perCpu: [], errors: 0 },
      nginx: { rate: [], perCpu: [], errors: 0 },
      'node:tls': { rate: [], perCpu: [], errors: 0 },
    };
    try {
      // Warm-up: both servers, a short run each.
      for (const port of [d.httpsPort, nginxPort!, barePort]) mustRun(NODE, [path.join(ROOT, 'bench', 'tls-handshake-client.ts'), String(port), domain, '2']);
      for (let round = 0; round < HANDSHAKE_ROUNDS; round++) {
        const targets = [['berth', d.httpsPort, () => [berthPid]], ['nginx', nginxPort!, server.pids], ['node:tls', barePort, () => [bare.pid!]]] as const;
        for (const [name, port, pids] of targets) {
          const cpuBefore = cpuSeconds(pids());
          const load = handshakeLoad(port, domain);
          const cpu = cpuSeconds(pids()) - cpuBefore;
          results[name].rate.push(load.handshakes / (load.ms / 1000));
          results[name].perCpu.push(load.handshakes / cpu);
          results[name].errors += load.errors;
          console.log(`       round ${round + 1} ${name.padEnd(8)}: ${(load.handshakes / (load.ms / 1000)).toFixed(0)} handshakes/s, server CPU ${((cpu / (load.ms / 1000)) * 100).toFixed(0)}%, ${(load.handshakes / cpu).toFixed(0)} handshakes per CPU-second, ${load.errors} errors`);
        }
      }
    } finally {
      await server.stop();
      bare.kill('SIGTERM');
    }
    const cert = certs[0] ? new (await import('node:crypto')).X509Certificate(certs[0]) : undefined;
    console.log(`TLS handshakes, new connections without resumption (TLS 1.3, ${cert?.publicKey.asymmetricKeyDetails?.namedCurve ?? cert?.publicKey.asymmetricKeyType} certificate from Pebble, ${HANDSHAKE_SECONDS} s runs, client: 2 worker threads x 16 connections in flight):`);
    const labels = { berth: 'berth (1 thread)   ', nginx: 'nginx (1 worker)   ', 'node:tls': 'bare node:tls (ref)' } as const;
    for (const name of ['berth', 'nginx', 'node:tls'] as const) {
      console.log(`  ${labels[name]}: ${stats(results[name].rate, 'handshakes/s')}; ${stats(results[name].perCpu, 'handshakes per server CPU-second')}; errors ${results[name].errors}`);
    }
    d.cli(['apps:destroy', 'benchtls', '--force']);
  } finally {
    await daemon?.stop();
    await pebble.stop();
  }
}

await main();
