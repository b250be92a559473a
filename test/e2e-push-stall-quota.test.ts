// Pushes that would hold an app or fill the disk, with the real git over the real OpenSSH client
// against the real binary: a push that stops sending fails after --push-timeout and releases the
// app, as does a push whose client stops reading; a push beyond the app's --app-disk-quota
// (repository and build cache volume together) is refused as the pack streams, or up front when
// the app is over it already; on a nearly full disk (a real small tmpfs as the data dir) pushes
// are refused up front while state writes for a running app still succeed. Each refusal names
// its flag and changes nothing.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BASE_IMAGE, gitRepo, makeKey, mustRun, nodeApp, request, run, startDaemon, tempDir, waitFor, type Daemon } from './helpers/daemon.ts';

const work = tempDir('e2e-push-stall');
let admin: { privateKey: string; publicKey: string };

before(() => {
  admin = makeKey(work, 'push-admin');
});

/** What a push could have changed in the app's repository: its refs and its pack files, and any temp pack left. */
function repoSnapshot(daemon: Daemon, app: string): { refs: string; packs: string[] } {
  const gitdir = path.join(daemon.dataDir, 'repos', `${app}.git`);
  return {
    refs: mustRun('git', ['--git-dir', gitdir, 'for-each-ref', '--format=%(refname) %(objectname)']),
    packs: fs.readdirSync(path.join(gitdir, 'objects', 'pack')).sort(),
  };
}

/**
 * A GIT_SSH_COMMAND that runs the real ssh but passes on only the first `bytes` bytes git writes,
 * then keeps the connection open sending nothing: a client that stops in the middle of its pack.
 */
function stallingSsh(daemon: Daemon, bytes: number): NodeJS.ProcessEnv {
  const script = path.join(work, 'stalling-ssh.mjs');
  fs.writeFileSync(
    script,
    `import { spawn } from 'node:child_process';
const limit = ${bytes};
const child = spawn('ssh', process.argv.slice(2), { stdio: ['pipe', 'inherit', 'inherit'] });
let sent = 0;
process.stdin.on('data', (d) => {
  const room = limit - sent;
  if (room <= 0) return;
  const part = d.length <= room ? d : d.subarray(0, room);
  child.stdin.write(part);
  sent += part.length;
});
child.on('exit', (code) => process.exit(code ?? 1));
`,
  );
  return { ...daemon.gitEnv(admin.privateKey), GIT_SSH_COMMAND: [process.execPath, script, ...daemon.sshArgs(admin.privateKey)].join(' ') };
}

/**
 * A GIT_SSH_COMMAND that runs the real ssh and passes on everything git writes, but stops reading
 * what comes back after `bytes` bytes: a client that no longer reads the deploy's output.
 */
function deafSsh(daemon: Daemon, bytes: number): NodeJS.ProcessEnv {
  const script = path.join(work, 'deaf-ssh.mjs');
  fs.writeFileSync(
    script,
    `import { spawn } from 'node:child_process';
const child = spawn('ssh', process.argv.slice(2), { stdio: ['inherit', 'pipe', 'inherit'] });
let read = 0;
child.stdout.on('data', (d) => {
  read += d.length;
  process.stdout.write(d);
  if (read >= ${bytes}) child.stdout.pause();
});
child.on('exit', (code) => process.exit(code ?? 1));
`,
  );
  return { ...daemon.gitEnv(admin.privateKey), GIT_SSH_COMMAND: [process.execPath, script, ...daemon.sshArgs(admin.privateKey)].join(' ') };
}

function randomFile(bytes: number): string {
  return crypto.randomBytes(bytes).toString('base64');
}

