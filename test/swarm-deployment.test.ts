// The deploy path on the swarm scheduler over a fake Swarm (test/helpers/fake-swarm.ts), fast:
// each process type a service, every task gated at its node's address and published port, one
// publish, probation, drain, the old services removed; a failed gate leaving the old serving;
// scale, rollback, the task watcher, moving off a node, adoption, stop and destroy. The same paths
// run on a real Swarm of Docker-in-Docker nodes under wrk load in e2e-swarm.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { dataPaths, defaultConfig } from '../src/config.ts';
import { isUserError } from '../src/errors.ts';
import { setLogSink } from '../src/log.ts';
import { writeAppLogs } from '../src/orchestrator/app-logs.ts';
import { changeConfig, changeSettings, processReport, rollback, scale, start, stop } from '../src/orchestrator/app-operations.ts';
import { parsePlacement } from '../src/cli/commands/ps.ts';
import { runCommand } from '../src/cli/registry.ts';
import type { Platform } from '../src/platform/platform.ts';
import { loadState } from '../src/platform/state.ts';
import { MemoryOutput } from '../src/ui/output.ts';
import type { DrainResult, RoutePublisher } from '../src/orchestrator/deployment.ts';
import { LABEL } from '../src/orchestrator/engine.ts';
import { healthchecksSection } from '../src/orchestrator/health-check.ts';
import { Orchestrator } from '../src/orchestrator/orchestrator.ts';
import { SwarmDynos } from '../src/orchestrator/swarm-dynos.ts';
import type { NodeProbe } from '../src/orchestrator/task-watcher.ts';
import type { ImageDistributor } from '../src/orchestrator/swarm.ts';
import { LocalImageDistributor } from '../src/orchestrator/swarm-deployment.ts';
import type { RouteGuard } from '../src/orchestrator/route-guard.ts';
import { deployNewRelease } from '../src/orchestrator/release-flow.ts';
import { AppLock } from '../src/platform/app-lock.ts';
import type { Target } from '../src/proxy/route-table.ts';
import { sleep } from '../src/sleep.ts';
import { AppStore, type AppRecord, type Release } from '../src/state/app-store.ts';
import { defaultCheckSettings } from '../src/state/check-settings.ts';
import { DomainStore } from '../src/state/domain-store.ts';
import { ServiceStore } from '../src/state/service-store.ts';
import { FakeEngine } from './helpers/fake-engine.ts';
import { FakeSwarm } from './helpers/fake-swarm.ts';
import { recordingOutput } from './helpers/recording-output.ts';

const logLines: string[] = [];
setLogSink((line) => logLines.push(line));

const IMAGE = 'berth-fake/shop:r1';

function releaseOf(number: number, config: Record<string, string> = {}): Release {
  return {
    number,
    image: IMAGE,
    commit: 'c0ffee',
    builder: 'image',
    processTypes: { web: '', worker: '' },
    config: { N: String(number), ...config },
    description: `Deploy ${number}`,
    healthchecks: healthchecksSection(JSON.stringify({ healthchecks: { web: [{ name: 'home', path: '/', attempts: 2, wait: 0.05, timeout: 1 }] } }))!,
    createdAt: '2026-01-01T00:00:00.000Z',
    createdBy: 'test',
  };
}

test('a release runs as one Swarm service per process type; every web task is gated at its node address and published port, then routed in one publish', async (t) => {
  const { swarm, publisher, orch } = await setUp(t);
  const services = await swarm.services({ [LABEL.app]: 'shop' });
  assert.equal(services.length, 2);
  const web = services.find((s) => s.labels[LABEL.process] === 'web')!;
  const worker = services.find((s) => s.labels[LABEL.process] === 'worker')!;
  assert.match(web.name, /^berth-fake-shop-web-r1-[0-9a-f]{4}$/);
  assert.equal(web.replicas, 2);
  assert.equal(worker.replicas, 1);
  assert.equal(web.image, `sha256:${IMAGE}`, 'named by image id: every node runs the same bytes');
  const spec = swarm.specs.get(web.id)!;
  assert.equal(spec.publish, 5000);
  assert.equal(spec.env.PORT, '5000');
  assert.equal(spec.env.DYNO, 'web.{{.Task.Slot}}');
  assert.deepEqual(spec.labels, { [LABEL.app]: 'shop', [LABEL.process]: 'web', [LABEL.release]: '1', [LABEL.role]: 'process' });
  assert.equal(swarm.specs.get(worker.id)!.publish, undefined);
  assert.deepEqual(spec.networks, [{ name: 'berth-swarm-fake-shop', aliases: ['shop.web'] }]);
  assert.equal((orch.engine as FakeEngine).networks.has('berth-swarm-fake-shop'), true, "the app's overlay network");
  const tasks = swarm.live({ [LABEL.app]: 'shop', [LABEL.process]: 'web' });
  assert.deepEqual(
    publisher.routed('shop').map((x) => `${x.host}:${x.port}`).sort(),
    tasks.map((x) => `127.0.0.1:${x.publishedPort}`).sort(),
  );
  assert.deepEqual(publisher.routed('shop').map((x) => x.id).sort(), tasks.map((x) => `${web.name}.${x.slot}.${x.id}`).sort());
  for (const target of publisher.routed('shop')) assert.equal((await fetch(`http://${target.host}:${target.port}/`)).status, 200);
  // The report lists tasks with their node.
  const report = await processReport(orch, 'shop');
  assert.deepEqual(report.containers.map((c) => c.dyno), ['web.1', 'web.2', 'worker.1']);
  assert.ok(report.containers.every((c) => c.node && /^node\d$/.test(c.node) && c.state === 'running'), JSON.stringify(report.containers));
  assert.ok(new Set(report.containers.map((c) => c.node)).size >= 2, 'tasks spread over nodes');
});

