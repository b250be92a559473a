// Keys and their scopes on the real binary, with the real OpenSSH and git clients: an admin key
// does everything; a key added with --apps pushes to and runs app commands on those apps only,
// and every refusal says what was refused and is logged with the key's name.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { gitRepo, makeKey, run, startDaemon, tempDir, waitFor, type Daemon } from './helpers/daemon.ts';

let daemon: Daemon;
const work = tempDir('e2e-keys');
let admin: { privateKey: string; publicKey: string };
let deployer: { privateKey: string; publicKey: string };

before(async () => {
  daemon = await startDaemon();
  admin = makeKey(work, 'admin');
  deployer = makeKey(work, 'deployer');
  assert.equal(daemon.cli(['ssh-keys:add', 'admin', admin.publicKey]).code, 0);
});

after(async () => {
  await daemon.stop();
});

/** Waits until the daemon has logged an entry with this event name that `match` accepts. */
async function expectLogged(event: string, match: (entry: Record<string, unknown>) => boolean, what: string): Promise<void> {
  await waitFor(`the daemon to log ${what}`, () =>
    daemon
      .logs()
      .split('\n')
      .filter((l) => l.includes(`"event":"${event}"`))
      .some((l) => match(JSON.parse(l) as Record<string, unknown>)),
  5_000);
}

test('ssh-keys:add --apps makes a scoped key; ssh-keys:list shows each key with its fingerprint and scope', () => {
  const added = daemon.ssh(admin.privateKey, 'ssh-keys:add deployer --apps keys-mine,keys-also', fs.readFileSync(deployer.publicKey, 'utf8'));
  assert.equal(added.code, 0, added.stderr);
  assert.match(added.stdout, /Added key deployer \(SHA256:\S+\) for keys-mine, keys-also/);
  const fingerprint = run('ssh-keygen', ['-lf', deployer.publicKey]).stdout.split(' ')[1];
  for (const list of [daemon.cli(['ssh-keys:list']), daemon.ssh(admin.privateKey, 'ssh-keys:list')]) {
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /^NAME\s+FINGERPRINT\s+SCOPE$/m);
    assert.match(list.stdout, /^admin\s+SHA256:\S+\s+admin$/m);
    assert.match(list.stdout, new RegExp(`^deployer\\s+${fingerprint!.replace(/[+/]/g, '\\$&')}\\s+apps: keys-mine,keys-also$`, 'm'));
  }
});

test('a duplicate key name or fingerprint is refused, locally and over SSH', () => {
  const other = makeKey(work, 'other');
  const sameName = daemon.cli(['ssh-keys:add', 'deployer', other.publicKey]);
  assert.equal(sameName.code, 1);
  assert.match(sameName.stderr, /a key named "deployer" already exists/);
  const sameKey = daemon.ssh(admin.privateKey, 'ssh-keys:add deployer-again', fs.readFileSync(deployer.publicKey, 'utf8'));
  assert.equal(sameKey.code, 1);
  assert.match(sameKey.stderr, /this key \(SHA256:\S+\) is already added as "deployer"/);
  assert.doesNotMatch(daemon.cli(['ssh-keys:list']).stdout, /deployer-again/);
});

test('a scoped key pushes to its app, and a push to any other app is refused, logged and creates nothing', async () => {
  const repo = path.join(work, 'repo');
  const head = gitRepo(repo, { 'README.md': 'scoped\n' });
  const env = daemon.gitEnv(deployer.privateKey);
  const ok = run('git', ['push', daemon.remote('keys-mine'), 'main:refs/heads/feature'], { cwd: repo, env });
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(run('git', ['--git-dir', path.join(daemon.dataDir, 'repos', 'keys-mine.git'), 'rev-parse', 'refs/heads/feature']).stdout.trim(), head);

  const refused = run('git', ['push', daemon.remote('keys-theirs'), 'main'], { cwd: repo, env });
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /key "deployer" may not push to keys-theirs: it is limited to the apps keys-mine, keys-also/);
  assert.equal(fs.existsSync(path.join(daemon.dataDir, 'repos', 'keys-theirs.git')), false);
  assert.doesNotMatch(daemon.cli(['apps:list']).stdout, /keys-theirs/);
  await expectLogged('push_refused', (e) => e.key === 'deployer' && e.app === 'keys-theirs', 'the refused push');
});

test('a scoped key runs app commands on its apps only and no admin command; each refusal is logged with its name', async () => {
  const own = daemon.ssh(deployer.privateKey, 'apps:create keys-also');
  assert.equal(own.code, 0, own.stderr);
  const list = daemon.ssh(deployer.privateKey, 'apps:list');
  assert.equal(list.code, 0);
  assert.match(list.stdout, /^keys-also\s/m);
  assert.match(list.stdout, /^keys-mine\s/m);

  const refusals: [string, RegExp][] = [
    ['apps:create keys-other', /key "deployer" may not run apps:create on keys-other: it is limited to the apps keys-mine, keys-also/],
    ['ssh-keys:list', /key "deployer" may not run ssh-keys:list: it is for admin keys; ask the server's admin/],
    ['ssh-keys:add sneaky', /key "deployer" may not run ssh-keys:add: it is for admin keys; ask the server's admin/],
    ['ssh-keys:remove admin', /key "deployer" may not run ssh-keys:remove/],
    ['apps:destroy keys-mine --force', /key "deployer" may not run apps:destroy/],
    ['apps:rename keys-mine keys-renamed', /key "deployer" may not run apps:rename/],
  ];
  for (const [line, message] of refusals) {
    const r = daemon.ssh(deployer.privateKey, line, '');
    assert.equal(r.code, 1, line);
    assert.match(r.stderr, message, line);
    const command = line.split(' ')[0];
    await expectLogged('command_refused', (e) => e.key === 'deployer' && e.command === command, `the refusal of ${line} with the key's name`);
  }
  const keys = daemon.cli(['ssh-keys:list']).stdout;
  assert.match(keys, /^admin\s/m, 'the admin key is still there');
  assert.doesNotMatch(keys, /sneaky/);
  assert.doesNotMatch(daemon.cli(['apps:list']).stdout, /keys-other|keys-renamed/);
});

test('an unknown key is refused at the door and logged with its fingerprint', async () => {
  const stranger = makeKey(work, 'stranger');
  const r = daemon.ssh(stranger.privateKey, 'apps:list');
  assert.equal(r.code, 255);
  assert.match(r.stderr, /Permission denied \(publickey\)/);
  const fingerprint = run('ssh-keygen', ['-lf', stranger.publicKey]).stdout.split(' ')[1];
  await expectLogged('ssh_auth_refused', (e) => e.reason === 'unknown_key' && e.fingerprint === fingerprint, 'the unknown key');
});
