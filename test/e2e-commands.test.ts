// Every admin command through the one registry, on the real binary: the same output and exit
// status locally (the control socket) and over the real OpenSSH client; apps:rename keeps the app
// serving under its new name; the SSH command line is split like a shell would, never run by one.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { COMMANDS } from '../src/cli/registry.ts';
import { gitRepo, makeKey, mustRun, nodeApp, request, run, startDaemon, tempDir, type Daemon, type RunResult } from './helpers/daemon.ts';

let daemon: Daemon;
let admin: { privateKey: string; publicKey: string };
const work = tempDir('e2e-commands');

before(async () => {
  daemon = await startDaemon();
  admin = makeKey(work, 'admin');
  assert.equal(daemon.cli(['ssh-keys:add', 'admin', admin.publicKey]).code, 0);
});

after(async () => {
  run('ssh', ['-o', `ControlPath=${path.join(work, 'ssh-control')}`, '-O', 'exit', 'berth@127.0.0.1']);
  for (const app of ['cmd-one', 'cmd-two', 'renamed-web', 'rename-web', 'cmd-local', 'cmd-remote']) daemon.cli(['apps:destroy', app, '--force']);
  await daemon.stop();
});

/**
 * Over SSH through one shared connection (OpenSSH's ControlMaster): each command is still its
 * own exec channel of the real client, without a new key exchange every time.
 */
function ssh(command: string): RunResult {
  const control = ['-o', 'ControlMaster=auto', '-o', `ControlPath=${path.join(work, 'ssh-control')}`, '-o', 'ControlPersist=120'];
  return run('ssh', [...control, ...daemon.sshArgs(admin.privateKey), 'berth@127.0.0.1', command]);
}

/** Runs one command line both ways: the local CLI's words, and the same words quoted for ssh. */
function both(words: string[]): { local: RunResult; remote: RunResult } {
  const local = daemon.cli(words);
  const remote = ssh(words.map(shellQuote).join(' '));
  return { local, remote };
}

function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

function assertSame(words: string[], expectCode: number): RunResult {
  const { local, remote } = both(words);
  assert.equal(local.code, expectCode, `${words.join(' ')} locally: ${local.stderr}`);
  assert.deepEqual({ code: remote.code, stdout: remote.stdout, stderr: remote.stderr }, { code: local.code, stdout: local.stdout, stderr: local.stderr }, words.join(' '));
  return local;
}

