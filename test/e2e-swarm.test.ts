// Apps on the swarm scheduler end to end: a real `dist/berth serve --docker-host tcp://MANAGER:2375
// --scheduler swarm` on a real Swarm of three Docker-in-Docker nodes (test/helpers/swarm-cluster.ts),
// requests through berth's real proxy to tasks at their node's address and published port. One
// cluster for the file: a deploy lands tasks on at least two nodes (each node's own engine asked),
// ps:scale spreads, a redeploy and a nodes:drain under wrk load fail no request, a failing gate
// leaves the old release serving, and a node lost under load leaves the route within 5 s. The
// daemon is then restarted on the manager's engine over ssh:// (a real OpenSSH server whose
// sessions run `docker system dial-stdio` against it) and deploys through it.
//
// Release images reach the nodes through the cluster's own registry (cluster-registry.ts), by
// digest: a push builds on the manager only, and every node pulls from its loopback mirror. The
// registry image is berth-test/registry:2 (--registry-image), loaded on each node.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { gitRepo, makeKey, mustRun, nodeApp, request, startDaemon, tempDir, waitFor, writeFiles, BASE_IMAGE, type Daemon } from './helpers/daemon.ts';
import { DockerEngine } from '../src/orchestrator/docker-engine.ts';
import { LABEL } from '../src/orchestrator/engine.ts';
import { startSshd, type Sshd } from './helpers/sshd.ts';
import { REGISTRY_TEST_IMAGE, startSwarmCluster, type SwarmNodeHandle, type TestCluster } from './helpers/swarm-cluster.ts';
import { runAsync, startWrk, type WrkResult } from './helpers/zero-downtime.ts';

const APP_IMAGE = `berth-e2e-swarm-${randomBytes(3).toString('hex')}:v1`;
const HOST = 'shop.berth.test';
let cluster: TestCluster;
let daemon: Daemon;
const work = tempDir('e2e-swarm');
const admin = makeKey(work, 'admin');
/** An OpenSSH server whose sessions reach the manager's engine, once a test starts it. */
let sshd: Sshd | undefined;
/** Nodes cluster.kill() removed: no engine to ask. */
const lost = new Set<SwarmNodeHandle>();

/** `/` answers MESSAGE and the task's hostname; `/health` answers HEALTH_STATUS (200 by default); `/say/WORD` logs WORD and the hostname. */
const APP_FILES = {
  Dockerfile: `FROM ${BASE_IMAGE}\nCOPY . /app\nCMD ["node", "/app/server.js"]\n`,
  'app.json': JSON.stringify({ healthchecks: { web: [{ name: 'ready', path: '/health', content: 'ok', attempts: 12, timeout: 2, wait: 0.25 }] } }),
  'server.js': `const http = require('http');
const os = require('os');
const status = Number(process.env.HEALTH_STATUS || 200);
const server = http.createServer((req, res) => {
  if (req.url === '/health') { res.statusCode = status; return res.end(status === 200 ? 'ok' : 'sick'); }
  if (req.url.startsWith('/say/')) console.log('said ' + req.url.slice(5) + ' as ' + os.hostname());
  res.end((process.env.MESSAGE || 'hello') + ' from ' + os.hostname() + '\\n');
});
server.keepAliveTimeout = 65000;
process.on('SIGTERM', () => server.close(() => process.exit(0)));
server.listen(Number(process.env.PORT), '0.0.0.0', () => console.log('listening as ' + os.hostname()));
`,
};

before(async () => {
  const dir = tempDir('e2e-swarm-app');
  writeFiles(dir, APP_FILES);
  mustRun('docker', ['build', '-q', '-t', APP_IMAGE, dir]);
  cluster = await startSwarmCluster({ workers: 2, images: [APP_IMAGE, REGISTRY_TEST_IMAGE, BASE_IMAGE] });
  daemon = await startDaemon({ args: ['--docker-host', cluster.manager.dockerHost, '--scheduler', 'swarm', '--registry-image', REGISTRY_TEST_IMAGE, '--checks-wait', '2'] });
  assert.equal(daemon.cli(['ssh-keys:add', 'admin', admin.publicKey]).code, 0);
});

