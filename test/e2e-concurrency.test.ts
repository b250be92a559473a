// Pushes at the same time, with real git over real OpenSSH to the real binary and real Docker
// builds: a second push to an app waits for the first and says so, a push that is no longer a
// fast-forward is refused by git, pushes to different apps build side by side, and a push whose
// client goes away mid-build stops its build and frees the app.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { BASE_IMAGE, BINARY, gitRepo, makeKey, mustRun, nodeApp, request, startDaemon, tempDir, waitFor, type Daemon } from './helpers/daemon.ts';

let daemon: Daemon;
let key: { privateKey: string; publicKey: string };
const work = tempDir('e2e-concurrency');

before(async () => {
  daemon = await startDaemon();
  key = makeKey(work, 'pusher');
  assert.equal(daemon.cli(['ssh-keys:add', 'pusher', key.publicKey]).code, 0);
});

after(async () => {
  for (const app of ['conc-same', 'conc-left', 'conc-right', 'conc-killed', 'conc-locked']) daemon.cli(['apps:destroy', app, '--force']);
  await daemon.stop();
});

/** A node app whose build takes a moment (the sleep runs after COPY, so it is never cached). */
function slowApp(message: string, buildSeconds: number): Record<string, string> {
  return { ...nodeApp(message), Dockerfile: `FROM ${BASE_IMAGE}\nCOPY . /app\nRUN sleep ${buildSeconds}\nCMD ["node", "/app/server.js"]\n` };
}

interface Push {
  child: ChildProcess;
  stderr(): string;
  /** When each line of output first appeared, by a pattern. */
  seenAt(pattern: RegExp): number | undefined;
  done: Promise<{ code: number; at: number }>;
}

function startPush(cwd: string, app: string, ref = 'main'): Push {
  const child = spawn('git', ['push', daemon.remote(app), ref], { cwd, env: daemon.gitEnv(key.privateKey), stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  let stderr = '';
  const seen: { at: number; text: string }[] = [];
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
    seen.push({ at: performance.now(), text: stderr });
  });
  return {
    child,
    stderr: () => stderr,
    seenAt: (pattern) => seen.find((s) => pattern.test(s.text))?.at,
    done: new Promise((resolve) => child.on('close', (code) => resolve({ code: code ?? -1, at: performance.now() }))),
  };
}

function clone(from: string, to: string): void {
  mustRun('git', ['clone', '-q', from, to]);
  mustRun('git', ['config', 'user.email', 'dev@example.test'], { cwd: to });
  mustRun('git', ['config', 'user.name', 'Other Developer'], { cwd: to });
}

test('a second push to the same app waits for the first and says so, and a push that is no longer a fast-forward is refused', async () => {
  const first = path.join(work, 'same-first');
  gitRepo(first, slowApp('first', 3));
  const second = path.join(work, 'same-second');
  clone(first, second);
  const secondHead = gitRepo(second, slowApp('second', 1), 'second');
  const third = path.join(work, 'same-third');
  clone(first, third);
  gitRepo(third, { ...nodeApp('diverged'), 'other.txt': 'diverged\n' }, 'diverged');

  const a = startPush(first, 'conc-same');
  await waitFor('the first push to build', () => /Building conc-same/.test(a.stderr()), 60_000);
  const b = startPush(second, 'conc-same');
  await waitFor('the second push to say it waits', () => /Another push to conc-same is running; waiting for it to finish/.test(b.stderr()), 30_000);
  const c = startPush(third, 'conc-same');
  await waitFor('the third push to say it waits', () => /Another push to conc-same is running; waiting/.test(c.stderr()), 30_000);
  assert.equal(a.child.exitCode, null, 'the first push is still running while the others wait');

  const [ra, rb, rc] = await Promise.all([a.done, b.done, c.done]);
  assert.equal(ra.code, 0, a.stderr());
  assert.match(a.stderr(), /Released v1 of conc-same/);
  assert.equal(rb.code, 0, b.stderr());
  assert.match(b.stderr(), /Released v2 of conc-same/);
  assert.ok(rb.at > ra.at, 'the second push finished after the first');
  assert.notEqual(rc.code, 0);
  assert.match(c.stderr(), /! \[rejected\]\s+main -> main \(fetch first\)/);
  assert.doesNotMatch(c.stderr(), /Building/);

  const gitdir = path.join(daemon.dataDir, 'repos', 'conc-same.git');
  mustRun('git', ['--git-dir', gitdir, 'fsck', '--strict']);
  assert.equal(mustRun('git', ['--git-dir', gitdir, 'rev-parse', 'refs/heads/main']).trim(), secondHead);
  assert.match(daemon.cli(['apps:list']).stdout, new RegExp(`conc-same\\s+v2\\s+${secondHead.slice(0, 7)}`));
  assert.equal((await request(daemon.httpPort, `conc-same.${daemon.domain}`)).body, 'second\n');
});

/** A CLI command run in the background through the daemon's control socket. */
function startCli(args: string[]): { stdout(): string; done: Promise<number> } {
  const child = spawn(BINARY, ['--data-dir', daemon.dataDir, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stdout += d.toString()));
  return { stdout: () => stdout, done: new Promise((resolve) => child.on('close', (code) => resolve(code ?? -1))) };
}

