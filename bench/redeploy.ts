// bench:redeploy — zero-downtime deploys under load, measured on this machine: wrk keeps 16
// connections on an app (through dist/berth serve) while it is redeployed 10 times (3 pushes,
// 3 config:set, ps:scale up and down, ps:restart, releases:rollback); then a web container is
// killed with `docker kill` under load. It prints the failed requests (non-2xx answers and socket
// errors, as wrk counts them), how long each swap took from the new containers' last health pass
// to the first request the proxy routed to them (from the daemon's log: both events carry the
// clock the daemon's processes share), and how long after the engine reported the kill the container left
// the route.
import path from 'node:path';
import { BINARY, gitRepo, makeKey, mustRun, startDaemon, tempDir } from '../test/helpers/daemon.ts';
import { logEvents, runAsync, sleep, startLoadLoop, startWrk, swapTimings, zeroDowntimeApp } from '../test/helpers/zero-downtime.ts';

const CONNECTIONS = Number(process.env.CONNECTIONS ?? 16);
const KILLS = Number(process.env.KILLS ?? 3);
const APP = 'redeploybench';

function summary(values: number[], unit: string): string {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return 'no samples';
  const median = sorted[Math.floor(sorted.length / 2)]!;
  return `median ${median.toFixed(1)} ${unit}, min ${sorted[0]!.toFixed(1)}, max ${sorted.at(-1)!.toFixed(1)} (n=${sorted.length})`;
}

const work = tempDir('bench-redeploy');
const daemon = await startDaemon();
try {
  const key = makeKey(work, 'bench');
  daemon.cli(['ssh-keys:add', 'bench', key.publicKey]);
  const host = `${APP}.${daemon.domain}`;
  const repo = path.join(work, APP);
  const cli = async (args: string[]) => {
    const r = await runAsync(BINARY, ['--data-dir', daemon.dataDir, ...args]);
    if (r.code !== 0) throw new Error(`${args.join(' ')} failed:\n${r.stdout}${r.stderr}`);
  };
  let version = 1;
  const push = async () => {
    gitRepo(repo, zeroDowntimeApp({ message: `v${version}` }), `v${version}`);
    version++;
    const r = await runAsync('git', ['push', '-q', daemon.remote(APP), 'main'], { cwd: repo, env: daemon.gitEnv(key.privateKey) });
    if (r.code !== 0) throw new Error(`push failed:\n${r.stderr}`);
  };
  await push();

  console.log(`redeploys under load: wrk, ${CONNECTIONS} connections, 2 threads, GET / through berth`);
  const loadStarted = Date.now();
  const wrk = startWrk(daemon.httpPort, host, { connections: CONNECTIONS, threads: 2 });
  await sleep(1000);
  const steps: Array<[string, () => Promise<void>]> = [
    ['git push', push],
    ['config:set', () => cli(['config:set', APP, 'GREETING=one'])],
    ['ps:scale web=2', () => cli(['ps:scale', APP, 'web=2'])],
    ['git push', push],
    ['config:set', () => cli(['config:set', APP, 'GREETING=two'])],
    ['ps:scale web=1', () => cli(['ps:scale', APP, 'web=1'])],
    ['git push', push],
    ['ps:restart', () => cli(['ps:restart', APP])],
    ['config:set', () => cli(['config:set', APP, 'GREETING=three'])],
    ['releases:rollback', () => cli(['releases:rollback', APP])],
  ];
  for (const [what, step] of steps) {
    const t = performance.now();
    await step();
    console.log(`  ${what.padEnd(18)} done in ${(performance.now() - t).toFixed(0)} ms`);
  }
  await sleep(1000);
  const result = await wrk.stop();
  const errors = result.socketErrors;
  const failed = result.non2xx + errors.connect + errors.read + errors.write + errors.timeout;
  console.log(`  ${result.requests} requests in ${result.seconds.toFixed(1)} s (${(result.requests / result.seconds).toFixed(0)} req/s), latency max ${result.latencyMax}`);
  console.log(`  failed requests over the 10 redeploys: ${failed} (non-2xx ${result.non2xx}; socket errors connect ${errors.connect}, read ${errors.read}, write ${errors.write}, timeout ${errors.timeout})`);

  const events = logEvents(daemon.logs()).filter((e) => Date.parse(e.time) >= loadStarted);
  const swaps = swapTimings(events).filter((s) => s.app === APP);
  console.log(`swap, from the last health pass of the new web containers (${swaps.length} swaps under load):`);
  console.log(`  to the route swap:                       ${summary(swaps.map((s) => s.passToSwapMs), 'ms')}`);
  console.log(`  to the first request on the new release: ${summary(swaps.map((s) => s.passToFirstRequestMs), 'ms')}`);

  await cli(['ps:scale', APP, 'web=2']);
  const lags: number[] = [];
  const fromKill: number[] = [];
  let killFailures = 0;
  let killRequests = 0;
  for (let round = 0; round < KILLS; round++) {
    const victim = mustRun('docker', ['ps', '--filter', `label=berth.instance=${daemon.instance}`, '--filter', `label=berth.app=${APP}`, '--filter', 'label=berth.dyno=web.2', '--format', '{{.Names}}']).trim();
    const load = startLoadLoop(daemon.httpPort, host, 8);
    await sleep(500);
    const killedAt = Date.now();
    mustRun('docker', ['kill', victim]);
    for (let i = 0; i < 50 && !logEvents(daemon.logs()).some((e) => e.event === 'route_target_withdrawn' && e.container === victim); i++) await sleep(100);
    await sleep(500);
    const records = await load.stop();
    killRequests += records.length;
    killFailures += records.filter((r) => r.status !== 200).length;
    const withdrawn = logEvents(daemon.logs()).find((e) => e.event === 'route_target_withdrawn' && e.container === victim);
    if (withdrawn) {
      lags.push(withdrawn.lagMs as number);
      fromKill.push(Date.parse(withdrawn.time) - killedAt);
    }
    // Back to two web containers: the killed one is replaced.
    await cli(['ps:scale', APP, 'web=1']);
    await cli(['ps:scale', APP, 'web=2']);
  }
  console.log(`docker kill of one of 2 web containers under load (${KILLS} rounds, 8 Node connections):`);
  console.log(`  withdrawn from routing after the engine's die event: ${summary(lags, 'ms')}`);
  console.log(`  withdrawn after \`docker kill\` was started:          ${summary(fromKill, 'ms')}`);
  console.log(`  failed requests: ${killFailures} of ${killRequests}`);
  await cli(['apps:destroy', APP, '--force']);
} finally {
  await daemon.stop();
}
