// DockerSwarm against a real Swarm of Docker-in-Docker nodes (test/helpers/swarm-cluster.ts): the
// manager check, nodes with their addresses, labels and availability, a service as berth asks for
// one (host-mode port on an engine-assigned port, dnsrr, limits, capabilities, labels) whose tasks
// answer HTTP at their node's address and published port, replicas, logs, removal, and the join
// command run on a new machine. One cluster for the file. The engine's objects as DockerSwarm
// reads them (a manager reporting 0.0.0.0) are checked without a cluster first.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { UserError } from '../src/errors.ts';
import { APP_CAPABILITIES, LABEL } from '../src/orchestrator/engine.ts';
import { checkSwarmState, DockerSwarm, mountOf, nodeOf, taskOf } from '../src/orchestrator/docker-swarm.ts';
import type { SwarmService, SwarmTask } from '../src/orchestrator/swarm.ts';
import { mustRun, run, tempDir, waitFor } from './helpers/daemon.ts';
import { startSwarmCluster, type SwarmNodeHandle, type TestCluster } from './helpers/swarm-cluster.ts';

describe('the engine objects as DockerSwarm reads them', () => {
  test("an engine not active in a Swarm is refused with what to do for its state: init only when it is in none, unlock when locked, Swarm's error when pending or failed", () => {
    const refusal = (swarm: Parameters<typeof checkSwarmState>[1]): UserError => {
      try {
        checkSwarmState('tcp://m:2375', swarm);
      } catch (e) {
        assert.ok(e instanceof UserError);
        return e;
      }
      assert.fail('not refused');
    };
    checkSwarmState('tcp://m:2375', { LocalNodeState: 'active' });
    for (const inactive of [refusal({ LocalNodeState: 'inactive' }), refusal({})]) {
      assert.equal(inactive.code, 'swarm_inactive');
      assert.match(inactive.message, /tcp:\/\/m:2375 is not part of a Swarm \(its state: inactive\)/);
      assert.match(inactive.hint ?? '', /docker swarm init/);
    }
    const locked = refusal({ LocalNodeState: 'locked' });
    assert.equal(locked.code, 'swarm_locked');
    assert.match(locked.hint ?? '', /docker swarm unlock/);
    assert.doesNotMatch(locked.hint ?? '', /swarm init/);
    const failed = refusal({ LocalNodeState: 'error', Error: 'manager stopped: certificate expired' });
    assert.equal(failed.code, 'swarm_not_ready');
    assert.match(failed.message, /its state: error; Swarm says: manager stopped: certificate expired/);
    assert.doesNotMatch(failed.hint ?? '', /swarm init/);
    const pending = refusal({ LocalNodeState: 'pending' });
    assert.match(pending.message, /its state: pending\)/);
    assert.match(pending.hint ?? '', /still joining/);
  });

  test("a node's address is its Status.Addr, or for a manager reporting 0.0.0.0 or 127.0.0.1 the host of its manager address", () => {
    const manager = { ID: 'n1', Spec: { Role: 'manager', Availability: 'active', Labels: { zone: 'a' } }, Description: { Hostname: 'm' }, Status: { State: 'ready', Addr: '0.0.0.0' }, ManagerStatus: { Leader: true, Addr: '172.30.0.2:2377' } };
    assert.deepEqual(nodeOf(manager), { id: 'n1', hostname: 'm', address: '172.30.0.2', role: 'manager', state: 'ready', availability: 'active', labels: { zone: 'a' }, leader: true });
    assert.equal(nodeOf({ ...manager, Status: { State: 'ready', Addr: '127.0.0.1' }, ManagerStatus: { Addr: '[fd00::2]:2377' } }).address, 'fd00::2');
    assert.equal(nodeOf({ ...manager, Status: { State: 'down', Addr: '172.30.0.3' } }).address, '172.30.0.3');
    assert.equal(nodeOf({ ID: 'n2', Spec: { Role: 'worker', Availability: 'drain' }, Status: { State: 'down', Addr: '172.30.0.4' } }).availability, 'drain');
  });

  test("a task's published port, container and exit code come from its status; its labels from its service", () => {
    const task = taskOf(
      {
        ID: 't1',
        ServiceID: 's1',
        Slot: 2,
        NodeID: 'n1',
        DesiredState: 'running',
        Status: {
          Timestamp: '2026-12-06T10:00:00.5Z',
          State: 'running',
          Message: 'started',
          ContainerStatus: { ContainerID: 'c1', ExitCode: 0 },
          PortStatus: { Ports: [{ Protocol: 'tcp', TargetPort: 5000, PublishedPort: 30001, PublishMode: 'host' }] },
        },
      },
      { [LABEL.app]: 'shop' },
    );
    assert.deepEqual(task, { id: 't1', serviceId: 's1', slot: 2, nodeId: 'n1', labels: { [LABEL.app]: 'shop' }, desiredState: 'running', state: 'running', message: 'started', exitCode: 0, containerId: 'c1', publishedPort: 30001, updatedAt: Date.parse('2026-12-06T10:00:00.5Z') });
    const pending = taskOf({ ID: 't2', Status: { State: 'pending', Err: 'no suitable node', PortStatus: {} } }, {});
    assert.equal(pending.publishedPort, undefined);
    assert.equal(pending.containerId, undefined);
    assert.equal(pending.message, 'no suitable node');
  });

  test('a mount is a bind mount when its source is a path, else a named volume', () => {
    assert.deepEqual(mountOf('/srv/data:/data:ro'), { Type: 'bind', Source: '/srv/data', Target: '/data', ReadOnly: true });
    assert.deepEqual(mountOf('cache:/cache'), { Type: 'volume', Source: 'cache', Target: '/cache', ReadOnly: false });
  });
});

