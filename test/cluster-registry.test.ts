// The cluster registry on a real Swarm of Docker-in-Docker nodes (test/helpers/swarm-cluster.ts),
// with the registry image made from Debian's docker-registry: an image built only on the manager
// is pushed from the manager's engine to the store on 127.0.0.1, and runs as a service task on a
// worker that never had it, by its digest, pulled through the worker's loopback mirror; the
// services are adopted by another berth, recreated when gone; prune deletes a release's manifest
// (a pull of it then fails) and keeps one another tag still names. One cluster for the file.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ClusterRegistry, REGISTRY_PORTS } from '../src/orchestrator/cluster-registry.ts';
import { DockerEngine } from '../src/orchestrator/docker-engine.ts';
import { DockerSwarm } from '../src/orchestrator/docker-swarm.ts';
import { LABEL } from '../src/orchestrator/engine.ts';
import { MemoryOutput } from '../src/ui/output.ts';
import { BASE_IMAGE, waitFor } from './helpers/daemon.ts';
import { REGISTRY_TEST_IMAGE, startSwarmCluster, type TestCluster } from './helpers/swarm-cluster.ts';

describe('the cluster registry on a real Swarm', () => {
  const instance = `t${process.pid}`;
  const repo = `berth-${instance}/shop`;
  let cluster: TestCluster;
  let engine: DockerEngine;
  let swarm: DockerSwarm;
  let registry: ClusterRegistry;
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-registry-'));
  const credentialFile = path.join(dataDir, 'registry', 'credential');
  /** The registry's credential as a Basic Authorization header. */
  const authorization = () => `Basic ${Buffer.from(`berth:${fs.readFileSync(credentialFile, 'utf8').trim()}`).toString('base64')}`;

  /** Builds `repo:tag` on the manager's engine only: the base image and one marked layer. */
  async function buildOnManager(tag: string, marker: string): Promise<void> {
    await cluster.exec(cluster.manager, `d=$(mktemp -d) && printf 'FROM ${BASE_IMAGE}\\nRUN echo ${marker} > /marker\\n' > $d/Dockerfile && DOCKER_BUILDKIT=0 docker build -q -t ${repo}:${tag} $d >/dev/null && rm -rf $d`);
  }

  /** The registry's answer to a HEAD of a manifest, from this machine at the manager's address. */
  async function manifestStatus(reference: string): Promise<number> {
    const accept = 'application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json';
    return (await fetch(`http://${cluster.manager.address}:${REGISTRY_PORTS.store}/v2/${repo}/manifests/${reference}`, { method: 'HEAD', headers: { Accept: accept, Authorization: authorization() } })).status;
  }

  before(async () => {
    cluster = await startSwarmCluster({ workers: 1, images: [REGISTRY_TEST_IMAGE] });
    await cluster.loadImages([BASE_IMAGE], [cluster.manager]);
    engine = await DockerEngine.connect(cluster.manager.dockerHost, instance);
    swarm = await DockerSwarm.connect(cluster.manager.dockerHost, instance);
    registry = new ClusterRegistry({ engine, swarm, image: REGISTRY_TEST_IMAGE, prefix: 'berth', credentialFile });
  });

  after(async () => {
    await cluster?.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  test('an image built only on the manager runs on a worker that never had it, by its digest', async (t) => {
    const worker = cluster.workers[0]!;
    await buildOnManager('r1', 'release-one');
    await assert.rejects(cluster.docker(worker, ['image', 'inspect', `${repo}:r1`]), 'the worker does not have the image');

    const out = new MemoryOutput();
    let started = Date.now();
    const ref = await registry.distribute(`${repo}:r1`, out);
    t.diagnostic(`registry started and release pushed in ${Date.now() - started} ms`);
    assert.match(ref, new RegExp(`^127\\.0\\.0\\.1:${REGISTRY_PORTS.mirror}/${repo}@sha256:[0-9a-f]{64}$`));
    assert.match(out.text(), /Starting the cluster registry on the manager/);
    assert.match(out.text(), /Pushing berth-.*\/shop:r1 to the cluster registry/);
    assert.equal(await engine.imageExists(`127.0.0.1:${REGISTRY_PORTS.store}/${repo}:r1`), false, 'the push tag is gone from the manager');
    const digest = ref.slice(ref.indexOf('@') + 1);
    assert.equal(await manifestStatus(digest), 200);

    const workerNode = (await swarm.nodes()).find((n) => n.hostname === worker.name)!;
    started = Date.now();
    const service = await swarm.createService({
      name: `${instance}-shop-web`, image: ref, env: {}, labels: { [LABEL.app]: 'shop', [LABEL.role]: 'process' },
      cmd: ['sh', '-c', 'cat /marker && exec sleep 600'], replicas: 1, constraints: [`node.id==${workerNode.id}`], spread: [], networks: [],
      registryAuth: registry.registryAuth(ref)!,
    });
    try {
      await waitFor('the task running on the worker', async () => (await swarm.tasks({ service: service.id })).some((task) => task.state === 'running' && task.nodeId === workerNode.id), 60_000);
      t.diagnostic(`task running on the worker (pulled through its mirror) ${Date.now() - started} ms after the service was created`);
      const [task] = (await swarm.tasks({ service: service.id })).filter((each) => each.state === 'running');
      await waitFor('the marker in its log', async () => (await swarm.taskLogs(task!.id, 10)).includes('release-one'));
      const pulled = await cluster.docker(worker, ['image', 'inspect', '--format', '{{json .RepoDigests}}', ref]);
      assert.ok(pulled.includes(digest), `the worker holds the same digest: ${pulled}`);
    } finally {
      await swarm.removeService(service.id);
    }
  });

  test('without the credential the store and every mirror answer 401 to a pull, a push and a delete; no service spec nor registry log shows it', async () => {
    const digest = (await registry.distribute(`${repo}:r1`, new MemoryOutput())).split('@')[1]!;
    const password = fs.readFileSync(credentialFile, 'utf8').trim();
    assert.equal(fs.statSync(credentialFile).mode & 0o777, 0o600);
    const accept = 'application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json';
    const wrong = `Basic ${Buffer.from('berth:not-the-password').toString('base64')}`;
    for (const node of cluster.nodes) {
      for (const port of [REGISTRY_PORTS.store, REGISTRY_PORTS.mirror]) {
        if (port === REGISTRY_PORTS.store && node !== cluster.manager) continue;
        const base = `http://${node.address}:${port}/v2`;
        for (const headers of [{}, { Authorization: wrong }] as Array<Record<string, string>>) {
          const where = `${node.name}:${port} ${headers.Authorization ? 'wrong password' : 'no credential'}`;
          assert.equal((await fetch(`${base}/`, { headers })).status, 401, `${where}: /v2/`);
          assert.equal((await fetch(`${base}/${repo}/manifests/${digest}`, { headers: { ...headers, Accept: accept } })).status, 401, `${where}: pull`);
          assert.equal((await fetch(`${base}/${repo}/blobs/uploads/`, { method: 'POST', headers })).status, 401, `${where}: push`);
          assert.equal((await fetch(`${base}/${repo}/manifests/${digest}`, { method: 'DELETE', headers })).status, 401, `${where}: delete`);
        }
        // With it, a pull answers (on a mirror: through its own credential to the store).
        assert.equal((await fetch(`${base}/${repo}/manifests/${digest}`, { headers: { Authorization: authorization(), Accept: accept } })).status, 200, `${node.name}:${port} with the credential`);
      }
    }
    const inspected = await cluster.docker(cluster.manager, ['service', 'inspect', `berth-${instance}-registry`, `berth-${instance}-registry-mirror`]);
    assert.ok(!inspected.includes(password), 'the credential is in no service spec');
    // Both streams: the registry logs its start and its upstream on stderr.
    const logs = await cluster.exec(cluster.manager, `docker service logs --raw berth-${instance}-registry-mirror 2>&1`);
    assert.match(logs, /"GET \/v2\/ HTTP\/1\.1" 401/, 'the mirror logged the requests');
    assert.ok(!logs.includes(password), 'the credential is in no registry log');
    assert.match(inspected, /REGISTRY_AUTH=htpasswd/);
  });

  test('another berth adopts the services; a service gone is made again; the volume is labelled and kept', async () => {
    const before = (await swarm.services({ [LABEL.role]: 'registry' })).map((s) => s.id).sort();
    assert.equal(before.length, 2);
    const other = new ClusterRegistry({ engine, swarm, image: REGISTRY_TEST_IMAGE, prefix: 'berth', credentialFile });
    const out = new MemoryOutput();
    await other.ensure(out);
    assert.deepEqual((await swarm.services({ [LABEL.role]: 'registry' })).map((s) => s.id).sort(), before);
    assert.equal(out.text(), '', 'adoption says nothing');

    const mirror = (await swarm.services({ [LABEL.role]: 'registry' })).find((s) => s.labels['berth.registry'] === 'mirror')!;
    await swarm.removeService(mirror.id);
    await other.ensure(out);
    const after = await swarm.services({ [LABEL.role]: 'registry' });
    assert.equal(after.length, 2);
    assert.ok(!after.some((s) => s.id === mirror.id) && after.some((s) => s.labels['berth.registry'] === 'mirror'), 'a new mirror');
    assert.match(out.text(), /Starting the cluster registry's mirror on every node/);
    assert.deepEqual(await engine.volumeLabels(`berth-${instance}-registry`), { [LABEL.managed]: '1', [LABEL.instance]: instance, [LABEL.role]: 'registry' });
  });

  test('prune deletes an old release manifest, a pull of it then fails; a manifest another tag names stays', async () => {
    await buildOnManager('r2', 'release-two');
    await engine.tagImage(`${repo}:r2`, repo, 'r3');
    const out = new MemoryOutput();
    const r1 = await registry.distribute(`${repo}:r1`, out);
    const r2 = await registry.distribute(`${repo}:r2`, out);
    const r3 = await registry.distribute(`${repo}:r3`, out);
    assert.equal(r2, r3, 'the same image, the same digest');

    // As pruneImages does: the engine's release images first, then the registry's.
    await engine.removeImage(`${repo}:r1`);
    await engine.removeImage(`${repo}:r3`);
    await registry.prune([`${repo}:r1`, `${repo}:r3`]);

    const digest = (ref: string) => ref.slice(ref.indexOf('@') + 1);
    assert.equal(await manifestStatus(digest(r1)), 404, 'r1 is gone');
    assert.equal(await manifestStatus(digest(r2)), 200, 'r2 (also r3) stays');
    const password = fs.readFileSync(credentialFile, 'utf8').trim();
    // Logged in (the store refuses any pull without the credential), and saying why it failed.
    const pulled = await cluster.exec(cluster.manager, `printf %s '${password}' | docker login -u berth --password-stdin 127.0.0.1:${REGISTRY_PORTS.store} 2>&1; docker pull 127.0.0.1:${REGISTRY_PORTS.store}/${repo}@${digest(r1)} 2>&1 && echo PULLED; docker logout 127.0.0.1:${REGISTRY_PORTS.store} >/dev/null; true`);
    assert.match(pulled, /Login Succeeded/);
    assert.doesNotMatch(pulled, /PULLED/);
    assert.match(pulled, /manifest unknown|not found/i);
  });
});
