// Scopes that hold, on the real binary with the real OpenSSH client: a key is looked up for every
// command over a connection multiplexed with ControlMaster (a re-scope applies to the next
// command, a removal closes the connection), scopes follow an app's id and not its name (a key
// of a destroyed app gets nothing of a new app of that name), and every admin-only command is
// refused to a scoped key with one message, changing nothing in the state.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { gitRepo, makeKey, run, startDaemon, tempDir, waitFor, type Daemon, type RunResult } from './helpers/daemon.ts';

let daemon: Daemon;
const work = tempDir('scopes');
let admin: { privateKey: string; publicKey: string };
const masters: ChildProcess[] = [];

before(async () => {
  daemon = await startDaemon();
  admin = makeKey(work, 'admin');
  assert.equal(daemon.cli(['ssh-keys:add', 'admin', admin.publicKey]).code, 0);
});

after(async () => {
  for (const m of masters) if (m.exitCode === null && m.signalCode === null) m.kill('SIGTERM');
  // None of the apps was deployed, so they hold no container or image; destroyed all the same.
  const apps = daemon ? path.join(daemon.dataDir, 'state', 'apps') : undefined;
  for (const file of apps && fs.existsSync(apps) ? fs.readdirSync(apps) : []) if (file.endsWith('.json')) daemon.cli(['apps:destroy', file.slice(0, -5), '--force']);
  await daemon?.stop();
  if (daemon) fs.rmSync(daemon.dataDir, { recursive: true, force: true });
  fs.rmSync(work, { recursive: true, force: true });
});

function asAdmin(command: string, input?: string): RunResult {
  const r = daemon.ssh(admin.privateKey, command, input);
  assert.equal(r.code, 0, `${command}: ${r.stderr}`);
  return r;
}

/** An OpenSSH ControlMaster holding one authenticated connection with `key`; `over` runs a command through it. */
async function openMaster(key: { privateKey: string }, name: string): Promise<{ process: ChildProcess; over: (command: string) => RunResult; running: () => boolean }> {
  const socket = path.join(work, `${name}.mux`);
  const master = spawn('ssh', [...daemon.sshArgs(key.privateKey), '-o', 'ControlMaster=yes', '-o', `ControlPath=${socket}`, '-N', 'berth@127.0.0.1'], { stdio: ['ignore', 'ignore', 'pipe'] });
  masters.push(master);
  const running = () => run('ssh', ['-o', `ControlPath=${socket}`, '-O', 'check', 'berth@127.0.0.1']).code === 0;
  await waitFor('the ControlMaster to connect', running, 15_000);
  // Without the master, the client would connect on its own with the same key (and be refused if it was removed).
  const over = (command: string) => run('ssh', [...daemon.sshArgs(key.privateKey), '-o', 'ControlMaster=no', '-o', `ControlPath=${socket}`, 'berth@127.0.0.1', command]);
  return { process: master, over, running };
}

/** How many SSH connections the key has opened so far (the daemon logs each). */
function connections(keyName: string): number {
  return daemon
    .logs()
    .split('\n')
    .filter((l) => l.includes('"event":"ssh_connected"'))
    .filter((l) => (JSON.parse(l) as { key?: string }).key === keyName).length;
}

/** Every file of the state folder with its content's hash: what "nothing changed" compares. */
function stateSnapshot(): Record<string, string> {
  const root = path.join(daemon.dataDir, 'state');
  const out: Record<string, string> = {};
  const walk = (dir: string) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const file = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(file);
      else if (entry.isFile()) out[path.relative(root, file)] = crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
    }
  };
  walk(root);
  return out;
}

test('a key re-scoped while its ControlMaster connection is open is held to the new scope from the next command on that connection', async () => {
  asAdmin('apps:create scope-left');
  asAdmin('apps:create scope-right');
  const key = makeKey(work, 'rescoped');
  assert.equal(daemon.cli(['ssh-keys:add', 'rescoped', key.publicKey, '--apps', 'scope-left']).code, 0);
  const master = await openMaster(key, 'rescoped');
  const first = master.over('config:show scope-left');
  assert.equal(first.code, 0, first.stderr);
  assert.equal(master.over('config:show scope-right').code, 1);

  const rescope = daemon.cli(['ssh-keys:scope', 'rescoped', '--apps', 'scope-right']);
  assert.equal(rescope.code, 0, rescope.stderr);
  assert.match(rescope.stdout, /Key rescoped may use scope-right only/);
  const refused = master.over('config:show scope-left');
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /key "rescoped" may not run config:show on scope-left: it is limited to the apps scope-right/);
  const allowed = master.over('config:show scope-right');
  assert.equal(allowed.code, 0, allowed.stderr);
  const push = run('git', ['push', daemon.remote('scope-left'), 'main'], {
    cwd: (() => {
      const repo = path.join(work, 'rescoped-repo');
      gitRepo(repo, { 'README.md': 'x\n' });
      return repo;
    })(),
    env: { ...process.env, GIT_SSH_COMMAND: ['ssh', ...daemon.sshArgs(key.privateKey), '-o', 'ControlMaster=no', '-o', `ControlPath=${path.join(work, 'rescoped.mux')}`].join(' '), GIT_TERMINAL_PROMPT: '0' },
  });
  assert.notEqual(push.code, 0, 'a push over the open connection is held to the new scope too');
  assert.match(push.stderr, /key "rescoped" may not push to scope-left: it is limited to the apps scope-right/);

  // An admin scope works the same way, and the key stays connected through all of it: one connection.
  assert.equal(daemon.cli(['ssh-keys:scope', 'rescoped', '--admin']).code, 0);
  assert.equal(master.over('ssh-keys:list').code, 0);
  assert.ok(master.running(), 'a re-scope does not close the connection');
  assert.equal(connections('rescoped'), 1, 'every command ran over the one multiplexed connection');
});

