// bench:upgrade — berth's own processes, measured on this machine through dist/berth serve:
// the RSS of the supervisor, the proxy and the control plane idle, after 10 deploys and after
// HTTP/2 load (h2load -c16 -m10 over HTTPS with a certificate from certs:add); then `berth
// upgrade` to a copy of the binary under wrk load: requests and failures during it, and the time
// from `berth upgrade` to the new processes serving (the command's own steps, timed as they
// print); and the proxy's p99 under wrk while a key scoped to another app pushes hostile packs
// (a delta bomb, a delta chain past the depth cap, a zlib bomb), beside the same load without them.
//
//   DURATION=60 (seconds of HTTP/2 load)  DEPLOYS=10  CONNECTIONS=16
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { BINARY, gitRepo, makeKey, startDaemon, tempDir } from '../test/helpers/daemon.ts';
import { issueCert, makeCa } from '../test/helpers/certs.ts';
import { deltaBombPack, deltaChainPack, hostileClientRepo, zlibBombPack } from '../test/helpers/hostile-packs.ts';
import { runAsync, sleep, startWrk, zeroDowntimeApp } from '../test/helpers/zero-downtime.ts';

const DURATION = Number(process.env.DURATION ?? 60);
const DEPLOYS = Number(process.env.DEPLOYS ?? 10);
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 16);
const APP = 'upgradebench';

const work = tempDir('bench-upgrade');
const daemon = await startDaemon();
const rows: Array<[string, string]> = [];

/**
 * RSS of each process of the daemon, from `berth status`, with its anonymous part from /proc: the
 * rest is pages of the executable, which the three processes share (docs/memory.md).
 */
