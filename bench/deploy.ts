// bench:deploy — the walking skeleton's figures, measured on this machine: binary size, time of
// `dist/berth --version`, time from the start of `git push` to the new version answering through
// the proxy (first push and redeploy) with the default settings (--checks-wait 10: the new
// release serves at once and is on probation for 10 s) beside the same with --checks-wait 1, the
// time from a probation failure (the engine's die event) to the old release answering again, and
// the idle RSS of `berth serve`.
import fs from 'node:fs';
import path from 'node:path';
import { BINARY, gitRepo, makeKey, nodeApp, request, run, startDaemon, tempDir } from '../test/helpers/daemon.ts';
import { logEvents, probationApp, runAsync } from '../test/helpers/zero-downtime.ts';

const ROUNDS = Number(process.env.ROUNDS ?? 5);
/** The --checks-wait values compared: the default (10 s, Dokku's) and the test harness's 1 s. */
const WAITS = ['10', '1'];
/** When the crashing release of the probation-failure rounds exits, after its start. */
const CRASH_AFTER_MS = 3000;

type Daemon = Awaited<ReturnType<typeof startDaemon>>;

function stats(ms: number[], digits = 0): string {
  const sorted = [...ms].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  return `median ${median.toFixed(digits)} ms (min ${sorted[0]!.toFixed(digits)}, max ${sorted.at(-1)!.toFixed(digits)}, n=${ms.length})`;
}

function rssKb(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]);
}

/** RSS of each of berth's processes: supervisor, proxy, control. */
function rssOfRoles(daemon: Daemon): string {
  const mb = (pid: number) => `${(rssKb(pid) / 1024).toFixed(1)} MB`;
  return `supervisor ${mb(daemon.process.pid!)}, proxy ${mb(daemon.pidOf('proxy'))}, control ${mb(daemon.pidOf('control'))}`;
}

/**
 * Starts `git push` and polls the app until it answers `expect`: the time from the push's start
 * to that answer, and to the end of the push (which, with probation, comes `wait` later).
 */
async function timeUntilServed(daemon: Daemon, repo: string, app: string, key: string, expect: string): Promise<{ servedMs: number; pushMs: number }> {
  const started = performance.now();
  const push = runAsync('git', ['push', '-q', daemon.remote(app), 'main'], { cwd: repo, env: daemon.gitEnv(key) });
  let pushed: number | undefined;
  void push.then(() => (pushed = performance.now()));
  let servedMs: number | undefined;
  while (servedMs === undefined) {
    const res = await request(daemon.httpPort, `${app}.${daemon.domain}`).catch(() => undefined);
    if (res?.body === expect + '\n') servedMs = performance.now() - started;
    else if (pushed !== undefined) break;
    else await new Promise((r) => setTimeout(r, 5));
  }
  const result = await push;
  if (result.code !== 0 || servedMs === undefined) throw new Error(`push failed or never served:\n${result.stderr}`);
  return { servedMs, pushMs: (pushed ?? performance.now()) - started };
}

/**
 * Pushes a release that crashes CRASH_AFTER_MS after it starts, while a client polls the app:
 * the time from the engine's die event to the first answer of the old release after it (the old
 * release stands by, so requests the dying container refused already went there), from the
 * event to the swap back, from the last answer of the crashing release to the first of the old
 * one, and how many answers were neither.
 */
