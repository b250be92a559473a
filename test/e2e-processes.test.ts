// berth's own processes on real parts: dist/berth serve runs a supervisor with a proxy and a
// control plane as children; `berth status` shows them; killing either under load (wrk, or new
// connections in a loop through the proxy) fails no request that was not on the killed process's
// own connections, and the supervisor brings it back; a push cut by the control plane's death
// leaves a repository that `git fsck` finds clean and a ref that is either the old or the new one.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { holdSockets } from '../src/daemon/listen-sockets.ts';
import { BINARY, gitRepo, makeKey, mustRun, parseStatus, request, run, startDaemon, tempDir, waitFor, type Daemon, type StatusLine } from './helpers/daemon.ts';
import { runAsync, sleep, startWrk, zeroDowntimeApp } from './helpers/zero-downtime.ts';

const APP = 'procs';
let daemon: Daemon;
let key: { privateKey: string; publicKey: string };
let host: string;
const work = tempDir('e2e-processes');
const repo = path.join(work, APP);

/** `berth status` through the local CLI, parsed. */
function status(): StatusLine[] {
  const r = daemon.cli(['status']);
  assert.equal(r.code, 0, r.stderr);
  return parseStatus(r.stdout);
}

function pidOf(role: string): number {
  const line = status().find((l) => l.role === role);
  assert.ok(line, `berth status shows the ${role}`);
  return line.pid;
}

/** Waits until the supervisor has a ready `role` whose pid is not `old`. */
async function restarted(role: string, old: number): Promise<number> {
  let pid = 0;
  await waitFor(`a new ${role} process`, () => {
    const line = parseStatusSafe().find((l) => l.role === role);
    pid = line?.pid ?? 0;
    return pid !== 0 && pid !== old;
  });
  return pid;
}

function parseStatusSafe(): StatusLine[] {
  const r = daemon.cli(['status']);
  return r.code === 0 ? parseStatus(r.stdout) : [];
}

before(async () => {
  daemon = await startDaemon();
  host = `${APP}.${daemon.domain}`;
  key = makeKey(work, 'admin');
  assert.equal(daemon.cli(['ssh-keys:add', 'admin', key.publicKey]).code, 0);
  gitRepo(repo, zeroDowntimeApp({ message: 'v1' }));
  const first = await runAsync('git', ['push', daemon.remote(APP), 'main'], { cwd: repo, env: daemon.gitEnv(key.privateKey) });
  assert.equal(first.code, 0, first.stderr);
});

after(async () => {
  daemon.cli(['apps:destroy', APP, '--force']);
  await daemon.stop();
});

test('berth status shows the supervisor, the proxy and the control plane with pid, version, uptime and memory, locally and over SSH; ps shows each as `berth ROLE`', () => {
  const lines = status();
  assert.deepEqual(lines.map((l) => l.role), ['supervisor', 'proxy', 'control']);
  assert.equal(lines[0]!.pid, daemon.process.pid, 'the supervisor is the process that was started');
  const version = daemon.cli(['--version']).stdout.split(' ')[1];
  for (const line of lines) {
    assert.equal(line.version, version);
    assert.equal(fs.readFileSync(`/proc/${line.pid}/cmdline`, 'utf8').split('\0')[0], `berth ${line.role}`);
  }
  const overSsh = daemon.ssh(key.privateKey, 'status');
  assert.equal(overSsh.code, 0, overSsh.stderr);
  assert.deepEqual(parseStatus(overSsh.stdout).map((l) => l.pid), lines.map((l) => l.pid));
});

test('a key scoped to an app may not run status', () => {
  const scoped = makeKey(work, 'scoped');
  assert.equal(daemon.cli(['ssh-keys:add', 'scoped', scoped.publicKey, '--apps', APP]).code, 0);
  const r = daemon.ssh(scoped.privateKey, 'status');
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /may not run status/);
});