test('a config change deploys new services, swaps the route once, drains the old targets and removes the old services; a rollback needs no build', async (t) => {
  const { swarm, publisher, orch, out } = await setUp(t);
  const before = publisher.routed('shop').map((x) => x.id);
  const oldServices = (await swarm.services({ [LABEL.app]: 'shop' })).map((s) => s.id);
  await changeConfig(orch, 'shop', { set: { COLOR: 'blue' } }, { restart: true, by: 'test', out });
  const now = await swarm.services({ [LABEL.app]: 'shop' });
  assert.equal(now.length, 2);
  assert.ok(now.every((s) => s.labels[LABEL.release] === '2' && !oldServices.includes(s.id)));
  assert.equal(swarm.specs.get(now[0]!.id)!.env.COLOR, 'blue');
  const routed = publisher.routed('shop').map((x) => x.id);
  assert.equal(routed.length, 2);
  assert.ok(routed.every((id) => !before.includes(id)));
  assert.deepEqual(publisher.standby('shop'), []);
  assert.deepEqual(publisher.drains.at(-1)?.targets.sort(), [...before].sort(), 'the old web targets were drained');
  assert.equal(publisher.publishes.filter((p) => p.release === 2).length >= 1, true);
  assert.equal(orch.apps.require('shop').current, 2);

  await rollback(orch, 'shop', 1, { by: 'test', out });
  const rolled = await swarm.services({ [LABEL.app]: 'shop' });
  assert.ok(rolled.every((s) => s.labels[LABEL.release] === '3' && s.image === `sha256:${IMAGE}`));
  assert.equal(swarm.specs.get(rolled[0]!.id)!.env.COLOR, undefined, "v1's config");
});

test('config values and mount paths reach the service spec escaped from Swarm\'s templates; only DYNO stays a template', async (t) => {
  const { swarm, orch, out } = await setUp(t);
  await orch.apps.update('shop', (a) => void (a.mounts = ['/srv/{{.Node.ID}}:/data']));
  await changeConfig(orch, 'shop', { set: { GREETING: 'Hello {{name}}', HOST: '{{.Node.Hostname}}', BOMB: '{{printf "%01000000d" 0}}' } }, { restart: true, by: 'test', out });
  const web = (await swarm.services({ [LABEL.app]: 'shop', [LABEL.process]: 'web' }))[0]!;
  const spec = swarm.specs.get(web.id)!;
  assert.equal(spec.env.GREETING, 'Hello {{"{{"}}name}}');
  assert.equal(spec.env.HOST, '{{"{{"}}.Node.Hostname}}');
  assert.equal(spec.env.BOMB, '{{"{{"}}printf "%01000000d" 0}}');
  assert.equal(spec.env.DYNO, 'web.{{.Task.Slot}}');
  assert.deepEqual(spec.mounts, ['/srv/{{"{{"}}.Node.ID}}:/data']);
});

test('a failed gate removes the new services and leaves the old ones serving, the route untouched', async (t) => {
  const { swarm, publisher, orch, out } = await setUp(t);
  const before = [...publisher.routed('shop')];
  const oldServices = (await swarm.services({ [LABEL.app]: 'shop' })).map((s) => s.name).sort();
  swarm.behaviour = (spec) => (spec.labels[LABEL.release] === '2' ? { status: 500 } : {});
  await assert.rejects(changeConfig(orch, 'shop', { set: { BROKEN: '1' } }, { restart: true, by: 'test', out }), (e: unknown) => isUserError(e) && /web\.\d: health check "home" failed after 2 attempts: status 500/.test(e.message));
  assert.deepEqual((await swarm.services({ [LABEL.app]: 'shop' })).map((s) => s.name).sort(), oldServices);
  assert.deepEqual(publisher.routed('shop'), before);
  assert.equal(orch.apps.require('shop').current, 1);
  for (const target of before) assert.equal((await fetch(`http://${target.host}:${target.port}/`)).status, 200);

  // A task that exits at start fails the deploy with its exit code; the old keep serving.
  swarm.behaviour = (spec) => (spec.env.BROKEN === '2' ? { exitCode: 3 } : {});
  await assert.rejects(changeConfig(orch, 'shop', { set: { BROKEN: '2' } }, { restart: true, by: 'test', out }), (e: unknown) => isUserError(e) && /stopped at start on node node\d \(failed, exit code 3\)/.test(e.message));
  assert.deepEqual((await swarm.services({ [LABEL.app]: 'shop' })).map((s) => s.name).sort(), oldServices);
  assert.deepEqual(publisher.routed('shop'), before);
});

