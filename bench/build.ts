// bench:build — the figures of issue 4, measured on this machine with the local stack image and
// the fixture buildpack: the build of the fixture Node.js app, cold (empty build cache) and warm
// (cache from the previous build), alone and as `git push` until the new version answers
// through the proxy; and a rollback, from the command until the old release answers.
import path from 'node:path';
import { MemoryOutput } from '../src/ui/output.ts';
import { BuildpackBuilder, cacheVolume } from '../src/orchestrator/buildpack-builder.ts';
import { BuildpackFetcher } from '../src/orchestrator/buildpack-fetcher.ts';
import { DockerEngine } from '../src/orchestrator/docker-engine.ts';
import { makeTar } from '../src/orchestrator/tar-files.ts';
import { defaultSettings } from '../src/state/app-settings.ts';
import { NODE_FIXTURE_BUILDPACK, STACK_IMAGE, nodeBuildpackApp, writeBuildpack } from '../test/helpers/buildpacks.ts';
import { gitRepo, makeKey, request, run, startDaemon, tempDir } from '../test/helpers/daemon.ts';

const ROUNDS = Number(process.env.ROUNDS ?? 5);
const work = tempDir('bench-build');
const bp = writeBuildpack(path.join(work, 'buildpacks', 'nodejs'), NODE_FIXTURE_BUILDPACK);

function stats(ms: number[]): string {
  const sorted = [...ms].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  return `median ${median.toFixed(0)} ms (min ${sorted[0]!.toFixed(0)}, max ${sorted.at(-1)!.toFixed(0)}, n=${ms.length})`;
}

console.log(`fixture: the Node.js app of test/helpers/buildpacks.ts, built by its test buildpack on ${STACK_IMAGE}`);
console.log('note: the fixture buildpack sleeps 1 s when its cache is cold (its stand-in for installing dependencies)');

// 1. The builder alone, in-process against the engine: what a push waits for before its deploy.
const instance = `bench${process.pid.toString(16)}`.slice(0, 12);
const engine = await DockerEngine.connect(process.env.DOCKER_HOST ?? '/var/run/docker.sock', instance);
const builder = new BuildpackBuilder({ engine, fetcher: new BuildpackFetcher(path.join(work, 'fetched')), stackImage: STACK_IMAGE, defaultBuildpacks: [bp], memory: 1024 ** 3 });
const files = nodeBuildpackApp('bench');
const source = (app: string) => ({
  app,
  commit: 'b'.repeat(40),
  readFile: async (p: string) => (files[p] === undefined ? undefined : Buffer.from(files[p]!)),
  archive: () => makeTar(Object.entries(files).map(([name, content]) => ({ name, type: 'file' as const, content }))),
});
const coldBuild: number[] = [];
const warmBuild: number[] = [];
for (let round = 0; round < ROUNDS; round++) {
  const app = `benchb${round}`;
  const record = { id: app, name: app, createdAt: '', releases: [], current: null, ...defaultSettings() };
  for (const [release, into] of [[1, coldBuild], [2, warmBuild]] as const) {
    const started = performance.now();
    const result = await builder.build({ source: source(app), app: record, release, out: new MemoryOutput() });
    into.push(performance.now() - started);
    await engine.removeImage(result.image);
  }
  await engine.removeVolume(cacheVolume(instance, app));
}
console.log(`buildpack build alone, cold cache: ${stats(coldBuild)}`);
console.log(`buildpack build alone, warm cache: ${stats(warmBuild)}`);

// 2. End to end through dist/berth: git push until the new version answers; then a rollback.
const daemon = await startDaemon({ env: { BERTH_STACK_IMAGE: STACK_IMAGE, BERTH_BUILDPACKS: bp } });
try {
  const key = makeKey(work, 'bench');
  daemon.cli(['ssh-keys:add', 'bench', key.publicKey]);
  const answer = async (app: string) => (await request(daemon.httpPort, `${app}.${daemon.domain}`).catch(() => undefined))?.body ?? '';
  const until = async (app: string, prefix: string, started: number) => {
    for (;;) {
      if ((await answer(app)).startsWith(prefix)) return performance.now() - started;
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  const coldPush: number[] = [];
  const warmPush: number[] = [];
  const rollback: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const app = `benchp${round}`;
    const repo = path.join(work, app);
    for (const [version, into] of [['v1', coldPush], ['v2', warmPush]] as const) {
      gitRepo(repo, nodeBuildpackApp(`${app} ${version}`), version);
      const started = performance.now();
      const push = run('git', ['push', '-q', daemon.remote(app), 'main'], { cwd: repo, env: daemon.gitEnv(key.privateKey) });
      if (push.code !== 0) throw new Error(`push failed:\n${push.stderr}`);
      into.push(await until(app, `${app} ${version} `, started));
    }
    const started = performance.now();
    const rb = daemon.cli(['releases:rollback', app]);
    if (rb.code !== 0) throw new Error(`rollback failed:\n${rb.stderr}`);
    rollback.push(await until(app, `${app} v1 `, started));
  }
  console.log(`git push -> served, fixture buildpack app, cold cache (first push): ${stats(coldPush)}`);
  console.log(`git push -> served, fixture buildpack app, warm cache (second push): ${stats(warmPush)}`);
  console.log(`releases:rollback -> the old release answers through the proxy: ${stats(rollback)}`);
  for (let round = 0; round < ROUNDS; round++) daemon.cli(['apps:destroy', `benchp${round}`, '--force']);
} finally {
  await daemon.stop();
}
