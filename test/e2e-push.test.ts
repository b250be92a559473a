// End to end on real parts: dist/berth serve, the real git client over the real OpenSSH client,
// the real Docker engine, real HTTP through berth's proxy.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { gitRepo, makeKey, mustRun, nodeApp, request, run, startDaemon, tempDir, type Daemon } from './helpers/daemon.ts';

let daemon: Daemon;
let key: { privateKey: string; publicKey: string };
const work = tempDir('e2e-push');

before(async () => {
  daemon = await startDaemon();
  key = makeKey(work, 'admin');
  const added = daemon.cli(['ssh-keys:add', 'admin', key.publicKey]);
  assert.equal(added.code, 0, added.stderr);
  assert.match(added.stdout, /Added key admin \(SHA256:/);
});

after(async () => {
  for (const app of ['hello', 'branches', 'broken', 'crashes', 'nodocker']) daemon.cli(['apps:destroy', app, '--force']);
  await daemon.stop();
});

test('a first push builds the Dockerfile app, and the proxy serves it at APP.DOMAIN with forwarded headers', async () => {
  const repo = path.join(work, 'hello');
  gitRepo(repo, nodeApp('hello v1'));
  const push = run('git', ['push', daemon.remote('hello'), 'main'], { cwd: repo, env: daemon.gitEnv(key.privateKey) });
  assert.equal(push.code, 0, push.stderr);
  assert.match(push.stderr, /remote: -----> Building hello from Dockerfile/);
  assert.match(push.stderr, /remote: -----> Released v1 of hello/);
  assert.match(push.stderr, /\* \[new branch\]\s+main -> main/);

  const res = await request(daemon.httpPort, `hello.${daemon.domain}`);
  assert.equal(res.status, 200);
  assert.equal(res.body, 'hello v1\n');

  const headers = JSON.parse((await request(daemon.httpPort, `hello.${daemon.domain}:${daemon.httpPort}`, '/headers', { 'x-forwarded-for': '203.0.113.9' })).body);
  assert.equal(headers['x-forwarded-for'], '203.0.113.9, 127.0.0.1');
  assert.equal(headers['x-forwarded-proto'], 'http');
  assert.equal(headers['x-forwarded-host'], `hello.${daemon.domain}:${daemon.httpPort}`);
  const env = JSON.parse((await request(daemon.httpPort, `hello.${daemon.domain}`, '/env')).body);
  assert.deepEqual(env, { PORT: '5000', DYNO: 'web.1' });
});

test('a second push replaces the running container with the new version', async () => {
  const repo = path.join(work, 'hello');
  gitRepo(repo, nodeApp('hello v2'), 'second');
  const push = run('git', ['push', daemon.remote('hello'), 'main'], { cwd: repo, env: daemon.gitEnv(key.privateKey) });
  assert.equal(push.code, 0, push.stderr);
  assert.match(push.stderr, /Released v2 of hello/);
  assert.equal((await request(daemon.httpPort, `hello.${daemon.domain}`)).body, 'hello v2\n');
  const containers = mustRun('docker', ['ps', '-a', '--filter', `label=berth.instance=${daemon.instance}`, '--filter', 'label=berth.app=hello', '--format', '{{.Names}}']).trim().split('\n');
  assert.equal(containers.length, 1, `only the new container is left: ${containers.join(', ')}`);
  assert.match(containers[0]!, /^hello\.web\.1\.r2\./);
});

test('the stored repository is a valid git repository after three pushes', async () => {
  const repo = path.join(work, 'hello');
  gitRepo(repo, nodeApp('hello v3'), 'third');
  const push = run('git', ['push', daemon.remote('hello'), 'main'], { cwd: repo, env: daemon.gitEnv(key.privateKey) });
  assert.equal(push.code, 0, push.stderr);
  const gitdir = path.join(daemon.dataDir, 'repos', 'hello.git');
  mustRun('git', ['--git-dir', gitdir, 'fsck', '--strict']);
  assert.equal(mustRun('git', ['--git-dir', gitdir, 'rev-parse', 'refs/heads/main']).trim(), mustRun('git', ['rev-parse', 'HEAD'], { cwd: repo }).trim());
  assert.equal((await request(daemon.httpPort, `hello.${daemon.domain}`)).body, 'hello v3\n');
});

test('an unknown host gets a 404 page', async () => {
  const res = await request(daemon.httpPort, `nothing.${daemon.domain}`);
  assert.equal(res.status, 404);
  assert.match(res.body, /nothing\.berth\.test/);
});

test('a push to another branch is stored but not deployed, and the output says so', async () => {
  const repo = path.join(work, 'branches');
  gitRepo(repo, nodeApp('branches'));
  const push = run('git', ['push', daemon.remote('branches'), 'main:feature'], { cwd: repo, env: daemon.gitEnv(key.privateKey) });
  assert.equal(push.code, 0, push.stderr);
  assert.match(push.stderr, /remote: -----> refs\/heads\/feature stored; only main or master is deployed/);
  assert.doesNotMatch(push.stderr, /Building/);
  assert.equal((await request(daemon.httpPort, `branches.${daemon.domain}`)).status, 404);
  const gitdir = path.join(daemon.dataDir, 'repos', 'branches.git');
  assert.equal(mustRun('git', ['--git-dir', gitdir, 'rev-parse', 'refs/heads/feature']).trim(), mustRun('git', ['rev-parse', 'HEAD'], { cwd: repo }).trim());
});

test('a repository without a Dockerfile goes to the buildpacks; when the default ones cannot be fetched, the error names them', () => {
  const repo = path.join(work, 'nodocker');
  gitRepo(repo, { 'index.js': 'console.log(1)\n' });
  const push = run('git', ['push', daemon.remote('nodocker'), 'main'], { cwd: repo, env: daemon.gitEnv(key.privateKey) });
  assert.notEqual(push.code, 0);
  assert.match(push.stderr, /Building nodocker with buildpacks \(from the default list\)/);
  assert.match(push.stderr, /no buildpack detected; tried https:\/\/github\.com\/heroku\/heroku-buildpack-ruby\.git \(could not be fetched\), .*heroku-buildpack-nodejs\.git \(could not be fetched\)/);
  assert.match(push.stderr, /none of the default buildpacks could be fetched from this server/);
  assert.match(push.stderr, /! \[remote rejected\] main -> main/);
});

test('a failed build rejects the push with the reason, and the previous release keeps serving', async () => {
  const repo = path.join(work, 'hello');
  fs.writeFileSync(path.join(repo, 'Dockerfile'), `FROM berth-test/base:latest\nRUN echo about to fail && false\n`);
  mustRun('git', ['commit', '-qam', 'broken build'], { cwd: repo });
  const push = run('git', ['push', daemon.remote('hello'), 'main'], { cwd: repo, env: daemon.gitEnv(key.privateKey) });
  assert.notEqual(push.code, 0);
  assert.match(push.stderr, /remote:\s+about to fail/);
  assert.match(push.stderr, /the Docker build failed: The command .* returned a non-zero code: 1/);
  assert.match(push.stderr, /! \[remote rejected\] main -> main \(the Docker build failed/);
  assert.equal((await request(daemon.httpPort, `hello.${daemon.domain}`)).body, 'hello v3\n');
  mustRun('git', ['reset', '-q', '--hard', 'HEAD~1'], { cwd: repo });
});

test('a container that exits at start rejects the push with its exit status and its last log lines', async () => {
  const repo = path.join(work, 'crashes');
  gitRepo(repo, {
    Dockerfile: 'FROM berth-test/base:latest\nCMD ["sh", "-c", "echo cannot connect to the database >&2; exit 3"]\n',
  });
  const push = run('git', ['push', daemon.remote('crashes'), 'main'], { cwd: repo, env: daemon.gitEnv(key.privateKey) });
  assert.notEqual(push.code, 0);
  assert.match(push.stderr, /the container exited at start/);
  assert.match(push.stderr, /cannot connect to the database/);
  assert.match(push.stderr, /! \[remote rejected\] main -> main/);
  const left = mustRun('docker', ['ps', '-a', '--filter', `label=berth.instance=${daemon.instance}`, '--filter', 'label=berth.app=crashes', '--format', '{{.Names}}']).trim();
  assert.equal(left, '', 'the failed container is removed');
});