test('a new task that stops on probation sends the route back to the old tasks, and the new services are removed', async (t) => {
  const { swarm, publisher, orch, out } = await setUp(t, 5_000);
  const before = publisher.routed('shop').map((x) => x.id).sort();
  const deploy = changeConfig(orch, 'shop', { set: { COLOR: 'red' } }, { restart: true, by: 'test', out });
  const failed = assert.rejects(deploy, (e: unknown) => isUserError(e) && e.code === 'probation_failed' && /^web\.\d exited \(exit code 3\) \d+\.\d s after v2 was routed; routed back to v1$/.test(e.message));
  await until(() => orch.probation('shop') !== undefined, 5000);
  assert.equal(publisher.routed('shop').length, 2);
  assert.ok(publisher.routed('shop').every((x) => /-r2-/.test(x.id)), 'v2 serves on probation');
  const v2 = swarm.live({ [LABEL.app]: 'shop', [LABEL.process]: 'web', [LABEL.release]: '2' })[0]!;
  await swarm.killTask(v2.id, 3);
  await failed;
  assert.deepEqual(publisher.routed('shop').map((x) => x.id).sort(), before);
  assert.deepEqual((await swarm.services({ [LABEL.app]: 'shop' })).map((s) => s.labels[LABEL.release]), ['1', '1']);
  assert.equal(orch.apps.require('shop').current, 1);
});

test('checks:disable stops the old services of those types first: out of the route, scaled to 0 until their tasks stopped, removed, then the new service starts', async (t) => {
  const { swarm, publisher, orch, out } = await setUp(t);
  await orch.apps.update('shop', (a) => void (a.checks.disabled = ['worker']));
  const [oldWeb] = await swarm.services({ [LABEL.app]: 'shop', [LABEL.process]: 'web' });
  const [oldWorker] = await swarm.services({ [LABEL.app]: 'shop', [LABEL.process]: 'worker' });
  const webBefore = publisher.routed('shop').map((x) => x.id);
  const oldWorkerTasks = swarm.live({ [LABEL.app]: 'shop', [LABEL.process]: 'worker' }).map((x) => x.id);
  swarm.log.length = 0;
  await changeConfig(orch, 'shop', { set: { COLOR: 'green' } }, { restart: true, by: 'test', out });
  const [newWorker] = await swarm.services({ [LABEL.app]: 'shop', [LABEL.process]: 'worker' });
  const [newWeb] = await swarm.services({ [LABEL.app]: 'shop', [LABEL.process]: 'web' });
  const order = (entry: string) => {
    const at = swarm.log.indexOf(entry);
    assert.ok(at >= 0, `${entry} in:\n${swarm.log.join('\n')}`);
    return at;
  };
  assert.ok(oldWorkerTasks.length > 0);
  for (const task of oldWorkerTasks) assert.ok(order(`scale ${oldWorker!.name} 0`) < order(`stopped ${task}`) && order(`stopped ${task}`) < order(`remove ${oldWorker!.name}`), swarm.log.join('\n'));
  assert.ok(order(`remove ${oldWorker!.name}`) < order(`create ${newWorker!.name}`), 'the old worker\'s tasks had stopped and it went before the new one started');
  assert.ok(order(`create ${newWeb!.name}`) < order(`remove ${oldWeb!.name}`), 'web, with its checks, still swapped with zero downtime');
  assert.ok(out.lines.includes('-----> Zero-downtime deploys are disabled for worker: stopping the old Swarm services first'), out.lines.join('\n'));
  assert.ok(publisher.routed('shop').every((x) => !webBefore.includes(x.id)));

  // Disabled for web: its old tasks leave the route and are drained before the new service starts.
  await orch.apps.update('shop', (a) => void (a.checks.disabled = ['web']));
  const drainsBefore = publisher.drains.length;
  swarm.log.length = 0;
  const routedBefore = publisher.routed('shop').map((x) => x.id);
  await changeConfig(orch, 'shop', { set: { COLOR: 'red' } }, { restart: true, by: 'test', out });
  const [latestWeb] = await swarm.services({ [LABEL.app]: 'shop', [LABEL.process]: 'web' });
  assert.ok(order(`remove ${newWeb!.name}`) < order(`create ${latestWeb!.name}`), swarm.log.join('\n'));
  assert.deepEqual(publisher.drains[drainsBefore]?.targets.sort(), [...routedBefore].sort(), 'the old web targets were drained first');
});

test('ps:scale deploys the type whose count changed as a new service at the new count, gates its tasks and keeps the others', async (t) => {
  const { swarm, publisher, orch, out } = await setUp(t);
  const worker = (await swarm.services({ [LABEL.app]: 'shop', [LABEL.process]: 'worker' }))[0]!;
  await scale(orch, 'shop', { web: 4 }, out);
  const web = await swarm.services({ [LABEL.app]: 'shop', [LABEL.process]: 'web' });
  assert.equal(web.length, 1);
  assert.equal(web[0]!.replicas, 4);
  assert.equal(publisher.routed('shop').length, 4);
  assert.deepEqual((await swarm.services({ [LABEL.app]: 'shop', [LABEL.process]: 'worker' })).map((s) => s.id), [worker.id], 'the worker service was kept');
  const nodes = new Set(swarm.live({ [LABEL.app]: 'shop', [LABEL.process]: 'web' }).map((x) => x.nodeId));
  assert.equal(nodes.size, 3, 'four tasks spread over the three nodes');
});

