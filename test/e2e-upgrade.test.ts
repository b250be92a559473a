// `berth upgrade` on real parts, under wrk load through the proxy: a working new binary (a copy
// of dist/berth at another path) takes over with no request failed, a slow request and a running
// push finish, a WebSocket stays until the drain deadline; three broken binaries (scripts: one
// that exits, one that never gets ready, one that dies in the probation) change nothing.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { BINARY, gitRepo, makeKey, parseStatus, startDaemon, tempDir, waitFor, type Daemon, type StatusLine } from './helpers/daemon.ts';
import { openWebSocket, runAsync, sleep, startWrk, zeroDowntimeApp } from './helpers/zero-downtime.ts';

const APP = 'upg';
let daemon: Daemon;
let key: { privateKey: string; publicKey: string };
let host: string;
const work = tempDir('e2e-upgrade');
const repo = path.join(work, APP);

function status(): StatusLine[] {
  const r = daemon.cli(['status']);
  assert.equal(r.code, 0, r.stderr);
  return parseStatus(r.stdout);
}

/** The pid of the process serving in `role` (an old one an upgrade replaces shows as retiring until it exits). */
const pidOf = (lines: StatusLine[], role: string) => lines.find((l) => l.role === role && l.state === 'serving')!.pid;
const exeOf = (pid: number) => fs.readlinkSync(`/proc/${pid}/exe`);
const alive = (pid: number) => fs.existsSync(`/proc/${pid}`);

