// --docker-host ssh://USER@HOST:PORT through a real OpenSSH server (this file's own sshd on
// 127.0.0.1, a temp host key and authorized key) and the real `docker system dial-stdio`, which
// reaches this machine's engine: the engine answers, host keys are checked against known_hosts
// (hashed entries too) before anything is sent, a wrong key and a missing docker CLI are refused
// clearly, and `dist/berth serve` deploys an app over it.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { dockerSshSettings, loadConfig } from '../src/config.ts';
import { UserError } from '../src/errors.ts';
import { DockerEngine } from '../src/orchestrator/docker-engine.ts';
import { knownKeys } from '../src/orchestrator/docker-ssh.ts';
import { DockerSwarm } from '../src/orchestrator/docker-swarm.ts';
import { gitRepo, makeKey, mustRun, nodeApp, request, run, startDaemon, tempDir, waitFor } from './helpers/daemon.ts';
import { freePort } from './helpers/loopback.ts';
import { startSshd, type Sshd } from './helpers/sshd.ts';

const work = tempDir('docker-ssh');
const client = makeKey(work, 'client');
const stranger = makeKey(work, 'stranger');
let sshd: Sshd;
let knownHosts = '';
const sshdLog = () => sshd.log();
let port = 0;
let noCliPort = 0;

async function expectUserError(promise: Promise<unknown>, code: string): Promise<UserError> {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof UserError, `a UserError, not ${(e as Error).stack}`);
    assert.equal(e.code, code, e.message);
    return e;
  }
  assert.fail(`expected a UserError ${code}`);
}

before(async () => {
  // The second port's sessions find no docker on their PATH: a machine without the docker CLI.
  sshd = await startSshd(work, { authorizedKey: client.publicKey, env: [{ PATH: '/nonexistent' }] });
  ({ port, knownHosts } = sshd);
  [noCliPort] = sshd.envPorts as [number];
});

after(async () => {
  await sshd?.stop();
});

test('known_hosts entries match plain, [host]:port, wildcard and hashed |1| names; @revoked is marked', () => {
  const target = { user: 'root', host: '127.0.0.1', port: 2200 };
  const text = fs.readFileSync(knownHosts, 'utf8');
  assert.equal(knownKeys(text, { ...target, port }).length, 1, 'the hashed entry of [127.0.0.1]:PORT');
  assert.equal(knownKeys(text, target).length, 0, 'another port is another host');
  const blob = Buffer.from('key').toString('base64');
  assert.equal(knownKeys(`[127.0.0.1]:2200,other ssh-ed25519 ${blob}\n`, target).length, 1);
  assert.equal(knownKeys(`127.0.0.* ssh-ed25519 ${blob}\n`, { ...target, port: 22 }).length, 1);
  assert.equal(knownKeys(`127.0.0.*,!127.0.0.1 ssh-ed25519 ${blob}\n`, { ...target, port: 22 }).length, 0);
  assert.deepEqual(knownKeys(`@revoked [127.0.0.1]:2200 ssh-ed25519 ${blob}\n`, target).map((k) => k.revoked), [true]);
});

test('the flags: files resolved, SSH_AUTH_SOCK read, a malformed ssh:// host refused at start', () => {
  const config = loadConfig(['--docker-host', 'ssh://deploy@manager:2222', '--docker-ssh-key', 'k', '--docker-ssh-known-hosts', 'kh'], {});
  assert.deepEqual(dockerSshSettings(config, { SSH_AUTH_SOCK: '/run/agent' }), { keyFile: path.resolve('k'), knownHostsFile: path.resolve('kh'), agentSocket: '/run/agent' });
  assert.deepEqual(dockerSshSettings(loadConfig([], {}), {}), { keyFile: undefined, knownHostsFile: undefined, agentSocket: undefined });
  assert.throws(() => loadConfig(['--docker-host', 'ssh://deploy@manager/path'], {}), /--docker-host: "ssh:\/\/deploy@manager\/path" is not ssh:\/\/USER@HOST\[:PORT\]/);
});

test('DockerEngine over ssh:// answers and lists the same containers as the local socket, many requests at once', async () => {
  const instance = `test-dockerssh-${process.pid}`;
  const remote = await DockerEngine.connect(`ssh://root@127.0.0.1:${port}`, instance, { keyFile: client.privateKey, knownHostsFile: knownHosts });
  const local = await DockerEngine.connect('/var/run/docker.sock', instance);
  // More at once than one SSH connection's sessions (OpenSSH allows 10): the agent opens another.
  const before = new Set((await local.containersNamed('')).map((c) => c.id));
  const lists = await Promise.all(Array.from({ length: 16 }, () => remote.containersNamed('')));
  // Other tests' containers come and go meanwhile: those there before and after are in every list.
  const stable = (await local.containersNamed('')).map((c) => c.id).filter((id) => before.has(id));
  for (const list of lists) {
    const ids = new Set(list.map((c) => c.id));
    for (const id of stable) assert.ok(ids.has(id), `container ${id} listed over ssh://`);
  }
  assert.match(sshdLog(), /Accepted publickey for root/);
  assert.match(sshdLog(), /userauth-request for user root/, 'sshd logs login attempts (the unknown-host test looks for none)');
});