test('the task watcher takes a stopped task, and the tasks of a node that is down, out of the route at once; their replacements rejoin after their checks', async (t) => {
  const { swarm, publisher } = await setUp(t);
  const logFrom = logLines.length;
  const [first] = swarm.live({ [LABEL.app]: 'shop', [LABEL.process]: 'web' });
  const name = publisher.routed('shop').find((x) => x.id.endsWith(`.${first!.id}`))!.id;
  await swarm.killTask(first!.id);
  const killedAt = Date.now();
  await until(() => !publisher.routed('shop').some((x) => x.id === name), 3000);
  assert.ok(Date.now() - killedAt < 1500, 'withdrawn within a poll or two');
  // Its replacement passes its checks and joins.
  await until(() => publisher.routed('shop').length === 2, 5000);
  const live = swarm.live({ [LABEL.app]: 'shop', [LABEL.process]: 'web' }).map((x) => x.id);
  assert.ok(publisher.routed('shop').every((x) => live.some((id) => x.id.endsWith(`.${id}`))));

  const onNode = swarm.live({ [LABEL.app]: 'shop', [LABEL.process]: 'web' })[0]!;
  const node = swarm.nodes_.find((n) => n.id === onNode.nodeId)!;
  // The node stops answering: its tasks are still `running` on record, but it is not ready.
  node.state = 'down';
  const downAt = Date.now();
  await until(() => !publisher.routed('shop').some((x) => x.id.endsWith(`.${onNode.id}`)), 3000);
  assert.ok(Date.now() - downAt < 1500);
  await swarm.loseNode(node.hostname);
  await until(() => publisher.routed('shop').length === 2, 5000);
  const nowLive = swarm.live({ [LABEL.app]: 'shop', [LABEL.process]: 'web' });
  assert.ok(nowLive.every((x) => x.nodeId !== node.id));
  assert.ok(events('route_target_withdrawn', logFrom).length >= 2);
  assert.ok(events('route_target_rejoined', logFrom).length >= 2);
});

test('a node that stops answering its probe leaves the route before Swarm marks it down, and rejoins when it answers again; one that never answered is not judged by it, and a probe alone never empties a route', async (t) => {
  const answering = new Set<string>();
  const { swarm, publisher } = await setUp(t, 300, undefined, { nodeProbe: async (node) => (answering.has(node.hostname) ? 'up' : 'down') });
  const logFrom = logLines.length;
  const [a, b] = swarm.live({ [LABEL.app]: 'shop', [LABEL.process]: 'web' });
  const nodeA = swarm.nodes_.find((n) => n.id === a!.nodeId)!;
  const nodeB = swarm.nodes_.find((n) => n.id === b!.nodeId)!;
  assert.notEqual(nodeA.id, nodeB.id);
  const routed = (task: { id: string }) => publisher.routed('shop').some((x) => x.id.endsWith(`.${task.id}`));
  // B's port never answers (a firewall between berth and the node): it is not judged by it.
  answering.add(nodeA.hostname);
  await sleep(1600);
  assert.ok(routed(a!) && routed(b!), 'both routed');
  // A answered, then stops answering while Swarm still says it is ready: its task leaves the route.
  answering.delete(nodeA.hostname);
  await until(() => !routed(a!), 4000);
  assert.equal(nodeA.state, 'ready');
  assert.ok(routed(b!));
  assert.match(String(events('node_not_answering', logFrom)[0]?.node ?? ''), new RegExp(nodeA.hostname));
  // It answers again: the task rejoins after its checks.
  answering.add(nodeA.hostname);
  await until(() => routed(a!), 5000);
  // Both answered once, then neither does: the app keeps its routed targets.
  answering.add(nodeB.hostname);
  await sleep(1100);
  answering.clear();
  await sleep(2000);
  assert.ok(routed(a!) && routed(b!), 'a probe alone never takes an app\'s last routed targets');
});

test('a node that is `unknown` (a restarted manager, a new leader) keeps its tasks routed; one that was down and comes back ready with the same tasks rejoins after its checks, and down names Swarm forgot are forgotten', async (t) => {
  const { swarm, publisher, orch, out } = await setUp(t);
  const routed = publisher.routed('shop').map((x) => x.id).sort();
  const tasks = swarm.live({ [LABEL.app]: 'shop', [LABEL.process]: 'web' });
  const nodes = swarm.nodes_.filter((n) => tasks.some((x) => x.nodeId === n.id));
  for (const n of swarm.nodes_) n.state = 'unknown';
  await sleep(1200);
  assert.deepEqual(publisher.routed('shop').map((x) => x.id).sort(), routed, 'still routed while every node is unknown');
  for (const n of swarm.nodes_) n.state = 'ready';

  // A node goes down (heartbeat expired) and comes back before Swarm moved its tasks: same task ids.
  const node = nodes[0]!;
  const onIt = routed.filter((id) => tasks.some((x) => x.nodeId === node.id && id.endsWith(`.${x.id}`)));
  node.state = 'down';
  await until(() => !publisher.routed('shop').some((x) => onIt.includes(x.id)), 3000);
  assert.ok((orch.publisher() as RouteGuard).down().length > 0);
  node.state = 'ready';
  await until(() => publisher.routed('shop').length === 2, 5000);
  assert.deepEqual(publisher.routed('shop').map((x) => x.id).sort(), routed, 'the same tasks routed again');
  assert.deepEqual((orch.publisher() as RouteGuard).down(), []);

  // A task withdrawn whose service is then removed leaves no name behind.
  const [victim] = swarm.live({ [LABEL.app]: 'shop', [LABEL.process]: 'web' });
  await swarm.killTask(victim!.id);
  await until(() => (orch.publisher() as RouteGuard).down().length === 1, 3000);
  await stop(orch, 'shop', out);
  await until(() => (orch.publisher() as RouteGuard).down().length === 0, 3000);
});

