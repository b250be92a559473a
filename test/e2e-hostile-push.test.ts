// End to end on real parts: hostile packs written byte by byte in the test (a delta bomb, a delta
// chain deeper than the cap, a zlib bomb) pushed by the real git over the real OpenSSH client with
// a key scoped to one app. Each is refused by a cap with a message naming its flag, leaves the
// app's repository as it was (no ref, no pack, `git fsck` clean), and while it is pushed no
// request through the proxy to another app waits over a second (a stall check, not a speed figure).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { deltaBombPack, deltaChainPack, hostileClientRepo, zlibBombPack } from './helpers/hostile-packs.ts';
import { gitRepo, makeKey, mustRun, nodeApp, request, run, startDaemon, tempDir, type Daemon, type RunResult } from './helpers/daemon.ts';

let daemon: Daemon;
let admin: { privateKey: string; publicKey: string };
let mallory: { privateKey: string; publicKey: string };
const work = tempDir('e2e-hostile');
const APP = 'hostile';
const NEIGHBOUR = 'steady';

before(async () => {
  daemon = await startDaemon();
  admin = makeKey(work, 'admin');
  mallory = makeKey(work, 'mallory');
  assert.equal(daemon.cli(['ssh-keys:add', 'admin', admin.publicKey]).code, 0);
  const scoped = daemon.cli(['ssh-keys:add', 'mallory', mallory.publicKey, '--apps', APP]);
  assert.equal(scoped.code, 0, scoped.stderr);
  const repo = path.join(work, NEIGHBOUR);
  gitRepo(repo, nodeApp('steady'));
  const push = run('git', ['push', daemon.remote(NEIGHBOUR), 'main'], { cwd: repo, env: daemon.gitEnv(admin.privateKey) });
  assert.equal(push.code, 0, push.stderr);
  assert.equal((await request(daemon.httpPort, `${NEIGHBOUR}.${daemon.domain}`)).body, 'steady\n');
});

after(async () => {
  for (const app of [NEIGHBOUR, APP]) daemon?.cli(['apps:destroy', app, '--force']);
  await daemon?.stop();
  if (daemon) fs.rmSync(daemon.dataDir, { recursive: true, force: true });
  fs.rmSync(work, { recursive: true, force: true });
});