after(async () => {
  await daemon?.stop();
  await sshd?.stop();
  await cluster?.stop();
  try {
    mustRun('docker', ['rmi', '-f', APP_IMAGE]);
  } catch {
    // never built
  }
});

function ssh(command: string): string {
  const r = daemon.ssh(admin.privateKey, command);
  assert.equal(r.code, 0, `${command}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** The containers of `app` each node's own engine runs: node → container names. */
async function tasksByNode(app: string): Promise<Map<SwarmNodeHandle, string[]>> {
  const found = new Map<SwarmNodeHandle, string[]>();
  for (const node of cluster.nodes.filter((n) => !lost.has(n))) {
    const names = (await cluster.docker(node, ['ps', '--filter', `label=berth.app=${app}`, '--filter', 'label=berth.process=web', '--format', '{{.Names}}']).catch(() => '')).split('\n').filter(Boolean);
    if (names.length) found.set(node, names);
  }
  return found;
}

/** The node each running container of `app` is on, by its hostname (a task's container ID, as its hostname is). */
async function nodesByHostname(app: string): Promise<Map<string, SwarmNodeHandle>> {
  const found = new Map<string, SwarmNodeHandle>();
  for (const node of cluster.nodes.filter((n) => !lost.has(n))) {
    const ids = (await cluster.docker(node, ['ps', '--filter', `label=berth.app=${app}`, '--format', '{{.ID}}']).catch(() => '')).split('\n').filter(Boolean);
    for (const id of ids) found.set(id, node);
  }
  return found;
}

/** Once the removed services' tasks have stopped: `count` web containers of the app over the nodes. */
async function settled(app: string, count: number): Promise<Map<SwarmNodeHandle, string[]>> {
  let found = new Map<SwarmNodeHandle, string[]>();
  await waitFor(`${count} web containers of ${app}`, async () => {
    found = await tasksByNode(app);
    return [...found.values()].flat().length === count;
  }, 30_000);
  return found;
}

function failures(r: WrkResult): number {
  return r.non2xx + r.socketErrors.connect + r.socketErrors.read + r.socketErrors.write + r.socketErrors.timeout;
}

test('a deploy runs the web process as tasks on at least two nodes (each node asked with its own engine), routed by the proxy', async () => {
  ssh('apps:create shop');
  ssh('ps:scale shop web=3');
  const started = Date.now();
  const out = ssh(`git:from-image shop ${APP_IMAGE}`);
  const deployMs = Date.now() - started;
  assert.match(out, /as Swarm service berth-test-[0-9a-f]{12}-shop-web-r1-[0-9a-f]{4}/);
  await waitFor('the app to answer', async () => (await request(daemon.httpPort, HOST)).status === 200, 10_000);
  process.stdout.write(`# swarm: git:from-image to serving (3 web tasks, gated): ${deployMs} ms\n`);
  const byNode = await tasksByNode('shop');
  assert.ok(byNode.size >= 2, `tasks on ${byNode.size} node(s): ${JSON.stringify([...byNode].map(([n, c]) => [n.name, c]))}`);
  assert.equal([...byNode.values()].flat().length, 3);
  // Answers come from tasks on different nodes, through the one route.
  const hosts = new Set<string>();
  for (let i = 0; i < 12; i++) hosts.add((await request(daemon.httpPort, HOST)).body.trim().split(' from ')[1]!);
  assert.ok(hosts.size >= 2, `answered by ${[...hosts].join(', ')}`);
  // The app's overlay network: a task on one node reaches the web tasks by APP.TYPE, across nodes.
  const [node, [container]] = [...byNode].find(([n]) => n !== cluster.manager) ?? [...byNode][0]!;
  const script = "require('dns').promises.lookup('shop.web', { all: true }).then((all) => Promise.all(all.map((a) => fetch('http://' + a.address + ':5000/').then((r) => r.text())))).then((t) => console.log(t.join('')))";
  const answers = (await cluster.docker(node, ['exec', container!, 'node', '-e', script])).trim().split('\n');
  assert.equal(answers.length, 3, answers.join('\n'));
  assert.equal(new Set(answers.map((l) => l.split(' from ')[1])).size, 3, 'every web task answered, those on other nodes too');
  const report = ssh('ps:report shop');
  assert.match(report, /DYNO\s+STATE\s+RELEASE\s+RESTARTS\s+NODE\s+ADDRESS\s+TASK/);
  assert.equal(report.split('\n').filter((l) => /^\s*web\.\d\s+running\s+v1\s/.test(l)).length, 3, report);
});

