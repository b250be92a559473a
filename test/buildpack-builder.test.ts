// The buildpack builder on real parts: the real Docker engine, the local stack image, buildpacks
// these tests write (from absolute paths, file:// URLs, a tarball served over HTTP, and bare git
// repositories served over HTTP by git's own http-backend and fetched with isomorphic-git). Each
// Heroku behaviour is reproduced by a buildpack written here that depends on it, as the real
// Python, Ruby, Go and Node.js buildpacks and heroku-buildpack-multi do.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import zlib from 'node:zlib';
import { after, before, test } from 'node:test';
import { MemoryOutput } from '../src/ui/output.ts';
import { UserError } from '../src/errors.ts';
import type { BuildSource } from '../src/orchestrator/builder.ts';
import { BuildpackBuilder, cacheVolume } from '../src/orchestrator/buildpack-builder.ts';
import { BuildpackFetcher } from '../src/orchestrator/buildpack-fetcher.ts';
import { DockerEngine } from '../src/orchestrator/docker-engine.ts';
import { makeTar } from '../src/orchestrator/tar-files.ts';
import { defaultSettings } from '../src/state/app-settings.ts';
import type { AppRecord } from '../src/state/app-store.ts';
import { NODE_FIXTURE_BUILDPACK, STACK_IMAGE, nodeBuildpackApp, publishBuildpack, serveGit, writeBuildpack, type GitServer } from './helpers/buildpacks.ts';
import { mustRun, run, tempDir, writeFiles } from './helpers/daemon.ts';

const work = tempDir('bp-builder');
const instance = `bpt${process.pid.toString(16)}`.slice(0, 12);
let engine: DockerEngine;
const images: string[] = [];
let git: GitServer;
let gitUrl: string;
let tarballServer: http.Server;
// The git and tarball servers of these tests are on loopback, which the admin allows explicitly.
const LOCAL_SERVERS = { policy: { allowHosts: ['127.0.0.1'] } };

const never = writeBuildpack(path.join(work, 'bp', 'never'), { detect: 'exit 1', compile: 'exit 1' });
const python = writeBuildpack(path.join(work, 'bp', 'python'), { detect: '[[ -f "$1/requirements.txt" ]] && echo Python', compile: 'exit 0' });
const node = writeBuildpack(path.join(work, 'bp', 'nodejs'), NODE_FIXTURE_BUILDPACK);
const otherNode = writeBuildpack(path.join(work, 'bp', 'other-node'), { detect: 'echo Other; exit 0', compile: 'echo "other-node compiled"' });
const failing = writeBuildpack(path.join(work, 'bp', 'failing'), { detect: 'echo Failing', compile: 'echo "compile exploded: missing lockfile" >&2; exit 7' });

before(async () => {
  engine = await DockerEngine.connect(process.env.DOCKER_HOST ?? '/var/run/docker.sock', instance);
  // A bare repository holding a buildpack, served by git http-backend (CGI) on loopback.
  const src = path.join(work, 'git-bp-src');
  writeBuildpack(src, { detect: 'echo "From git"', compile: 'echo "compiled by the git buildpack"; echo "web: node server.js" > /dev/null', release: 'printf "default_process_types:\\n  web: node server.js\\n"' });
  publishBuildpack(src, path.join(work, 'served', 'bp.git'));
  mustRun('git', ['-C', path.join(work, 'served', 'bp.git'), 'tag', 'v1', 'main']);
  git = await serveGit(path.join(work, 'served'));
  gitUrl = git.url('bp.git');
  // A buildpack as a tarball with one top-level folder, as GitHub's archives have it.
  const tgzSrc = writeBuildpack(path.join(work, 'tgz-src', 'heroku-buildpack-tarred-1.0'), { detect: 'echo Tarred', compile: 'echo "compiled by the tarball buildpack"', release: 'printf -- "---\\ndefault_process_types:\\n  web: node server.js\\n"' });
  mustRun('tar', ['-C', path.dirname(tgzSrc), '-czf', path.join(work, 'tarred.tgz'), path.basename(tgzSrc)]);
  // And one whose entry climbs out of its folder.
  const chunks: Buffer[] = [];
  for await (const c of makeTar([{ name: 'bin/detect', type: 'file', content: 'echo Evil', mode: 0o755 }, { name: '../escaped.txt', type: 'file', content: 'out' }])) chunks.push(c as Buffer);
  fs.writeFileSync(path.join(work, 'evil.tgz'), zlib.gzipSync(Buffer.concat(chunks)));
  tarballServer = http.createServer((req, res) => {
    const file = { '/buildpacks/tarred.tgz': 'tarred.tgz', '/buildpacks/evil.tgz': 'evil.tgz' }[req.url ?? ''];
    if (!file) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'application/gzip' }).end(fs.readFileSync(path.join(work, file)));
  });
  await new Promise<void>((r) => tarballServer.listen(0, '127.0.0.1', r));
});