function rss(): string {
  const r = daemon.cli(['status']);
  if (r.code !== 0) throw new Error(`berth status failed:\n${r.stderr}`);
  return r.stdout
    .trim()
    .split('\n')
    .slice(1)
    .map((line) => {
      const f = line.trim().split(/\s+/);
      const anon = /RssAnon:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${f[1]}/status`, 'utf8'))?.[1];
      return `${f[0]} ${f[4]} ${f[5]} (anon ${anon ? Math.round(Number(anon) / 1024) : '?'} MB)`;
    })
    .join(', ');
}

function h2load(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('h2load', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.once('error', reject);
    child.once('close', () => resolve(output));
  });
}

try {
  const key = makeKey(work, 'bench');
  daemon.cli(['ssh-keys:add', 'bench', key.publicKey]);
  const host = `${APP}.${daemon.domain}`;
  const repo = path.join(work, APP);
  let version = 1;
  const deploy = async () => {
    gitRepo(repo, zeroDowntimeApp({ message: `v${version}` }), `v${version}`);
    version++;
    const r = await runAsync('git', ['push', '-q', daemon.remote(APP), 'main'], { cwd: repo, env: daemon.gitEnv(key.privateKey) });
    if (r.code !== 0) throw new Error(`push failed:\n${r.stderr}`);
  };
  await sleep(2000);
  rows.push(['RSS idle (no app)', rss()]);
  for (let i = 0; i < DEPLOYS; i++) await deploy();
  await sleep(2000);
  rows.push([`RSS after ${DEPLOYS} deploys`, rss()]);

  const ca = makeCa('bench CA');
  const cert = issueCert(ca, [host]);
  const added = daemon.cli(['certs:add', APP, cert.certFile, cert.keyFile]);
  if (added.code !== 0) throw new Error(`certs:add failed:\n${added.stderr}`);
  await sleep(500);
  const h2 = await h2load(['-c16', '-m10', '-D', String(DURATION), `--connect-to=127.0.0.1:${daemon.httpsPort}`, `https://${host}:${daemon.httpsPort}/`]);
  const done = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(h2);
  const rate = /finished in [\d.]+s, ([\d.]+) req\/s/.exec(h2);
  rows.push([`h2load -c16 -m10 for ${DURATION} s`, done ? `${done[4]} succeeded, ${done[5]} failed, ${done[6]} errored; ${rate?.[1] ?? '?'} req/s` : h2.slice(-400)]);
  await sleep(1000);
  rows.push(['RSS after the HTTP/2 load', rss()]);

  const newBinary = path.join(work, 'berth-new');
  fs.copyFileSync(BINARY, newBinary);
  fs.chmodSync(newBinary, 0o755);
  const wrk = startWrk(daemon.httpPort, host, { connections: CONNECTIONS, threads: 2 });
  await sleep(2000);
  const started = performance.now();
  const steps: string[] = [];
  const upgrade = spawn(BINARY, ['--data-dir', daemon.dataDir, 'upgrade', '--binary', newBinary, '--probation', '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  upgrade.stdout.on('data', (d: Buffer) => {
    output += d.toString();
    for (const line of d.toString().split('\n')) if (line.startsWith('----->')) steps.push(`${((performance.now() - started) / 1000).toFixed(2)} s ${line.slice(7)}`);
  });
  upgrade.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const code = await new Promise<number | null>((resolve) => upgrade.once('close', resolve));
  const upgradedIn = (performance.now() - started) / 1000;
  await sleep(2000);
  const load = await wrk.stop();
  if (code !== 0) throw new Error(`berth upgrade failed:\n${output}`);
  const errors = load.socketErrors;
  rows.push([`wrk -c${CONNECTIONS} across berth upgrade`, `${load.requests} requests in ${load.seconds.toFixed(1)} s; non-2xx ${load.non2xx}; socket errors connect ${errors.connect}, read ${errors.read}, write ${errors.write}, timeout ${errors.timeout}; latency max ${load.latencyMax}`]);
  const serving = steps.find((s) => s.includes('The new processes serve'));
  rows.push(['berth upgrade to the new processes serving', serving ? serving.split(' s ')[0] + ' s' : '?']);
  rows.push(['berth upgrade to its exit (old proxy drained)', `${upgradedIn.toFixed(2)} s`]);
  rows.push(['RSS after the upgrade', rss()]);

  // The proxy while hostile packs are refused: the same wrk load without, then with, the pushes.
  const mallory = makeKey(work, 'mallory');
  daemon.cli(['ssh-keys:add', 'mallory', mallory.publicKey, '--apps', 'hostile']);
  const hostile = [
    { name: 'delta-bomb', pack: deltaBombPack(4, 1024 ** 3), args: [] as string[] },
    { name: 'delta-chain', pack: deltaChainPack(1500), args: ['-c', 'pack.depth=4095'] },
    { name: 'zlib-bomb', pack: zlibBombPack(4 * 1024 ** 3), args: [] as string[] },
  ].map((h) => ({ ...h, dir: hostileClientRepo(work, h.name, h.pack) }));
  const quiet = startWrk(daemon.httpPort, host, { connections: CONNECTIONS, threads: 2, latency: true });
  await sleep(10_000);
  const before = await quiet.stop();
  const loud = startWrk(daemon.httpPort, host, { connections: CONNECTIONS, threads: 2, latency: true });
  const pushStarted = performance.now();
  const refused: string[] = [];
  for (const h of hostile) {
    const r = await runAsync('git', [...h.args, 'push', daemon.remote('hostile'), 'main'], { cwd: h.dir, env: daemon.gitEnv(mallory.privateKey) });
    if (r.code === 0) throw new Error(`the ${h.name} push was accepted`);
    refused.push(`${h.name}: ${/push refused: [^\n]*/.exec(r.stderr)?.[0]?.trim() ?? r.stderr.trim().split('\n').at(-1)}`);
  }
  const pushSeconds = (performance.now() - pushStarted) / 1000;
  const during = await loud.stop();
  rows.push([`proxy p99 under wrk -c${CONNECTIONS}, no push (10 s)`, `${before.p99 ?? '?'} (max ${before.latencyMax}); ${before.requests} requests, non-2xx ${before.non2xx}`]);
  rows.push([`proxy p99 while 3 hostile packs are pushed and refused (${pushSeconds.toFixed(1)} s)`, `${during.p99 ?? '?'} (max ${during.latencyMax}); ${during.requests} requests, non-2xx ${during.non2xx}`]);
  console.log('\nhostile pushes refused:');
  for (const line of refused) console.log(`  ${line}`);

  console.log('\nberth upgrade steps (time since `berth upgrade` started):');
  for (const step of steps) console.log(`  ${step}`);
  console.log('');
  console.log('| figure | measured |');
  console.log('|---|---|');
  for (const [what, value] of rows) console.log(`| ${what} | ${value} |`);
} finally {
  for (const app of [APP, 'hostile']) daemon.cli(['apps:destroy', app, '--force']);
  await daemon.stop();
}