test('logs shows the output of the web tasks on every node, each line with its dyno; -t follows them as they write', async () => {
  const hosts = new Set<string>();
  for (let i = 0; i < 12; i++) hosts.add((await request(daemon.httpPort, HOST)).body.trim().split(' from ')[1]!);
  assert.ok(hosts.size >= 2, `answered by ${[...hosts].join(', ')}`);
  const nodeOf = await nodesByHostname('shop');
  assert.ok(new Set([...hosts].map((h) => nodeOf.get(h))).size >= 2, 'the answering tasks are on more than one node');
  const history = ssh('logs shop -n 100 -p web');
  for (const host of hosts) assert.match(history, new RegExp(`^\\S+Z app\\[web\\.\\d\\]: listening as ${host}$`, 'm'), `${host} in:\n${history}`);

  const marker = randomBytes(4).toString('hex');
  const follower = spawn('ssh', [...daemon.sshArgs(admin.privateKey), 'berth@127.0.0.1', 'logs shop -t -n 0 -p web']);
  let followed = '';
  follower.stdout.on('data', (d: Buffer) => (followed += d.toString()));
  const saidBy = () => new Set([...followed.matchAll(new RegExp(`app\\[web\\.\\d\\]: said ${marker} as (\\S+)`, 'g'))].map((m) => m[1]));
  try {
    // Requests go round the tasks: their lines come from tasks on more than one node.
    await waitFor('followed lines from tasks on two nodes', async () => {
      await request(daemon.httpPort, HOST, `/say/${marker}`);
      return new Set([...saidBy()].map((h) => nodeOf.get(h!))).size >= 2;
    }, 30_000);
  } finally {
    follower.kill();
  }
  assert.doesNotMatch(followed, /listening as/, '-n 0 shows no history');
  for (const host of saidBy()) assert.ok(hosts.has(host!), `${host} is one of the tasks`);
});

