// Errors on the real binary: a bug in a push shows the client the id the daemon log and the
// build log hold; a listener whose port or socket path is taken stops berth with a UserError
// that names it, never "this is a bug".
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { BINARY, gitRepo, makeKey, nodeApp, run, startDaemon, tempDir, waitFor, type Daemon } from './helpers/daemon.ts';

let daemon: Daemon;
const work = tempDir('e2e-errors');
let admin: { privateKey: string; publicKey: string };

before(async () => {
  daemon = await startDaemon({ dataDir: path.join(work, 'data') });
  admin = makeKey(work, 'admin');
  assert.equal(daemon.cli(['ssh-keys:add', 'admin', admin.publicKey]).code, 0);
});

after(async () => {
  daemon.cli(['apps:destroy', 'bug-id', '--force']);
  await daemon.stop();
  fs.rmSync(work, { recursive: true, force: true });
});

test('a push that fails on a bug shows the client the error id that the daemon log and the build log hold', async () => {
  assert.equal(daemon.cli(['apps:create', 'bug-id']).code, 0);
  // More CPUs than any machine has: berth lets the engine judge, and the engine refuses the
  // container, an error berth does not expect and reports as a bug.
  const limit = daemon.cli(['resource:limit', 'bug-id', '--cpu', '1024', '--no-restart']);
  assert.equal(limit.code, 0, limit.stderr);
  const repo = path.join(work, 'bug-id');
  gitRepo(repo, nodeApp('never served'));
  const push = run('git', ['push', daemon.remote('bug-id'), 'main'], { cwd: repo, env: daemon.gitEnv(admin.privateKey) });
  assert.notEqual(push.code, 0, push.stderr);
  const shown = /internal error \(id ([0-9a-f]{8})\)/.exec(push.stderr);
  assert.ok(shown, `the client sees an error id:\n${push.stderr}`);
  const id = shown[1]!;
  assert.match(push.stderr, /\[remote rejected\] main/);

  // spawnSync held this process: the daemon's log lines arrive now.
  await waitFor('the daemon to log the error', () => daemon.logs().includes(`"id":"${id}"`), 10_000);
  const logged = daemon
    .logs()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { event: string; id?: string; error?: { stack?: string } })
    .filter((e) => e.event === 'internal_error');
  assert.deepEqual(logged.map((e) => e.id), [id], 'the bug is logged once, under the id the client saw');
  assert.ok(logged[0]!.error?.stack, 'the log holds its stack');

  const buildLog = daemon.cli(['logs:failed', 'bug-id']);
  assert.equal(buildLog.code, 0, buildLog.stderr);
  assert.match(buildLog.stdout, new RegExp(`internal error \\(id ${id}\\)`), 'the build log shows the same id');
});

/** Runs `berth serve` on a fresh data dir with these flags until it exits (it must not start). */
function serveFails(dataDir: string, args: string[]): { code: number; stderr: string } {
  const r = run(BINARY, ['serve', '--data-dir', dataDir, '--bind', '127.0.0.1', '--http-port', '0', '--https-port', '0', '--ssh-port', '0', '--network', 'berth-test', '--metrics-listen', '127.0.0.1:0', ...args], { timeoutMs: 60_000 });
  return { code: r.code, stderr: r.stderr + r.stdout };
}

async function boundPort(): Promise<{ port: number; close: () => Promise<void> }> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as net.AddressInfo).port, close: () => new Promise((r) => server.close(() => r())) };
}

test('berth serve with its metrics address in use stops before it starts anything, naming the address and --metrics-listen', async () => {
  const taken = await boundPort();
  try {
    const r = serveFails(path.join(work, 'metrics-busy'), ['--metrics-listen', `127.0.0.1:${taken.port}`]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(` !     cannot listen on 127\\.0\\.0\\.1:${taken.port} \\(metrics\\): the port is already in use`));
    assert.match(r.stderr, /choose another with --metrics-listen \(or off\)/);
    assert.doesNotMatch(r.stderr, /internal error|this is a bug|proxy_started|control_started/);
  } finally {
    await taken.close();
  }
});

test('berth serve with an SSH port in use stops with a message that names the port', async () => {
  const taken = await boundPort();
  try {
    const r = serveFails(path.join(work, 'ssh-busy'), ['--ssh-port', String(taken.port)]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(` !     cannot listen on 127\\.0\\.0\\.1:${taken.port} \\(SSH\\): the port is already in use`));
    assert.match(r.stderr, /choose another with --ssh-port/);
    assert.doesNotMatch(r.stderr, /internal error|this is a bug/);
  } finally {
    await taken.close();
  }
});

test('berth serve with an HTTP port in use stops with a message that names the port', async () => {
  const taken = await boundPort();
  try {
    const r = serveFails(path.join(work, 'http-busy'), ['--http-port', String(taken.port)]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(` !     cannot listen on 127\\.0\\.0\\.1:${taken.port} \\(HTTP\\): the port is already in use`));
    assert.doesNotMatch(r.stderr, /internal error|this is a bug/);
  } finally {
    await taken.close();
  }
});

test('berth serve with an HTTPS port in use stops with a message that names the port', async () => {
  const taken = await boundPort();
  try {
    const r = serveFails(path.join(work, 'https-busy'), ['--https-port', String(taken.port)]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(` !     cannot listen on 127\\.0\\.0\\.1:${taken.port} \\(HTTPS\\): the port is already in use`));
    assert.match(r.stderr, /choose another with --https-port/);
    assert.doesNotMatch(r.stderr, /internal error|this is a bug/);
  } finally {
    await taken.close();
  }
});

test('berth serve whose control socket path another process listens on stops with a message that names the path, and leaves that socket alone', async () => {
  const dataDir = path.join(work, 'socket-busy');
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const socketPath = path.join(dataDir, 'berth.sock');
  const other = net.createServer((s) => s.end());
  await new Promise<void>((resolve) => other.listen(socketPath, resolve));
  try {
    const r = serveFails(dataDir, []);
    assert.equal(r.code, 1, r.stderr);
    assert.ok(r.stderr.includes(` !     cannot listen on ${socketPath} (control socket): the path is already in use`), r.stderr);
    assert.doesNotMatch(r.stderr, /internal error|this is a bug/);
    assert.ok(fs.existsSync(socketPath), "the other process's socket is still there");
  } finally {
    await new Promise((r) => other.close(r));
  }
});