describe('a push that stops sending, and the per-app disk quota', () => {
  const APP = 'stall';
  let daemon: Daemon;
  let repo: string;

  before(async () => {
    daemon = await startDaemon({ args: ['--push-timeout', '3', '--app-disk-quota', '8m'] });
    assert.equal(daemon.cli(['ssh-keys:add', 'push-admin', admin.publicKey]).code, 0);
    repo = path.join(work, APP);
    gitRepo(repo, { 'README.md': 'first\n' });
    const first = run('git', ['push', daemon.remote(APP), 'main:refs/heads/stored'], { cwd: repo, env: daemon.gitEnv(admin.privateKey) });
    assert.equal(first.code, 0, first.stderr);
  });

  after(async () => {
    daemon?.cli(['apps:destroy', APP, '--force']);
    await daemon?.stop();
  });

  test('a push that stops in the middle of its pack fails after --push-timeout with a message naming it, changes nothing, and the next push goes through at once', async (t) => {
    const before = repoSnapshot(daemon, APP);
    const commit = gitRepo(repo, { 'data.txt': randomFile(300_000) }, 'a pack of some size');
    const started = Date.now();
    const stalled = run('git', ['push', daemon.remote(APP), 'main:refs/heads/stored'], { cwd: repo, env: stallingSsh(daemon, 64 * 1024), timeoutMs: 120_000 });
    const ms = Date.now() - started;
    assert.notEqual(stalled.code, 0);
    t.diagnostic(stalled.stderr.trim());
    assert.match(stalled.stderr, /push refused: the client sent nothing for 3 s \(berth serve --push-timeout\); nothing was changed/);
    assert.ok(ms >= 2_500, `the stalled push failed after ${ms} ms, before the timeout`);
    assert.deepEqual(repoSnapshot(daemon, APP), before, 'no ref moved, no pack or temp pack kept');
    await waitFor('the failed push in the log', () => /"event":"git_receive_pack_failed".*the client sent nothing for 3 s/.test(daemon.logs()), 10_000);

    const next = run('git', ['push', daemon.remote(APP), 'main:refs/heads/stored'], { cwd: repo, env: daemon.gitEnv(admin.privateKey), timeoutMs: 120_000 });
    assert.equal(next.code, 0, next.stderr);
    assert.doesNotMatch(next.stderr, /Another push to stall is running/, 'the stalled push no longer holds the app');
    assert.match(repoSnapshot(daemon, APP).refs, new RegExp(`refs/heads/stored ${commit}`));
  });

  test('a push beyond the app\'s disk quota is refused as the pack streams, with a message naming --app-disk-quota, and changes nothing', (t) => {
    const before = repoSnapshot(daemon, APP);
    // base64 of random bytes deflates to about 3/4 of its size: a pack well over the 8 MiB quota.
    gitRepo(repo, { 'big.txt': randomFile(12 * 1024 * 1024) }, 'over the quota');
    const push = run('git', ['push', daemon.remote(APP), 'main:refs/heads/stored'], { cwd: repo, env: daemon.gitEnv(admin.privateKey), timeoutMs: 180_000 });
    assert.notEqual(push.code, 0);
    t.diagnostic(push.stderr.trim());
    assert.match(push.stderr, /push refused: this push's pack has reached [\d.]+ MiB, which with stall's repository \([\d.]+ KiB\) and build cache \(0 bytes\) goes over its quota of 8 MiB set by berth serve --app-disk-quota; nothing was changed/);
    assert.deepEqual(repoSnapshot(daemon, APP), before, 'no ref moved, no pack or temp pack kept');
  });

  test('the app\'s build cache counts toward its quota: with the cache over it, a push is refused up front and changes nothing', (t) => {
    const volume = `berth-cache.${daemon.instance}.${APP}`;
    mustRun('docker', ['volume', 'create', volume]);
    try {
      const mountpoint = mustRun('docker', ['volume', 'inspect', '-f', '{{.Mountpoint}}', volume]).trim();
      fs.writeFileSync(path.join(mountpoint, 'cache.bin'), Buffer.alloc(9 * 1024 * 1024));
      const before = repoSnapshot(daemon, APP);
      gitRepo(repo, { 'small.txt': 'small\n' }, 'small');
      const push = run('git', ['push', daemon.remote(APP), 'HEAD:refs/heads/small'], { cwd: repo, env: daemon.gitEnv(admin.privateKey), timeoutMs: 120_000 });
      assert.notEqual(push.code, 0);
      t.diagnostic(push.stderr.trim());
      assert.match(push.stderr, /push refused: stall uses [\d.]+ MiB \(repository [\d.]+ KiB, build cache 9 MiB\), at or over its quota of 8 MiB set by berth serve --app-disk-quota; nothing was changed/);
      assert.deepEqual(repoSnapshot(daemon, APP), before);
    } finally {
      mustRun('docker', ['volume', 'rm', '-f', volume]);
    }
  });
});