test('help and --help of every command print the same text with status 0 locally and over SSH', () => {
  for (const command of COMMANDS) {
    const help = assertSame(['help', command.name], 0);
    assert.match(help.stdout, new RegExp(`^Usage: ${command.name}`));
    assert.ok(help.stdout.includes(command.summary), `${command.name} help shows its summary`);
    assert.equal(assertSame([command.name, '--help'], 0).stdout, help.stdout);
  }
  // The overview differs only in how to invoke berth: both list every command the same way.
  const { local, remote } = both(['help']);
  assert.equal(local.code, 0);
  assert.equal(remote.code, 0);
  assert.match(local.stdout, /^Usage: berth \[--data-dir DIR\] COMMAND/);
  assert.match(remote.stdout, /^Usage: ssh -p PORT berth@HOST COMMAND/);
  const listed = (text: string) => text.split('\n').filter((l) => COMMANDS.some((c) => l.startsWith(`  ${c.name} `) || l === `  ${c.name}`));
  assert.deepEqual(listed(remote.stdout), listed(local.stdout));
  assert.equal(listed(local.stdout).length, COMMANDS.length);
  assert.match(assertSame(['version'], 0).stdout, /^berth \d+\.\d+\.\d+ \(node v\d+/);
});

test('apps:create, apps:list and apps:destroy give the same output and status both ways', () => {
  const created = daemon.cli(['apps:create', 'cmd-local']);
  const createdRemote = daemon.ssh(admin.privateKey, 'apps:create cmd-remote');
  assert.equal(created.code, 0, created.stderr);
  assert.equal(createdRemote.code, 0, createdRemote.stderr);
  assert.equal(createdRemote.stdout, created.stdout.replaceAll('cmd-local', 'cmd-remote'));
  assert.match(created.stdout, new RegExp(`Created cmd-local; push to it: git remote add berth ssh://berth@HOST:${daemon.sshPort}/cmd-local`));

  const list = assertSame(['apps:list'], 0);
  assert.match(list.stdout, /^APP\s+RELEASE\s+COMMIT\s+DOMAINS\n/);
  assert.match(list.stdout, /cmd-local\s+-\s+-\s+cmd-local\.berth\.test/);

  assertSame(['apps:create', 'cmd-local'], 1); // exists
  assertSame(['apps:destroy', 'cmd-local'], 1); // needs --force
  assertSame(['apps:destroy', 'no-such-app', '--force'], 1);
  assertSame(['apps:rename', 'no-such-app', 'other'], 1);
  assertSame(['apps:create'], 2); // missing APP
  assertSame(['apps:list', '--bogus'], 2);

  const destroyed = daemon.cli(['apps:destroy', 'cmd-local', '--force']);
  const destroyedRemote = daemon.ssh(admin.privateKey, 'apps:destroy cmd-remote --force');
  assert.equal(destroyed.code, 0, destroyed.stderr);
  assert.equal(destroyedRemote.stdout, destroyed.stdout.replaceAll('cmd-local', 'cmd-remote'));
  assert.doesNotMatch(daemon.cli(['apps:list']).stdout, /cmd-local|cmd-remote/);
});

test('an unknown command is a clear error with status 2, the same both ways', () => {
  const r = assertSame(['apps:lst'], 2);
  assert.match(r.stderr, /unknown command "apps:lst"/);
  assert.match(r.stderr, /did you mean: .*apps:list/);
});

test('the SSH command line is split into words like a shell would and never run by one', () => {
  // One quoted word with a space and a quote reaches the command whole: here, as an app name.
  const quoted = daemon.ssh(admin.privateKey, `apps:create "it's two words"`);
  assert.equal(quoted.code, 1);
  assert.match(quoted.stderr, /invalid app name: "it's two words"/);
  const single = daemon.ssh(admin.privateKey, `apps:create 'a b'\\ c`);
  assert.match(single.stderr, /invalid app name: "a b c"/);
  // Shell syntax is just text: nothing runs, nothing is created.
  const marker = path.join(work, 'should-not-exist');
  const injected = daemon.ssh(admin.privateKey, `apps:list; touch ${marker} $(touch ${marker}) \`touch ${marker}\``);
  assert.equal(injected.code, 2, injected.stderr);
  assert.match(injected.stderr, /apps:list: unexpected argument|unknown command "apps:list;"/);
  assert.equal(fs.existsSync(marker), false);
  const unbalanced = daemon.ssh(admin.privateKey, `apps:create "unterminated`);
  assert.equal(unbalanced.code, 1);
  assert.match(unbalanced.stderr, /cannot parse the command line: unterminated double quote/);
});

test('apps:rename moves the repository and releases, and the app keeps serving under its new name', async () => {
  const repo = path.join(work, 'rename-web');
  gitRepo(repo, nodeApp('renamed app'));
  const push = run('git', ['push', daemon.remote('rename-web'), 'main'], { cwd: repo, env: daemon.gitEnv(admin.privateKey) });
  assert.equal(push.code, 0, push.stderr);
  assert.equal((await request(daemon.httpPort, `rename-web.${daemon.domain}`)).body, 'renamed app\n');

  assert.equal(daemon.cli(['domains:add', 'rename-web', 'shop.example.test']).code, 0);
  assert.equal(daemon.cli(['proxy:set', 'rename-web', 'max-body-size', '1k']).code, 0);
  const renamed = daemon.ssh(admin.privateKey, 'apps:rename rename-web renamed-web');
  assert.equal(renamed.code, 0, renamed.stderr);
  assert.match(renamed.stdout, /-----> Renaming rename-web to renamed-web/);
  assert.match(renamed.stdout, /-----> Renamed rename-web to renamed-web: http:\/\/renamed-web\.berth\.test:\d+/);
  assert.match(renamed.stdout, /git remote set-url berth ssh:\/\/berth@HOST:\d+\/renamed-web/);

  assert.equal((await request(daemon.httpPort, `renamed-web.${daemon.domain}`)).body, 'renamed app\n');
  assert.equal((await request(daemon.httpPort, `rename-web.${daemon.domain}`)).status, 404);
  assert.equal((await request(daemon.httpPort, 'shop.example.test')).body, 'renamed app\n', 'an added domain moves with the app');
  assert.match(daemon.cli(['domains:list', 'renamed-web']).stdout, /shop\.example\.test/);
  assert.match(daemon.cli(['proxy:report', 'renamed-web']).stdout, /max-body-size\s+1k|max-body-size\s+1024/);
  assert.match(daemon.cli(['apps:list']).stdout, /renamed-web\s+v1\s+[0-9a-f]{7}/);
  assert.equal(fs.existsSync(path.join(daemon.dataDir, 'repos', 'rename-web.git')), false);
  mustRun('git', ['--git-dir', path.join(daemon.dataDir, 'repos', 'renamed-web.git'), 'fsck', '--strict']);
  const containers = mustRun('docker', ['ps', '-a', '--filter', `label=berth.instance=${instance()}`, '--format', '{{.Label "berth.app"}} {{.Image}}']);
  assert.match(containers, new RegExp(`^renamed-web ${daemon.imageRepo('renamed-web')}:r1$`, 'm'));
  assert.doesNotMatch(containers, /^rename-web /m);
  assert.equal(run('docker', ['image', 'inspect', `${daemon.imageRepo('rename-web')}:r1`]).code, 1, 'the old tag is gone');

  // The next push goes to the new name and becomes release 2 of the same app.
  gitRepo(repo, nodeApp('renamed app v2'), 'second');
  const next = run('git', ['push', daemon.remote('renamed-web'), 'main'], { cwd: repo, env: daemon.gitEnv(admin.privateKey) });
  assert.equal(next.code, 0, next.stderr);
  assert.match(next.stderr, /Released v2 of renamed-web/);
  assert.equal((await request(daemon.httpPort, `renamed-web.${daemon.domain}`)).body, 'renamed app v2\n');
});

test('apps:rename refuses an existing or invalid new name and changes nothing', () => {
  assert.equal(daemon.cli(['apps:create', 'cmd-one']).code, 0);
  assert.equal(daemon.cli(['apps:create', 'cmd-two']).code, 0);
  const taken = assertSame(['apps:rename', 'cmd-one', 'cmd-two'], 1);
  assert.match(taken.stderr, /app "cmd-two" already exists/);
  const invalid = assertSame(['apps:rename', 'cmd-one', 'Bad_Name'], 1);
  assert.match(invalid.stderr, /invalid app name/);
  assert.match(daemon.cli(['apps:list']).stdout, /cmd-one[\s\S]*cmd-two/);
});

function instance(): string {
  return fs.readFileSync(path.join(daemon.dataDir, 'state', 'instance'), 'utf8').trim();
}