test('a git push builds on the manager and serves from tasks on two nodes, which pulled the release by digest from the cluster registry', async () => {
  ssh('apps:create pushed');
  ssh('ps:scale pushed web=2');
  const repo = tempDir('e2e-swarm-push');
  gitRepo(repo, nodeApp('pushed v1'));
  const started = Date.now();
  let servedAt = 0;
  const pushing = runAsync('git', ['push', daemon.remote('pushed'), 'main'], { cwd: repo, env: daemon.gitEnv(admin.privateKey) });
  let done = false;
  void pushing.then(() => (done = true));
  while (!done || servedAt === 0) {
    const r = await request(daemon.httpPort, 'pushed.berth.test').catch(() => ({ status: 0, body: '' }));
    if (r.status === 200 && r.body.startsWith('pushed v1') && servedAt === 0) servedAt = Date.now();
    if (done && servedAt === 0) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const r = await pushing;
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /as Swarm service berth-test-[0-9a-f]{12}-pushed-web-r1-/);
  assert.ok(servedAt > 0, 'served during the push');
  process.stdout.write(`# swarm: git push -> new version served (Dockerfile build on the manager, pushed to the cluster registry, 2 web tasks): ${servedAt - started} ms; the push ended after ${Date.now() - started} ms\n`);
  assert.match(r.stderr, /Pushing berth-\S+\/pushed:r1 to the cluster registry/);
  const byNode = await tasksByNode('pushed');
  assert.equal(byNode.size, 2, JSON.stringify([...byNode].map(([n, c]) => [n.name, c])));
  const image = (await cluster.docker(cluster.manager, ['service', 'ls', '--format', '{{.Name}} {{.Image}}'])).split('\n').find((l) => l.includes('-pushed-web-'));
  assert.match(image ?? '', /127\.0\.0\.1:\d+\/berth-\S+\/pushed@sha256:[0-9a-f]{64}$/);
  ssh('apps:destroy pushed --force');
  assert.deepEqual((await cluster.docker(cluster.manager, ['service', 'ls', '--format', '{{.Name}}'])).split('\n').filter((n) => n.includes('-pushed-')), []);
});

test('ps:scale web=4 spreads the tasks over every node', async () => {
  ssh('ps:scale shop web=4');
  const byNode = await settled('shop', 4);
  assert.equal(byNode.size, 3, JSON.stringify([...byNode].map(([n, c]) => [n.name, c])));
  // The task containers on the manager carry berth's labels, but they are the Swarm's: the engine lists no app container.
  const instance = (await cluster.docker(cluster.manager, ['ps', '--filter', 'label=com.docker.swarm.service.id', '--filter', `label=${LABEL.app}=shop`, '--format', `{{.Label "${LABEL.instance}"}}`])).split('\n')[0]!;
  assert.ok(instance, 'a task of shop runs on the manager');
  const engine = await DockerEngine.connect(cluster.manager.dockerHost, instance);
  assert.deepEqual(await engine.list({ [LABEL.role]: 'process' }), []);
});

test('a redeploy under wrk load fails no request; a config value holding a Swarm template reaches the app verbatim', async () => {
  const wrk = startWrk(daemon.httpPort, HOST, { connections: 8 });
  await new Promise((r) => setTimeout(r, 1000));
  ssh('config:set shop MESSAGE=second{{.Node.Hostname}}');
  await new Promise((r) => setTimeout(r, 1000));
  const result = await wrk.stop();
  process.stdout.write(`# swarm: redeploy under wrk load: ${result.requests} requests, ${failures(result)} failed\n`);
  assert.equal(failures(result), 0, result.output);
  assert.ok(result.requests > 100, result.output);
  assert.match((await request(daemon.httpPort, HOST)).body, /^second\{\{\.Node\.Hostname\}\} from /);
});

test('a release that fails its gate is removed and the old one keeps serving', async () => {
  const before = ssh('ps:report shop');
  const r = daemon.ssh(admin.privateKey, 'config:set shop HEALTH_STATUS=500');
  assert.notEqual(r.code, 0, r.stdout);
  assert.match(r.stderr + r.stdout, /health check "ready" failed after 12 attempts: status 500/);
  assert.match((await request(daemon.httpPort, HOST)).body, /^second\{\{\.Node\.Hostname\}\} from /);
  const services = (await cluster.docker(cluster.manager, ['service', 'ls', '--format', '{{.Name}}'])).split('\n').filter((n) => n.includes('-shop-') && !n.includes('registry'));
  assert.equal(services.length, 1, services.join('\n'));
  assert.match(services[0]!, /-shop-web-r2-/);
  const tasks = (text: string) => text.split('\n').filter((l) => /^\s*web\./.test(l)).map((l) => l.trim().split(/\s+/).at(-1)).sort();
  assert.deepEqual(tasks(ssh('ps:report shop')), tasks(before));
});