describe('DockerSwarm on a real Swarm', () => {
  const instance = `t${process.pid}`;
  const image = `berth-test/swarm-http-${process.pid}:latest`;
  let cluster: TestCluster;
  let swarm: DockerSwarm;

  before(async () => {
    buildHttpImage(image);
    cluster = await startSwarmCluster({ workers: 2, images: [image] });
    swarm = await DockerSwarm.connect(cluster.manager.dockerHost, instance);
  });

  after(async () => {
    await cluster?.stop();
    run('docker', ['image', 'rm', '-f', image]);
  });

  test("manager() gives the manager's node id and address; a worker's engine is refused with what to do", async () => {
    const manager = await swarm.manager();
    assert.equal(manager.nodeId, (await cluster.docker(cluster.manager, ['info', '--format', '{{.Swarm.NodeID}}'])).trim());
    assert.equal(manager.address, cluster.manager.address);
    const worker = await DockerSwarm.connect(cluster.workers[0]!.dockerHost, instance);
    await assert.rejects(worker.manager(), (e: unknown) => e instanceof UserError && e.code === 'swarm_not_manager' && /docker node promote/.test(e.hint ?? ''));
  });

  test('nodes() lists every node ready and active, at the address its host-mode ports are reached, the manager leading', async () => {
    const nodes = await swarm.nodes();
    assert.equal(nodes.length, 3);
    assert.deepEqual(nodes.map((n) => n.address).sort(), cluster.nodes.map((n) => n.address).sort());
    for (const n of nodes) {
      assert.equal(n.state, 'ready', n.hostname);
      assert.equal(n.availability, 'active', n.hostname);
    }
    const manager = nodes.find((n) => n.address === cluster.manager.address)!;
    assert.equal(manager.role, 'manager');
    assert.equal(manager.leader, true);
    assert.equal(nodes.filter((n) => n.role === 'worker').length, 2);
  });

  test('updateNode sets and removes labels and availability, by hostname or id prefix, as the engine then reports them', async () => {
    const worker = await nodeAt(cluster.workers[0]!);
    let updated = await swarm.updateNode(worker.hostname, { labels: { zone: 'a', disk: 'ssd' } });
    assert.deepEqual(updated.labels, { zone: 'a', disk: 'ssd' });
    updated = await swarm.updateNode(worker.id.slice(0, 8), { labels: { disk: null }, availability: 'pause' });
    assert.deepEqual(updated.labels, { zone: 'a' });
    assert.equal(updated.availability, 'pause');
    const inspected = JSON.parse(await cluster.docker(cluster.manager, ['node', 'inspect', worker.id, '--format', '{{json .Spec}}'])) as { Labels: Record<string, string>; Availability: string };
    assert.deepEqual(inspected, { ...inspected, Labels: { zone: 'a' }, Availability: 'pause' });
    await swarm.updateNode(worker.id, { labels: { zone: null }, availability: 'active' });
    assert.deepEqual((await swarm.node(worker.id)).labels, {});
    await assert.rejects(swarm.node('no-such-node'), (e: unknown) => e instanceof UserError && e.code === 'node_not_found');
  });

  test('a service with a host-mode port: each task answers HTTP at its node address and published port, with berth labels, limits and capabilities; scaled, logged, then removed', async () => {
    const spec = {
      name: `berth-${instance}-shop-web-r1-test`,
      image,
      env: { PORT: '5000', GREETING: 'hello' },
      labels: { [LABEL.app]: 'shop', [LABEL.process]: 'web', [LABEL.release]: '1', [LABEL.role]: 'process' },
      entrypoint: ['/bin/busybox', 'sh', '-c', 'echo "$GREETING from $HOSTNAME"; mkdir -p /www && echo "task $HOSTNAME" > /www/index.html && exec /bin/busybox httpd -f -p "$PORT" -h /www'],
      replicas: 2,
      publish: 5000,
      constraints: [],
      spread: ['node.id'],
      limits: { memory: 64 * 1024 ** 2, cpus: 0.5, pids: 64 },
      reservations: { memory: 8 * 1024 ** 2 },
      capabilities: APP_CAPABILITIES,
      stopTimeout: 3,
      networks: [],
    };
    const service = await swarm.createService(spec);
    assert.equal(service.name, spec.name);
    assert.equal(service.replicas, 2);
    assert.equal(service.labels[LABEL.instance], instance);
    assert.deepEqual((await swarm.services({ [LABEL.app]: 'shop' })).map((s) => s.id), [service.id]);
    assert.deepEqual(await swarm.services({ [LABEL.app]: 'other' }), []);

    const inspected = JSON.parse(await cluster.docker(cluster.manager, ['service', 'inspect', service.id, '--format', '{{json .Spec}}'])) as ServiceSpecWire;
    assert.equal(inspected.EndpointSpec.Mode, 'dnsrr');
    assert.deepEqual(inspected.EndpointSpec.Ports, [{ Protocol: 'tcp', TargetPort: 5000, PublishMode: 'host' }]);
    assert.deepEqual(inspected.TaskTemplate.RestartPolicy, { ...inspected.TaskTemplate.RestartPolicy, Condition: 'any', Delay: 0 });
    assert.equal(inspected.TaskTemplate.ContainerSpec.StopGracePeriod, 3e9);
    assert.deepEqual(inspected.TaskTemplate.Placement.Preferences, [{ Spread: { SpreadDescriptor: 'node.id' } }]);
    assert.deepEqual(inspected.TaskTemplate.Resources, { Limits: { NanoCPUs: 5e8, MemoryBytes: 64 * 1024 ** 2, Pids: 64 }, Reservations: { MemoryBytes: 8 * 1024 ** 2 } });

    const running = await runningTasks(service, 2);
    assert.equal(new Set(running.map((t) => t.nodeId)).size, 2, 'spread over two nodes');
    const nodes = await swarm.nodes();
    for (const task of running) {
      assert.equal(task.labels[LABEL.app], 'shop');
      assert.ok(task.publishedPort && task.publishedPort > 0, 'an engine-assigned port');
      const node = nodes.find((n) => n.id === task.nodeId)!;
      const body = await get(`http://${node.address}:${task.publishedPort}/`);
      assert.match(body, /^task \w+/);
      // The container on its node carries berth's labels, limits and capabilities.
      const handle = cluster.nodes.find((h) => h.address === node.address)!;
      const container = JSON.parse(await cluster.docker(handle, ['container', 'inspect', task.containerId!, '--format', '{{json .}}'])) as ContainerWire;
      assert.equal(container.Config.Labels[LABEL.app], 'shop');
      assert.equal(container.Config.Labels[LABEL.managed], '1');
      assert.equal(container.HostConfig.Memory, 64 * 1024 ** 2);
      assert.equal(container.HostConfig.PidsLimit, 64);
      assert.deepEqual(container.HostConfig.CapDrop, ['ALL']);
      assert.deepEqual([...(container.HostConfig.CapAdd ?? [])].sort(), APP_CAPABILITIES.map((c) => `CAP_${c}`).sort());
    }
    await waitFor('a task log line', async () => (await swarm.taskLogs(running[0]!.id, 10)).includes('hello from'), 20_000);

    await swarm.setReplicas(service.id, 3);
    assert.equal((await runningTasks(service, 3)).length, 3);
    assert.equal((await swarm.services({ [LABEL.app]: 'shop' }))[0]!.replicas, 3);

    await swarm.removeService(service.id);
    await swarm.removeService(service.id);
    assert.deepEqual(await swarm.services({ [LABEL.app]: 'shop' }), []);
    assert.deepEqual(await swarm.tasks({ service: service.id }), []);
    await waitFor('the containers of the removed service to go', async () => {
      for (const node of cluster.nodes) if ((await cluster.docker(node, ['ps', '-q', '--filter', `label=${LABEL.instance}=${instance}`])).trim() !== '') return false;
      return true;
    }, 30_000);
  });

  test('secrets: made once by name, listed by label, mounted by name and at an absolute path; a registry credential is kept out of the spec; removed once unused', async () => {
    const name = `berth-${instance}-test-secret`;
    await swarm.ensureSecret(name, 'first\n', { [LABEL.role]: 'registry' });
    await swarm.ensureSecret(name, 'second\n', { [LABEL.role]: 'registry' });
    const listed = await swarm.secrets({ [LABEL.role]: 'registry' });
    assert.deepEqual(listed.map((x) => x.name), [name]);
    assert.deepEqual(await swarm.secrets({ [LABEL.role]: 'other' }), []);

    const service = await swarm.createService({
      name: `berth-${instance}-secret-reader`, image, env: {}, labels: { [LABEL.role]: 'test' }, replicas: 1, publish: 5000, constraints: [], spread: [], networks: [],
      entrypoint: ['/bin/busybox', 'sh', '-c', 'cat /run/secrets/mine /etc/elsewhere.yml; exec /bin/busybox sleep 600'],
      secrets: [{ name, target: 'mine' }, { name, target: '/etc/elsewhere.yml' }],
      registryAuth: { username: 'berth', password: 'not-in-the-spec-42', serveraddress: '127.0.0.1:5001' },
    });
    try {
      const [task] = await runningTasks(service, 1);
      await waitFor('the secret files in its log', async () => (await swarm.taskLogs(task!.id, 10)) === 'first\nfirst\n', 20_000);
      const inspected = await cluster.docker(cluster.manager, ['service', 'inspect', service.id]);
      assert.ok(!inspected.includes('not-in-the-spec-42'), 'the registry credential is in no inspect');
      await assert.rejects(swarm.removeSecret(listed[0]!.id), /in use/);
    } finally {
      await swarm.removeService(service.id);
    }
    await waitFor('the secret removed once its service is gone', async () => {
      try {
        await swarm.removeSecret(listed[0]!.id);
        return true;
      } catch {
        return false;
      }
    }, 20_000);
    assert.deepEqual(await swarm.secrets({ [LABEL.role]: 'registry' }), []);
    await swarm.removeSecret(listed[0]!.id);
  });

  test("an engine in no Swarm is refused with the hint `docker swarm init`; the join command run there makes it a ready node of the Swarm", async () => {
    const fresh = await cluster.addNode();
    const alone = await DockerSwarm.connect(fresh.dockerHost, instance);
    await assert.rejects(alone.manager(), (e: unknown) => e instanceof UserError && e.code === 'swarm_inactive' && /docker swarm init/.test(e.hint ?? ''));
    const command = await swarm.joinCommand('worker');
    assert.match(command, new RegExp(`^docker swarm join --token SWMTKN-\\S+ ${cluster.manager.address.replaceAll('.', '\\.')}:2377$`));
    assert.notEqual(await swarm.joinCommand('manager'), command);
    await cluster.docker(fresh, command.split(' ').slice(1));
    await waitFor('the new node to be ready', async () => (await swarm.nodes()).some((n) => n.address === fresh.address && n.state === 'ready'), 30_000);
    const joined = (await swarm.nodes()).find((n) => n.address === fresh.address)!;
    assert.equal(joined.role, 'worker');
  });

  /** The node of the Swarm at a handle's address. */
  async function nodeAt(handle: SwarmNodeHandle) {
    const found = (await swarm.nodes()).find((n) => n.address === handle.address);
    assert.ok(found, `a node at ${handle.address}`);
    return found;
  }

  /** Waits until `count` tasks of the service run and have their published port. */
  async function runningTasks(service: SwarmService, count: number): Promise<SwarmTask[]> {
    let running: SwarmTask[] = [];
    await waitFor(`${count} running tasks of ${service.name}`, async () => {
      running = (await swarm.tasks({ service: service.id })).filter((t) => t.desiredState === 'running' && t.state === 'running' && t.publishedPort);
      return running.length === count;
    }, 30_000);
    return running;
  }
});

