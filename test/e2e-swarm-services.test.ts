// Backing services on the swarm scheduler, end to end: a real `dist/berth serve --docker-host
// tcp://MANAGER:2375 --scheduler swarm` on a real Swarm of Docker-in-Docker nodes
// (test/helpers/swarm-cluster.ts). The postgres service runs as a container of the manager's
// engine (where berth's data operations exec), on an attachable overlay network of its own, joined
// to the linked app's overlay network under its alias; a task of a Swarm service on a worker,
// joined to that network the way the deploy path joins an app's tasks (alias APP.TYPE, through
// DockerSwarm.createService), writes and reads a row through DATABASE_URL across the nodes.
// Then the whole path: a release deployed by berth's Swarm deploy (swarm-deployment.ts, its task
// placed on the worker) reaches its linked postgres through the proxy, and a Dockerfile build on the
// manager runs on the app's overlay network (a RUN step reaches the service). One cluster for the file.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { DockerSwarm } from '../src/orchestrator/docker-swarm.ts';
import { LABEL } from '../src/orchestrator/engine.ts';
import { appNetwork } from '../src/orchestrator/orchestrator.ts';
import type { SwarmService } from '../src/orchestrator/swarm.ts';
import { BASE_IMAGE, gitRepo, makeKey, mustRun, request, run, startDaemon, tempDir, type Daemon } from './helpers/daemon.ts';
import { POSTGRES_TEST_IMAGE, serviceFixtureApp, until } from './helpers/services.ts';
import { REGISTRY_TEST_IMAGE, startSwarmCluster, type TestCluster } from './helpers/swarm-cluster.ts';

const work = tempDir('e2e-swarm-services');
/** The fixture app's image, built on this machine and loaded into the worker (no registry here). */
const FIXTURE_IMAGE = `berth-test-swarm-services-fixture:${randomBytes(4).toString('hex')}`;
let cluster: TestCluster;
let daemon: Daemon;
let swarm: DockerSwarm;
let task: SwarmService | undefined;
let fixtureBuilt = false;
/** The --network prefix the test daemons run with. */
const NETWORK_PREFIX = 'berth-test';

before(async () => {
  cluster = await startSwarmCluster({ workers: 1 });
  mustRun('docker', ['build', '-q', '-t', FIXTURE_IMAGE, serviceFixtureApp(path.join(work, 'fixture'))]);
  fixtureBuilt = true;
  await Promise.all([cluster.loadImages([POSTGRES_TEST_IMAGE], [cluster.manager]), cluster.loadImages([FIXTURE_IMAGE, REGISTRY_TEST_IMAGE], cluster.nodes)]);
  daemon = await startDaemon({ args: ['--docker-host', cluster.manager.dockerHost, '--scheduler', 'swarm', '--postgres-image', POSTGRES_TEST_IMAGE, '--registry-image', REGISTRY_TEST_IMAGE] });
  swarm = await DockerSwarm.connect(cluster.manager.dockerHost, daemon.instance);
});

after(async () => {
  if (task) await swarm.removeService(task.id).catch(() => {});
  await daemon?.stop();
  // The nodes' engines (with every container, volume and network berth made there) go with the nodes.
  await cluster?.stop();
  if (fixtureBuilt) run('docker', ['rmi', '-f', FIXTURE_IMAGE]);
});

/** A network as the manager's engine reports it. */
async function networkOf(name: string): Promise<{ Driver: string; Scope: string; Attachable: boolean; Labels: Record<string, string> }> {
  return JSON.parse(await cluster.docker(cluster.manager, ['network', 'inspect', name, '--format', '{{json .}}'])) as { Driver: string; Scope: string; Attachable: boolean; Labels: Record<string, string> };
}