test('SwarmDynos remembers only the tasks and services of its last look; removing a task it has not seen looks again', async (t) => {
  const { swarm } = await setUp(t);
  const dynos = new SwarmDynos(swarm);
  const worker = (await swarm.services({ [LABEL.app]: 'shop', [LABEL.process]: 'worker' }))[0]!;
  // A crash-looping worker: every stopped task leaves an id behind.
  for (let i = 0; i < 3; i++) {
    await swarm.killTask(swarm.live({ [LABEL.app]: 'shop', [LABEL.process]: 'worker' })[0]!.id);
    await dynos.snapshot(true);
  }
  const seen = swarm.tasks_.filter((x) => x.serviceId === worker.id).map((x) => x.id);
  assert.equal(seen.length, 4);
  assert.ok(seen.every((id) => dynos.serviceOf(id) === worker.id));
  await swarm.removeService(worker.id);
  await dynos.snapshot(true);
  assert.deepEqual(seen.map((id) => dynos.serviceOf(id)), [undefined, undefined, undefined, undefined], 'a removed service\'s tasks are forgotten');
  assert.equal(dynos.replicasOf(worker.id), undefined);

  const web = (await swarm.services({ [LABEL.app]: 'shop', [LABEL.process]: 'web' }))[0]!;
  const fresh = new SwarmDynos(swarm);
  await fresh.stopAndRemove(swarm.live({ [LABEL.app]: 'shop', [LABEL.process]: 'web' })[0]!.id);
  assert.equal(swarm.services_.has(web.id), false, 'the task\'s service is removed though this SwarmDynos never saw it');
});

test('an app\'s logs on the swarm scheduler are its tasks\' on every node, each line with its dyno; followed, a task\'s new lines come as it writes them', async (t) => {
  const { swarm, orch } = await setUp(t);
  const lines: string[] = [];
  const history = new AbortController();
  await writeAppLogs(orch.dynos, 'shop', { follow: false, lines: 10, quiet: false }, (line) => void lines.push(line), history.signal);
  const live = swarm.live({ [LABEL.app]: 'shop' });
  assert.equal(live.length, 3);
  assert.ok(new Set(live.map((x) => x.nodeId)).size > 1, 'the tasks are on more than one node');
  for (const task of live) {
    const dyno = `${task.labels[LABEL.process]}.${task.slot}`;
    assert.ok(lines.some((line) => new RegExp(`^\\S+Z app\\[${dyno.replace('.', '\\.')}\\]: log of ${task.id}$`).test(line)), `${dyno}'s line in ${lines.join(' | ')}`);
  }

  const followed: string[] = [];
  const stop = new AbortController();
  t.after(() => stop.abort());
  const following = writeAppLogs(orch.dynos, 'shop', { follow: true, lines: 0, quiet: true, type: 'worker' }, (line) => void followed.push(line), stop.signal);
  const worker = live.find((x) => x.labels[LABEL.process] === 'worker')!;
  await until(() => swarm.followers_.has(worker.id), 3000);
  assert.equal(swarm.followers_.size, 1, 'only the worker type is followed');
  swarm.followers_.get(worker.id)!('a new line');
  assert.deepEqual(followed, ['a new line']);
  // The task stops and Swarm starts another in its slot: the new one is followed, and the old
  // one's follow (a Swarm task's log never ends by itself) is ended once it has been gone a while.
  await swarm.killTask(worker.id);
  const [replacement] = swarm.live({ [LABEL.app]: 'shop', [LABEL.process]: 'worker' });
  await until(() => swarm.followers_.has(replacement!.id) && !swarm.followers_.has(worker.id), 10_000);
  stop.abort();
  await following;
  assert.equal(swarm.followers_.size, 0, 'the follow stops with the signal');
});

test('a task readmitted while the daemon stops is not routed after stop()', async (t) => {
  const { swarm, publisher, orch, stores } = await setUp(t);
  let release!: () => void;
  const held = stores.locks.run('shop', () => new Promise<void>((r) => (release = r)));
  t.after(() => release());
  const [victim] = swarm.live({ [LABEL.app]: 'shop', [LABEL.process]: 'web' });
  await swarm.killTask(victim!.id);
  await until(() => publisher.routed('shop').length === 1, 3000);
  // Its replacement passes its checks and waits for the app's lock; the daemon stops meanwhile.
  await sleep(1500);
  await orch.stop();
  release();
  await held;
  await sleep(200);
  assert.equal(publisher.routed('shop').length, 1, 'nothing published after stop()');
});

test('moveOff redeploys every app with tasks on a paused node elsewhere, gated and swapped', async (t) => {
  const { swarm, publisher, orch, out } = await setUp(t);
  const busy = swarm.live({ [LABEL.app]: 'shop' })[0]!.nodeId;
  await swarm.updateNode(busy, { availability: 'pause' });
  await orch.moveOff(busy, out);
  assert.equal(swarm.live({ [LABEL.app]: 'shop' }).filter((x) => x.nodeId === busy).length, 0);
  assert.equal(publisher.routed('shop').length, 2);
  for (const target of publisher.routed('shop')) assert.equal((await fetch(`http://${target.host}:${target.port}/`)).status, 200);
});