describe('a push whose client stops reading', () => {
  const APP = 'deaf';
  let daemon: Daemon;
  let stuck: ChildProcess | undefined;

  before(async () => {
    daemon = await startDaemon({ args: ['--push-timeout', '3'] });
    assert.equal(daemon.cli(['ssh-keys:add', 'push-admin', admin.publicKey]).code, 0);
  });

  after(async () => {
    // The deaf client never exits on its own: end its process group (git, the wrapper, ssh).
    if (stuck?.pid && stuck.exitCode === null) process.kill(-stuck.pid, 'SIGKILL');
    daemon?.cli(['apps:destroy', APP, '--force']);
    await daemon?.stop();
  });

  test('a client that stops reading the deploy\'s output is given up on after --push-timeout: the deploy finishes and the next push goes through', async () => {
    const repo = path.join(work, APP);
    // Megabytes of build output, far more than the SSH window and socket buffers hold.
    gitRepo(repo, nodeApp('deaf', { Dockerfile: `FROM ${BASE_IMAGE}\nRUN head -c 8000000 /dev/zero | tr '\\0' x | fold -w 100\nCOPY . /app\nCMD ["node", "/app/server.js"]\n` }));
    stuck = spawn('git', ['push', daemon.remote(APP), 'main'], { cwd: repo, env: deafSsh(daemon, 4096), stdio: 'ignore', detached: true });
    await waitFor('the server to give up on the client', () => daemon.logs().includes('"event":"git_client_not_reading"'), 180_000);
    await waitFor('the deploy to finish', () => /"event":"push_deployed","app":"deaf"/.test(daemon.logs()), 180_000);
    await waitFor('the push to end', () => /"event":"git_push_received","app":"deaf"/.test(daemon.logs()), 30_000);
    assert.equal((await request(daemon.httpPort, `${APP}.${daemon.domain}`)).body, 'deaf\n');
    assert.equal(stuck.exitCode, null, 'the client is still there, not reading');

    // A push that held the app would keep this one waiting past its time limit.
    const next = run('git', ['push', daemon.remote(APP), 'main:refs/heads/stored'], { cwd: repo, env: daemon.gitEnv(admin.privateKey), timeoutMs: 60_000 });
    assert.equal(next.code, 0, next.stderr);
  });
});

describe('a nearly full disk', () => {
  const APP = 'fullapp';
  let daemon: Daemon | undefined;
  let mount: string;
  let mounted = false;

  before(async () => {
    mount = tempDir('e2e-tmpfs');
    mustRun('mount', ['-t', 'tmpfs', '-o', 'size=64m,mode=0700', 'tmpfs', mount]);
    mounted = true;
    daemon = await startDaemon({ dataDir: mount, args: ['--min-free-disk', '24m'] });
    assert.equal(daemon.cli(['ssh-keys:add', 'push-admin', admin.publicKey]).code, 0);
  });

  after(async () => {
    daemon?.cli(['apps:destroy', APP, '--force']);
    await daemon?.stop();
    if (mounted) mustRun('umount', [mount]);
  });

  test('pushes are refused up front with a message naming --min-free-disk, changing nothing, while config:set, domains:add and ps:scale on the running app succeed', async (t) => {
    const d = daemon!;
    const repo = path.join(work, APP);
    gitRepo(repo, nodeApp('full'));
    const deploy = run('git', ['push', d.remote(APP), 'main'], { cwd: repo, env: d.gitEnv(admin.privateKey) });
    assert.equal(deploy.code, 0, deploy.stderr);
    assert.equal((await request(d.httpPort, `${APP}.${d.domain}`)).body, 'full\n');

    // Fill the file system to 16 MiB free, under the 24 MiB berth keeps.
    const stat = fs.statfsSync(mount);
    const filler = path.join(mount, 'filler');
    fs.writeFileSync(filler, Buffer.alloc(stat.bavail * stat.bsize - 16 * 1024 * 1024));
    const before = repoSnapshot(d, APP);
    gitRepo(repo, { 'more.txt': 'more\n' }, 'second');
    const refused = run('git', ['push', d.remote(APP), 'main'], { cwd: repo, env: d.gitEnv(admin.privateKey) });
    assert.notEqual(refused.code, 0);
    t.diagnostic(refused.stderr.trim());
    assert.match(refused.stderr, /push refused: the server's disk has 1[56](\.\d)? MiB free, under the 24 MiB berth keeps free \(berth serve --min-free-disk\); nothing was changed/);
    const newApp = run('git', ['push', d.remote('fullnew'), 'main'], { cwd: repo, env: d.gitEnv(admin.privateKey) });
    assert.notEqual(newApp.code, 0);
    assert.match(newApp.stderr, /--min-free-disk/);
    assert.equal(fs.existsSync(path.join(mount, 'repos', 'fullnew.git')), false, 'a refused push creates no app');
    assert.deepEqual(repoSnapshot(d, APP), before);

    const config = d.ssh(admin.privateKey, `config:set ${APP} GREETING=still-writable`);
    assert.equal(config.code, 0, config.stderr);
    const domain = d.ssh(admin.privateKey, `domains:add ${APP} full.example.test`);
    assert.equal(domain.code, 0, domain.stderr);
    const scale = d.ssh(admin.privateKey, `ps:scale ${APP} web=2`);
    assert.equal(scale.code, 0, scale.stderr);
    assert.match(d.ssh(admin.privateKey, `config:get ${APP} GREETING`).stdout, /still-writable/);
    assert.equal((await request(d.httpPort, `${APP}.${d.domain}`)).body, 'full\n');

    // With the space back, the same push goes through.
    fs.rmSync(filler);
    const again = run('git', ['push', d.remote(APP), 'main'], { cwd: repo, env: d.gitEnv(admin.privateKey) });
    assert.equal(again.code, 0, again.stderr);
  });
});
