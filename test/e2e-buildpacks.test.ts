// End to end on real parts for builds and releases: dist/berth serve with the local stack image
// and buildpacks the test writes, git push over OpenSSH, the real Docker engine, HTTP through
// berth's proxy. One daemon serves the whole file; the last test kills it with SIGKILL.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { NODE_FIXTURE_BUILDPACK, STACK_IMAGE, nodeBuildpackApp, publishBuildpack, serveGit, writeBuildpack, type GitServer } from './helpers/buildpacks.ts';
import { gitRepo, makeKey, mustRun, request, run, startDaemon, tempDir, waitFor, type Daemon } from './helpers/daemon.ts';

const work = tempDir('e2e-bp');
const APPS = ['shop', 'worky', 'fromimg', 'gogo', 'remote'];
let daemon: Daemon;
let key: { privateKey: string; publicKey: string };
const bpDir = writeBuildpack(path.join(work, 'buildpacks', 'nodejs'), NODE_FIXTURE_BUILDPACK);
const hungryDir = writeBuildpack(path.join(work, 'buildpacks', 'hungry'), { detect: 'echo Hungry', compile: `node -e 'const a = []; for (;;) a.push(Buffer.alloc(8 << 20, 1))'` });
// As the Go buildpack does: compile writes a Procfile when the app has none; bin/release prints `--- {}`.
const goLikeDir = writeBuildpack(path.join(work, 'buildpacks', 'go-like'), {
  detect: '[[ -f "$1/go.mod" ]] && echo Go',
  compile: `set -e
echo 'require("http").createServer((q, s) => s.end("go-like server " + process.env.DYNO + "\\n")).listen(Number(process.env.PORT))' > "$1/server.js"
if [[ ! -f "$1/Procfile" ]]; then echo "web: node server.js" > "$1/Procfile"; fi`,
  release: 'echo "--- {}"',
});
// The git server of these tests is on loopback, which the admin allows explicitly.
const daemonEnv = { BERTH_STACK_IMAGE: STACK_IMAGE, BERTH_BUILDPACKS: bpDir, BERTH_KEEP_IMAGES: '3', BERTH_BUILD_MEMORY: '128m', BERTH_FETCH_ALLOW_HOST: '127.0.0.1' };
let git: GitServer;

before(async () => {
  git = await serveGit(path.join(work, 'served'));
  daemon = await startDaemon({ env: daemonEnv });
  key = makeKey(work, 'admin');
  assert.equal(daemon.cli(['ssh-keys:add', 'admin', key.publicKey]).code, 0);
});

after(async () => {
  for (const app of APPS) daemon.cli(['apps:destroy', app, '--force']);
  await daemon.stop();
  await git?.close();
});

const host = (app: string) => `${app}.${daemon.domain}`;
const get = async (app: string, p = '/') => request(daemon.httpPort, host(app), p);
const env = async (app: string) => JSON.parse((await get(app, '/env')).body) as Record<string, string | null>;
const ssh = (command: string, input?: string) => daemon.ssh(key.privateKey, command, input);
function push(app: string, repo: string) {
  return run('git', ['push', daemon.remote(app), 'main'], { cwd: repo, env: daemon.gitEnv(key.privateKey) });
}

test('a push of a Node.js app without a Dockerfile is built by the buildpack that detects it and served', async () => {
  const repo = path.join(work, 'shop');
  gitRepo(repo, nodeBuildpackApp('shop v1'));
  const p = push('shop', repo);
  assert.equal(p.code, 0, p.stderr);
  assert.match(p.stderr, /remote: -----> Building shop with buildpacks \(from the default list\)/);
  assert.match(p.stderr, /remote: -----> Node\.js fixture app detected/);
  assert.match(p.stderr, /remote:\s+no build cache: installing node_modules/);
  assert.match(p.stderr, /remote: -----> Process types: web/);
  assert.match(p.stderr, /remote: -----> Released v1 of shop/);
  assert.equal((await get('shop')).body, 'shop v1  web.1\n');
  const e = await env('shop');
  assert.equal(e.PORT, '5000');
  assert.equal(e.DYNO, 'web.1');
  assert.equal(e.FIXTURE_PROFILE, 'loaded from .profile.d');
});