after(async () => {
  await git?.close();
  tarballServer?.close();
  for (const image of images) await engine.removeImage(image).catch(() => {});
  for (const app of APPS) await engine.removeVolume(cacheVolume(instance, app)).catch(() => {});
});

const APPS = ['bpdetect', 'bpcache', 'bpfail', 'bpgit', 'bpnone', 'bpoom', 'bpstack', 'bpstack2', 'bpgo', 'bpmono', 'bpuser', 'bppair', 'bpdown', 'bptgz', 'bprace'];

function builder(defaults: string[], memory = 512 * 1024 ** 2, fetcher = new BuildpackFetcher(path.join(work, 'fetched'), LOCAL_SERVERS)): BuildpackBuilder {
  return new BuildpackBuilder({ engine, fetcher, stackImage: STACK_IMAGE, defaultBuildpacks: defaults, memory });
}

function source(app: string, files: Record<string, string>): BuildSource {
  const dir = path.join(work, 'src', app + Math.random().toString(16).slice(2, 6));
  writeFiles(dir, files);
  return {
    app,
    commit: 'c0ffee'.padEnd(40, '0'),
    readFile: async (p) => (fs.existsSync(path.join(dir, p)) ? fs.readFileSync(path.join(dir, p)) : undefined),
    archive: () => makeTar(fs.readdirSync(dir).map((name) => (fs.statSync(path.join(dir, name)).isDirectory() ? { name, type: 'tree' as const, from: path.join(dir, name) } : { name, type: 'file' as const, content: fs.readFileSync(path.join(dir, name)) }))),
  };
}

function record(app: string, settings: Partial<AppRecord> = {}): AppRecord {
  return { id: app, name: app, createdAt: new Date().toISOString(), releases: [], current: null, ...defaultSettings(), ...settings };
}

async function build(b: BuildpackBuilder, app: string, files: Record<string, string>, release: number, settings: Partial<AppRecord> = {}) {
  const out = new MemoryOutput();
  const started = Date.now();
  try {
    const result = await b.build({ source: source(app, files), app: record(app, settings), release, out });
    images.push(result.image);
    return { result, text: out.text(), ms: Date.now() - started };
  } catch (e) {
    (e as Error & { output?: string }).output = out.text();
    throw e;
  }
}

/** Runs a command in the built image through its /exec, as `run APP` does. */
function runInImage(image: string, command: string, env: string[] = []): string {
  return mustRun('docker', ['run', '--rm', ...env.flatMap((e) => ['-e', e]), image, '/exec', command]).trim();
}