test('a config change and a destroy of an app wait for its push: one lock for every change of an app', async () => {
  const dir = path.join(work, 'locked');
  gitRepo(dir, slowApp('locked', 3));
  const push = startPush(dir, 'conc-locked');
  await waitFor('the push to build', () => /Building conc-locked/.test(push.stderr()), 60_000);
  const config = startCli(['config:set', 'conc-locked', 'GREETING=hello']);
  await waitFor('config:set to say it waits', () => /Another deploy of conc-locked is running; waiting for it to finish/.test(config.stdout()), 30_000);
  assert.equal(push.child.exitCode, null, 'the push still runs while config:set waits');
  const [pushed, configured] = await Promise.all([push.done, config.done]);
  assert.equal(pushed.code, 0, push.stderr());
  assert.match(push.stderr(), /Released v1 of conc-locked/);
  assert.equal(configured, 0, config.stdout());
  assert.match(config.stdout(), /Set GREETING; releasing v2 and restarting conc-locked/);

  gitRepo(dir, slowApp('locked again', 3), 'again');
  const second = startPush(dir, 'conc-locked');
  await waitFor('the second push to build', () => /Building conc-locked/.test(second.stderr()), 60_000);
  const destroy = startCli(['apps:destroy', 'conc-locked', '--force']);
  await waitFor('apps:destroy to say it waits', () => /A push or another change to conc-locked is running; waiting for it to finish/.test(destroy.stdout()), 30_000);
  assert.equal(second.child.exitCode, null, 'the push still runs while apps:destroy waits');
  const [secondPushed, destroyed] = await Promise.all([second.done, destroy.done]);
  assert.equal(secondPushed.code, 0, second.stderr());
  assert.match(second.stderr(), /Released v3 of conc-locked/);
  assert.equal(destroyed, 0, destroy.stdout());
  assert.match(destroy.stdout(), /Destroyed conc-locked/);
  assert.doesNotMatch(daemon.cli(['apps:list']).stdout, /conc-locked/);
});

test('pushes to different apps build side by side', async () => {
  const left = path.join(work, 'left');
  const right = path.join(work, 'right');
  gitRepo(left, slowApp('left', 3));
  gitRepo(right, slowApp('right', 3));
  const l = startPush(left, 'conc-left');
  const r = startPush(right, 'conc-right');
  const [rl, rr] = await Promise.all([l.done, r.done]);
  assert.equal(rl.code, 0, l.stderr());
  assert.equal(rr.code, 0, r.stderr());
  for (const p of [l, r]) assert.doesNotMatch(p.stderr(), /waiting/);
  const leftBuilt = l.seenAt(/Building conc-left/)!;
  const rightBuilt = r.seenAt(/Building conc-right/)!;
  assert.ok(leftBuilt < rr.at && rightBuilt < rl.at, 'each build started before the other push ended');
  assert.equal((await request(daemon.httpPort, `conc-left.${daemon.domain}`)).body, 'left\n');
  assert.equal((await request(daemon.httpPort, `conc-right.${daemon.domain}`)).body, 'right\n');
});

test('a push whose client goes away during the build stops the build, moves no ref, and frees the app', async () => {
  const repo = path.join(work, 'killed');
  const marker = `build-${randomBytes(4).toString('hex')}`;
  gitRepo(repo, { ...nodeApp('never'), Dockerfile: `FROM ${BASE_IMAGE}\nCOPY . /app\nRUN echo ${marker} started && sleep 60\n` });
  const dangling = () => mustRun('docker', ['images', '-q', '--no-trunc', '--filter', 'dangling=true']).split('\n').filter(Boolean);
  const danglingBefore = new Set(dangling());
  const k = startPush(repo, 'conc-killed');
  await waitFor('the build to start', () => k.stderr().includes(`${marker} started`), 60_000);
  process.kill(-k.child.pid!, 'SIGKILL'); // git and the ssh it runs
  await k.done;

  await waitFor('the daemon to log the cancelled push', () => daemon.logs().includes('"event":"push_cancelled","app":"conc-killed"'), 30_000);
  await waitFor('the build container to be gone', () => !mustRun('docker', ['ps', '-a', '--no-trunc', '--format', '{{.Command}}']).includes(marker), 30_000);
  // The image its COPY step committed is nobody's: it goes too.
  await waitFor('no image left by the cancelled build', () => dangling().every((id) => danglingBefore.has(id)), 15_000);
  const gitdir = path.join(daemon.dataDir, 'repos', 'conc-killed.git');
  assert.equal(fs.existsSync(path.join(gitdir, 'refs', 'heads', 'main')), false, 'the branch was not created');

  gitRepo(repo, nodeApp('after the cancelled push'), 'quick build');
  const next = startPush(repo, 'conc-killed');
  const rn = await next.done;
  assert.equal(rn.code, 0, next.stderr());
  assert.doesNotMatch(next.stderr(), /waiting/);
  assert.equal((await request(daemon.httpPort, `conc-killed.${daemon.domain}`)).body, 'after the cancelled push\n');
});
