// The nodes:* commands end to end: a real `dist/berth serve --docker-host tcp://MANAGER:2375
// --scheduler swarm` on a real Swarm of Docker-in-Docker nodes (test/helpers/swarm-cluster.ts),
// commands over the real OpenSSH client; what they change is read back from the manager's engine.
// Also: a key scoped to apps is refused, the docker scheduler says the commands need the swarm
// one, and berth does not start with --scheduler swarm on an engine in no Swarm. One cluster.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { makeKey, startDaemon, tempDir, waitFor, type Daemon } from './helpers/daemon.ts';
import { startSwarmCluster, type SwarmNodeHandle, type TestCluster } from './helpers/swarm-cluster.ts';

let cluster: TestCluster;
let daemon: Daemon;
const work = tempDir('e2e-swarm-nodes');
const admin = makeKey(work, 'admin');
const deployer = makeKey(work, 'deployer');

before(async () => {
  cluster = await startSwarmCluster({ workers: 1 });
  daemon = await startDaemon({ args: ['--docker-host', cluster.manager.dockerHost, '--scheduler', 'swarm'] });
  assert.equal(daemon.cli(['ssh-keys:add', 'admin', admin.publicKey]).code, 0);
  assert.equal(daemon.cli(['ssh-keys:add', 'deployer', deployer.publicKey, '--apps', 'shop']).code, 0);
});

after(async () => {
  await daemon?.stop();
  await cluster?.stop();
});

interface Row {
  node: string;
  id: string;
  address: string;
  role: string;
  state: string;
  availability: string;
  dynos: number;
  labels: string;
}

/** nodes:list over SSH, read back into its rows. */
function listNodes(): Row[] {
  const r = daemon.ssh(admin.privateKey, 'nodes:list');
  assert.equal(r.code, 0, r.stderr);
  const [header, ...lines] = r.stdout.trimEnd().split('\n');
  assert.match(header!, /^NODE\s+ID\s+ADDRESS\s+ROLE\s+STATE\s+AVAILABILITY\s+DYNOS\s+LABELS$/);
  return lines.map((line) => {
    const [node, id, address, role, state, availability, dynos, labels] = line.trim().split(/\s+/);
    return { node: node!, id: id!, address: address!, role: role!, state: state!, availability: availability!, dynos: Number(dynos), labels: labels! };
  });
}

function rowOf(handle: SwarmNodeHandle): Row {
  const row = listNodes().find((r) => r.address === handle.address);
  assert.ok(row, `nodes:list shows the node at ${handle.address}`);
  return row;
}

/** A node's spec as the manager's engine reports it. */
async function specOf(id: string): Promise<{ Labels?: Record<string, string>; Availability: string }> {
  return JSON.parse(await cluster.docker(cluster.manager, ['node', 'inspect', id, '--format', '{{json .Spec}}'])) as { Labels?: Record<string, string>; Availability: string };
}

test('nodes:list shows the manager leading and the worker, each at its address, ready, active, without dynos', () => {
  const rows = listNodes();
  assert.equal(rows.length, 2);
  const manager = rowOf(cluster.manager);
  assert.deepEqual([manager.role, manager.state, manager.availability, manager.dynos, manager.labels], ['leader', 'ready', 'active', 0, '-']);
  const worker = rowOf(cluster.workers[0]!);
  assert.deepEqual([worker.role, worker.state, worker.availability, worker.dynos, worker.labels], ['worker', 'ready', 'active', 0, '-']);
});

test('nodes:label sets labels the manager reports and nodes:list shows; KEY= and --remove remove them', async () => {
  const worker = rowOf(cluster.workers[0]!);
  let r = daemon.ssh(admin.privateKey, `nodes:label ${worker.node} zone=a disk=ssd`);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`Labels of node ${worker.node}: disk=ssd,zone=a`));
  assert.deepEqual((await specOf(worker.id)).Labels, { zone: 'a', disk: 'ssd' });
  assert.equal(rowOf(cluster.workers[0]!).labels, 'disk=ssd,zone=a');
  r = daemon.ssh(admin.privateKey, `nodes:label ${worker.id} zone= --remove disk`);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual((await specOf(worker.id)).Labels ?? {}, {});
  r = daemon.ssh(admin.privateKey, `nodes:label ${worker.node} 'bad key=x'`);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /"bad key" is not a node label key/);
});

