// Nothing secret in logs: config values, command lines and URL credentials used over the real
// OpenSSH client, the local CLI and a real git push never reach the daemon's log, the build
// output kept in the data dir, or the output the pusher sees. Each run uses unique markers and
// greps for them afterwards. Beside it, the two helpers that decide what may be logged.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { commandNameOf } from '../src/git/exec-command.ts';
import { redactUrl, redactUrlsIn } from '../src/redact.ts';
import { gitRepo, makeKey, run, startDaemon, tempDir, waitFor, type Daemon } from './helpers/daemon.ts';

let daemon: Daemon;
const work = tempDir('secret-logs');
let admin: { privateKey: string; publicKey: string };
const APP = 'secret-app';
/** Every marker used; none may show up where the test greps. */
const markers: string[] = [];

function marker(): string {
  const m = `mark${crypto.randomBytes(8).toString('hex')}`;
  markers.push(m);
  return m;
}

before(async () => {
  daemon = await startDaemon();
  admin = makeKey(work, 'admin');
  assert.equal(daemon.cli(['ssh-keys:add', 'admin', admin.publicKey]).code, 0);
  assert.equal(daemon.ssh(admin.privateKey, `apps:create ${APP}`).code, 0);
});

after(async () => {
  daemon?.cli(['apps:destroy', APP, '--force']);
  await daemon?.stop();
  if (daemon) fs.rmSync(daemon.dataDir, { recursive: true, force: true });
  fs.rmSync(work, { recursive: true, force: true });
});

/** The text of every file under a folder. */
function filesUnder(dir: string): Array<[string, string]> {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => {
    const file = path.join(e.parentPath, e.name);
    return [file, fs.readFileSync(file, 'latin1')] as [string, string];
  });
}

test('config values, malformed and unknown command lines and a buildpack URL with a password reach neither the daemon log nor the build output', async () => {
  const secretValue = marker();
  const set = daemon.ssh(admin.privateKey, `config:set ${APP} API_TOKEN=${secretValue} --no-restart`);
  assert.equal(set.code, 0, set.stderr);
  const local = marker();
  assert.equal(daemon.cli(['config:set', APP, `LOCAL_TOKEN=${local}`, '--no-restart']).code, 0);

  const unclosed = marker();
  const malformed = daemon.ssh(admin.privateKey, `config:set ${APP} 'PASSWORD=${unclosed}`);
  assert.equal(malformed.code, 1);
  assert.match(malformed.stderr, /cannot parse the command line/);
  const badApp = marker();
  assert.notEqual(daemon.ssh(admin.privateKey, `git-receive-pack '${badApp}/../x'`).code, 0);
  // A password typed where the command goes is not a command name, and is not logged as one.
  const typedAlone = marker();
  const unknown = daemon.ssh(admin.privateKey, `${typedAlone} --now`);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command/);
  const badValue = marker();
  assert.notEqual(daemon.ssh(admin.privateKey, `config:set ${APP} 1BAD=${badValue}`).code, 0);

  // The build fetches its buildpack from a URL with credentials, which cannot be reached from here.
  const password = marker();
  const user = marker();
  const url = `https://${user}:${password}@bp.invalid/buildpack.git`;
  assert.equal(daemon.ssh(admin.privateKey, `config:set ${APP} BUILDPACK_URL=${url} --no-restart`).code, 0);
  const repo = path.join(work, 'repo');
  gitRepo(repo, { 'README.md': 'no Dockerfile: built with buildpacks\n' });
  const push = run('git', ['push', daemon.remote(APP), 'main'], { cwd: repo, env: daemon.gitEnv(admin.privateKey), timeoutMs: 180_000 });
  assert.notEqual(push.code, 0, 'the buildpack cannot be fetched');
  assert.match(push.stderr, /bp\.invalid/, 'the build output names the buildpack (without its credentials)');

  await waitFor('the daemon to log the failed deploy', () => daemon.logs().includes('"event":"push_deploy_failed"'), 30_000);
  assert.match(daemon.logs(), /"event":"ssh_exec_refused"/, 'the malformed line was refused and logged');
  assert.match(daemon.logs(), /"event":"config_changed"/, 'config changes are logged, by their keys');
  const places: Array<[string, string]> = [
    ['the daemon log', daemon.logs()],
    ['the output of the push', push.stdout + push.stderr],
    ...filesUnder(path.join(daemon.dataDir, 'logs')),
  ];
  assert.ok(places.length > 2, 'the build output is kept under logs/');
  for (const [where, text] of places) {
    for (const m of markers) assert.ok(!text.includes(m), `${m} appears in ${where}`);
  }
});

test('redactUrl hides the user and password of a URL, a raw @ in the password included, and leaves other text alone', () => {
  assert.equal(redactUrl('https://user:pa55@example.com/bp.git#v1'), 'https://***@example.com/bp.git#v1');
  assert.equal(redactUrl('https://token@example.com/bp.tgz'), 'https://***@example.com/bp.tgz');
  assert.equal(redactUrl('https://u:p@ss@example.com/x'), 'https://***@example.com/x');
  assert.equal(redactUrl('https://example.com/a@b'), 'https://example.com/a@b');
  assert.equal(redactUrl('/srv/buildpacks/node'), '/srv/buildpacks/node');
  assert.equal(redactUrlsIn('could not fetch git+https://a:b@h/x.git: connect refused; also http://c:d@e:8080/'), 'could not fetch git+https://***@h/x.git: connect refused; also http://***@e:8080/');
});

test('the log names an exec by a known command name or git service only, never its arguments or an unknown first word', () => {
  const known = (name: string) => name === 'config:set' || name === 'logs';
  assert.equal(commandNameOf('config:set shop TOKEN=hunter2', known), 'config:set');
  assert.equal(commandNameOf("git-receive-pack 'shop'", known), 'git-receive-pack');
  assert.equal(commandNameOf('hunter2 --now', known), '(unknown command)');
  assert.equal(commandNameOf("'unclosed", known), '(unknown command)');
  assert.equal(commandNameOf('', known), '(unknown command)');
});
