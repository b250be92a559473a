// bench:swarm — the swarm scheduler's figures, measured on this machine: how long the test Swarm
// (three Docker-in-Docker nodes, test/helpers/swarm-cluster.ts) takes to start and to remove,
// and the time from the start of `git push` to the new version answering through berth's proxy,
// on the swarm scheduler beside the docker scheduler (one engine), for the same app (a Dockerfile
// FROM the base image, two web processes, --checks-wait 1). On Swarm the push also goes to the
// cluster's registry and each node pulls the release from its mirror; the first push includes
// starting that registry. (A node's loss to a route of live tasks is measured and printed by
// test/e2e-swarm.test.ts.)
import { REGISTRY_TEST_IMAGE, startSwarmCluster, type TestCluster } from '../test/helpers/swarm-cluster.ts';
import { BASE_IMAGE, gitRepo, makeKey, nodeApp, request, startDaemon, tempDir } from '../test/helpers/daemon.ts';
import { runAsync } from '../test/helpers/zero-downtime.ts';

const ROUNDS = Number(process.env.ROUNDS ?? 5);
type Daemon = Awaited<ReturnType<typeof startDaemon>>;

function stats(ms: number[]): string {
  const sorted = [...ms].sort((a, b) => a - b);
  return `median ${sorted[Math.floor(sorted.length / 2)]!.toFixed(0)} ms (min ${sorted[0]!.toFixed(0)}, max ${sorted.at(-1)!.toFixed(0)}, n=${ms.length})`;
}

/** From the start of `git push` until the app answers `expect` through the proxy. */
async function timeUntilServed(daemon: Daemon, repo: string, app: string, key: string, expect: string): Promise<number> {
  const started = performance.now();
  const push = runAsync('git', ['push', '-q', daemon.remote(app), 'main'], { cwd: repo, env: daemon.gitEnv(key) });
  let pushed = false;
  void push.then(() => (pushed = true));
  let servedMs: number | undefined;
  while (servedMs === undefined) {
    const res = await request(daemon.httpPort, `${app}.${daemon.domain}`).catch(() => undefined);
    if (res?.body === expect + '\n') servedMs = performance.now() - started;
    else if (pushed) break;
    else await new Promise((r) => setTimeout(r, 5));
  }
  const result = await push;
  if (result.code !== 0 || servedMs === undefined) throw new Error(`push failed or never served:\n${result.stderr}`);
  return servedMs;
}

/** First push and ROUNDS redeploys of the same app: push to served, each. */
async function pushes(daemon: Daemon, label: string): Promise<void> {
  const work = tempDir(`bench-swarm-${label.split(" ")[0]}`);
  const key = makeKey(work, 'bench');
  daemon.cli(['ssh-keys:add', 'bench', key.publicKey]);
  daemon.cli(['apps:create', 'bench']);
  daemon.cli(['ps:scale', 'bench', 'web=2']);
  const repo = `${work}/repo`;
  gitRepo(repo, nodeApp('v0'));
  const first = await timeUntilServed(daemon, repo, 'bench', key.privateKey, 'v0');
  const again: number[] = [];
  for (let i = 1; i <= ROUNDS; i++) {
    gitRepo(repo, nodeApp(`v${i}`), `v${i}`);
    again.push(await timeUntilServed(daemon, repo, 'bench', key.privateKey, `v${i}`));
  }
  console.log(`${label}: git push -> new version served, first push: ${first.toFixed(0)} ms`);
  console.log(`${label}: git push -> new version served, redeploy:   ${stats(again)}`);
}

const setups: number[] = [];
const teardowns: number[] = [];
for (let i = 0; i < 3; i++) {
  const t = performance.now();
  const c = await startSwarmCluster({ workers: 2 });
  setups.push(performance.now() - t);
  const s = performance.now();
  await c.stop();
  teardowns.push(performance.now() - s);
}
console.log(`test Swarm of 3 nodes (manager + 2 workers, all ready): start ${stats(setups)}; removal ${stats(teardowns)}`);

const single = await startDaemon({ args: ['--checks-wait', '1'] });
try {
  await pushes(single, 'docker scheduler (one engine)');
} finally {
  await single.stop();
}

let cluster: TestCluster | undefined;
let swarm: Daemon | undefined;
try {
  const t = performance.now();
  cluster = await startSwarmCluster({ workers: 2, images: [BASE_IMAGE, REGISTRY_TEST_IMAGE] });
  console.log(`test Swarm of 3 nodes with the base and registry images loaded: ${(performance.now() - t).toFixed(0)} ms`);
  swarm = await startDaemon({ args: ['--docker-host', cluster.manager.dockerHost, '--scheduler', 'swarm', '--registry-image', REGISTRY_TEST_IMAGE, '--checks-wait', '1'] });
  await pushes(swarm, 'swarm scheduler (3 nodes)');
} finally {
  await swarm?.stop();
  await cluster?.stop();
}