test('the web process started with /start web; inside its container /exec runs in the app environment and /start web starts the server again; run goes through /exec', async () => {
  const id = mustRun('docker', ['ps', '-q', '--filter', `label=berth.instance=${daemon.instance}`, '--filter', 'label=berth.app=shop', '--filter', 'label=berth.process=web']).trim();
  assert.deepEqual(JSON.parse(mustRun('docker', ['inspect', id, '--format', '{{json .Config.Cmd}}'])), ['/start', 'web']);
  assert.equal(mustRun('docker', ['exec', id, '/exec', 'echo "$FIXTURE_PROFILE|$HOME|$(id -u)|$DYNO"']).trim(), 'loaded from .profile.d|/app|32767|web.1');
  mustRun('docker', ['exec', '-d', '-e', 'PORT=5077', id, '/start', 'web']);
  await waitFor('the second server in the container to answer', () => run('docker', ['exec', id, 'wget', '-qO-', 'http://127.0.0.1:5077/']).stdout === 'shop v1  web.1\n');
  const oneOff = ssh('run shop "cat /proc/1/cmdline"');
  assert.equal(oneOff.code, 0, oneOff.stderr);
  assert.match(oneOff.stdout, /\/exec\0cat \/proc\/1\/cmdline/);
});

test('a Procfile the buildpack writes during compile (as the Go buildpack does) is read from the built app, and its web process is served', async () => {
  const repo = path.join(work, 'gogo');
  gitRepo(repo, { 'go.mod': 'module example.test/gogo\n', 'main.go': 'package main\n' });
  assert.equal(ssh('apps:create gogo').code, 0);
  assert.equal(ssh(`buildpacks:set gogo ${goLikeDir}`).code, 0, 'an admin key may name a folder on the server');
  const p = push('gogo', repo);
  assert.equal(p.code, 0, p.stderr);
  assert.match(p.stderr, /remote: -----> Go app detected/);
  assert.match(p.stderr, /remote: -----> Process types \(Procfile\): web/);
  assert.equal((await get('gogo')).body, 'go-like server web.1\n');
});

test('a git buildpack whose remote is down after a first build: the next push builds from the kept copy and says so, and buildpacks:update keeps it', async () => {
  const bare = path.join(work, 'served', 'nodejs.git');
  publishBuildpack(writeBuildpack(path.join(work, 'git-bp'), NODE_FIXTURE_BUILDPACK), bare);
  const repo = path.join(work, 'remote');
  gitRepo(repo, { ...nodeBuildpackApp('remote v1'), '.buildpacks': `${git.url('nodejs.git')}\n` });
  const first = push('remote', repo);
  assert.equal(first.code, 0, first.stderr);
  assert.doesNotMatch(first.stderr, /kept on this server/);
  git.setDown(true);
  try {
    gitRepo(repo, nodeBuildpackApp('remote v2'), 'v2');
    const second = push('remote', repo);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stderr, /remote:\s+using the copies kept on this server of nodejs \(fetched since .* UTC; buildpacks:update refreshes them\)/);
    assert.equal((await get('remote')).body, 'remote v2  web.1\n');
    const update = ssh('buildpacks:update remote');
    assert.equal(update.code, 0, update.stderr);
    assert.match(update.stdout, /nodejs: could not fetch http:\/\/127\.0\.0\.1:\d+\/nodejs\.git \(.*503.*\); builds keep using the last good copy, fetched \d{4}-/);
  } finally {
    git.setDown(false);
  }
  const refreshed = ssh('buildpacks:update remote');
  assert.equal(refreshed.code, 0, refreshed.stderr);
  assert.match(refreshed.stdout, /nodejs: fetched http:\/\/127\.0\.0\.1:\d+\/nodejs\.git/);
  const all = daemon.cli(['buildpacks:update-all']);
  assert.equal(all.code, 0, all.stderr);
  assert.match(all.stdout, /Updating every buildpack kept on this server[\s\S]*nodejs: fetched/);
});

test('config:set with spaces, = and a newline makes a new release the app sees; config:get and --format json show it', async () => {
  const value = 'hello world = yes\nsecond line';
  const set = ssh(`config:set shop 'GREETING=${value}' API_URL=https://x.example/?a=b`);
  assert.equal(set.code, 0, set.stderr);
  assert.match(set.stdout, /Set GREETING, API_URL; releasing v2 and restarting shop/);
  const e = await env('shop');
  assert.equal(e.GREETING, value);
  assert.equal(e.API_URL, 'https://x.example/?a=b');
  assert.equal(ssh('config:get shop GREETING').stdout, value + '\n');
  assert.deepEqual(JSON.parse(daemon.cli(['config:show', 'shop', '--format', 'json']).stdout), { GREETING: value, API_URL: 'https://x.example/?a=b' });
  const bad = ssh('config:set shop 1BAD=x PORT=1');
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /invalid config key "1BAD"/);
  assert.match(bad.stderr, /PORT is set by berth/);
  const unset = daemon.cli(['config:unset', 'shop', 'API_URL', '--no-restart']);
  assert.equal(unset.code, 0, unset.stderr);
  assert.match(unset.stdout, /applies at the next deploy or ps:restart/);
  assert.equal((await env('shop')).API_URL, 'https://x.example/?a=b', 'not restarted yet');
});