test('nodes:drain of a node without dynos drains it, as the manager then reports; nodes:activate makes it take tasks again', async () => {
  const worker = rowOf(cluster.workers[0]!);
  let r = daemon.ssh(admin.privateKey, `nodes:drain ${worker.node}`);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /no dynos run on it/);
  assert.match(r.stdout, new RegExp(`Node ${worker.node} is drained`));
  assert.equal((await specOf(worker.id)).Availability, 'drain');
  assert.equal(rowOf(cluster.workers[0]!).availability, 'drain');
  // berth's manager runs the services and the registry store: it cannot be drained.
  r = daemon.ssh(admin.privateKey, `nodes:drain ${rowOf(cluster.manager).node}`);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /is the manager whose engine berth uses/);
  assert.equal((await specOf(rowOf(cluster.manager).id)).Availability, 'active');
  r = daemon.ssh(admin.privateKey, `nodes:activate ${worker.node}`);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`Node ${worker.node} is active`));
  assert.equal((await specOf(worker.id)).Availability, 'active');
});

test('a key scoped to apps may run no nodes:* command, and the node is left as it was', async () => {
  const worker = rowOf(cluster.workers[0]!);
  for (const command of ['nodes:list', 'nodes:join-command', `nodes:label ${worker.node} zone=b`, `nodes:drain ${worker.node}`, `nodes:activate ${worker.node}`]) {
    const r = daemon.ssh(deployer.privateKey, command);
    assert.equal(r.code, 1, command);
    assert.match(r.stderr, new RegExp(`key "deployer" may not run ${command.split(' ')[0]}: it is for admin keys`));
  }
  const spec = await specOf(worker.id);
  assert.deepEqual([spec.Labels ?? {}, spec.Availability], [{}, 'active']);
});

test("berth will not schedule on an engine in no Swarm (`docker swarm init`); nodes:join-command's output run there makes it a node listed ready", async () => {
  const fresh = await cluster.addNode();
  await assert.rejects(startDaemon({ args: ['--docker-host', fresh.dockerHost, '--scheduler', 'swarm'] }), (e: Error) => {
    assert.match(e.message, /--scheduler swarm: the Docker engine at tcp:\/\/\S+ is not part of a Swarm/);
    assert.match(e.message, /`docker swarm init`/);
    return true;
  });
  const r = daemon.ssh(admin.privateKey, 'nodes:join-command');
  assert.equal(r.code, 0, r.stderr);
  const command = r.stdout.split('\n').find((l) => l.startsWith('docker swarm join '));
  assert.ok(command, r.stdout);
  assert.match(command, new RegExp(` ${cluster.manager.address.replaceAll('.', '\\.')}:2377$`));
  const manager = daemon.ssh(admin.privateKey, 'nodes:join-command --manager').stdout.split('\n').find((l) => l.startsWith('docker swarm join '));
  assert.ok(manager && manager !== command, 'a manager joins with another token');
  // As the new machine's operator would: the command, run against that machine's engine.
  await cluster.docker(fresh, command.split(' ').slice(1));
  await waitFor('nodes:list to show the new node ready', () => listNodes().some((row) => row.address === fresh.address && row.state === 'ready'), 30_000);
  const row = rowOf(fresh);
  assert.deepEqual([row.role, row.availability, row.dynos], ['worker', 'active', 0]);
});

test('on the docker scheduler every nodes:* command says it needs --scheduler swarm', async () => {
  const single = await startDaemon();
  try {
    for (const command of [['nodes:list'], ['nodes:join-command'], ['nodes:label', 'n', 'zone=a'], ['nodes:drain', 'n'], ['nodes:activate', 'n']]) {
      const r = single.cli(command);
      assert.equal(r.code, 1, command.join(' '));
      assert.match(r.stderr, /nodes:\* commands need the swarm scheduler: this berth runs apps on one Docker engine \(--scheduler docker\)/);
      assert.match(r.stderr, /run berth serve with --scheduler swarm/);
    }
  } finally {
    await single.stop();
  }
});