test('moveOff looks again after a pass: tasks a deploy placed on the paused node meanwhile are moved too', async (t) => {
  const { swarm, orch, stores, out } = await setUp(t);
  await stores.apps.create('other');
  await stores.apps.update('other', (a) => {
    a.formation = { web: 1, worker: 0 };
    a.checks = { ...defaultCheckSettings(), properties: { wait: 300, drainTimeout: 200, stopTimeout: 1000 } };
  });
  await deployNewRelease(orch.releaseDeps('other'), 'other', releaseOf(1), out);
  const busy = swarm.live({ [LABEL.app]: 'shop' })[0]!.nodeId;
  const node = swarm.nodes_.find((n) => n.id === busy)!;
  const otherWeb = (await swarm.services({ [LABEL.app]: 'other', [LABEL.process]: 'web' }))[0]!;
  // While shop moves (after other was looked at), a deploy of other that began before the pause places a task on the node.
  const create = swarm.createService.bind(swarm);
  let placed = false;
  swarm.createService = async (spec) => {
    const made = await create(spec);
    if (!placed && spec.labels[LABEL.app] === 'shop') {
      placed = true;
      node.availability = 'active';
      const late = create({ ...swarm.specs.get(otherWeb.id)!, name: 'berth-fake-other-web-r1-late', replicas: 1, constraints: [`node.hostname==${node.hostname}`] });
      node.availability = 'pause';
      await late;
    }
    return made;
  };
  await swarm.updateNode(busy, { availability: 'pause' });
  await orch.moveOff(busy, out);
  assert.ok(placed);
  assert.deepEqual(swarm.live().filter((x) => x.nodeId === busy).map((x) => x.labels[LABEL.app]), []);
});

test('a process type with storage mounts stays on the manager (or the one node its placement pins); nodes:drain refuses to move it off', async (t) => {
  const { swarm, orch, out } = await setUp(t);
  await changeSettings(orch, 'shop', (a) => void (a.mounts = ['/srv/shop:/data']), { restart: true, out });
  for (const s of await swarm.services({ [LABEL.app]: 'shop' })) assert.deepEqual(swarm.specs.get(s.id)!.constraints, ['node.id==node1id']);
  assert.ok(swarm.live({ [LABEL.app]: 'shop' }).every((x) => x.nodeId === 'node1id'));
  await swarm.updateNode('node1id', { availability: 'pause' });
  await assert.rejects(orch.moveOff('node1id', out), (e: unknown) => isUserError(e) && e.code === 'node_holds_mounts' && /^shop has storage mounts on this node/.test(e.message));
  assert.ok(swarm.live({ [LABEL.app]: 'shop' }).every((x) => x.nodeId === 'node1id'), 'not moved');
  await swarm.updateNode('node1id', { availability: 'active' });

  await changeSettings(orch, 'shop', (a) => void (a.placement.web = parsePlacement(['node.hostname==node2'])), { restart: true, out });
  const web = (await swarm.services({ [LABEL.app]: 'shop', [LABEL.process]: 'web' }))[0]!;
  assert.deepEqual(swarm.specs.get(web.id)!.constraints, ['node.hostname==node2'], 'pinned by its placement: no other constraint');
});

test('a restarted daemon adopts the running services of the current release and removes those of a deploy it did not finish; stop and destroy remove the services', async (t) => {
  const { swarm, publisher, orch, stores, out } = await setUp(t);
  const routed = publisher.routed('shop').map((x) => x.id).sort();
  const services = (await swarm.services({ [LABEL.app]: 'shop' })).map((s) => s.id).sort();
  // A deploy that never finished left the services of v2 behind.
  await swarm.createService({ ...swarm.specs.get(services[0]!)!, name: 'berth-fake-shop-web-r2-dead', labels: { [LABEL.app]: 'shop', [LABEL.process]: 'web', [LABEL.release]: '2', [LABEL.role]: 'process' } });
  await orch.stop();
  const publisher2 = recordingPublisher();
  const orch2 = new Orchestrator({ ...stores, engine: orch.engine as FakeEngine, publisher: publisher2, appUrl: (app) => `http://${app}.example.test`, swarm });
  await orch2.start();
  t.after(() => orch2.stop());
  assert.deepEqual((await swarm.services({ [LABEL.app]: 'shop' })).map((s) => s.id).sort(), services, 'kept, and the unfinished one removed');
  assert.deepEqual(publisher2.routed('shop').map((x) => x.id).sort(), routed);

  await stop(orch2, 'shop', out);
  assert.deepEqual(await swarm.services({ [LABEL.app]: 'shop' }), []);
  assert.deepEqual(publisher2.routed('shop'), []);

  await start(orch2, 'shop', out);
  assert.equal((await swarm.services({ [LABEL.app]: 'shop' })).length, 2);
  assert.equal(publisher2.routed('shop').length, 2);
  await orch2.destroyApp('shop', out);
  assert.deepEqual(await swarm.services({ [LABEL.app]: 'shop' }), []);
  assert.deepEqual(publisher2.routed('shop'), []);
});

test('at start, the task watcher runs before adoption: a lost task of an app already adopted leaves its route while another app is still being adopted', async (t) => {
  const { swarm, orch, stores } = await setUp(t);
  await orch.stop();
  await stores.apps.create('zzz');
  let release!: () => void;
  const held = stores.locks.run('zzz', () => new Promise<void>((r) => (release = r)));
  t.after(() => release());
  const publisher = recordingPublisher();
  const again = new Orchestrator({ ...stores, engine: orch.engine as FakeEngine, publisher, appUrl: (app) => `http://${app}.example.test`, swarm });
  const starting = again.start();
  t.after(() => again.stop());
  await until(() => publisher.routed('shop').length === 2, 5000);
  const [victim] = swarm.live({ [LABEL.app]: 'shop', [LABEL.process]: 'web' });
  await swarm.killTask(victim!.id);
  await until(() => !publisher.routed('shop').some((x) => x.id.endsWith(`.${victim!.id}`)), 3000);
  release();
  await held;
  await starting;
});

