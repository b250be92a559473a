// The SSH server in-process with the real OpenSSH client: failed logins are limited per source
// address (127.0.0.1 is turned away while 127.0.0.2 still gets in), and logged.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AuthLimiter } from '../src/git/auth-limiter.ts';
import { generateUsableEd25519 } from '../src/git/host-key.ts';
import { KeyStore } from '../src/git/key-store.ts';
import { SshServer } from '../src/git/ssh-server.ts';
import { setLogSink } from '../src/log.ts';
import { makeKey, type RunResult } from './helpers/daemon.ts';

function runAsync(cmd: string, args: string[]): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: 20_000 });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

describe('failed SSH logins', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-ssh-server-'));
  const logged: Record<string, unknown>[] = [];
  let server: SshServer;
  let good: { privateKey: string; publicKey: string };
  let bad: { privateKey: string; publicKey: string };

  before(async () => {
    setLogSink((line) => logged.push(JSON.parse(line) as Record<string, unknown>));
    good = makeKey(dir, 'good');
    bad = makeKey(dir, 'bad');
    const keys = new KeyStore(path.join(dir, 'keys.json'));
    await keys.load();
    await keys.add('good', fs.readFileSync(good.publicKey, 'utf8'));
    const hostKey = generateUsableEd25519().private;
    server = new SshServer({
      port: 0,
      bindHost: '0.0.0.0',
      hostKey,
      keys,
      authLimits: { maxFailures: 3, windowMs: 60_000, blockMs: 60_000 },
      onExec: async ({ channel }) => {
        channel.write('welcome\n');
        return 0;
      },
    });
    await server.start();
  });

  after(async () => {
    await server.stop();
    setLogSink((line) => process.stderr.write(line + '\n'));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  // Asynchronous: the server runs in this very process, so a blocking spawn would starve it.
  const ssh = (key: string, from: string) =>
    runAsync('ssh', ['-i', key, '-o', 'IdentitiesOnly=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR', '-o', 'BatchMode=yes', '-b', from, '-p', String(server.port), 'berth@127.0.0.1', 'hello']);

  test('an address that fails too often is turned away, even with a good key, while other addresses get in', async () => {
    assert.equal((await ssh(good.privateKey, '127.0.0.1')).stdout, 'welcome\n', 'a good key gets in before any failure');
    for (let i = 0; i < 3; i++) {
      const r = await ssh(bad.privateKey, '127.0.0.1');
      assert.equal(r.code, 255);
      assert.match(r.stderr, /Permission denied \(publickey\)/);
    }
    const blocked = await ssh(good.privateKey, '127.0.0.1');
    assert.equal(blocked.code, 255, 'the good key is turned away from a blocked address');
    assert.doesNotMatch(blocked.stdout, /welcome/);
    const elsewhere = await ssh(good.privateKey, '127.0.0.2');
    assert.equal(elsewhere.code, 0, elsewhere.stderr);
    assert.equal(elsewhere.stdout, 'welcome\n');

    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(logged.filter((e) => e.event === 'ssh_auth_refused' && e.reason === 'unknown_key' && e.address === '127.0.0.1').length, 3);
    assert.ok(logged.some((e) => e.event === 'ssh_address_blocked' && e.address === '127.0.0.1'));
    assert.ok(logged.some((e) => e.event === 'ssh_connection_refused' && e.address === '127.0.0.1' && e.reason === 'too_many_failed_logins'));
  });
});

describe('AuthLimiter', () => {
  test('failures count within the window, block for the block time, and a success clears them', () => {
    let now = 0;
    const limiter = new AuthLimiter({ maxFailures: 2, windowMs: 1000, blockMs: 5000 }, () => now);
    assert.equal(limiter.recordFailure('a'), false);
    now = 1500; // the first failure left the window
    assert.equal(limiter.recordFailure('a'), false);
    assert.equal(limiter.blockedFor('a'), 0);
    now = 1600;
    assert.equal(limiter.recordFailure('a'), true, 'the second failure within a second blocks');
    assert.equal(limiter.blockedFor('a'), 5000);
    assert.equal(limiter.blockedFor('b'), 0);
    now = 6600;
    assert.equal(limiter.blockedFor('a'), 0, 'the block ends');
    limiter.recordFailure('c');
    limiter.recordSuccess('c');
    assert.equal(limiter.recordFailure('c'), false, 'a success cleared the earlier failure');
  });

  test('logins in progress are capped per address and in all, and each ended login frees its place', () => {
    const limiter = new AuthLimiter({ maxStartupsPerAddress: 2, maxStartups: 3 });
    assert.equal(limiter.startLogin('a'), undefined);
    assert.equal(limiter.startLogin('a'), undefined);
    assert.equal(limiter.startLogin('a'), 'address', 'a third from one address is over its cap');
    assert.equal(limiter.startLogin('b'), undefined);
    assert.equal(limiter.startLogin('c'), 'total', 'a fourth in all is over the total cap');
    limiter.loginEnded('a');
    assert.equal(limiter.startLogin('c'), undefined, 'an ended login frees a place in all');
    assert.equal(limiter.startLogin('a'), 'total');
    limiter.loginEnded('b');
    limiter.loginEnded('b'); // a second end of one login changes nothing
    assert.equal(limiter.startLogin('a'), undefined);
    assert.equal(limiter.startLogin('d'), 'total');
  });
});

describe('connections that never authenticate', () => {
  test('stop() closes them at once instead of waiting for their grace time', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-ssh-stop-'));
    try {
      const keys = new KeyStore(path.join(dir, 'keys.json'));
      await keys.load();
      const server = new SshServer({ port: 0, bindHost: '127.0.0.1', hostKey: generateUsableEd25519().private, keys, authLimits: { loginGraceMs: 60_000 }, onExec: async () => 0 });
      await server.start();
      const socket = net.connect({ host: '127.0.0.1', port: server.port });
      socket.on('error', () => undefined);
      socket.resume(); // read, so the server's close is seen
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
      const started = Date.now();
      await server.stop();
      await closed;
      assert.ok(Date.now() - started < 10_000, 'stop() waited for the grace time');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