test('ps:scale web=2 routes to two containers, and ps:report lists them', async () => {
  const scaled = ssh('ps:scale shop web=2');
  assert.equal(scaled.code, 0, scaled.stderr);
  const seen = new Set<string>();
  for (let i = 0; i < 6; i++) seen.add((await get('shop')).body.trim());
  assert.deepEqual([...seen].sort(), ['shop v1  web.1', 'shop v1  web.2']);
  const report = ssh('ps:report shop');
  assert.match(report.stdout, /web\.1\s+running\s+v2/);
  assert.match(report.stdout, /web\.2\s+running\s+v2/);
  assert.equal((await env('shop')).API_URL, 'https://x.example/?a=b', 'scaling runs the current release: the deferred unset waits');
});

test('a second push restores the build cache, and releases:rollback brings the old code and config back without a build', async () => {
  const repo = path.join(work, 'shop');
  gitRepo(repo, nodeBuildpackApp('shop v2'), 'v2');
  const p = push('shop', repo);
  assert.equal(p.code, 0, p.stderr);
  assert.match(p.stderr, /restoring node_modules from the build cache/);
  assert.match(p.stderr, /Released v3 of shop/);
  assert.match((await get('shop')).body, /^shop v2  web\.[12]\n$/);
  assert.equal((await env('shop')).API_URL, undefined, 'the push released the deferred unset');
  const rb = ssh('releases:rollback shop');
  assert.equal(rb.code, 0, rb.stderr);
  assert.match(rb.stdout, /Rolling back shop to v2 as v4/);
  assert.doesNotMatch(rb.stdout, /Building/);
  assert.equal((await get('shop')).body.trim().replace(/web\.\d/, 'web.N'), 'shop v1  web.N');
  assert.equal((await env('shop')).API_URL, 'https://x.example/?a=b', 'the config of v2 is back');
  const releases = ssh('releases shop').stdout;
  assert.match(releases, /v4 \*\s+Rollback to v2/);
  assert.match(releases, /v3\s+Deploy [0-9a-f]{7}\s+buildpacks/);
  assert.match(releases, /v2\s+Set GREETING, API_URL/);
  const output = ssh('releases:output shop 3');
  assert.equal(output.code, 0, output.stderr);
  assert.match(output.stdout, /restoring node_modules from the build cache[\s\S]*Released v3 of shop/, 'the build output of v3 is kept');
});

test('logs interleave the containers with a type.N prefix; -p, -n and -t narrow and follow them', async () => {
  await get('shop', '/log');
  await get('shop', '/log');
  await waitFor('both dynos to have logged', () => {
    const out = ssh('logs shop -n 50').stdout;
    return /app\[web\.1\]: log line from web\.1/.test(out) && /app\[web\.2\]: log line from web\.2/.test(out);
  });
  const lines = ssh('logs shop -n 1 -p web').stdout.trim().split('\n');
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /^\d{4}-\d\d-\d\dT\S+ app\[web\.\d\]: log line from web\.\d$/);
  const follower = spawn('ssh', [...sshArgs(), 'berth@127.0.0.1', 'logs shop -t -n 0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let followed = '';
  follower.stdout.on('data', (d: Buffer) => (followed += d.toString()));
  try {
    await waitFor('the follower to be attached and see a new line', async () => {
      await get('shop', '/log');
      return /log line from web/.test(followed);
    }, 20_000);
  } finally {
    follower.kill('SIGTERM');
  }
});

test('run starts a one-off container with the config, passes stdin, returns the exit status, and gives a TTY to ssh -t', () => {
  const echo = ssh(`run shop 'echo "$GREETING" | head -1; echo $DYNO'`);
  assert.equal(echo.code, 0, echo.stderr);
  assert.match(echo.stdout, /^hello world = yes\nrun\.\d+\n$/);
  assert.equal(ssh('run shop "exit 7"').code, 7);
  const local = daemon.cli(['run', 'shop', 'echo local $DYNO']);
  assert.equal(local.code, 0, local.stderr);
  assert.match(local.stdout, /^local run\.\d+\n$/);
  assert.equal(ssh('run shop cat', 'from stdin\n').stdout, 'from stdin\n');
  assert.match(ssh('run shop "test -t 0 && echo tty || echo no tty"').stdout, /^no tty/);
  const tty = run('ssh', ['-tt', ...sshArgs(), 'berth@127.0.0.1', 'run shop "test -t 0 && echo tty:$TERM || echo no tty"'], { input: '' });
  assert.equal(tty.code, 0, tty.stderr);
  assert.match(tty.stdout, /tty:\S+\r\n/, `stdout ${JSON.stringify(tty.stdout)} stderr ${JSON.stringify(tty.stderr)}`);
  const left = mustRun('docker', ['ps', '-a', '--filter', 'label=berth.role=run', '--filter', `label=berth.instance=${daemon.instance}`, '--filter', 'label=berth.app=shop', '--format', '{{.Names}}']).trim();
  assert.equal(left, '', 'one-off containers are removed');
});

test('a container that crashes is restarted by its restart policy and answers again', async () => {
  const before = (await get('shop', '/crash')).body;
  assert.equal(before, 'bye\n');
  await waitFor('the crashed container to be back', async () => {
    const report = ssh('ps:report shop').stdout;
    return /web\.\d\s+running\s+v4\s+1\s/.test(report);
  }, 30_000);
  await waitFor('both containers to answer through the proxy', async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 4; i++) seen.add((await get('shop')).body.trim().replace(/ +/g, ' '));
    return [...seen].sort().join('|') === 'shop v1 web.1|shop v1 web.2';
  }, 30_000);
});

