// What the SSH server refuses, with the real OpenSSH and git clients against the real binary:
// subsystems, port forwarding both ways, agent forwarding, and clones or fetches (berth serves
// pushes only). Each refusal reaches the client and is logged with the key's name.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { gitRepo, makeKey, run, startDaemon, tempDir, waitFor, type Daemon } from './helpers/daemon.ts';

let daemon: Daemon;
const work = tempDir('e2e-hardening');
let admin: { privateKey: string; publicKey: string };

before(async () => {
  daemon = await startDaemon();
  admin = makeKey(work, 'hardening-admin');
  assert.equal(daemon.cli(['ssh-keys:add', 'hardening-admin', admin.publicKey]).code, 0);
});

after(async () => {
  await daemon.stop();
});

async function expectRefusal(request: string): Promise<void> {
  await waitFor(`the refused ${request} in the log`, () =>
    daemon
      .logs()
      .split('\n')
      .some((l) => l.includes('"event":"ssh_request_refused"') && l.includes(`"request":"${request}"`) && l.includes('"key":"hardening-admin"')),
  5_000);
}

function ssh(args: string[], env: NodeJS.ProcessEnv = process.env) {
  return run('ssh', [...daemon.sshArgs(admin.privateKey), ...args], { env, timeoutMs: 30_000 });
}

test('a subsystem such as sftp is refused', async () => {
  const r = ssh(['-s', 'berth@127.0.0.1', 'sftp']);
  assert.equal(r.code, 255);
  assert.match(r.stderr, /subsystem request failed/);
  await expectRefusal('subsystem');
});

test('local and remote port forwarding are refused', async () => {
  const local = ssh(['-W', `127.0.0.1:${daemon.httpPort}`, 'berth@127.0.0.1']);
  assert.equal(local.code, 255);
  assert.match(local.stderr, /stdio forwarding failed|administratively prohibited|open failed/);
  await expectRefusal('port forwarding');
  const remote = ssh(['-N', '-o', 'ExitOnForwardFailure=yes', '-R', '0:127.0.0.1:9', 'berth@127.0.0.1']);
  assert.equal(remote.code, 255);
  assert.match(remote.stderr, /remote port forwarding failed/);
  await expectRefusal('remote port forwarding');
});

test('agent forwarding is refused while the command itself runs', async () => {
  const socket = path.join(work, 'agent.sock');
  const agent = spawnSync('ssh-agent', ['-a', socket], { encoding: 'utf8' });
  assert.equal(agent.status, 0, agent.stderr);
  const pid = Number(/SSH_AGENT_PID=(\d+)/.exec(agent.stdout)?.[1]);
  try {
    const r = ssh(['-A', 'berth@127.0.0.1', 'apps:list'], { ...process.env, SSH_AUTH_SOCK: socket });
    assert.equal(r.code, 0, r.stderr);
    await expectRefusal('agent forwarding');
  } finally {
    if (pid) process.kill(pid, 'SIGTERM');
  }
});

test('a clone or fetch is refused with a message that says berth receives pushes only', async () => {
  const repo = path.join(work, 'clone-me');
  gitRepo(repo, { 'README.md': 'x\n' });
  const env = daemon.gitEnv(admin.privateKey);
  assert.equal(run('git', ['push', daemon.remote('hardening-clone'), 'main:refs/heads/stored'], { cwd: repo, env }).code, 0);
  const clone = run('git', ['clone', daemon.remote('hardening-clone'), path.join(work, 'cloned')], { env });
  assert.notEqual(clone.code, 0);
  assert.match(clone.stderr, /berth does not serve clones or fetches of hardening-clone; it receives pushes only/);
  const fetch = run('git', ['fetch', daemon.remote('hardening-clone')], { cwd: repo, env });
  assert.notEqual(fetch.code, 0);
  assert.match(fetch.stderr, /it receives pushes only/);
  assert.equal(fs.existsSync(path.join(work, 'cloned', '.git')), false);
  await waitFor('the refused fetch in the log', () => daemon.logs().includes('"event":"fetch_refused"') && /"event":"fetch_refused","key":"hardening-admin"/.test(daemon.logs()), 5_000);
  daemon.cli(['apps:destroy', 'hardening-clone', '--force']);
});