/** A tiny image that serves HTTP: this machine's static busybox, on the local engine. */
function buildHttpImage(ref: string): void {
  const root = tempDir('swarm-http');
  fs.mkdirSync(path.join(root, 'bin'));
  fs.mkdirSync(path.join(root, 'tmp'));
  fs.copyFileSync('/usr/bin/busybox', path.join(root, 'bin', 'busybox'));
  fs.chmodSync(path.join(root, 'bin', 'busybox'), 0o755);
  fs.symlinkSync('busybox', path.join(root, 'bin', 'sh'));
  const tarFile = path.join(tempDir('swarm-http-tar'), 'rootfs.tar');
  mustRun('tar', ['-C', root, '-cf', tarFile, '.']);
  mustRun('docker', ['import', tarFile, ref]);
}

function get(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve(body));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
  });
}

interface ServiceSpecWire {
  EndpointSpec: { Mode: string; Ports: unknown[] };
  TaskTemplate: {
    RestartPolicy: Record<string, unknown>;
    ContainerSpec: { StopGracePeriod: number };
    Placement: { Preferences: unknown[] };
    Resources: unknown;
  };
}

interface ContainerWire {
  Config: { Labels: Record<string, string> };
  HostConfig: { Memory: number; PidsLimit: number; CapDrop: string[] | null; CapAdd: string[] | null };
}