test('SIGKILL of the control plane under load fails no request through the proxy, and the supervisor brings it back', async () => {
  const wrk = startWrk(daemon.httpPort, host, { connections: 8, threads: 2 });
  await sleep(500);
  const old = pidOf('control');
  process.kill(old, 'SIGKILL');
  // A command run while the control plane is down waits for the new one (it does not act on the state on disk).
  const during = daemon.cli(['status']);
  assert.equal(during.code, 0, during.stderr);
  assert.notEqual(parseStatus(during.stdout).find((l) => l.role === 'control')?.pid, old);
  const pid = await restarted('control', old);
  await sleep(500);
  const result = await wrk.stop();
  assert.ok(result.requests > 0, result.output);
  assert.equal(result.non2xx, 0, result.output);
  assert.deepEqual(result.socketErrors, { connect: 0, read: 0, write: 0, timeout: 0 }, result.output);
  // The new control plane answers commands over SSH and deploys.
  assert.notEqual(pid, old);
  const ps = daemon.ssh(key.privateKey, `ps:report ${APP}`);
  assert.equal(ps.code, 0, ps.stderr);
  const restart = await runAsync('ssh', [...daemon.sshArgs(key.privateKey), 'berth@127.0.0.1', `ps:restart ${APP}`]);
  assert.equal(restart.code, 0, restart.stderr);
  assert.equal((await request(daemon.httpPort, host)).status, 200);
});

test('SIGKILL of the proxy refuses no new connection: they wait in the backlog, and the new proxy answers them within 1 s, with the routes the control plane sends it again', async () => {
  const records: Array<{ ok: boolean; error?: string; startedAt: number; endedAt: number }> = [];
  let running = true;
  const one = () =>
    new Promise<void>((resolve) => {
      const startedAt = Date.now();
      const req = http.request({ host: '127.0.0.1', port: daemon.httpPort, path: '/', headers: { host }, agent: false }, (res) => {
        res.resume();
        res.on('end', () => {
          records.push({ ok: res.statusCode === 200, startedAt, endedAt: Date.now(), ...(res.statusCode === 200 ? {} : { error: `status ${res.statusCode}` }) });
          resolve();
        });
      });
      req.on('error', (e: NodeJS.ErrnoException) => {
        records.push({ ok: false, error: e.code ?? e.message, startedAt, endedAt: Date.now() });
        resolve();
      });
      req.setTimeout(10_000, () => req.destroy(new Error('no answer within 10 s')));
      req.end();
    });
  const CONCURRENCY = 4;
  const loops = Array.from({ length: CONCURRENCY }, async () => {
    while (running) await one();
  });
  await sleep(500);
  const old = pidOf('proxy');
  const killedAt = Date.now();
  process.kill(old, 'SIGKILL');
  await restarted('proxy', old);
  await sleep(500);
  running = false;
  await Promise.all(loops);
  const failed = records.filter((r) => !r.ok);
  assert.ok(!failed.some((r) => r.error === 'ECONNREFUSED'), `no connection refused: ${JSON.stringify(failed)}`);
  // Only the connections the killed proxy had open may fail: at most one per loop.
  assert.ok(failed.length <= CONCURRENCY, `at most ${CONCURRENCY} failures (the killed proxy's own connections): ${JSON.stringify(failed)}`);
  assert.ok(failed.every((r) => r.startedAt <= killedAt), `only requests sent before the kill fail: ${JSON.stringify(failed)}`);
  const firstAfter = records.filter((r) => r.ok && r.startedAt >= killedAt).sort((a, b) => a.endedAt - b.endedAt)[0];
  assert.ok(firstAfter, 'requests sent after the kill are answered');
  // A stall check: the connections queued while no proxy ran are answered within 1 s.
  const waited = records.filter((r) => r.ok && r.startedAt >= killedAt).map((r) => r.endedAt - r.startedAt);
  assert.ok(Math.max(...waited) < 1000, `no request after the kill waited 1 s or more (longest ${Math.max(...waited)} ms)`);
});