test('switching schedulers on one engine: on docker, the process services berth left on the Swarm are removed at start; on swarm, the process containers the docker scheduler left are removed after adoption', async (t) => {
  const { swarm, orch, stores } = await setUp(t);
  const engine = orch.engine as FakeEngine;
  await orch.stop();
  assert.equal((await swarm.services({ [LABEL.role]: 'process' })).length, 2);
  // The docker scheduler on the same engine, which manages the Swarm: the services go, and the
  // app (whose dynos are then containers) is started on the engine.
  const docker = new Orchestrator({ ...stores, apps: await storesWithoutApps(stores), engine, publisher: recordingPublisher(), appUrl: (app) => `http://${app}.example.test`, formerSwarm: swarm });
  await docker.start();
  await docker.stop();
  assert.deepEqual(await swarm.services({ [LABEL.role]: 'process' }), []);
  assert.match(logLines.join('\n'), /"swarm_service_left_removed"/);

  // A process container the docker scheduler left, then berth on the swarm scheduler again.
  const left = await engine.run({ name: 'berth-fake-shop-web.1', image: IMAGE, network: 'bridge', env: {}, aliases: [], labels: { [LABEL.app]: 'shop', [LABEL.process]: 'web', [LABEL.release]: '1', [LABEL.dyno]: 'web.1', [LABEL.role]: 'process' } });
  const publisher = recordingPublisher();
  const again = new Orchestrator({ ...stores, engine, publisher, appUrl: (app) => `http://${app}.example.test`, swarm });
  await again.start();
  t.after(() => again.stop());
  assert.equal(engine.containers.has(left.id), false, 'the old container is stopped and removed');
  assert.equal((await swarm.services({ [LABEL.app]: 'shop' })).length, 2, 'the app runs as services again');
  assert.equal(publisher.routed('shop').length, 2);
});

test('destroying or renaming an app prunes its release images from the cluster\'s registry too; a failing prune does not fail the destroy', async (t) => {
  const pruned: string[][] = [];
  let failPrune = false;
  const { orch, stores, out } = await setUp(t, 300, (engine) => {
    const local = new LocalImageDistributor(engine);
    return {
      distribute: (image) => local.distribute(image),
      prune: async (refs) => {
        pruned.push(refs);
        if (failPrune) throw new Error('registry down');
      },
    };
  });
  await stores.locks.run('shop', () => orch.renameApp('shop', 'store', out));
  assert.deepEqual(pruned, [['berth-fake/shop:r1']]);
  failPrune = true;
  await orch.destroyApp('store', out);
  assert.deepEqual(pruned.at(-1), ['berth-fake/store:r1']);
});

test('placement (ps:set APP TYPE placement) becomes the service\'s constraints and spread, limits its limits and reservations; a type no node can take fails the deploy, the old serving', async (t) => {
  const { swarm, publisher, orch, out } = await setUp(t);
  await changeSettings(orch, 'shop', (a) => {
    a.placement.web = parsePlacement(['node.hostname==node2', 'spread=node.labels.zone']);
    a.limits.web = { memory: 256 * 1024 ** 2, cpus: 0.5 };
  }, { restart: true, out });
  const web = (await swarm.services({ [LABEL.app]: 'shop', [LABEL.process]: 'web' }))[0]!;
  const spec = swarm.specs.get(web.id)!;
  assert.deepEqual([spec.constraints, spec.spread], [['node.hostname==node2'], ['node.labels.zone']]);
  assert.deepEqual(spec.limits, { memory: 256 * 1024 ** 2, cpus: 0.5, pids: orch.defaultLimit.pids });
  assert.deepEqual(spec.reservations, { memory: 256 * 1024 ** 2, cpus: 0.5 });
  assert.ok(swarm.live({ [LABEL.app]: 'shop', [LABEL.process]: 'web' }).every((x) => x.nodeId === 'node2id'));
  const worker = (await swarm.services({ [LABEL.app]: 'shop', [LABEL.process]: 'worker' }))[0]!;
  assert.deepEqual(swarm.specs.get(worker.id)!.constraints, [], 'per process type');

  const before = [...publisher.routed('shop')];
  await orch.apps.update('shop', (a) => void (a.placement.web = parsePlacement(['node.labels.zone==nowhere'])));
  await assert.rejects(scale(orch, 'shop', { web: 3 }, out), (e: unknown) => isUserError(e) && e.code === 'task_unplaceable' && /web\.1 cannot be placed on any node: no suitable node/.test(e.message));
  assert.deepEqual(publisher.routed('shop'), before);
  assert.deepEqual((await swarm.services({ [LABEL.app]: 'shop', [LABEL.process]: 'web' })).map((s) => s.id), [web.id]);

  assert.throws(() => parsePlacement(['zone=a']), (e: unknown) => isUserError(e) && e.code === 'bad_placement');
  assert.throws(() => parsePlacement(['node.labels.zone == a']), (e: unknown) => isUserError(e) && e.code === 'bad_placement');
});