test('--scheduler swarm reads the engine over ssh:// too: this machine\'s engine, in no Swarm, is refused as such', async () => {
  const local = await DockerSwarm.connect('/var/run/docker.sock', 'x');
  const here = await local.manager().then(() => 'manager', (e: UserError) => e.code);
  const swarm = await DockerSwarm.connect(`ssh://root@127.0.0.1:${port}`, 'x', { keyFile: client.privateKey, knownHostsFile: knownHosts });
  const there = await swarm.manager().then(() => 'manager', (e: UserError) => e.code);
  assert.equal(there, here, 'the same answer as through the local socket');
  if (there !== 'manager') assert.match(there, /^swarm_/);
});

test('an unknown host key is refused before anything is sent, saying what to add', async () => {
  const empty = path.join(work, 'known_hosts.empty');
  fs.writeFileSync(empty, '');
  const from = sshdLog().length;
  const e = await expectUserError(DockerEngine.connect(`ssh://root@127.0.0.1:${port}`, 'x', { keyFile: client.privateKey, knownHostsFile: empty }), 'docker_ssh_host_unknown');
  assert.match(e.message, /SHA256:/);
  assert.ok(e.hint?.includes(`ssh-keyscan -p ${port} 127.0.0.1 >> ${empty}`), e.hint);
  await waitFor('sshd to log the closed connection', () => /Connection closed|Disconnected|disconnect/i.test(sshdLog().slice(from)), 5_000);
  assert.doesNotMatch(sshdLog().slice(from), /userauth-request|Accepted|Failed publickey/, 'no login attempt reached sshd');
});

test('a changed host key is refused and says how to replace the entry', async () => {
  const changed = path.join(work, 'known_hosts.changed');
  fs.writeFileSync(changed, fs.readFileSync(stranger.publicKey, 'utf8').replace(/^/, `[127.0.0.1]:${port} `));
  const e = await expectUserError(DockerEngine.connect(`ssh://root@127.0.0.1:${port}`, 'x', { keyFile: client.privateKey, knownHostsFile: changed }), 'docker_ssh_host_key_changed');
  assert.match(e.message, /CHANGED/);
  assert.ok(e.hint?.includes(`ssh-keygen -R '[127.0.0.1]:${port}'`), e.hint);
});

test('a key the host does not authorize is refused clearly', async () => {
  const e = await expectUserError(DockerEngine.connect(`ssh://root@127.0.0.1:${port}`, 'x', { keyFile: stranger.privateKey, knownHostsFile: knownHosts }), 'docker_ssh_auth');
  assert.ok(e.message.includes(stranger.privateKey), e.message);
  assert.match(e.hint ?? '', /authorized_keys/);
});

test('a key with a passphrase and no agent is refused at start, saying to use an agent', async () => {
  const locked = path.join(work, 'locked');
  mustRun('ssh-keygen', ['-q', '-t', 'ed25519', '-N', 'secret', '-f', locked]);
  const e = await expectUserError(DockerEngine.connect(`ssh://root@127.0.0.1:${port}`, 'x', { keyFile: locked, knownHostsFile: knownHosts }), 'docker_ssh_key');
  assert.match(e.hint ?? '', /ssh-agent/);
});

test('a machine without the docker CLI is named as such', async () => {
  const e = await expectUserError(DockerEngine.connect(`ssh://root@127.0.0.1:${noCliPort}`, 'x', { keyFile: client.privateKey, knownHostsFile: knownHosts }), 'docker_ssh_no_cli');
  assert.match(e.hint ?? '', /install the Docker CLI/);
});

test('nothing answering on the port is a clear error', async () => {
  const closed = await freePort();
  await expectUserError(DockerEngine.connect(`ssh://root@127.0.0.1:${closed}`, 'x', { keyFile: client.privateKey, knownHostsFile: knownHosts }), 'docker_ssh_unreachable');
});

test('berth serve --docker-host ssh://... builds and deploys an app through the SSH connection', async () => {
  const daemon = await startDaemon({
    args: ['--docker-host', `ssh://root@127.0.0.1:${port}`, '--docker-ssh-key', client.privateKey, '--docker-ssh-known-hosts', knownHosts],
    env: { SSH_AUTH_SOCK: '', DOCKER_HOST: '' },
  });
  try {
    const admin = makeKey(work, 'admin');
    assert.equal(daemon.cli(['ssh-keys:add', 'admin', admin.publicKey]).code, 0);
    const repo = path.join(work, 'overssh');
    gitRepo(repo, nodeApp('served over ssh'));
    const push = run('git', ['push', daemon.remote('overssh'), 'main'], { cwd: repo, env: daemon.gitEnv(admin.privateKey) });
    assert.equal(push.code, 0, push.stderr + daemon.logs());
    const res = await request(daemon.httpPort, `overssh.${daemon.domain}`);
    assert.equal(res.status, 200);
    assert.match(res.body, /served over ssh/);
    assert.ok(sshdLog().split('Accepted publickey for root').length > 2, 'the daemon logged in over SSH');
  } finally {
    daemon.cli(['apps:destroy', 'overssh', '--force']);
    await daemon.stop();
  }
});