test('storage:mount and resource:limit apply to the containers after the restart they cause', async () => {
  const dataDir = path.join(work, 'shared-data');
  fs.mkdirSync(dataDir, { recursive: true });
  fs.writeFileSync(path.join(dataDir, 'note.txt'), 'from the host\n');
  const mount = daemon.cli(['storage:mount', 'shop', `${dataDir}:/data:ro`]);
  assert.equal(mount.code, 0, mount.stderr);
  assert.equal(ssh('run shop "cat /data/note.txt"').stdout, 'from the host\n');
  const limit = ssh('resource:limit shop --process web --memory 96m --cpu 0.5');
  assert.equal(limit.code, 0, limit.stderr);
  const ids = mustRun('docker', ['ps', '-q', '--filter', `label=berth.instance=${daemon.instance}`, '--filter', 'label=berth.app=shop', '--filter', 'label=berth.process=web']).trim().split('\n');
  assert.equal(ids.length, 2);
  for (const id of ids) {
    assert.equal(mustRun('docker', ['inspect', id, '--format', '{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}']).trim(), `${96 * 1024 * 1024} 500000000`);
  }
  assert.match((await get('shop')).body, /^shop v1/);
  const badMount = daemon.cli(['storage:mount', 'shop', 'relative:/data']);
  assert.notEqual(badMount.code, 0);
  assert.match(badMount.stderr, /relative is not absolute/);
});

test('Procfile types: a worker runs when scaled and is not routed; a bad Procfile line is named and rejected', async () => {
  const repo = path.join(work, 'worky');
  gitRepo(repo, { ...nodeBuildpackApp('worky'), Procfile: 'web: node server.js\nworker: node -e "setInterval(() => console.log(\'tick\'), 200)"\n' });
  const p = push('worky', repo);
  assert.equal(p.code, 0, p.stderr);
  assert.match(p.stderr, /Process types \(Procfile\): web, worker/);
  assert.equal(ssh('ps:scale worky worker=1').code, 0);
  await waitFor('the worker to log', () => /app\[worker\.1\]: tick/.test(ssh('logs worky -p worker -n 5').stdout));
  assert.match(ssh('ps:report worky').stdout, /worker\.1\s+running/);
  assert.equal((await get('worky')).body, 'worky  web.1\n');
  const unknown = ssh('ps:scale worky clock=1');
  assert.notEqual(unknown.code, 0);
  assert.match(unknown.stderr, /no process type clock/);

  gitRepo(repo, { Procfile: 'web: node server.js\nthis line is wrong\n' }, 'bad procfile');
  const bad = push('worky', repo);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /Procfile line 2: "this line is wrong" is not "type: command"/);
  assert.match(bad.stderr, /! \[remote rejected\] main -> main/);
  const failed = ssh('logs:failed worky');
  assert.match(failed.stdout, /Procfile line 2/);
  assert.equal((await get('worky')).body, 'worky  web.1\n', 'the previous release keeps serving');
});