async function probationFailure(daemon: Daemon, repo: string, app: string, key: string, old: string): Promise<{ answeringMs: number; swapBackMs: number; gapMs: number; failed: number }> {
  const answers: Array<{ at: number; body: string }> = [];
  let polling = true;
  const poller = (async () => {
    while (polling) {
      const res = await request(daemon.httpPort, `${app}.${daemon.domain}`).catch(() => undefined);
      answers.push({ at: Date.now(), body: res?.body ?? '' });
      await new Promise((r) => setTimeout(r, 2));
    }
  })();
  gitRepo(repo, probationApp({ message: 'crashes', crashAfterMs: CRASH_AFTER_MS }), 'crashes');
  const push = await runAsync('git', ['push', '-q', daemon.remote(app), 'main'], { cwd: repo, env: daemon.gitEnv(key) });
  polling = false;
  await poller;
  run('git', ['reset', '-q', '--hard', 'HEAD~1'], { cwd: repo });
  if (push.code === 0) throw new Error('the crashing release passed its probation');
  const failed = logEvents(daemon.logs()).filter((e) => e.event === 'probation_failed' && e.app === app).at(-1);
  if (!failed?.engineTime) throw new Error(`no probation failure logged:\n${push.stderr}`);
  const died = Date.parse(failed.engineTime as string);
  const back = answers.find((a) => a.at >= died && a.body === old + '\n');
  if (!back) throw new Error('the old release did not answer after the failure');
  const lastCrashing = answers.findLastIndex((a) => a.body === 'crashes\n');
  const firstOldAfter = answers.findIndex((a, i) => i > lastCrashing && a.body === old + '\n');
  return {
    answeringMs: back.at - died,
    swapBackMs: failed.lagMs as number,
    gapMs: lastCrashing >= 0 && firstOldAfter >= 0 ? answers[firstOldAfter]!.at - answers[lastCrashing]!.at : NaN,
    failed: answers.filter((a) => a.body !== old + '\n' && a.body !== 'crashes\n').length,
  };
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
for (const wait of WAITS) {
  const daemon = await startDaemon({ args: ['--checks-wait', wait] });
  const label = wait === '10' ? 'default settings (--checks-wait 10)' : `--checks-wait ${wait}`;
  console.log(`\n${label}: the fixture app has no app.json checks; it serves once it answers GET /, and is on probation for ${wait} s`);
  try {
    await new Promise((r) => setTimeout(r, 2000));
    console.log(`idle RSS after start: ${rssOfRoles(daemon)}`);
    const key = makeKey(work, `bench${wait}`);
    daemon.cli(['ssh-keys:add', `bench${wait}`, key.publicKey]);
    const first: number[] = [];
    const redeploy: number[] = [];
    const firstPush: number[] = [];
    const redeployPush: number[] = [];
    const failures: number[] = [];
    const swapBacks: number[] = [];
    const gaps: number[] = [];
    let failedAnswers = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const app = `bench${round}`;
      const repo = path.join(work, `${wait}-${app}`);
      gitRepo(repo, nodeApp(`v1 ${round}`));
      const a = await timeUntilServed(daemon, repo, app, key.privateKey, `v1 ${round}`);
      first.push(a.servedMs);
      firstPush.push(a.pushMs);
      gitRepo(repo, nodeApp(`v2 ${round}`), 'v2');
      const b = await timeUntilServed(daemon, repo, app, key.privateKey, `v2 ${round}`);
      redeploy.push(b.servedMs);
      redeployPush.push(b.pushMs);
      // The probation failure needs a probation long enough to crash in: the default's only.
      if (Number(wait) * 1000 > CRASH_AFTER_MS + 2000) {
        const f = await probationFailure(daemon, repo, app, key.privateKey, `v2 ${round}`);
        failures.push(f.answeringMs);
        swapBacks.push(f.swapBackMs);
        gaps.push(f.gapMs);
        failedAnswers += f.failed;
      }
    }
    console.log(`git push -> new version served, first push: ${stats(first)} (push ends: ${stats(firstPush)})`);
    console.log(`git push -> new version served, redeploy:   ${stats(redeploy)} (push ends: ${stats(redeployPush)})`);
    if (failures.length) {
      console.log(`probation failure (engine's die event) -> route swapped back: ${stats(swapBacks, 1)}`);
      console.log(`probation failure (engine's die event) -> old release answering: ${stats(failures, 1)}`);
      console.log(`last answer of the crashing release -> next answer of the old one (one polling client): ${stats(gaps, 1)}; answers from neither: ${failedAnswers}`);
    }
    await new Promise((r) => setTimeout(r, 3000));
    console.log(`idle RSS after ${ROUNDS * 2} deploys: ${rssOfRoles(daemon)}`);
    for (let round = 0; round < ROUNDS; round++) daemon.cli(['apps:destroy', `bench${round}`, '--force']);
  } finally {
    await daemon.stop();
  }
}
