// Keys and names at the edge, on the real binary with the real OpenSSH client.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { BINARY, gitRepo, makeKey, nodeApp, run, startDaemon, tempDir, type Daemon } from './helpers/daemon.ts';

let daemon: Daemon;
const work = tempDir('e2e-access');
let admin: { privateKey: string; publicKey: string };

before(async () => {
  daemon = await startDaemon();
  admin = makeKey(work, 'admin');
  assert.equal(daemon.cli(['ssh-keys:add', 'admin', '-'], fs.readFileSync(admin.publicKey, 'utf8')).code, 0);
});

after(async () => {
  await daemon.stop();
});

test('the binary prints its version and help with no node_modules around it', () => {
  const lonely = tempDir('lonely');
  fs.copyFileSync(BINARY, path.join(lonely, 'berth'));
  fs.chmodSync(path.join(lonely, 'berth'), 0o755);
  const env = { PATH: '/usr/bin:/bin', HOME: lonely };
  const version = run(path.join(lonely, 'berth'), ['--version'], { cwd: lonely, env });
  assert.equal(version.code, 0, version.stderr);
  assert.match(version.stdout, /^berth \d+\.\d+\.\d+ \(node v(2[4-9]|[3-9]\d)\./);
  const help = run(path.join(lonely, 'berth'), ['--help'], { cwd: lonely, env: { ...env, BERTH_DATA_DIR: path.join(lonely, 'data') } });
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /serve \[FLAGS\]/);
  assert.match(help.stdout, /ssh-keys:add/);
  const serveHelp = run(path.join(lonely, 'berth'), ['serve', '--help'], { cwd: lonely, env });
  assert.match(serveHelp.stdout, /--http-port PORT\s+BERTH_HTTP_PORT/);
});

test('an unknown key is refused by the SSH server', () => {
  const stranger = makeKey(work, 'stranger');
  const r = daemon.ssh(stranger.privateKey, 'apps:list');
  assert.equal(r.code, 255);
  assert.match(r.stderr, /Permission denied \(publickey\)/);
});

test('a key added while the daemon runs works at once, and a removed key is refused at once', () => {
  const late = makeKey(work, 'late');
  assert.equal(daemon.ssh(late.privateKey, 'apps:list').code, 255);
  const add = daemon.cli(['ssh-keys:add', 'late', late.publicKey]);
  assert.equal(add.code, 0, add.stderr);
  const list = daemon.cli(['ssh-keys:list']);
  assert.match(list.stdout, /late\s+SHA256:\S+\s+admin/);
  const ok = daemon.ssh(late.privateKey, 'apps:list');
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(daemon.cli(['ssh-keys:remove', 'late']).code, 0);
  assert.equal(daemon.ssh(late.privateKey, 'apps:list').code, 255);
});

test('invalid app names are refused with a message and create nothing on disk', () => {
  const repo = path.join(work, 'names');
  gitRepo(repo, nodeApp('names'));
  const before = snapshot();
  for (const bad of ['../x', 'A', '-x', '', 'x_y']) {
    const url = `ssh://berth@127.0.0.1:${daemon.sshPort}/${bad}`;
    const push = run('git', ['push', url, 'main'], { cwd: repo, env: daemon.gitEnv(admin.privateKey) });
    assert.notEqual(push.code, 0, `push to "${bad}" must fail`);
    assert.match(push.stderr, /invalid app name/, `push to "${bad}": ${push.stderr}`);
  }
  assert.deepEqual(snapshot(), before);
  const create = daemon.cli(['apps:create', 'Bad']);
  assert.equal(create.code, 1);
  assert.match(create.stderr, /invalid app name: "Bad"/);
  assert.deepEqual(snapshot(), before);
});

test('an unknown command gets a clear error and a non-zero exit, locally and over SSH', () => {
  const local = daemon.cli(['apps:lst']);
  assert.equal(local.code, 2);
  assert.match(local.stderr, /unknown command "apps:lst"/);
  assert.match(local.stderr, /did you mean: .*apps:list/);
  const remote = daemon.ssh(admin.privateKey, 'apps:lst');
  assert.equal(remote.code, 2);
  assert.equal(remote.stderr, local.stderr);
});

test('the SSH server offers no shell', () => {
  const r = run('ssh', ['-i', admin.privateKey, '-o', 'IdentitiesOnly=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR', '-o', 'BatchMode=yes', '-T', '-p', String(daemon.sshPort), 'berth@127.0.0.1'], { input: 'echo hi\n' });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /no interactive shell/);
});

test('the host key is generated once and kept across restarts', async () => {
  const keyFile = path.join(daemon.dataDir, 'ssh', 'ssh_host_ed25519_key.pub');
  const first = fs.readFileSync(keyFile, 'utf8');
  await daemon.stop();
  daemon = await startDaemon({ dataDir: daemon.dataDir });
  assert.equal(fs.readFileSync(keyFile, 'utf8'), first);
  assert.equal(fs.statSync(path.join(daemon.dataDir, 'ssh', 'ssh_host_ed25519_key')).mode & 0o777, 0o600);
  assert.equal(daemon.ssh(admin.privateKey, 'apps:list').code, 0);
});

function snapshot(): string[] {
  const list = (dir: string) => (fs.existsSync(dir) ? fs.readdirSync(dir).sort() : []);
  return [...list(path.join(daemon.dataDir, 'repos')).map((f) => `repos/${f}`), ...list(path.join(daemon.dataDir, 'state', 'apps')).map((f) => `apps/${f}`)];
}