/** The pids whose open files include the socket listening on `port` (read from /proc). */
function listeners(port: number): Set<number> {
  const inodes = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    if (!fs.existsSync(table)) continue;
    for (const line of fs.readFileSync(table, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== '0A') continue;
      if (parseInt(f[1]!.split(':')[1]!, 16) === port) inodes.add(f[9]!);
    }
  }
  const pids = new Set<number>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let fds: string[];
    try {
      fds = fs.readdirSync(`/proc/${entry}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const target = fs.readlinkSync(`/proc/${entry}/fd/${fd}`);
        const m = /^socket:\[(\d+)\]$/.exec(target);
        if (m && inodes.has(m[1]!)) pids.add(Number(entry));
      } catch {
        // gone meanwhile
      }
    }
  }
  return pids;
}

/** An executable script in the test's folder. */
function script(name: string, body: string): string {
  const file = path.join(work, name);
  fs.writeFileSync(file, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return file;
}

const upgrade = (args: string[]) => runAsync(BINARY, ['--data-dir', daemon.dataDir, 'upgrade', ...args], { timeoutMs: 180_000 });

/** `berth upgrade` whose output can be read while it runs. */
function upgradeStreaming(args: string[]): { output: () => string; done: Promise<{ code: number | null; stdout: string; stderr: string }> } {
  const child = spawn(BINARY, ['--data-dir', daemon.dataDir, 'upgrade', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
  return { output: () => stdout, done };
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

test('three broken binaries (exits at start, never ready, dies in the probation) change nothing under load: no request fails, the old proxy keeps serving, berth upgrade exits 1 with their last log lines', async () => {
  const before = status();
  const wrk = startWrk(daemon.httpPort, host, { connections: 8, threads: 2 });
  await sleep(300);

  const exits = await upgrade(['--binary', script('exits', 'echo "berth-new: cannot load its configuration" >&2\nexit 1')]);
  assert.equal(exits.code, 1, exits.stdout + exits.stderr);
  assert.match(exits.stderr, /upgrade failed: the new proxy exited with 1 before it was ready; nothing changed/);
  assert.match(exits.stdout, /berth-new: cannot load its configuration/);

  const hangs = await upgrade(['--binary', script('hangs', 'echo "berth-new: waiting forever" >&2\nexec sleep 600'), '--ready-within', '2']);
  assert.equal(hangs.code, 1, hangs.stdout + hangs.stderr);
  assert.match(hangs.stderr, /the new proxy was not ready within 2 s; nothing changed/);
  assert.match(hangs.stdout, /berth-new: waiting forever/);

  // The real binary, killed 4 s after it started: ready, then dead within an 8 s probation.
  const dies = await upgrade(['--binary', script('dies', `echo "berth-new: about to die" >&2\n"${BINARY}" "$@" &\nsleep 4\nkill -9 $!\nexit 1`), '--probation', '8']);
  assert.equal(dies.code, 1, dies.stdout + dies.stderr);
  assert.match(dies.stderr, /died within the probation; the old binary's control plane was started again/);
  assert.match(dies.stdout, /berth-new: about to die/);

  await sleep(500);
  const result = await wrk.stop();
  assert.ok(result.requests > 0, result.output);
  assert.equal(result.non2xx, 0, result.output);
  assert.deepEqual(result.socketErrors, { connect: 0, read: 0, write: 0, timeout: 0 }, result.output);
  const after = status();
  assert.deepEqual(after.map((l) => l.role), ['supervisor', 'proxy', 'control']);
  assert.equal(pidOf(after, 'proxy'), pidOf(before, 'proxy'), 'the old proxy still serves');
  for (const line of after) assert.equal(exeOf(line.pid), BINARY, `the ${line.role} runs the old binary`);
  // Nothing of the broken binaries is left holding a socket.
  const supervisor = pidOf(after, 'supervisor');
  assert.deepEqual(listeners(daemon.httpPort), new Set([supervisor, pidOf(after, 'proxy')]));
  assert.deepEqual(listeners(daemon.sshPort), new Set([supervisor, pidOf(after, 'control')]));
  // The control plane that came back answers.
  const ps = daemon.ssh(key.privateKey, `ps:report ${APP}`);
  assert.equal(ps.code, 0, ps.stderr);
});

test('an admin key upgrades over SSH: the command prints each step and the outcome, and the new processes serve; a key scoped to an app may not', async () => {
  const newBinary = path.join(work, 'berth-over-ssh');
  fs.copyFileSync(BINARY, newBinary);
  fs.chmodSync(newBinary, 0o755);
  const scoped = makeKey(work, 'scoped');
  assert.equal(daemon.cli(['ssh-keys:add', 'scoped', scoped.publicKey, '--apps', APP]).code, 0);
  const refused = daemon.ssh(scoped.privateKey, `upgrade --binary ${newBinary}`);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /may not run upgrade/);
  const before = status();
  const r = await runAsync('ssh', [...daemon.sshArgs(key.privateKey), 'berth@127.0.0.1', `upgrade --binary ${newBinary} --probation 1`], { timeoutMs: 180_000 });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /-----> Starting the proxy of /);
  assert.match(r.stdout, /-----> The old control plane takes no new SSH connection or command/);
  assert.match(r.stdout, /-----> Done: upgraded to /);
  const after = status();
  for (const role of ['proxy', 'control']) {
    assert.notEqual(pidOf(after, role), pidOf(before, role));
    assert.equal(exeOf(pidOf(after, role)), newBinary);
  }
  await waitFor('the old control plane to exit', () => !alive(pidOf(before, 'control')), 10_000);
  assert.equal((await runAsync('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '-H', `Host: ${host}`, `http://127.0.0.1:${daemon.httpPort}/`])).stdout, '200');
});