test('a build that runs out of its memory limit fails the push with that reason; the daemon and the apps keep serving', async () => {
  assert.equal(ssh(`buildpacks:set worky ${hungryDir}`).code, 0);
  const repo = path.join(work, 'worky');
  gitRepo(repo, { ...nodeBuildpackApp('worky'), Procfile: 'web: node server.js\n' }, 'fixed procfile');
  const p = push('worky', repo);
  assert.notEqual(p.code, 0);
  assert.match(p.stderr, /the build ran out of memory \(limit 128 MiB\) and was stopped/);
  assert.match(p.stderr, /! \[remote rejected\] main -> main/);
  assert.equal((await get('worky')).body, 'worky  web.1\n');
  assert.match((await get('shop')).body, /^shop v1/);
  assert.equal(ssh('buildpacks:clear worky').code, 0);
});

test('git:from-image deploys an image the engine already has', async () => {
  const image = `${daemon.imageRepo('shop')}:r1`;
  const r = ssh(`apps:create fromimg`);
  assert.equal(r.code, 0, r.stderr);
  const d = ssh(`git:from-image fromimg ${image}`);
  assert.equal(d.code, 0, d.stderr);
  assert.match(d.stdout, new RegExp(`Deploying image ${daemon.imageRepo('shop')}:r1 as v1 of fromimg`));
  assert.equal((await get('fromimg')).body, 'shop v1  web.1\n');
  const missing = ssh('git:from-image fromimg no-such-image:1');
  assert.match(missing.stderr, /the Docker engine has no image no-such-image:1/);
});

test('old release images are pruned beyond --keep-images, and a rollback to a pruned one says so', () => {
  for (let i = 0; i < 3; i++) assert.equal(ssh(`config:set shop ROUND=${i}`).code, 0);
  // v1..v7 of shop run the images r1 and r3; two pushes make r8 and r9. With 3 kept, r3 goes.
  const repo = path.join(work, 'shop');
  for (const v of ['v3', 'v4']) {
    gitRepo(repo, nodeBuildpackApp(`shop ${v}`), v);
    assert.equal(push('shop', repo).code, 0);
  }
  const images = mustRun('docker', ['images', daemon.imageRepo('shop'), '--format', '{{.Tag}}']).trim().split('\n').sort();
  assert.deepEqual(images, ['r1', 'r8', 'r9']);
  assert.match(ssh('releases shop').stdout, new RegExp(`v3\\s+Deploy .*${daemon.imageRepo('shop')}:r3 \\(pruned\\)`));
  const rb = ssh('releases:rollback shop 3');
  assert.notEqual(rb.code, 0);
  assert.match(rb.stderr, new RegExp(`the image of v3 \\(${daemon.imageRepo('shop')}:r3\\) is no longer on the engine`));
});

test('after SIGKILL the apps keep serving; a restarted daemon adopts them and starts what is missing', async () => {
  const webBefore = mustRun('docker', ['ps', '-q', '--filter', `label=berth.instance=${daemon.instance}`, '--filter', 'label=berth.app=shop', '--filter', 'label=berth.process=web']).trim().split('\n');
  assert.equal(webBefore.length, 2);
  const removedDyno = mustRun('docker', ['inspect', webBefore[1]!, '--format', '{{index .Config.Labels "berth.dyno"}}']).trim();
  daemon.process.kill('SIGKILL');
  await new Promise((r) => daemon.process.once('exit', r));
  assert.equal(mustRun('docker', ['inspect', webBefore[0]!, '--format', '{{.State.Running}}']).trim(), 'true', 'containers keep running while the daemon is down');
  mustRun('docker', ['rm', '-f', webBefore[1]!]);
  daemon = await startDaemon({ dataDir: daemon.dataDir, env: daemonEnv });
  const seen = new Set<string>();
  for (let i = 0; i < 6; i++) seen.add((await get('shop')).body.trim().replace(/ +/g, ' '));
  assert.deepEqual([...seen].sort(), ['shop v4 web.1', 'shop v4 web.2']);
  const webAfter = mustRun('docker', ['ps', '-q', '--filter', `label=berth.instance=${daemon.instance}`, '--filter', 'label=berth.app=shop', '--filter', 'label=berth.process=web']).trim().split('\n');
  assert.ok(webAfter.some((id) => webBefore[0]!.startsWith(id) || id.startsWith(webBefore[0]!)), 'the surviving container was adopted, not replaced');
  assert.equal((await get('worky')).body, 'worky  web.1\n');
  assert.match(daemon.logs(), new RegExp(`"app_adopted".*"app":"shop".*"started":\\["${removedDyno.replace('.', '\\.')}"\\]`));
});

function sshArgs(): string[] {
  return ['-i', key.privateKey, '-o', 'IdentitiesOnly=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR', '-o', 'BatchMode=yes', '-p', String(daemon.sshPort)];
}
