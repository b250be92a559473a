// bench:deploy — the walking skeleton's figures, measured on this machine: binary size, time of
// `dist/berth --version`, time from the start of `git push` to the new version answering through
// the proxy (first push and redeploys), and the idle RSS of `berth serve`.
import fs from 'node:fs';
import path from 'node:path';
import { BINARY, gitRepo, makeKey, nodeApp, request, run, startDaemon, tempDir } from '../test/helpers/daemon.ts';

const ROUNDS = Number(process.env.ROUNDS ?? 5);
// Without app.json checks a deploy waits --checks-wait seconds of uptime before the swap
// (Dokku's default is 10). The test harness uses 1; CHECKS_WAIT=10 measures the default.
const CHECKS_WAIT = process.env.CHECKS_WAIT ?? '1';

function stats(ms: number[]): string {
  const sorted = [...ms].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  return `median ${median.toFixed(0)} ms (min ${sorted[0]!.toFixed(0)}, max ${sorted.at(-1)!.toFixed(0)}, n=${ms.length})`;
}

function rssKb(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]);
}

async function timeUntilServed(daemon: Awaited<ReturnType<typeof startDaemon>>, repo: string, app: string, key: string, expect: string): Promise<number> {
  const started = performance.now();
  const push = run('git', ['push', '-q', daemon.remote(app), 'main'], { cwd: repo, env: daemon.gitEnv(key) });
  if (push.code !== 0) throw new Error(`push failed:\n${push.stderr}`);
  for (;;) {
    const res = await request(daemon.httpPort, `${app}.${daemon.domain}`).catch(() => undefined);
    if (res?.body === expect + '\n') return performance.now() - started;
    await new Promise((r) => setTimeout(r, 5));
  }
}

const size = fs.statSync(BINARY).size;
console.log(`binary: dist/berth ${(size / 1e6).toFixed(1)} MB`);

const versionTimes: number[] = [];
for (let i = 0; i < 20; i++) {
  const t = performance.now();
  run(BINARY, ['--version']);
  versionTimes.push(performance.now() - t);
}
console.log(`dist/berth --version: ${stats(versionTimes)}`);

const work = tempDir('bench-deploy');
const daemon = await startDaemon({ args: ['--checks-wait', CHECKS_WAIT] });
console.log(`deploys below wait --checks-wait ${CHECKS_WAIT} s of uptime before the swap (the fixture app has no app.json checks)`);
try {
  await new Promise((r) => setTimeout(r, 2000));
  console.log(`idle RSS of berth serve after start: ${(rssKb(daemon.process.pid!) / 1024).toFixed(1)} MB`);
  const key = makeKey(work, 'bench');
  daemon.cli(['ssh-keys:add', 'bench', key.publicKey]);
  const first: number[] = [];
  const redeploy: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const app = `bench${round}`;
    const repo = path.join(work, app);
    gitRepo(repo, nodeApp(`v1 ${round}`));
    first.push(await timeUntilServed(daemon, repo, app, key.privateKey, `v1 ${round}`));
    gitRepo(repo, nodeApp(`v2 ${round}`), 'v2');
    redeploy.push(await timeUntilServed(daemon, repo, app, key.privateKey, `v2 ${round}`));
  }
  console.log(`git push -> new version served, first push: ${stats(first)}`);
  console.log(`git push -> new version served, redeploy:   ${stats(redeploy)}`);
  await new Promise((r) => setTimeout(r, 3000));
  console.log(`idle RSS of berth serve after ${ROUNDS * 2} deploys: ${(rssKb(daemon.process.pid!) / 1024).toFixed(1)} MB`);
  for (let round = 0; round < ROUNDS; round++) daemon.cli(['apps:destroy', `bench${round}`, '--force']);
} finally {
  await daemon.stop();
}