/** The real git push, run without blocking this process, so requests can run beside it. */
function pushAsync(dir: string, gitArgs: string[] = [], refspec = 'main'): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('git', [...gitArgs, 'push', daemon.remote(APP), refspec], { cwd: dir, env: daemon.gitEnv(mallory.privateKey), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** Pushes while a loop of requests to the neighbour app runs; returns the push and the slowest request. */
async function pushWhileServing(dir: string, gitArgs: string[] = [], refspec = 'main'): Promise<{ push: RunResult; slowestMs: number; requests: number; statuses: Set<number> }> {
  let stop = false;
  let slowestMs = 0;
  let requests = 0;
  const statuses = new Set<number>();
  const loop = (async () => {
    while (!stop) {
      const started = performance.now();
      const res = await request(daemon.httpPort, `${NEIGHBOUR}.${daemon.domain}`);
      slowestMs = Math.max(slowestMs, performance.now() - started);
      statuses.add(res.status);
      requests++;
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  try {
    const push = await pushAsync(dir, gitArgs, refspec);
    return { push, slowestMs, requests, statuses };
  } finally {
    stop = true;
    await loop;
  }
}

/** The app's repository in the data dir holds no ref and no pack, and git finds nothing wrong in it. */
function assertUntouched(): void {
  const gitdir = path.join(daemon.dataDir, 'repos', `${APP}.git`);
  assert.equal(mustRun('git', ['--git-dir', gitdir, 'for-each-ref']).trim(), '');
  assert.deepEqual(fs.readdirSync(path.join(gitdir, 'objects', 'pack')), []);
  mustRun('git', ['--git-dir', gitdir, 'fsck', '--strict', '--no-dangling']);
}

function check(name: string, result: Awaited<ReturnType<typeof pushWhileServing>>, flag: RegExp): void {
  const { push, slowestMs, requests, statuses } = result;
  assert.notEqual(push.code, 0, `${name} was refused`);
  assert.match(push.stderr, /push refused: /);
  assert.match(push.stderr, flag);
  assertUntouched();
  assert.deepEqual([...statuses], [200]);
  assert.ok(requests > 0);
  assert.ok(slowestMs < 1000, `the slowest request to ${NEIGHBOUR} during the push took ${Math.round(slowestMs)} ms`);
  process.stdout.write(`# ${name}: ${requests} requests to ${NEIGHBOUR} during the push, slowest ${Math.round(slowestMs)} ms\n`);
}

test('a delta bomb (four deltas declaring 1 GiB each, in a pack of under 1 KiB) is refused by --max-object-size, and the proxy never stalls', async () => {
  const bomb = deltaBombPack(4, 1024 ** 3);
  const r = await pushWhileServing(hostileClientRepo(work, 'delta-bomb', bomb));
  check('delta bomb', r, /the delta at offset \d+ declares a result of 1 GiB, over the cap of 256 MiB set by berth serve --max-object-size/);
});

test('a delta chain deeper than the cap is refused by --max-delta-depth, and the proxy never stalls', async () => {
  const chain = deltaChainPack(1500);
  const r = await pushWhileServing(hostileClientRepo(work, 'delta-chain', chain), ['-c', 'pack.depth=4095']);
  check('delta chain', r, /is 1001 deltas away from a whole object, over the cap of 1000 set by berth serve --max-delta-depth/);
});

test('a zlib bomb (a blob declaring 4 GiB) is refused by --max-object-size, and the proxy never stalls', async () => {
  const r = await pushWhileServing(hostileClientRepo(work, 'zlib-bomb', zlibBombPack(4 * 1024 ** 3)));
  check('zlib bomb', r, /the blob at offset \d+ inflates to 4 GiB, over the cap of 256 MiB set by berth serve --max-object-size/);
});

test('deltas under every cap (eight results of 128 MiB from a pack of under 1 KiB) are resolved off the main thread, and the pack goes with its branch', async () => {
  const heavy = deltaBombPack(8, 128 * 1024 ** 2, { realIds: true });
  const dir = hostileClientRepo(work, 'heavy', heavy);
  const r = await pushWhileServing(dir, [], 'main:refs/heads/heavy');
  assert.equal(r.push.code, 0, r.push.stderr);
  assert.match(r.push.stderr, /refs\/heads\/heavy stored; only main or master is deployed/);
  assert.deepEqual([...r.statuses], [200]);
  assert.ok(r.slowestMs < 1000, `the slowest request to ${NEIGHBOUR} during the push took ${Math.round(r.slowestMs)} ms`);
  process.stdout.write(`# deltas under the caps: ${r.requests} requests to ${NEIGHBOUR} during the push, slowest ${Math.round(r.slowestMs)} ms\n`);
  const gitdir = path.join(daemon.dataDir, 'repos', `${APP}.git`);
  mustRun('git', ['--git-dir', gitdir, 'fsck', '--strict', '--no-dangling']);
  assert.equal(fs.readdirSync(path.join(gitdir, 'objects', 'pack')).filter((n) => n.endsWith('.pack')).length, 1);

  const deleted = run('git', ['push', daemon.remote(APP), ':refs/heads/heavy'], { cwd: dir, env: daemon.gitEnv(mallory.privateKey) });
  assert.equal(deleted.code, 0, deleted.stderr);
  assertUntouched();
});

test('after the refusals the scoped key still pushes a real app, and the neighbour kept serving', async () => {
  const repo = path.join(work, 'honest');
  gitRepo(repo, nodeApp('hostile app, honest push'));
  const push = run('git', ['push', daemon.remote(APP), 'main'], { cwd: repo, env: daemon.gitEnv(mallory.privateKey) });
  assert.equal(push.code, 0, push.stderr);
  assert.equal((await request(daemon.httpPort, `${APP}.${daemon.domain}`)).body, 'hostile app, honest push\n');
  assert.equal((await request(daemon.httpPort, `${NEIGHBOUR}.${daemon.domain}`)).body, 'steady\n');
  mustRun('git', ['--git-dir', path.join(daemon.dataDir, 'repos', `${APP}.git`), 'fsck', '--strict']);
});

/** The daemon's resident memory, in bytes. */
function daemonRss(): number {
  const status = fs.readFileSync(`/proc/${daemon.process.pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)![1]) * 1024;
}

test('a client that stops reading `run` output holds the container back: the daemon does not buffer the output', async () => {
  const total = 300 * 1024 * 1024;
  const client = spawn('ssh', [...daemon.sshArgs(admin.privateKey), 'berth@127.0.0.1', `run ${NEIGHBOUR} 'head -c ${total} /dev/zero'`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let received = 0;
  let stopped = false;
  const reachedTenMb = new Promise<void>((resolve) => {
    client.stdout.on('data', (d: Buffer) => {
      received += d.length;
      if (received >= 10_000_000 && !stopped) resolve();
    });
  });
  const exited = new Promise<number>((resolve) => client.once('close', (code) => resolve(code ?? -1)));
  await reachedTenMb;
  // The client stops reading (as a stalled terminal or network would): the SSH window fills.
  client.kill('SIGSTOP');
  stopped = true;
  await new Promise((r) => setTimeout(r, 1000));
  const before = daemonRss();
  await new Promise((r) => setTimeout(r, 3000));
  const grown = daemonRss() - before;
  client.kill('SIGCONT');
  assert.equal(await exited, 0);
  assert.equal(received, total, 'every byte arrived once the client read again');
  assert.ok(grown < 32 * 1024 ** 2, `the daemon grew by ${Math.round(grown / 1024 ** 2)} MB while the client did not read`);
  process.stdout.write(`# run output: the daemon grew by ${Math.round(grown / 1024 ** 2)} MB in 3 s of a stopped client\n`);
});

test('`run` input a container does not read is held back at the client, not buffered in the daemon', async () => {
  const total = 300 * 1024 * 1024;
  const client = spawn('ssh', [...daemon.sshArgs(admin.privateKey), 'berth@127.0.0.1', `run ${NEIGHBOUR} 'sleep 8; wc -c'`], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  client.stdout.on('data', (d: Buffer) => (out += d.toString()));
  client.stdin.on('error', () => undefined);
  const exited = new Promise<number>((resolve) => client.once('close', (code) => resolve(code ?? -1)));
  const feeding = (async () => {
    const chunk = Buffer.alloc(1 << 20);
    for (let sent = 0; sent < total; sent += chunk.length) {
      if (!client.stdin.write(chunk)) await new Promise((r) => client.stdin.once('drain', r));
    }
    client.stdin.end();
  })();
  await new Promise((r) => setTimeout(r, 1500));
  const before = daemonRss();
  await new Promise((r) => setTimeout(r, 5000));
  const grown = daemonRss() - before;
  await feeding;
  assert.equal(await exited, 0);
  assert.equal(out.trim(), String(total));
  assert.ok(grown < 32 * 1024 ** 2, `the daemon grew by ${Math.round(grown / 1024 ** 2)} MB while the container did not read`);
  process.stdout.write(`# run input: the daemon grew by ${Math.round(grown / 1024 ** 2)} MB in 5 s of a container not reading\n`);
});

test('the caps are berth serve flags: a daemon started with small ones refuses a plain push by objects, refs and pack size, naming each', async () => {
  const small = await startDaemon({ args: ['--max-push-objects', '3', '--max-push-refs', '2'] });
  const tiny = await startDaemon({ args: ['--max-pack-size', '4m'] });
  try {
    const key = makeKey(work, 'small-admin');
    for (const d of [small, tiny]) assert.equal(d.cli(['ssh-keys:add', 'admin', key.publicKey]).code, 0);
    const repo = path.join(work, 'plain');
    gitRepo(repo, { 'a.txt': 'a\n', 'b.txt': 'b\n', 'c.txt': 'c\n' });
    const objects = run('git', ['push', small.remote('plain'), 'main'], { cwd: repo, env: small.gitEnv(key.privateKey) });
    assert.notEqual(objects.code, 0);
    assert.match(objects.stderr, /push refused: the pack holds 5 objects, over the cap of 3 set by berth serve --max-push-objects/);
    const refs = run('git', ['push', small.remote('plain'), 'main:a', 'main:b', 'main:c'], { cwd: repo, env: small.gitEnv(key.privateKey) });
    assert.notEqual(refs.code, 0);
    assert.match(refs.stderr, /push refused: the push updates more than 2 refs, over the cap of 2 set by berth serve --max-push-refs/);

    fs.writeFileSync(path.join(repo, 'noise.bin'), crypto.randomBytes(6 * 1024 * 1024));
    mustRun('git', ['add', 'noise.bin'], { cwd: repo });
    mustRun('git', ['commit', '-qm', 'noise'], { cwd: repo });
    const big = run('git', ['push', tiny.remote('plain'), 'main'], { cwd: repo, env: tiny.gitEnv(key.privateKey) });
    assert.notEqual(big.code, 0);
    assert.match(big.stderr, /push refused: the pack has reached [\d.]+ MiB, over the cap of 4 MiB set by berth serve --max-pack-size/);
    for (const d of [small, tiny]) {
      const gitdir = path.join(d.dataDir, 'repos', 'plain.git');
      assert.equal(mustRun('git', ['--git-dir', gitdir, 'for-each-ref']).trim(), '');
      assert.deepEqual(fs.readdirSync(path.join(gitdir, 'objects', 'pack')), []);
    }
  } finally {
    for (const d of [small, tiny]) {
      d.cli(['apps:destroy', 'plain', '--force']);
      await d.stop();
      fs.rmSync(d.dataDir, { recursive: true, force: true });
    }
  }
});

test('certs:add reads at most 64 KiB of standard input over SSH, and says so', () => {
  const r = daemon.ssh(admin.privateKey, `certs:add ${NEIGHBOUR} -`, '-----BEGIN CERTIFICATE-----\n'.repeat(4000));
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /the certificate and key on standard input: more than 64 KiB, the most accepted/);
  assert.match(daemon.ssh(admin.privateKey, `certs:report ${NEIGHBOUR}`).stdout, /certificate:\s+none/);
});