test('ssh-keys:remove closes the removed key\'s ControlMaster connection, and the next command fails', async () => {
  asAdmin('apps:create scope-removed');
  const key = makeKey(work, 'removed');
  assert.equal(daemon.cli(['ssh-keys:add', 'removed', key.publicKey, '--apps', 'scope-removed']).code, 0);
  const master = await openMaster(key, 'removed');
  const before = master.over('config:show scope-removed');
  assert.equal(before.code, 0, before.stderr);
  const exited = new Promise((resolve) => master.process.once('exit', resolve));

  const removal = daemon.cli(['ssh-keys:remove', 'removed']);
  assert.equal(removal.code, 0, removal.stderr);
  await Promise.race([exited, new Promise((_, reject) => setTimeout(() => reject(new Error('the ControlMaster was not closed within 10 s of the removal')), 10_000))]);
  assert.equal(master.running(), false);

  const after = master.over('config:show scope-removed');
  assert.equal(after.code, 255);
  assert.match(after.stderr, /Permission denied \(publickey\)/);
  assert.equal(connections('removed'), 1, 'nothing ran on a connection of its own before the refusal');
  const closed = daemon.logs().split('\n').filter((l) => l.includes('"event":"ssh_connection_closed"')).map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.ok(closed.some((e) => e.key === 'removed' && e.reason === 'key_removed'), 'the closure is logged with the key name');
});

test('a key scoped to a destroyed app gets nothing of a new app of that name; ssh-keys:list shows the scope as destroyed', () => {
  asAdmin('apps:create billing');
  const key = makeKey(work, 'contractor');
  const added = daemon.cli(['ssh-keys:add', 'contractor', key.publicKey, '--apps', 'billing']);
  assert.equal(added.code, 0, added.stderr);
  assert.equal(daemon.ssh(key.privateKey, 'config:show billing').code, 0);

  asAdmin('apps:destroy billing --force');
  assert.match(asAdmin('ssh-keys:list').stdout, /^contractor\s+SHA256:\S+\s+apps: \(destroyed app billing\)$/m);
  // The name is free, but not the key's: it may not take it either.
  const create = daemon.ssh(key.privateKey, 'apps:create billing');
  assert.equal(create.code, 1);
  assert.match(create.stderr, /key "contractor" may not run apps:create on billing: it is limited to the apps \(destroyed app billing\)/);

  asAdmin('apps:create billing');
  asAdmin('config:set billing OWNER=new-tenant --no-restart');
  const before = fs.readFileSync(path.join(daemon.dataDir, 'state', 'apps', 'billing.json'), 'utf8');
  for (const command of ['config:show billing', 'config:set billing OWNER=contractor --no-restart', 'ps:report billing', 'domains:add billing taken.example.com']) {
    const r = daemon.ssh(key.privateKey, command);
    assert.equal(r.code, 1, command);
    assert.match(r.stderr, /key "contractor" may not run \S+ on billing: it is limited to the apps \(destroyed app billing\)/, command);
  }
  const repo = path.join(work, 'contractor-repo');
  gitRepo(repo, { 'README.md': 'mine now\n' });
  const push = run('git', ['push', daemon.remote('billing'), 'main'], { cwd: repo, env: daemon.gitEnv(key.privateKey) });
  assert.notEqual(push.code, 0);
  assert.match(push.stderr, /key "contractor" may not push to billing: it is limited to the apps \(destroyed app billing\)/);
  assert.doesNotMatch(daemon.ssh(key.privateKey, 'apps:list').stdout, /billing/);
  assert.equal(fs.readFileSync(path.join(daemon.dataDir, 'state', 'apps', 'billing.json'), 'utf8'), before, 'the new billing is untouched');
  assert.equal(fs.existsSync(path.join(daemon.dataDir, 'repos', 'billing.git')), false, 'nothing was pushed');
});