test("a postgres service runs on the manager on overlay networks, and an app's task on a worker writes and reads a row through DATABASE_URL", async () => {
  let r = daemon.cli(['apps:create', 'shop']);
  assert.equal(r.code, 0, r.stderr);
  r = daemon.cli(['postgres:create', 'db']);
  assert.equal(r.code, 0, r.stderr);
  r = daemon.cli(['postgres:link', 'db', 'shop']);
  assert.equal(r.code, 0, r.stderr);
  const url = daemon.cli(['config:get', 'shop', 'DATABASE_URL']).stdout.trim();
  assert.match(url, /^postgres:\/\/.+@berth-postgres-db:5432\//);

  // The service is a container of the manager's engine (never a Swarm task that could move), and KIND:info says where.
  const managerNames = (await cluster.docker(cluster.manager, ['ps', '--format', '{{.Names}}'])).split('\n');
  const container = `berth-${daemon.instance}-svc-postgres-db`;
  assert.ok(managerNames.includes(container), `the manager's engine runs ${container}: ${managerNames.join(', ')}`);
  const info = daemon.cli(['postgres:info', 'db']);
  assert.equal(info.code, 0, info.stderr);
  assert.match(info.stdout, new RegExp(`Node:\\s+${cluster.manager.name} \\(manager\\)`));
  const nodes = daemon.cli(['nodes:list']);
  assert.equal(nodes.code, 0, nodes.stderr);
  assert.match(nodes.stdout, new RegExp(`^Services on ${cluster.manager.name} \\(manager\\): postgres/db$`, 'm'));

  // Its own network and the app's: attachable overlays of the Swarm, berth's labels on them.
  const shopNetwork = appNetwork(`${NETWORK_PREFIX}-swarm`, daemon.instance, 'shop');
  // A Swarm network's name is a DNS label: the service's has `_` where the docker scheduler's has `.`.
  for (const [name, owner] of [
    [shopNetwork, { [LABEL.app]: 'shop' }],
    [`${NETWORK_PREFIX}-swarm-${daemon.instance}-svc_postgres-db`, { 'berth.service': 'postgres/db' }],
  ] as const) {
    const network = await networkOf(name);
    assert.deepEqual([network.Driver, network.Scope, network.Attachable], ['overlay', 'swarm', true], name);
    assert.equal(network.Labels[LABEL.instance], daemon.instance);
    for (const [k, v] of Object.entries(owner)) assert.equal(network.Labels[k], v);
  }

  // The app's web task, as the deploy path makes it: on the app's network under APP.TYPE, placed on the worker.
  const worker = cluster.workers[0]!;
  task = await swarm.createService({
    name: `berth-${daemon.instance}-shop-web-r1-test`,
    image: FIXTURE_IMAGE,
    env: { PORT: '5000', DATABASE_URL: url },
    labels: { [LABEL.app]: 'shop', [LABEL.process]: 'web', [LABEL.release]: '1', [LABEL.role]: 'process' },
    replicas: 1,
    publish: 5000,
    constraints: [`node.hostname==${worker.name}`],
    spread: [],
    networks: [{ name: shopNetwork, aliases: ['shop.web'] }],
  });
  const running = await until(
    'the task runs with its published port',
    async () => {
      const [t] = (await swarm.tasks({ service: task!.id })).filter((t) => t.state === 'running' && t.publishedPort);
      if (!t) throw new Error(`no running task yet: ${JSON.stringify(await swarm.tasks({ service: task!.id }))}`);
      return t;
    },
    60_000,
  );
  const workerId = (await swarm.node(worker.name)).id;
  assert.equal(running.nodeId, workerId, 'the task was placed on the worker');
  const onWorker = (await cluster.docker(worker, ['ps', '--filter', `label=${LABEL.app}=shop`, '--format', '{{.ID}}'])).trim();
  assert.ok(onWorker && running.containerId?.startsWith(onWorker), "the worker's engine runs the task's container");
  assert.equal((await cluster.docker(cluster.manager, ['ps', '-q', '--filter', `label=${LABEL.app}=shop`])).trim(), '', 'not the manager');

  const base = `http://${worker.address}:${running.publishedPort}`;
  const written = await until('the app writes a row across the nodes', async () => {
    const res = await fetch(`${base}/pg/write?v=across-nodes`, { signal: AbortSignal.timeout(10_000) });
    const body = await res.text();
    if (res.status !== 200) throw new Error(`${res.status} ${body}`);
    return JSON.parse(body) as { id: number };
  });
  assert.equal(typeof written.id, 'number');
  const read = await fetch(`${base}/pg/read`, { signal: AbortSignal.timeout(10_000) });
  assert.equal(read.status, 200);
  assert.deepEqual(await read.json(), ['across-nodes']);

  // The row is in the service's own database on the manager, as berth's data operations see it.
  const rows = await cluster.docker(cluster.manager, ['exec', '-u', 'postgres', container, 'psql', '-At', '-d', 'db', '-c', 'SELECT v FROM fixture_rows']);
  assert.equal(rows.trim(), 'across-nodes');
});

test('unlinking takes the service off the app network: the task on the worker can no longer reach it', async () => {
  assert.ok(task, 'the first test made the task');
  const [running] = (await swarm.tasks({ service: task.id })).filter((t) => t.state === 'running' && t.publishedPort);
  assert.ok(running);
  const r = daemon.cli(['postgres:unlink', 'db', 'shop']);
  assert.equal(r.code, 0, r.stderr);
  const res = await fetch(`http://${cluster.workers[0]!.address}:${running.publishedPort}/pg/write?v=after-unlink`, { signal: AbortSignal.timeout(15_000) });
  assert.equal(res.status, 503, 'the running task (its old DATABASE_URL) gets no connection');
});

test("destroying the app and the service removes their overlay networks from the Swarm, once the app's task is gone", async () => {
  assert.ok(task, 'the first test made the task');
  const shopNetwork = appNetwork(`${NETWORK_PREFIX}-swarm`, daemon.instance, 'shop');
  const serviceNetwork = `${NETWORK_PREFIX}-swarm-${daemon.instance}-svc_postgres-db`;
  // What the deploy path's destroy does first: the app's Swarm services go (their tasks still stopping on the worker).
  await swarm.removeService(task.id);
  task = undefined;
  let r = daemon.cli(['apps:destroy', 'shop', '--force']);
  assert.equal(r.code, 0, r.stderr);
  r = daemon.cli(['postgres:destroy', 'db', '--force']);
  assert.equal(r.code, 0, r.stderr);
  // berth's remove returns once the Swarm has dropped the network from its store, but the manager's
  // own copy of an attachable overlay network (made for the service's container) is destroyed by
  // its agent after that container's detach, asynchronously: under load it can still be listed just
  // after the destroy returned. So the list is read until both are gone (a network berth left
  // behind stays listed and fails this).
  await until(
    "the app's and the service's overlay networks leave the manager's network list",
    async () => {
      const names = (await cluster.docker(cluster.manager, ['network', 'ls', '--format', '{{.Name}}'])).split('\n');
      assert.ok(!names.includes(shopNetwork), `${shopNetwork} is gone: ${names.join(', ')}`);
      assert.ok(!names.includes(serviceNetwork), `${serviceNetwork} is gone: ${names.join(', ')}`);
    },
    30_000,
  );
  assert.equal((await cluster.docker(cluster.manager, ['ps', '-aq', '--filter', `label=berth.instance=${daemon.instance}`])).trim(), '', 'no container of berth is left on the manager');
});

test('a release deployed on the swarm scheduler runs its web task on a worker, which writes and reads a row through its linked postgres on the manager', async () => {
  const worker = cluster.workers[0]!;
  for (const args of [
    ['apps:create', 'deployed'],
    ['postgres:create', 'store'],
    ['postgres:link', 'store', 'deployed'],
    ['ps:set', 'deployed', 'web', 'placement', `node.hostname==${worker.name}`],
  ]) {
    const r = daemon.cli(args);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  }
  // The release image is on the manager (where berth reads it) and on the worker (no cluster registry in this file).
  const r = daemon.cli(['git:from-image', 'deployed', FIXTURE_IMAGE]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout + r.stderr, /as Swarm service /);

  const onWorker = (await cluster.docker(worker, ['ps', '--filter', `label=${LABEL.app}=deployed`, '--filter', `label=${LABEL.process}=web`, '--format', '{{.Names}}'])).trim();
  assert.ok(onWorker, "the worker's engine runs the web task's container");
  assert.equal((await cluster.docker(cluster.manager, ['ps', '-q', '--filter', `label=${LABEL.app}=deployed`, '--filter', `label=${LABEL.process}=web`])).trim(), '', 'not the manager');

  // Through berth's proxy to the task at the worker's address, and from there across the overlay to postgres on the manager.
  const host = `deployed.${daemon.domain}`;
  const written = await request(daemon.httpPort, host, '/pg/write?v=deployed-row');
  assert.equal(written.status, 200, written.body);
  const read = await request(daemon.httpPort, host, '/pg/read');
  assert.equal(read.status, 200, read.body);
  assert.deepEqual(JSON.parse(read.body), ['deployed-row']);
  const destroyed = daemon.cli(['apps:destroy', 'deployed', '--force']);
  assert.equal(destroyed.code, 0, destroyed.stderr);
});

test("a Dockerfile build on the swarm scheduler runs on the app's overlay network: a RUN step reaches the linked postgres", async () => {
  const admin = makeKey(work, 'admin');
  assert.equal(daemon.cli(['ssh-keys:add', 'admin', admin.publicKey]).code, 0);
  for (const args of [
    ['apps:create', 'built'],
    ['postgres:link', 'store', 'built'],
    // The release image is built on the manager; its task stays there (no image copy needed in this test).
    ['ps:set', 'built', 'web', 'placement', 'node.role==manager'],
  ]) {
    const r = daemon.cli(args);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  }
  await cluster.loadImages([BASE_IMAGE], [cluster.manager]);
  const repo = path.join(work, 'built');
  gitRepo(repo, {
    Dockerfile: [
      `FROM ${BASE_IMAGE}`,
      // A build step opening a TCP connection to the service by its alias on the app's network.
      `RUN node -e "require('net').connect(5432, 'berth-postgres-store').on('connect', () => { console.log('build reached ' + 'postgres'); process.exit(0); }).on('error', (e) => { console.error(e.message); process.exit(1); })"`,
      `CMD ["node", "-e", "require('http').createServer((q, s) => s.end('ok')).listen(process.env.PORT)"]`,
      '',
    ].join('\n'),
  });
  const r = run('git', ['push', daemon.remote('built'), 'main'], { cwd: repo, env: daemon.gitEnv(admin.privateKey) });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /build reached postgres/);
  const destroyed = daemon.cli(['apps:destroy', 'built', '--force']);
  assert.equal(destroyed.code, 0, destroyed.stderr);
});