test('nodes:drain under wrk load moves the tasks off with no failed request', async () => {
  const worker = cluster.workers[1]!;
  const wrk = startWrk(daemon.httpPort, HOST, { connections: 8 });
  await new Promise((r) => setTimeout(r, 500));
  ssh(`nodes:drain ${worker.name}`);
  await new Promise((r) => setTimeout(r, 1000));
  const result = await wrk.stop();
  process.stdout.write(`# swarm: nodes:drain under wrk load: ${result.requests} requests, ${failures(result)} failed\n`);
  assert.equal(failures(result), 0, result.output);
  const byNode = await settled('shop', 4);
  assert.equal(byNode.has(worker), false);
  ssh(`nodes:activate ${worker.name}`);
});

test('a node lost under load: its tasks leave the route within 5 s, Swarm replaces them elsewhere and they rejoin after their checks', async () => {
  // Spread again over every node, so the lost one has tasks.
  ssh('ps:restart shop');
  const byNode = await settled('shop', 4);
  const [victim, names] = [...byNode].find(([n]) => n !== cluster.manager)!;
  const connections = 8;
  const wrk = startWrk(daemon.httpPort, HOST, { connections });
  await new Promise((r) => setTimeout(r, 500));
  const logAt = daemon.logs().length;
  const killedAt = Date.now();
  lost.add(victim);
  await cluster.kill(victim);
  let withdrawn: Array<{ time: string; container: string; reason: string }> = [];
  await waitFor('every task of the lost node to leave the route', () => {
    withdrawn = daemon
      .logs()
      .slice(logAt)
      .split('\n')
      .filter((l) => l.includes('"route_target_withdrawn"'))
      .map((l) => JSON.parse(l) as { time: string; container: string; reason: string });
    return names.every((name) => withdrawn.some((w) => w.container === name));
  }, 20_000);
  // When the daemon took the last of them out, by its own log.
  const ms = Math.max(...withdrawn.map((w) => Date.parse(w.time))) - killedAt;
  process.stdout.write(`# swarm: node lost (docker rm -fv) to a route of only live tasks: ${ms} ms (${[...new Set(withdrawn.map((w) => w.reason))].join('; ')})\n`);
  assert.ok(ms <= 5_000, `${ms} ms`);
  await waitFor('the replacements to run and be routed', async () => {
    const now = await tasksByNode('shop');
    return [...now.values()].flat().length >= 4 && daemon.logs().slice(logAt).split('\n').filter((l) => l.includes('"route_target_rejoined"')).length >= names.length;
  }, 30_000);
  const result = await wrk.stop();
  process.stdout.write(`# swarm: requests failed across the node loss (in flight on the lost node): ${failures(result)} of ${result.requests}\n`);
  // At most the requests in flight on the lost node: one per wrk connection.
  assert.ok(failures(result) <= connections, result.output);
  assert.equal((await request(daemon.httpPort, HOST)).status, 200);
});

test('a restarted daemon adopts the running services: the same tasks serve, no service is made or removed', async () => {
  const services = async () => (await cluster.docker(cluster.manager, ['service', 'ls', '--format', '{{.ID}} {{.Name}}'])).split('\n').filter((l) => l.includes('-shop-')).sort();
  const before = await services();
  const tasks = [...(await settled('shop', 4)).values()].flat().sort();
  const dataDir = daemon.dataDir;
  await daemon.stop();
  daemon = await startDaemon({ dataDir, args: ['--docker-host', cluster.manager.dockerHost, '--scheduler', 'swarm', '--registry-image', REGISTRY_TEST_IMAGE, '--checks-wait', '2'] });
  await waitFor('the adopted app to answer', async () => (await request(daemon.httpPort, HOST)).status === 200, 20_000);
  assert.match(daemon.logs(), /"app_adopted".*"app":"shop"/);
  assert.deepEqual(await services(), before);
  assert.deepEqual([...(await tasksByNode('shop')).values()].flat().sort(), tasks);
});

