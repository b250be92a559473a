// Buildpacks the tests write (the Heroku buildpack API: bin/detect, bin/compile, bin/release),
// the fixture Node.js app they build, and a loopback git server that publishes buildpacks as
// git URLs. They run in the local stack image (bash + busybox + node + setpriv).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { mustRun } from './daemon.ts';

export const STACK_IMAGE = process.env.BERTH_TEST_STACK_IMAGE ?? 'berth-test/stack:latest';

export interface TestBuildpack {
  detect: string;
  compile: string;
  release?: string;
}

/** Writes a buildpack folder (scripts are bash) and returns its absolute path. */
export function writeBuildpack(dir: string, bp: TestBuildpack): string {
  fs.mkdirSync(path.join(dir, 'bin'), { recursive: true });
  const write = (name: string, body: string) => fs.writeFileSync(path.join(dir, 'bin', name), `#!/usr/bin/env bash\n${body}\n`, { mode: 0o755 });
  write('detect', bp.detect);
  write('compile', bp.compile);
  if (bp.release !== undefined) write('release', bp.release);
  return dir;
}

/**
 * The fixture's buildpack: detects package.json, "installs" node_modules (kept in CACHE_DIR, so
 * a second build restores them), copies GREETING from ENV_DIR into the build, adds a
 * .profile.d script, and declares `web: node server.js` as its default process type.
 */
export const NODE_FIXTURE_BUILDPACK: TestBuildpack = {
  detect: `[[ -f "$1/package.json" ]] && echo "Node.js fixture" && exit 0\nexit 1`,
  compile: `set -eo pipefail
build="$1" cache="$2" env="$3"
echo "-----> Installing dependencies"
if [[ -d "$cache/node_modules" ]]; then
  echo "       restoring node_modules from the build cache"
else
  echo "       no build cache: installing node_modules"
  mkdir -p "$cache/node_modules/left-pad"
  echo 'module.exports = (s, n) => String(s).padStart(n);' > "$cache/node_modules/left-pad/index.js"
  sleep 1
fi
cp -r "$cache/node_modules" "$build/node_modules"
if [[ -f "$env/GREETING" ]]; then cp "$env/GREETING" "$build/.greeting-at-build"; fi
mkdir -p "$build/.profile.d"
echo 'export FIXTURE_PROFILE="loaded from .profile.d"' > "$build/.profile.d/fixture.sh"
echo "       STACK=$STACK SOURCE_VERSION=$SOURCE_VERSION"`,
  release: `cat <<'YAML'
---
config_vars:
  FIXTURE_DEFAULT: "from bin/release"
default_process_types:
  web: node server.js
YAML`,
};

/** The fixture Node.js app: answers `/` with `message`, `/env` with its environment, `/crash` by exiting. */
export function nodeBuildpackApp(message: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    'package.json': JSON.stringify({ name: 'fixture', version: '1.0.0', main: 'server.js', scripts: { start: 'node server.js' } }, null, 2) + '\n',
    'server.js': `const http = require('http');
const fs = require('fs');
const pad = require('left-pad');
const message = ${JSON.stringify(message)};
http.createServer((req, res) => {
  if (req.url === '/env') {
    res.setHeader('content-type', 'application/json');
    let atBuild = null;
    try { atBuild = fs.readFileSync('.greeting-at-build', 'utf8'); } catch {}
    return res.end(JSON.stringify({ ...process.env, GREETING_AT_BUILD: atBuild }));
  }
  if (req.url === '/crash') { res.end('bye\\n'); setTimeout(() => process.exit(3), 50); return; }
  if (req.url === '/log') { console.log('log line from ' + process.env.DYNO); return res.end('logged\\n'); }
  res.end(message + ' ' + pad(process.env.DYNO, 6) + '\\n');
}).listen(Number(process.env.PORT), '0.0.0.0');
`,
    ...extra,
  };
}

/**
 * Bare repositories under `root` served over git's smart HTTP on loopback, by a child process (so
 * a test that blocks on a synchronous `git push` does not block the server the daemon fetches from).
 */
export interface GitServer {
  url(repo: string): string;
  /** While down, every request is answered 503, as by a remote that is down. */
  setDown(down: boolean): void;
  close(): Promise<void>;
}

export async function serveGit(root: string): Promise<GitServer> {
  fs.mkdirSync(root, { recursive: true });
  const child = spawn(process.execPath, [path.join(import.meta.dirname, 'git-http-server.ts'), root], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    let said = '';
    child.stdout.on('data', (d: Buffer) => {
      said += d.toString();
      const m = /listening on (\d+)\n/.exec(said);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`the git server exited with ${code}`)));
  });
  const marker = path.join(root, DOWN_MARKER);
  return {
    url: (repo) => `http://127.0.0.1:${port}/${repo}`,
    setDown: (down) => (down ? fs.writeFileSync(marker, '') : fs.rmSync(marker, { force: true })),
    close: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/** The file under the served root whose presence makes the git server answer 503. */
export const DOWN_MARKER = 'DOWN';

/** Commits the buildpack folder `src` (a git repository after the first call) and pushes it to the bare repository `bare`, made when missing. */
export function publishBuildpack(src: string, bare: string, message = 'buildpack'): void {
  const git = (...args: string[]) => mustRun('git', ['-C', src, '-c', 'user.email=t@example.test', '-c', 'user.name=t', ...args]);
  if (!fs.existsSync(path.join(src, '.git'))) mustRun('git', ['init', '-q', '-b', 'main', src]);
  git('add', '-A');
  git('commit', '-qm', message);
  if (!fs.existsSync(bare)) mustRun('git', ['init', '-q', '--bare', '-b', 'main', bare]);
  git('push', '-q', '--force', bare, 'main');
}