test('detection takes the first buildpack of the list whose bin/detect accepts the app, and names the others it tried', async () => {
  const { result, text } = await build(builder([never, `file://${python}`, node, otherNode]), 'bpdetect', nodeBuildpackApp('hi'), 1);
  assert.match(text, /never: not detected/);
  assert.match(text, /python: not detected/);
  assert.match(text, /-----> Node\.js fixture app detected/);
  assert.doesNotMatch(text, /other-node compiled/);
  assert.equal(result.builder, 'buildpacks');
  assert.deepEqual(result.processTypes, { web: 'node server.js' }, 'default_process_types from bin/release');
  const config = JSON.parse(mustRun('docker', ['image', 'inspect', result.image, '--format', '{{json .Config}}'])) as { Cmd: string[]; Entrypoint: string[] | null };
  assert.deepEqual(config.Cmd, ['/start', 'web'], 'the image starts its web process through /start');
  assert.deepEqual(config.Entrypoint ?? [], []);
  assert.equal(runInImage(result.image, 'echo "$FIXTURE_PROFILE|$HOME|$PWD|$FIXTURE_DEFAULT"'), 'loaded from .profile.d|/app|/app|from bin/release', '.profile.d is sourced, HOME is /app, config_vars are defaults');
  assert.equal(runInImage(result.image, 'echo "$FIXTURE_DEFAULT"', ['FIXTURE_DEFAULT=mine']), 'mine', 'an app config var wins over a bin/release default');
});

test('the second build finds the cache the first one left, and ENV_DIR holds the config vars', async () => {
  const files = nodeBuildpackApp('cached');
  const first = await build(builder([node]), 'bpcache', files, 1, { config: { GREETING: 'hello\nwith = signs and spaces' } });
  assert.match(first.text, /no build cache: installing node_modules/);
  const second = await build(builder([node]), 'bpcache', files, 2, { config: { GREETING: 'second' } });
  assert.match(second.text, /restoring node_modules from the build cache/);
  assert.equal(runInImage(first.result.image, 'cat .greeting-at-build'), 'hello\nwith = signs and spaces');
  assert.equal(runInImage(second.result.image, 'cat .greeting-at-build'), 'second');
  assert.equal(runInImage(second.result.image, 'ls /tmp/env /tmp/buildpacks 2>&1 | head -1 | grep -c "No such file"'), '1', 'ENV_DIR and the buildpacks are not left in the image');
});

test('a buildpack whose compile fails fails the build with its name, and its output reaches the pusher', async () => {
  await assert.rejects(build(builder([failing]), 'bpfail', nodeBuildpackApp('x'), 1), (e: unknown) => {
    assert.ok(e instanceof UserError);
    assert.equal(e.code, 'buildpack_compile_failed');
    assert.match(e.message, /buildpack failing failed to compile/);
    assert.match((e as { output?: string }).output!, /compile exploded: missing lockfile/);
    return true;
  });
});

test('a git URL buildpack with #ref is fetched from a bare repository over HTTP, and .buildpacks names it', async () => {
  const { result, text } = await build(builder([never]), 'bpgit', { ...nodeBuildpackApp('git'), '.buildpacks': `${gitUrl}#v1\n` }, 1);
  assert.match(text, /from \.buildpacks/);
  assert.match(text, /-----> From git app detected/);
  assert.match(text, /compiled by the git buildpack/);
  assert.deepEqual(result.processTypes, { web: 'node server.js' });
});

test('with no buildpack that detects the app, the error names every buildpack tried, fetched or not', async () => {
  const unreachable = 'https://github.invalid/heroku/heroku-buildpack-nodejs.git';
  await assert.rejects(build(builder([never, unreachable, python]), 'bpnone', { 'index.html': 'hi' }, 1), (e: Error) => {
    assert.ok(e instanceof UserError);
    assert.equal(e.code, 'no_buildpack_detected');
    assert.match(e.message, /never \(did not detect the app\)/);
    assert.match(e.message, /python \(did not detect the app\)/);
    assert.match(e.message, /heroku-buildpack-nodejs\.git \(could not be fetched\)/);
    return true;
  });
});