test('ps:set placement takes what swarmkit takes (a key, == or !=, a value without commas or operators), at most 16 words of 200 characters; on the docker scheduler it restarts nothing and says so', async (t) => {
  for (const bad of ['node.labels.zone==a,b', 'node.labels.zone==a=b', 'node.labels.zone==a!', 'node.labels.a/b==c', 'node.labels.zone==', 'node.labels.zone<a', `node.labels.zone==${'a'.repeat(200)}`]) {
    assert.throws(() => parsePlacement([bad]), (e: unknown) => isUserError(e) && e.code === 'bad_placement', bad);
  }
  assert.throws(() => parsePlacement(Array.from({ length: 17 }, (_, i) => `node.labels.k${i}==v`)), (e: unknown) => isUserError(e) && e.code === 'bad_placement' && /at most 16/.test(e.message));
  assert.deepEqual(parsePlacement(['node.labels.zone==eu-west_1.a', 'node.hostname!=host:2', 'node.platform.os==linux', 'spread=node.labels.zone']), {
    constraints: ['node.labels.zone==eu-west_1.a', 'node.hostname!=host:2', 'node.platform.os==linux'],
    spread: ['node.labels.zone'],
  });

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-ps-set-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const state = await loadState({ ...defaultConfig({}, false), dataDir: dir });
  await state.apps.create('shop');
  const changes: Array<{ restart: boolean }> = [];
  const out = new MemoryOutput();
  const processes = {
    scheduler: 'docker' as const,
    changeSettings: async (app: string, change: (a: AppRecord) => void, options: { restart: boolean }) => {
      await state.apps.update(app, change);
      changes.push({ restart: options.restart });
    },
  };
  const ctx = { out, caller: { kind: 'local' as const }, state, daemon: { processes } as unknown as Platform, cwd: '/', signal: new AbortController().signal, readStdin: async () => Buffer.alloc(0) };
  assert.equal(await runCommand(['ps:set', 'shop', 'web', 'placement', 'node.labels.zone==a'], ctx), 0, out.text());
  assert.deepEqual(changes, [{ restart: false }]);
  assert.deepEqual(state.apps.get('shop')!.placement.web, { constraints: ['node.labels.zone==a'], spread: [] });
  assert.match(out.text(), /nothing restarted/);
});

// ---------------------------------------------------------------------------------------------

/** An empty app store beside `stores`' (so an orchestrator adopts no app). */
async function storesWithoutApps(stores: { paths: ReturnType<typeof dataPaths> }): Promise<AppStore> {
  const apps = new AppStore(`${stores.paths.apps}.empty`);
  await apps.load();
  return apps;
}

async function setUp(t: TestContext, waitMs = 300, distributorOf?: (engine: FakeEngine) => ImageDistributor, extra: { nodeProbe?: NodeProbe } = {}) {
  const engine = new FakeEngine();
  engine.addImage(IMAGE);
  const swarm = new FakeSwarm(3);
  t.after(() => swarm.close());
  const publisher = recordingPublisher();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-swarm-deploy-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const paths = dataPaths(dir);
  const apps = new AppStore(paths.apps);
  await apps.load();
  await apps.create('shop');
  await apps.update('shop', (a) => {
    a.formation = { web: 2, worker: 1 };
    a.checks = { ...defaultCheckSettings(), properties: { wait: waitMs, drainTimeout: 200, stopTimeout: 1000 } };
  });
  const domains = new DomainStore(paths.domains, { domain: 'example.test', apps: () => apps.list().map((a) => a.name) });
  await domains.load();
  const stores = { apps, domains, config: { ...defaultConfig({}, false), dataDir: dir }, paths, locks: new AppLock(), services: new ServiceStore(paths.services, paths.serviceData), serviceKinds: [] };
  const orch = new Orchestrator({ ...stores, engine, publisher, appUrl: (app) => `http://${app}.example.test`, swarm, ...(distributorOf ? { distributor: distributorOf(engine) } : {}), ...extra });
  await orch.start();
  t.after(() => orch.stop());
  const out = recordingOutput();
  await deployNewRelease(orch.releaseDeps('shop'), 'shop', releaseOf(1), out);
  return { orch, engine, swarm, publisher, stores, out };
}

function recordingPublisher(): RoutePublisher & { drains: Array<{ targets: string[] }>; publishes: Array<{ release: number | undefined; targets: string[] }> } {
  const routes = new Map<string, Target[]>();
  const standby = new Map<string, Target[]>();
  const drains: Array<{ targets: string[] }> = [];
  const publishes: Array<{ release: number | undefined; targets: string[] }> = [];
  return {
    drains,
    publishes,
    publish: (app, _hostnames, targets, behind = []) => {
      routes.set(app, [...targets]);
      standby.set(app, [...behind]);
      const m = /-r(\d+)-/.exec(targets[0]?.id ?? '');
      publishes.push({ release: m ? Number(m[1]) : undefined, targets: targets.map((x) => x.id) });
    },
    unpublish: (app) => void routes.delete(app),
    routed: (app) => routes.get(app) ?? [],
    standby: (app) => standby.get(app) ?? [],
    drain: async (targets): Promise<DrainResult> => {
      drains.push({ targets: targets.map((x) => x.id) });
      return { waitedMs: 0, requestsLeft: 0, tunnelsClosed: 0 };
    },
  };
}


/** The events logged since `from` (a length of logLines; the log is shared by the whole file). */
function events(event: string, from = 0): Array<Record<string, unknown>> {
  return logLines.slice(from).map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e.event === event);
}

async function until(done: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await sleep(10);
  }
}
