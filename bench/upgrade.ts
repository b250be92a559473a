// bench:upgrade — berth's own processes, measured on this machine through dist/berth serve:
// the RSS of the supervisor, the proxy and the control plane idle, after 10 deploys and after
// HTTP/2 load (h2load -c16 -m10 over HTTPS with a certificate from certs:add); then `berth
// upgrade` to a copy of the binary under wrk load: requests and failures during it, and the time
// from `berth upgrade` to the new processes serving (the command's own steps, timed as they
// print). Proxy p99 while hostile packs are refused needs the hostile-pack generator of the
// pack-caps work; until that is merged this bench says so instead of a figure.
//
//   DURATION=60 (seconds of HTTP/2 load)  DEPLOYS=10  CONNECTIONS=16
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { BINARY, gitRepo, makeKey, startDaemon, tempDir } from '../test/helpers/daemon.ts';
import { issueCert, makeCa } from '../test/helpers/certs.ts';
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
  rows.push(['proxy p99 while hostile packs are refused', 'not measured here: needs the hostile-pack generator (pack caps work)']);

  console.log('\nberth upgrade steps (time since `berth upgrade` started):');
  for (const step of steps) console.log(`  ${step}`);
  console.log('');
  console.log('| figure | measured |');
  console.log('|---|---|');
  for (const [what, value] of rows) console.log(`| ${what} | ${value} |`);
} finally {
  daemon.cli(['apps:destroy', APP, '--force']);
  await daemon.stop();
}