test('a daemon restarted with --docker-host ssh:// (the manager\'s engine through a real OpenSSH server) adopts the services and deploys across the nodes over it', async () => {
  const key = makeKey(work, 'docker-ssh');
  const dir = tempDir('e2e-swarm-sshd');
  // Its sessions' docker CLI (`docker system dial-stdio`) talks to the manager's engine.
  sshd = await startSshd(dir, { authorizedKey: key.publicKey, env: [{ DOCKER_HOST: cluster.manager.dockerHost }] });
  const dataDir = daemon.dataDir;
  await daemon.stop();
  daemon = await startDaemon({
    dataDir,
    args: ['--docker-host', `ssh://root@127.0.0.1:${sshd.envPorts[0]}`, '--docker-ssh-key', key.privateKey, '--docker-ssh-known-hosts', sshd.knownHosts, '--scheduler', 'swarm', '--registry-image', REGISTRY_TEST_IMAGE, '--checks-wait', '2'],
    env: { SSH_AUTH_SOCK: '', DOCKER_HOST: '' },
  });
  await waitFor('the adopted app to answer', async () => (await request(daemon.httpPort, HOST)).status === 200, 20_000);
  assert.match(daemon.logs(), /"app_adopted".*"app":"shop"/);
  assert.match(sshd.log(), /Accepted publickey for root/);
  ssh('config:set shop MESSAGE=over-ssh');
  assert.match((await request(daemon.httpPort, HOST)).body, /^over-ssh from /);
  const byNode = await settled('shop', 4);
  assert.ok(byNode.size >= 2, `tasks on ${byNode.size} node(s)`);
  const live = cluster.workers.find((w) => !lost.has(w))!;
  assert.match(ssh('nodes:list'), new RegExp(`^${live.name}\\s.*\\sworker\\s+ready\\s`, 'm'), 'the manager\'s view of the nodes, over ssh://');
});

test('checks:disable: the old tasks have stopped before the new service starts; checks:enable brings back the zero-downtime swap', async () => {
  ssh('checks:disable shop web');
  ssh('checks:set shop stop-timeout 2');
  // Each node's engine asked over and over while the deploy runs: which releases have running containers.
  const running = async () => new Set((await Promise.all(cluster.nodes.filter((n) => !lost.has(n)).map((n) => cluster.docker(n, ['ps', '--filter', 'label=berth.app=shop', '--format', '{{.Label "berth.release"}}']).catch(() => '')))).join('\n').split('\n').filter(Boolean));
  const seen: string[][] = [];
  const started = Date.now();
  const deploying = runAsync('ssh', [...daemon.sshArgs(admin.privateKey), 'berth@127.0.0.1', 'config:set shop MESSAGE=third']);
  let done = false;
  void deploying.then(() => (done = true));
  while (!done) seen.push([...(await running())]);
  const r = await deploying;
  process.stdout.write(`# swarm: a deploy with checks disabled (old tasks stopped first, stop-timeout 2 s): ${Date.now() - started} ms\n`);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Zero-downtime deploys are disabled for web: stopping the old Swarm services first/);
  assert.ok(seen.every((releases) => releases.length <= 1), `two releases ran at once: ${JSON.stringify(seen)}`);
  assert.ok(seen.some((releases) => releases.length === 0), `a moment with neither (${seen.length} looks)`);
  assert.match((await request(daemon.httpPort, HOST)).body, /^third from /);

  ssh('checks:enable shop web');
  const wrk = startWrk(daemon.httpPort, HOST, { connections: 8 });
  await new Promise((r) => setTimeout(r, 500));
  assert.doesNotMatch(ssh('config:set shop MESSAGE=fourth'), /Zero-downtime deploys are disabled/);
  const result = await wrk.stop();
  assert.equal(failures(result), 0, result.output);
  assert.match((await request(daemon.httpPort, HOST)).body, /^fourth from /);
});