test('a build that needs more memory than the build limit fails with that reason', async () => {
  const hungry = writeBuildpack(path.join(work, 'bp', 'hungry'), { detect: 'echo Hungry', compile: `node -e 'const a = []; for (;;) a.push(Buffer.alloc(8 << 20, 1))'` });
  await assert.rejects(build(builder([hungry], 48 * 1024 ** 2), 'bpoom', { 'x.txt': 'x' }, 1), (e: Error) => {
    assert.ok(e instanceof UserError, String(e));
    assert.equal(e.code, 'build_out_of_memory');
    assert.match(e.message, /ran out of memory \(limit 48 MiB\)/);
    return true;
  });
});

// As the Python and Ruby buildpacks do: `checks::ensure_supported_stack "$STACK"` exits at once
// for anything but a known stack id, and $STACK is part of their download URLs.
const stackStrict = writeBuildpack(path.join(work, 'bp', 'stack-strict'), {
  detect: 'echo StackStrict',
  compile: `if [[ ! $STACK =~ ^heroku-[0-9]+$ ]]; then echo " !     Error: The '$STACK' stack isn't recognised."; exit 1; fi
echo "       downloading https://example.test/$STACK/runtime.tar.gz"`,
});

test('the locally made stack image carries CNB_STACK_ID=heroku-24, and a buildpack that refuses any other STACK builds on it', async () => {
  const env = JSON.parse(mustRun('docker', ['image', 'inspect', STACK_IMAGE, '--format', '{{json .Config.Env}}'])) as string[];
  assert.ok(env.includes('CNB_STACK_ID=heroku-24'), env.join(' '));
  const { text } = await build(builder([stackStrict]), 'bpstack', { 'x.txt': 'x' }, 1);
  assert.match(text, /on berth-test\/stack:latest\n[\s\S]*STACK=heroku-24 \(from the image's CNB_STACK_ID\)/);
  assert.match(text, /downloading https:\/\/example\.test\/heroku-24\/runtime\.tar\.gz/);
});

test("the app's STACK config var overrides the stack id, and reaches the buildpack", async () => {
  await assert.rejects(build(builder([stackStrict]), 'bpstack2', { 'x.txt': 'x' }, 1, { config: { STACK: 'cedar-14' } }), (e: Error) => {
    const output = (e as { output?: string }).output ?? '';
    assert.ok(e instanceof UserError);
    assert.equal(e.code, 'buildpack_compile_failed');
    assert.match(output, /STACK=cedar-14 \(from the app's STACK config var\)/);
    assert.match(output, /The 'cedar-14' stack isn't recognised/);
    return true;
  });
});

// As the Go buildpack does: its compile writes a Procfile when the app has none, and its
// bin/release prints `--- {}`.
const goLike = writeBuildpack(path.join(work, 'bp', 'go-like'), {
  detect: '[[ -f "$1/go.mod" ]] && echo Go',
  compile: `set -e
mkdir -p "$1/bin"
printf '#!/usr/bin/env bash\\necho "go server on port $PORT"\\n' > "$1/bin/server"
chmod +x "$1/bin/server"
if [[ ! -f "$1/Procfile" ]]; then echo "       Created a Procfile with the following entries:"; echo "web: bin/server" | tee "$1/Procfile"; fi`,
  release: 'echo "--- {}"',
});

test('a Procfile the buildpack writes during compile gives the process types, and /start web runs it', async () => {
  const { result, text } = await build(builder([goLike]), 'bpgo', { 'go.mod': 'module example.test/app\n', 'main.go': 'package main\n' }, 1);
  assert.match(text, /Created a Procfile/);
  assert.deepEqual(result.processTypes, { web: 'bin/server' });
  assert.equal(result.appFiles?.procfile, 'web: bin/server\n');
  assert.equal(mustRun('docker', ['run', '--rm', '-e', 'PORT=5000', result.image]).trim(), 'go server on port 5000', 'the image starts /start web by default');
  assert.equal(mustRun('docker', ['run', '--rm', '-e', 'PORT=7001', result.image, '/start', 'web']).trim(), 'go server on port 7001');
  const missing = run('docker', ['run', '--rm', result.image, '/start', 'worker']);
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /Proc entrypoint worker does not exist/);
});

// As heroku-buildpack-monorepo does: it moves APP_BASE to the root, and only then does the next
// buildpack detect the app.
const monorepo = writeBuildpack(path.join(work, 'bp', 'monorepo'), {
  detect: 'echo Monorepo',
  compile: `set -e
base="$(cat "$3/APP_BASE")"
staging="$(mktemp -d)"
cp -a "$1/$base/." "$staging/"
find "$1" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
cp -a "$staging/." "$1/"
rm -rf "$staging"
echo "       moved $base to the root"`,
});

test('buildpacks run in order, each detected against the build dir as the one before left it (a monorepo buildpack first), and Procfile and app.json come from the built app', async () => {
  const appJson = JSON.stringify({ healthchecks: { web: [{ type: 'startup', path: '/' }] } });
  const app = Object.fromEntries(Object.entries({ ...nodeBuildpackApp('mono'), 'app.json': appJson, Procfile: 'web: node server.js\n' }).map(([name, content]) => [`packages/web/${name}`, content]));
  const { result, text } = await build(builder([]), 'bpmono', { ...app, 'README.md': 'monorepo\n' }, 1, { buildpacks: [monorepo, node], config: { APP_BASE: 'packages/web' } });
  assert.match(text, /-----> Monorepo app detected[\s\S]*moved packages\/web to the root[\s\S]*-----> Node\.js fixture app detected/);
  assert.deepEqual(result.processTypes, { web: 'node server.js' });
  assert.deepEqual(result.appFiles, { procfile: 'web: node server.js\n', appJson }, 'the Procfile and app.json the first buildpack moved to the root are the ones read');
  assert.equal(runInImage(result.image, 'ls'), 'Procfile\napp.json\nnode_modules\npackage.json\nserver.js');
});

// Heroku and herokuish compile as an unprivileged user whose HOME is /app, with REQUEST_ID,
// SOURCE_VERSION and curl timeouts set; what a buildpack leaves outside the build dir (downloads
// in /tmp, caches in HOME) is not in the release image.
const unprivileged = writeBuildpack(path.join(work, 'bp', 'unprivileged'), {
  detect: 'echo Unprivileged',
  compile: `set -e
if [[ $(id -u) == 0 ]]; then echo " !     compile runs as root"; exit 1; fi
if [[ $HOME != /app || ! -d $HOME || ! -w $HOME ]]; then echo " !     HOME=$HOME is not a writable /app"; exit 1; fi
mkdir -p "$HOME/.cache/tool" && echo cached > "$HOME/.cache/tool/entry"
echo "a downloaded runtime" > /tmp/runtime.tar.gz
mkdir -p /tmp/pip-cache && echo wheel > /tmp/pip-cache/wheel
echo "       uid=$(id -u) user=$(whoami) REQUEST_ID=$REQUEST_ID CURL_CONNECT_TIMEOUT=$CURL_CONNECT_TIMEOUT CURL_TIMEOUT=$CURL_TIMEOUT SOURCE_VERSION=$SOURCE_VERSION"
echo built > "$1/built.txt"`,
});

test('compile runs as an unprivileged user with a writable HOME=/app and the Heroku build environment; nothing outside the build dir reaches the image', async () => {
  const { result, text } = await build(builder([unprivileged]), 'bpuser', { 'x.txt': 'x' }, 1);
  assert.match(text, /uid=32767 user=berth REQUEST_ID=build-[0-9a-f]{16} CURL_CONNECT_TIMEOUT=30 CURL_TIMEOUT=180 SOURCE_VERSION=c0ffee0{34}/);
  assert.equal(runInImage(result.image, 'ls -A /tmp | wc -l'), '0', 'the downloads in /tmp are not in the image');
  assert.equal(runInImage(result.image, 'ls -A /app'), 'built.txt\nx.txt', 'HOME caches are not in the image');
  assert.equal(runInImage(result.image, 'echo $(id -u) $(whoami) $HOME; touch /app/writable && echo writable'), '32767 berth /app\nwritable', 'processes run as the same unprivileged user');
});

// As heroku-buildpack-multi does: each buildpack's `export` is sourced for the next, and the last
// buildpack's bin/release gives the default process types.
const first = writeBuildpack(path.join(work, 'bp', 'first'), {
  detect: 'echo First',
  compile: `echo "export FROM_FIRST='set by the first buildpack'" > "$(cd "$(dirname "$0")/.." && pwd)/export"`,
  release: `printf -- "---\\ndefault_process_types:\\n  web: first-web\\n  worker: first-worker\\n"`,
});
const second = writeBuildpack(path.join(work, 'bp', 'second'), {
  detect: 'echo Second',
  compile: 'echo "$FROM_FIRST" > "$1/from-first.txt"',
  release: `printf -- "---\\ndefault_process_types:\\n  web: second-web\\n"`,
});

test("the first buildpack's export reaches the second, and the last buildpack's bin/release gives the default process types", async () => {
  const { result } = await build(builder([]), 'bppair', { 'x.txt': 'x' }, 1, { buildpacks: [first, second] });
  assert.deepEqual(result.processTypes, { web: 'second-web' });
  assert.equal(runInImage(result.image, 'cat from-first.txt'), 'set by the first buildpack');
});

test('a git buildpack is fetched once; with its remote down the build uses the kept copy and says so; update keeps it on failure and refreshes it once the remote is back', async () => {
  const src = writeBuildpack(path.join(work, 'down-src'), { detect: 'echo Downable', compile: 'echo "downable version 1"' });
  const bare = path.join(work, 'served', 'downable.git');
  publishBuildpack(src, bare, 'v1');
  const url = git.url('downable.git');
  const fetcher = new BuildpackFetcher(path.join(work, 'fetched-down'), LOCAL_SERVERS);
  const b = builder([], undefined, fetcher);
  const firstBuild = await build(b, 'bpdown', { 'x.txt': 'x' }, 1, { buildpacks: [url] });
  assert.match(firstBuild.text, /downable version 1/);
  assert.doesNotMatch(firstBuild.text, /kept on this server/);

  git.setDown(true);
  try {
    const secondBuild = await build(b, 'bpdown', { 'x.txt': 'x' }, 2, { buildpacks: [url] });
    assert.match(secondBuild.text, /using the copies kept on this server of downable \(fetched since \d{4}-\d\d-\d\d \d\d:\d\d UTC; buildpacks:update refreshes them\)/);
    assert.match(secondBuild.text, /downable version 1/);
    const failed = await fetcher.update(url);
    assert.equal(failed.cached, true);
    assert.match(failed.failure ?? '', /503/);
  } finally {
    git.setDown(false);
  }
  fs.writeFileSync(path.join(src, 'bin', 'compile'), '#!/usr/bin/env bash\necho "downable version 2"\n', { mode: 0o755 });
  publishBuildpack(src, bare, 'v2');
  assert.deepEqual(await fetcher.remembered('bpdown'), [url]);
  const updated = await fetcher.update(url);
  assert.equal(updated.cached, false);
  assert.equal(updated.failure, undefined);
  const thirdBuild = await build(b, 'bpdown', { 'x.txt': 'x' }, 3, { buildpacks: [url] });
  assert.match(thirdBuild.text, /downable version 2/);
});

test('a tarball URL buildpack (.tgz with one top-level folder) is downloaded, unpacked and used', async () => {
  const url = `http://127.0.0.1:${(tarballServer.address() as AddressInfo).port}/buildpacks/tarred.tgz`;
  const { result, text } = await build(builder([]), 'bptgz', { 'x.txt': 'x' }, 1, { buildpacks: [url] });
  assert.match(text, /buildpacks: tarred/);
  assert.match(text, /-----> Tarred app detected/);
  assert.match(text, /compiled by the tarball buildpack/);
  assert.deepEqual(result.processTypes, { web: 'node server.js' });
});

test('a tarball whose entries climb out of its folder is refused, and nothing lands outside', async () => {
  const fetchedDir = path.join(work, 'fetched-evil');
  const url = `http://127.0.0.1:${(tarballServer.address() as AddressInfo).port}/buildpacks/evil.tgz`;
  await assert.rejects(new BuildpackFetcher(fetchedDir, LOCAL_SERVERS).fetch(url), (e: Error) => {
    assert.ok(e instanceof UserError);
    assert.equal(e.code, 'buildpack_fetch_failed');
    assert.match(e.message, /the tarball has an entry outside its folder/);
    return true;
  });
  assert.deepEqual(fs.readdirSync(fetchedDir), [], 'no copy and no temp folder are left');
  assert.equal(fs.existsSync(path.join(work, 'escaped.txt')), false);
});

test("an admin's folder buildpack with a link flipped to the data dir while builds copy it: no data-dir content reaches any build", async () => {
  const data = path.join(work, 'race-data');
  const marker = `HOST-KEY-MARKER-${process.pid}`;
  fs.mkdirSync(path.join(data, 'ssh'), { recursive: true });
  fs.writeFileSync(path.join(data, 'ssh', 'host_key_secret'), marker);
  const bp = writeBuildpack(path.join(work, 'bp', 'race'), {
    detect: 'echo Race',
    compile: 'bp="$(cd "$(dirname "$0")/.." && pwd)"; cp -a "$bp" "$1/bp-copy"; cat "$bp/bin/flip" "$bp"/lib/* > "$1/read.txt" 2>/dev/null || true; echo "race compiled"',
  });
  const flipper = spawn(
    process.execPath,
    [
      '-e',
      `const fs = require('node:fs'); const [bp, data] = process.argv.slice(1);
       fs.mkdirSync(bp + '/lib'); fs.writeFileSync(bp + '/lib/inner', 'inner');
       process.stdout.write('flipping\\n');
       for (;;) {
         fs.writeFileSync(bp + '/bin/flip.tmp', 'plain'); fs.renameSync(bp + '/bin/flip.tmp', bp + '/bin/flip');
         fs.symlinkSync(data + '/ssh/host_key_secret', bp + '/bin/flip.tmp'); fs.renameSync(bp + '/bin/flip.tmp', bp + '/bin/flip');
         fs.renameSync(bp + '/lib', bp + '/lib.real'); fs.symlinkSync(data + '/ssh', bp + '/lib.tmp'); fs.renameSync(bp + '/lib.tmp', bp + '/lib');
         fs.unlinkSync(bp + '/lib'); fs.renameSync(bp + '/lib.real', bp + '/lib');
       }`,
      bp,
      data,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  try {
    await new Promise((resolve) => flipper.stdout.once('data', resolve));
    for (let release = 1; release <= 5; release++) {
      const { result, text } = await build(builder([]), 'bprace', { 'x.txt': 'x' }, release, { buildpacks: [bp] });
      assert.match(text, /race compiled/);
      assert.ok(!text.includes(marker));
      const inside = runInImage(result.image, 'cat read.txt; find bp-copy -type f -exec cat {} +; find bp-copy');
      assert.ok(!inside.includes(marker), `build ${release}: ${inside}`);
      assert.doesNotMatch(inside, /host_key_secret\n|bp-copy\/lib\/host_key_secret/);
    }
    assert.equal(flipper.exitCode, null, 'the flipper kept running');
  } finally {
    flipper.kill();
  }
});
