// The buildpack builder on real parts: the real Docker engine, the local stack image, buildpacks
// these tests write (from absolute paths, file:// URLs, and a bare git repository served over
// HTTP by git's own http-backend and fetched with isomorphic-git).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
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
import { NODE_FIXTURE_BUILDPACK, STACK_IMAGE, nodeBuildpackApp, writeBuildpack } from './helpers/buildpacks.ts';
import { mustRun, tempDir, writeFiles } from './helpers/daemon.ts';

const work = tempDir('bp-builder');
const instance = `bpt${process.pid.toString(16)}`.slice(0, 12);
let engine: DockerEngine;
const images: string[] = [];
let gitServer: http.Server;
let gitUrl: string;

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
  mustRun('git', ['init', '-q', '-b', 'main', src]);
  mustRun('git', ['-C', src, '-c', 'user.email=t@example.test', '-c', 'user.name=t', 'add', '-A']);
  mustRun('git', ['-C', src, '-c', 'user.email=t@example.test', '-c', 'user.name=t', 'commit', '-qm', 'buildpack']);
  mustRun('git', ['-C', src, 'tag', 'v1']);
  mustRun('git', ['clone', '-q', '--bare', src, path.join(work, 'served', 'bp.git')]);
  gitServer = http.createServer((req, res) => gitHttpBackend(path.join(work, 'served'), req, res));
  await new Promise<void>((r) => gitServer.listen(0, '127.0.0.1', r));
  gitUrl = `http://127.0.0.1:${(gitServer.address() as AddressInfo).port}/bp.git`;
});

after(async () => {
  gitServer?.close();
  for (const image of images) await engine.removeImage(image).catch(() => {});
  for (const app of ['bpdetect', 'bpcache', 'bpfail', 'bpgit', 'bpnone', 'bpoom']) await engine.removeVolume(cacheVolume(instance, app)).catch(() => {});
});

function builder(defaults: string[], memory = 512 * 1024 ** 2): BuildpackBuilder {
  return new BuildpackBuilder({ engine, fetcher: new BuildpackFetcher(path.join(work, 'fetched')), stackImage: STACK_IMAGE, defaultBuildpacks: defaults, memory });
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
  return { name: app, createdAt: new Date().toISOString(), releases: [], current: null, ...defaultSettings(), ...settings };
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

/** Runs a command in the built image through its launcher, as a process of the app would start. */
function runInImage(image: string, command: string, env: string[] = []): string {
  return mustRun('docker', ['run', '--rm', ...env.flatMap((e) => ['-e', e]), image, command]).trim();
}

test('detection takes the first buildpack of the list whose bin/detect accepts the app, and names the others it tried', async () => {
  const { result, text } = await build(builder([never, `file://${python}`, node, otherNode]), 'bpdetect', nodeBuildpackApp('hi'), 1);
  assert.match(text, /never: not detected/);
  assert.match(text, /python: not detected/);
  assert.match(text, /-----> Node\.js fixture app detected/);
  assert.doesNotMatch(text, /other-node compiled/);
  assert.equal(result.builder, 'buildpacks');
  assert.deepEqual(result.processTypes, { web: 'node server.js' }, 'default_process_types from bin/release');
  const cmd = JSON.parse(mustRun('docker', ['image', 'inspect', result.image, '--format', '{{json .Config.Cmd}}']));
  assert.deepEqual(cmd, ['node server.js']);
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

// git's smart HTTP server as a CGI program: the test side of the git-URL case (the daemon never runs git).
function gitHttpBackend(root: string, req: http.IncomingMessage, res: http.ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://x');
  const child = spawn('git', ['http-backend'], {
    env: {
      ...process.env,
      GIT_PROJECT_ROOT: root,
      GIT_HTTP_EXPORT_ALL: '1',
      REQUEST_METHOD: req.method ?? 'GET',
      PATH_INFO: url.pathname,
      QUERY_STRING: url.search.slice(1),
      CONTENT_TYPE: req.headers['content-type'] ?? '',
      ...(req.headers['content-length'] ? { CONTENT_LENGTH: req.headers['content-length'] } : {}),
      ...(req.headers['git-protocol'] ? { GIT_PROTOCOL: String(req.headers['git-protocol']) } : {}),
    },
  });
  req.pipe(child.stdin);
  let head = Buffer.alloc(0);
  let headersDone = false;
  child.stdout.on('data', (chunk: Buffer) => {
    if (headersDone) return void res.write(chunk);
    head = Buffer.concat([head, chunk]);
    const end = head.indexOf('\r\n\r\n');
    if (end < 0) return;
    headersDone = true;
    let status = 200;
    for (const line of head.subarray(0, end).toString('latin1').split('\r\n')) {
      const i = line.indexOf(':');
      const name = line.slice(0, i).trim();
      const value = line.slice(i + 1).trim();
      if (name.toLowerCase() === 'status') status = Number(value.split(' ')[0]);
      else res.setHeader(name, value);
    }
    res.writeHead(status);
    res.write(head.subarray(end + 4));
  });
  child.on('close', () => res.end());
}
