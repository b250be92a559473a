// The test Swarm itself (test/helpers/swarm-cluster.ts): three Docker-in-Docker nodes form a
// Swarm whose services answer from this machine on every node, and stop() leaves nothing behind.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BASE_IMAGE } from './helpers/daemon.ts';
import { docker, REGISTRY_TEST_IMAGE, startSwarmCluster, type TestCluster } from './helpers/swarm-cluster.ts';
import { sleep } from '../src/sleep.ts';

describe('test Swarm cluster', () => {
  let cluster: TestCluster;

  before(async () => {
    const started = Date.now();
    cluster = await startSwarmCluster({ workers: 2, images: [BASE_IMAGE] });
    process.stdout.write(`# swarm cluster of 3 nodes started in ${Date.now() - started} ms\n`);
  });

  after(async () => {
    const started = Date.now();
    await cluster?.stop();
    process.stdout.write(`# swarm cluster removed in ${Date.now() - started} ms\n`);
  });

  it('forms a Swarm of one manager and two workers, all ready and active', async () => {
    const lines = (await cluster.docker(cluster.manager, ['node', 'ls', '--format', '{{.Hostname}} {{.Status}} {{.Availability}} {{.ManagerStatus}}'])).trim().split('\n').map((line) => line.trim()).sort();
    assert.deepEqual(lines, [`${cluster.manager.name} Ready Active Leader`, ...cluster.workers.map((worker) => `${worker.name} Ready Active`)].sort());
    for (const node of cluster.nodes) {
      const state = (await cluster.docker(node, ['info', '--format', '{{.Swarm.LocalNodeState}} {{.Swarm.NodeAddr}}'])).trim();
      assert.equal(state, `active ${node.address}`);
    }
  });

  it('serves a 3-replica dnsrr service with host-mode ports from this machine on every node', async () => {
    const service = `${cluster.manager.name}-web`;
    await cluster.docker(cluster.manager, [
      'service', 'create', '--detach', '--no-resolve-image', '--name', service, '--replicas', '3', '--replicas-max-per-node', '1',
      '--endpoint-mode', 'dnsrr', '--publish', 'mode=host,target=8080', '--restart-delay', '0s',
      BASE_IMAGE, 'sh', '-c', 'mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www',
    ]);
    const tasks = await runningTasks(cluster, service, 3);
    const addressOf = new Map(await Promise.all(cluster.nodes.map(async (node) => [(await cluster.docker(node, ['info', '--format', '{{.Swarm.NodeID}}'])).trim(), node.address] as const)));
    assert.deepEqual(new Set(tasks.map((task) => addressOf.get(task.node))), new Set(cluster.nodes.map((node) => node.address)));
    for (const task of tasks) {
      const response = await fetch(`http://${addressOf.get(task.node)}:${task.port}/`, { signal: AbortSignal.timeout(5000) });
      assert.equal(response.status, 200);
      assert.equal((await response.text()).trim(), task.container.slice(0, 12));
    }
    await cluster.docker(cluster.manager, ['service', 'rm', service]);
  });

  it('carries an attachable overlay network across nodes: a container on a worker reaches one on the manager by name and by address', async () => {
    const network = `${cluster.manager.name}-overlay`;
    const target = `${cluster.manager.name}-one`;
    await cluster.docker(cluster.manager, ['network', 'create', '--driver', 'overlay', '--attachable', network]);
    try {
      await cluster.docker(cluster.manager, ['run', '--detach', '--name', target, '--network', network, BASE_IMAGE, 'sh', '-c', 'mkdir -p /www && echo from-manager > /www/index.html && exec httpd -f -p 80 -h /www']);
      const address = (await cluster.docker(cluster.manager, ['inspect', '--format', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', target])).trim();
      // busybox's wget crashes in the base image; node's fetch is the client.
      const probe = `for (const url of process.argv.slice(1)) { const r = await fetch(url, { signal: AbortSignal.timeout(5000) }); console.log(r.status, (await r.text()).trim()); }`;
      const output = await cluster.docker(cluster.workers[0]!, ['run', '--rm', '--network', network, BASE_IMAGE, 'node', '--input-type=module', '-e', probe, `http://${address}/`, `http://${target}/`]);
      assert.deepEqual(output.trim().split('\n'), ['200 from-manager', '200 from-manager']);
    } finally {
      await cluster.docker(cluster.manager, ['rm', '--force', target]).catch(() => {});
      await cluster.docker(cluster.manager, ['network', 'rm', network]);
    }
  });

  it('runs the registry image as a service on the manager that takes a push on 127.0.0.1, and as a pull-through cache on every node that serves it', async () => {
    const { manager } = cluster;
    const worker = cluster.workers[0]!;
    const registry = `${manager.name}-registry`;
    const mirror = `${manager.name}-mirror`;
    await cluster.loadImages([REGISTRY_TEST_IMAGE]);
    try {
      await cluster.docker(manager, [
        'service', 'create', '--detach', '--no-resolve-image', '--name', registry, '--constraint', 'node.role==manager',
        '--publish', 'mode=host,target=5000,published=5000', '--mount', `type=volume,source=${registry},target=/var/lib/registry`,
        '--env', 'REGISTRY_STORAGE_DELETE_ENABLED=true', REGISTRY_TEST_IMAGE,
      ]);
      await cluster.docker(manager, [
        'service', 'create', '--detach', '--no-resolve-image', '--name', mirror, '--mode', 'global',
        '--publish', 'mode=host,target=5000,published=5001', '--env', `REGISTRY_PROXY_REMOTEURL=http://${manager.address}:5000`, REGISTRY_TEST_IMAGE,
      ]);
      await Promise.all([answers(`http://${manager.address}:5000/v2/`), ...cluster.nodes.map((node) => answers(`http://${node.address}:5001/v2/`))]);

      // An image only the manager has: the base image with one more layer.
      const source = `${manager.name}-source`;
      await cluster.docker(manager, ['run', '--name', source, BASE_IMAGE, 'sh', '-c', `echo ${source} > /marker`]);
      await cluster.docker(manager, ['commit', source, '127.0.0.1:5000/berth-test/marked:1']);
      await cluster.docker(manager, ['rm', source]);
      await cluster.docker(manager, ['push', '127.0.0.1:5000/berth-test/marked:1']);
      const digest = (await cluster.docker(manager, ['image', 'inspect', '--format', '{{index .RepoDigests 0}}', '127.0.0.1:5000/berth-test/marked:1'])).trim().split('@')[1]!;
      assert.match(digest, /^sha256:[0-9a-f]{64}$/);
      const tags = await (await fetch(`http://${manager.address}:5000/v2/berth-test/marked/tags/list`)).json();
      assert.deepEqual(tags, { name: 'berth-test/marked', tags: ['1'] });

      // The worker pulls it by digest from the cache on its own loopback, which fetches it from the manager's.
      await cluster.docker(worker, ['pull', `127.0.0.1:5001/berth-test/marked@${digest}`]);
      assert.equal((await cluster.docker(worker, ['run', '--rm', `127.0.0.1:5001/berth-test/marked@${digest}`, 'cat', '/marker'])).trim(), source);
      const cached = (await (await fetch(`http://${worker.address}:5001/v2/_catalog`)).json()) as { repositories: string[] };
      assert.deepEqual(cached.repositories, ['berth-test/marked']);
      // A cache takes no pushes (asked directly: `docker push` retries it for 50 s).
      const upload = await fetch(`http://${worker.address}:5001/v2/berth-test/pushed/blobs/uploads/`, { method: 'POST' });
      assert.equal(upload.status, 405);

      // REGISTRY_STORAGE_DELETE_ENABLED reached the registry: a manifest can be deleted.
      const deleted = await fetch(`http://${manager.address}:5000/v2/berth-test/marked/manifests/${digest}`, { method: 'DELETE' });
      assert.equal(deleted.status, 202);
      const gone = await fetch(`http://${manager.address}:5000/v2/berth-test/marked/manifests/${digest}`, { headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json' } });
      assert.equal(gone.status, 404);
    } finally {
      await cluster.docker(manager, ['service', 'rm', registry, mirror]).catch(() => {});
    }
  });

  it('loads images into every node', async () => {
    const id = (await docker(['image', 'inspect', '--format', '{{.Id}}', BASE_IMAGE])).trim();
    for (const node of cluster.nodes) {
      assert.equal((await cluster.docker(node, ['image', 'inspect', '--format', '{{.Id}}', BASE_IMAGE])).trim(), id);
    }
  });

  it('starts a node that is not joined, which joins with the join command run in it, and is seen down once killed', async () => {
    const extra = await cluster.addNode();
    assert.equal((await cluster.docker(extra, ['info', '--format', '{{.Swarm.LocalNodeState}}'])).trim(), 'inactive');
    const join = (await cluster.docker(cluster.manager, ['swarm', 'join-token', 'worker'])).match(/docker swarm join .+/)![0];
    await cluster.exec(extra, join);
    const status = async () => (await cluster.docker(cluster.manager, ['node', 'inspect', '--format', '{{.Status.State}}', extra.name])).trim();
    await until(async () => (await status()) === 'ready', 'the added node to be ready');
    const killed = Date.now();
    await cluster.kill(extra);
    await assert.rejects(docker(['inspect', extra.container]), /no such/i);
    await until(async () => (await status()) === 'down', 'the killed node to be down');
    process.stdout.write(`# a killed node was reported down by the manager after ${Date.now() - killed} ms\n`);
    await cluster.docker(cluster.manager, ['node', 'rm', extra.name]);
  });

  it('a start that fails halfway says why and leaves nothing behind', async () => {
    // The base image has no command: the network is made, then no node can start.
    const failure = await startSwarmCluster({ workers: 1, nodeImage: BASE_IMAGE }).then(() => undefined, (e: Error) => e);
    assert.match(String(failure?.message), /^starting a test Swarm of 2 nodes \(berth-swarm-[0-9a-f]{6}-\*\): docker run .*no command specified/is);
    const prefix = failure!.message.match(/\((berth-swarm-[0-9a-f]{6})-\*\)/)![1]!;
    assert.deepEqual(await objectsNamed(prefix), []);
    await assert.rejects(startSwarmCluster({ workers: 1, nodeImage: 'berth-test/no-such-node:1' }), /berth-test\/no-such-node:1 is missing: run scripts\/provision.sh/);
  });

  it('stop() removes every container, volume and network it made, and can be called again', async () => {
    const other = await startSwarmCluster({ workers: 0 });
    const prefix = other.manager.name.replace(/-node1$/, '');
    await other.stop();
    await other.stop();
    assert.deepEqual(await objectsNamed(prefix), []);
  });
});

/** What `docker inspect TASK` says, the part read here. */
interface SwarmTaskJson {
  NodeID?: string;
  Status: { State: string; ContainerStatus?: { ContainerID: string }; PortStatus?: { Ports?: { PublishedPort: number }[] } };
}

async function until(condition: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await sleep(100);
  }
}

/** The names of the containers, volumes and networks on this machine's engine named `prefix`-something. */
async function objectsNamed(prefix: string): Promise<string[]> {
  const names = await Promise.all([
    docker(['ps', '--all', '--format', '{{.Names}}', '--filter', `name=${prefix}-`]),
    docker(['volume', 'ls', '--format', '{{.Name}}', '--filter', `name=${prefix}-`]),
    docker(['network', 'ls', '--format', '{{.Name}}', '--filter', `name=${prefix}-`]),
  ]);
  return names.join('\n').split('\n').filter(Boolean).sort();
}

/** Waits until `url` answers 200 (a registry's /v2/ once its task runs and its port is published). */
async function answers(url: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(2000) });
      if (response.status === 200) return;
      last = `HTTP ${response.status}`;
    } catch (e) {
      last = (e as Error).message;
    }
    await sleep(250);
  }
  throw new Error(`${url} did not answer 200 within 60 s (${last})`);
}

interface RunningTask {
  node: string;
  container: string;
  port: number;
}

/** The service's running tasks once `count` of them run and have a published port. */
async function runningTasks(cluster: TestCluster, service: string, count: number): Promise<RunningTask[]> {
  const deadline = Date.now() + 60_000;
  let seen = '';
  while (Date.now() < deadline) {
    const ids = (await cluster.docker(cluster.manager, ['service', 'ps', '--quiet', '--filter', 'desired-state=running', service])).trim().split('\n').filter(Boolean);
    if (ids.length) {
      const found = JSON.parse(await cluster.docker(cluster.manager, ['inspect', ...ids])) as SwarmTaskJson[];
      seen = JSON.stringify(found.map((task) => task.Status));
      const tasks = found.filter((task) => task.Status.State === 'running' && task.Status.PortStatus?.Ports?.[0]?.PublishedPort);
      if (tasks.length === count) return tasks.map((task) => ({ node: task.NodeID!, container: task.Status.ContainerStatus!.ContainerID, port: task.Status.PortStatus!.Ports![0]!.PublishedPort }));
    }
    await sleep(250);
  }
  throw new Error(`service ${service} did not have ${count} running tasks within 60 s:\n${seen}`);
}