test('a scope follows its app through a rename, and a name given before the app existed binds to the app created with it', () => {
  const key = makeKey(work, 'follower');
  assert.equal(daemon.cli(['ssh-keys:add', 'follower', key.publicKey, '--apps', 'books']).code, 0);
  assert.match(asAdmin('ssh-keys:list').stdout, /^follower\s+SHA256:\S+\s+apps: books$/m);
  asAdmin('apps:create books');
  asAdmin('apps:rename books ledger');
  assert.equal(daemon.ssh(key.privateKey, 'config:show ledger').code, 0);
  assert.match(asAdmin('ssh-keys:list').stdout, /^follower\s+SHA256:\S+\s+apps: ledger$/m);
  asAdmin('apps:create books');
  const refused = daemon.ssh(key.privateKey, 'config:show books');
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /may not run config:show on books: it is limited to the apps ledger/);
});

test('every admin-only command is refused to a scoped key with one message, and the state is unchanged', async () => {
  asAdmin('apps:create tenant-app');
  asAdmin('resource:limit tenant-app --memory 256m --no-restart');
  const key = makeKey(work, 'tenant');
  assert.equal(daemon.cli(['ssh-keys:add', 'tenant', key.publicKey, '--apps', 'tenant-app']).code, 0);
  const other = makeKey(work, 'other');
  const before = stateSnapshot();
  const adminOnly = [
    'resource:limit tenant-app --memory 4g --no-restart',
    'resource:limit tenant-app',
    'resource:limit-clear tenant-app --no-restart',
    'resource:limit-clear tenant-app --process web --no-restart',
    'storage:mount tenant-app /etc:/host-etc:ro --no-restart',
    'storage:unmount tenant-app /etc:/host-etc:ro --no-restart',
    'apps:destroy tenant-app --force',
    'apps:rename tenant-app tenant-renamed',
    'ssh-keys:list',
    'ssh-keys:add sneaky',
    'ssh-keys:scope tenant --admin',
    'ssh-keys:remove admin',
    'status',
    'upgrade',
  ];
  for (const line of adminOnly) {
    const r = daemon.ssh(key.privateKey, line, line.startsWith('ssh-keys:add') ? fs.readFileSync(other.publicKey, 'utf8') : '');
    const command = line.split(' ')[0]!;
    assert.equal(r.code, 1, `${line}: ${r.stdout}${r.stderr}`);
    assert.equal(r.stderr, ` !     key "tenant" may not run ${command}: it is for admin keys; ask the server's admin\n`, line);
  }
  // Proxy limits protect the shared proxy: the app's key may tighten them, not lift them.
  for (const [setting, value, shown] of [['max-body-size', '0', '100m'], ['max-body-size', '1g', '100m'], ['read-timeout', '10m', '60s'], ['idle-timeout', '0', '60s']] as const) {
    const r = daemon.ssh(key.privateKey, `proxy:set tenant-app ${setting} ${value}`);
    assert.equal(r.code, 1, `proxy:set ${setting} ${value}`);
    assert.equal(r.stderr, ` !     key "tenant" may not raise ${setting} above what tenant-app has now, or remove the limit: it is for admin keys; ask the server's admin\n`, `${shown} is the default`);
  }
  assert.deepEqual(stateSnapshot(), before, 'no refused command changed a file of the state');
  const lower = daemon.ssh(key.privateKey, 'proxy:set tenant-app max-body-size 10m');
  assert.equal(lower.code, 0, lower.stderr);
  assert.match(daemon.ssh(key.privateKey, 'proxy:report tenant-app').stdout, /max-body-size\s+10m\s+set for the app/);
  // An admin's tighter limit holds: the app's key can neither reset it to the default nor raise it.
  asAdmin('proxy:set tenant-app read-timeout 30s');
  for (const line of ['proxy:set tenant-app read-timeout', 'proxy:set tenant-app read-timeout 45s']) {
    const r = daemon.ssh(key.privateKey, line);
    assert.equal(r.code, 1, line);
    assert.match(r.stderr, /may not raise read-timeout above what tenant-app has now, or remove the limit/, line);
  }
  assert.match(daemon.ssh(key.privateKey, 'proxy:report tenant-app').stdout, /read-timeout\s+30s\s+set for the app/);
  // What the key may still do with its app: read the limits the admin set.
  const report = daemon.ssh(key.privateKey, 'resource:report tenant-app');
  assert.equal(report.code, 0, report.stderr);
  assert.match(report.stdout, /^\(default\)\s+256m\s+-\s+-$/m);
  assert.match(daemon.ssh(key.privateKey, 'storage:list tenant-app').stdout, /\(none\)/);
  const refusals = () => daemon.logs().split('\n').filter((l) => l.includes('"event":"command_refused"')).map((l) => JSON.parse(l) as Record<string, unknown>);
  for (const line of adminOnly) {
    await waitFor(`the refusal of ${line} in the log`, () => refusals().some((e) => e.key === 'tenant' && e.command === line.split(' ')[0] && e.reason === 'admin_only'), 5_000);
  }
});