test('a push cut by SIGKILL of the control plane fails on the client with an error, and leaves git fsck clean and the ref old or new, never half-updated', async () => {
  const before = mustRun('git', ['rev-parse', 'HEAD'], { cwd: repo }).trim();
  // A commit large enough that its pack is still arriving when the control plane dies.
  fs.writeFileSync(path.join(repo, 'blob.bin'), randomBytes(48 * 1024 * 1024));
  const next = gitRepo(repo, { 'server.js': fs.readFileSync(path.join(repo, 'server.js'), 'utf8') + '\n// v2\n' }, 'v2 with a large file');
  const pushing = runAsync('git', ['push', daemon.remote(APP), 'main'], { cwd: repo, env: daemon.gitEnv(key.privateKey) });
  const old = pidOf('control');
  await sleep(300);
  process.kill(old, 'SIGKILL');
  const pushed = await pushing;
  assert.notEqual(pushed.code, 0, `the push fails:\n${pushed.stderr}`);
  assert.match(pushed.stderr, /hung up|unexpected disconnect|closed by remote host|Connection closed/i);
  await restarted('control', old);
  const bare = path.join(daemon.dataDir, 'repos', `${APP}.git`);
  const fsck = run('git', ['fsck', '--full', '--strict'], { cwd: bare });
  assert.equal(fsck.code, 0, `git fsck is clean:\n${fsck.stdout}\n${fsck.stderr}`);
  const ref = mustRun('git', ['rev-parse', 'refs/heads/main'], { cwd: bare }).trim();
  assert.ok(ref === before || ref === next, `main is the old (${before}) or the new (${next}) commit, not ${ref}`);
  // The proxy kept serving throughout, and the next push works.
  assert.equal((await request(daemon.httpPort, host)).status, 200);
  const again = await runAsync('git', ['push', daemon.remote(APP), 'main'], { cwd: repo, env: daemon.gitEnv(key.privateKey) });
  assert.equal(again.code, 0, again.stderr);
});

test('under systemd socket activation, berth serve serves the sockets it was given, found by their names, instead of binding its own', async () => {
  const held = await holdSockets({ http: 0, https: 0, ssh: 0 }, '127.0.0.1', {});
  const dataDir = tempDir('socket-activation');
  // As systemd does: the sockets from fd 3 (here in another order than berth's), LISTEN_PID the server's own pid.
  const child = spawn('sh', ['-c', 'export LISTEN_PID=$$; exec "$0" "$@"', BINARY, 'serve', '--data-dir', dataDir, '--bind', '127.0.0.1', '--domain', 'berth.test', '--network', 'berth-test', '--metrics-listen', 'off'], {
    stdio: ['ignore', 'pipe', 'pipe', held.ssh.handle, held.http.handle, held.https.handle] as never,
    env: { ...process.env, LISTEN_FDS: '3', LISTEN_FDNAMES: 'ssh:http:https' },
  });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  try {
    await waitFor('berth_started', () => output.includes('"berth_started"'), 60_000);
    const started = JSON.parse(output.split('\n').find((l) => l.includes('"berth_started"'))!) as { httpPort: number; httpsPort: number; sshPort: number };
    assert.deepEqual([started.httpPort, started.httpsPort, started.sshPort], [held.http.port, held.https.port, held.ssh.port]);
    const page = await request(held.http.port, 'nothing.berth.test');
    assert.equal(page.status, 404);
    const banner = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(held.ssh.port, '127.0.0.1');
      socket.once('data', (d: Buffer) => {
        socket.destroy();
        resolve(d.toString());
      });
      socket.once('error', reject);
    });
    assert.match(banner, /^SSH-2\.0-berth_/);
  } finally {
    child.kill('SIGTERM');
    await exited;
    for (const socket of Object.values(held)) socket.close();
  }
});