test('berth upgrade under load: no request fails, a 2-second request and a running push finish, a WebSocket stays until the drain deadline and gets 1001, the new processes run the new binary and alone with the supervisor hold the sockets, the old ones exit', async () => {
  const newBinary = path.join(work, 'berth-new');
  fs.copyFileSync(BINARY, newBinary);
  fs.chmodSync(newBinary, 0o755);
  const before = status();
  const wrk = startWrk(daemon.httpPort, host, { connections: 8, threads: 2 });
  const { ws, messages, closed } = await openWebSocket(daemon.httpPort, host);
  ws.send('hello');
  await waitFor('the echo', () => messages.length === 1, 5000);
  // A push large enough to be running when the upgrade starts.
  fs.writeFileSync(path.join(repo, 'blob.bin'), randomBytes(32 * 1024 * 1024));
  gitRepo(repo, zeroDowntimeApp({ message: 'v2' }), 'v2 with a large file');
  const pushing = runAsync('git', ['push', daemon.remote(APP), 'main'], { cwd: repo, env: daemon.gitEnv(key.privateKey) });
  const slow = new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: daemon.httpPort, path: '/slow', headers: { host }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
  // A command running in the old control plane for a few seconds: the old one finishes it first.
  const oneOff = runAsync('ssh', [...daemon.sshArgs(key.privateKey), 'berth@127.0.0.1', `run ${APP} sleep 5`], { timeoutMs: 120_000 });
  await sleep(300);
  const upgrading = upgradeStreaming(['--binary', newBinary, '--probation', '1']);
  // A deploy asked while the old control plane finishes: the new one takes the connection, says
  // why it waits, and deploys once the old one has stopped, after the push's release.
  await waitFor('the new control plane to take SSH connections', () => /takes new SSH connections/.test(upgrading.output()), 60_000);
  const handedOver = runAsync('ssh', [...daemon.sshArgs(key.privateKey), 'berth@127.0.0.1', `config:set ${APP} HANDOVER=yes`], { timeoutMs: 180_000 });
  const upgraded = await upgrading.done;
  assert.equal(upgraded.code, 0, upgraded.stdout + upgraded.stderr);
  assert.match(upgraded.stdout, /Done: upgraded to /);
  assert.equal((await oneOff).code, 0, 'the command running in the old control plane finishes');
  const configured = await handedOver;
  assert.equal(configured.code, 0, configured.stdout + configured.stderr);
  assert.match(configured.stderr, /berth is being upgraded: this waits until the previous version has finished its running pushes and commands/);

  const pushed = await pushing;
  assert.equal(pushed.code, 0, `the push running across the upgrade succeeds:\n${pushed.stderr}`);
  const answer = await slow;
  assert.equal(answer.status, 200);
  assert.match(answer.body, /slow done/);
  const close = await closed;
  assert.equal(close.code, 1001, 'the WebSocket got a going-away close frame at the drain deadline');
  assert.equal(close.wasClean, true);
  await sleep(500);
  const result = await wrk.stop();
  assert.equal(result.non2xx, 0, result.output);
  assert.deepEqual(result.socketErrors, { connect: 0, read: 0, write: 0, timeout: 0 }, result.output);

  const after = status();
  assert.deepEqual(after.map((l) => l.role), ['supervisor', 'proxy', 'control']);
  assert.equal(pidOf(after, 'supervisor'), pidOf(before, 'supervisor'));
  for (const role of ['proxy', 'control']) {
    assert.notEqual(pidOf(after, role), pidOf(before, role));
    assert.equal(exeOf(pidOf(after, role)), newBinary, `the new ${role} runs the new binary`);
    assert.equal(alive(pidOf(before, role)), false, `the old ${role} exited`);
  }
  const supervisor = pidOf(after, 'supervisor');
  assert.deepEqual(listeners(daemon.httpPort), new Set([supervisor, pidOf(after, 'proxy')]));
  assert.deepEqual(listeners(daemon.httpsPort), new Set([supervisor, pidOf(after, 'proxy')]));
  assert.deepEqual(listeners(daemon.sshPort), new Set([supervisor, pidOf(after, 'control')]));
  const page = await runAsync('curl', ['-s', '-H', `Host: ${host}`, `http://127.0.0.1:${daemon.httpPort}/`]);
  assert.match(page.stdout, /^v2/);
  // The new control plane read what the old one wrote before it deployed: the push's release, then the config's.
  assert.equal(daemon.cli(['config:get', APP, 'HANDOVER']).stdout.trim(), 'yes');
  const releases = daemon.cli(['releases', APP]).stdout;
  const rows = releases.split('\n').filter((l) => /^v\d+/.test(l));
  assert.match(rows[0] ?? '', /^v3 \*.*HANDOVER/, releases);
  assert.match(rows[1] ?? '', /^v2 /, releases);
});
