// The nodes:* commands through the one command registry, over NodeService and a Swarm kept in
// memory: the list with each node's dynos, labels set and removed, drain's order (pause, move the
// dynos off, drain) and its way back when the move fails, activate, and the refusals (the docker
// scheduler, a key scoped to apps). Against a real Swarm and a real daemon: e2e-swarm-nodes.test.ts.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import type { CommandContext } from '../src/cli/command.ts';
import { labelChanges } from '../src/cli/commands/nodes.ts';
import { runCommand } from '../src/cli/registry.ts';
import { defaultConfig } from '../src/config.ts';
import { UserError } from '../src/errors.ts';
import type { KeyRecord } from '../src/git/key-store.ts';
import { setLogSink } from '../src/log.ts';
import type { NodeAvailability, NodeRole, Swarm, SwarmNode, SwarmTask } from '../src/orchestrator/swarm.ts';
import { NodeService, type NodeMover } from '../src/platform/node-service.ts';
import type { Platform } from '../src/platform/platform.ts';
import { loadState, type State } from '../src/platform/state.ts';
import { MemoryOutput, type Output } from '../src/ui/output.ts';
import { tempDir } from './helpers/temp.ts';

let state: State;
before(async () => {
  setLogSink(() => undefined);
  state = await loadState({ ...defaultConfig(), dataDir: tempDir('nodes') });
});

/** The node part of a Swarm, in memory; every availability change is recorded in order. */
class MemorySwarm implements Swarm {
  readonly changes: Array<{ node: string; availability?: NodeAvailability; labels?: Record<string, string | null> }> = [];
  readonly list: SwarmNode[];
  readonly running: SwarmTask[];
  constructor(list: SwarmNode[], running: SwarmTask[] = []) {
    this.list = list;
    this.running = running;
  }
  async manager() {
    return { nodeId: this.list[0]!.id, address: this.list[0]!.address };
  }
  async nodes() {
    return this.list.map((n) => ({ ...n, labels: { ...n.labels } }));
  }
  async node(ref: string) {
    const found = this.list.filter((n) => n.id === ref || n.hostname === ref || n.id.startsWith(ref));
    if (found.length !== 1) throw new UserError('node_not_found', `no node of the Swarm is "${ref}"`);
    return { ...found[0]!, labels: { ...found[0]!.labels } };
  }
  async updateNode(ref: string, change: { labels?: Record<string, string | null>; availability?: NodeAvailability }) {
    const { id } = await this.node(ref);
    const node = this.list.find((n) => n.id === id)!;
    this.changes.push({ node: node.hostname, ...change });
    for (const [k, v] of Object.entries(change.labels ?? {})) {
      if (v === null) delete node.labels[k];
      else node.labels[k] = v;
    }
    if (change.availability) node.availability = change.availability;
    return this.node(node.id);
  }
  async joinCommand(role: NodeRole) {
    return `docker swarm join --token SWMTKN-1-${role} 10.0.0.1:2377`;
  }
  async tasks() {
    return this.running;
  }
  createService = unused;
  services = unused;
  setReplicas = unused;
  removeService = unused;
  taskLogs = unused;
  followTaskLogs = unused;
  ensureSecret = unused;
  secrets = unused;
  removeSecret = unused;
}

/** What the nodes commands never ask of the Swarm. */
function unused(): never {
  throw new Error('not used by the nodes commands');
}

function node(hostname: string, id: string, extra: Partial<SwarmNode> = {}): SwarmNode {
  return { id, hostname, address: `10.0.0.${id.length}`, role: 'worker', state: 'ready', availability: 'active', labels: {}, leader: false, ...extra };
}

function dyno(nodeId: string, app: string, type: string, slot: number, state = 'running'): SwarmTask {
  return {
    id: `task-${app}-${type}-${slot}`,
    serviceId: `svc-${app}-${type}`,
    slot,
    nodeId,
    labels: { 'berth.app': app, 'berth.process': type, 'berth.role': 'process' },
    desiredState: 'running',
    state,
    message: '',
    exitCode: undefined,
    containerId: 'c',
    publishedPort: 30000 + slot,
    updatedAt: 0,
  };
}

function cluster(): MemorySwarm {
  return new MemorySwarm(
    [node('manager-1', 'm1aaaaaaaaaaaaaaaaaaaaaaa', { role: 'manager', leader: true, address: '10.0.0.2' }), node('worker-1', 'w1bbbbbbbbbbbbbbbbbbbbbbb', { labels: { zone: 'a' } }), node('worker-2', 'w2ccccccccccccccccccccccc')],
    [dyno('w1bbbbbbbbbbbbbbbbbbbbbbb', 'shop', 'web', 1), dyno('w1bbbbbbbbbbbbbbbbbbbbbbb', 'shop', 'worker', 1), dyno('w2ccccccccccccccccccccccc', 'shop', 'web', 2), dyno('w2ccccccccccccccccccccccc', 'blog', 'web', 1, 'starting')],
  );
}

async function run(words: string[], nodes: NodeService, key?: KeyRecord): Promise<{ code: number; text: string }> {
  const out = new MemoryOutput();
  const ctx: CommandContext = {
    out,
    caller: key ? { kind: 'ssh', key, address: '192.0.2.7' } : { kind: 'local' },
    state,
    // The nodes commands use this one service of the application layer.
    daemon: { nodes } as unknown as Platform,
    cwd: '/',
    signal: new AbortController().signal,
    readStdin: async () => Buffer.alloc(0),
  };
  const code = await runCommand(words, ctx);
  return { code, text: out.text() };
}

const noMover: NodeMover = {
  async moveOff() {
    throw new Error('no dyno should move');
  },
};

test('nodes:list shows each node with its address, role (the leader as such), state, availability, labels and its running dynos', async () => {
  const { code, text } = await run(['nodes:list'], new NodeService({ swarm: cluster(), mover: noMover }));
  assert.equal(code, 0, text);
  const lines = text.trimEnd().split('\n');
  assert.match(lines[0]!, /^NODE\s+ID\s+ADDRESS\s+ROLE\s+STATE\s+AVAILABILITY\s+DYNOS\s+LABELS$/);
  assert.match(lines[1]!, /^manager-1\s+m1aaaaaaaaaa\s+10\.0\.0\.2\s+leader\s+ready\s+active\s+0\s+-$/);
  assert.match(lines[2]!, /^worker-1\s+w1bbbbbbbbbb\s+\S+\s+worker\s+ready\s+active\s+2\s+zone=a$/);
  // A task still starting is no running dyno.
  assert.match(lines[3]!, /^worker-2\s+w2cccccccccc\s+\S+\s+worker\s+ready\s+active\s+1\s+-$/);
});

test('nodes:label sets labels, KEY= and --remove remove them, and without any it shows them', async () => {
  const swarm = cluster();
  const nodes = new NodeService({ swarm, mover: noMover });
  let r = await run(['nodes:label', 'worker-2', 'zone=b', 'disk=ssd', 'note=a=b'], nodes);
  assert.equal(r.code, 0, r.text);
  assert.match(r.text, /Labels of node worker-2: disk=ssd,note=a=b,zone=b/);
  r = await run(['nodes:label', 'w2', 'disk=', '--remove', 'note'], nodes);
  assert.equal(r.code, 0, r.text);
  assert.deepEqual(swarm.list[2]!.labels, { zone: 'b' });
  assert.deepEqual(swarm.changes.at(-1)!.labels, { disk: null, note: null });
  r = await run(['nodes:label', 'worker-2'], nodes);
  assert.equal(r.text, 'zone=b\n');
});

test('nodes:label refuses a word that is no KEY=VALUE and a key Docker would not take, changing nothing', async () => {
  const swarm = cluster();
  const nodes = new NodeService({ swarm, mover: noMover });
  let r = await run(['nodes:label', 'worker-1', 'zone'], nodes);
  assert.equal(r.code, 2);
  assert.match(r.text, /"zone" is not KEY=VALUE/);
  r = await run(['nodes:label', 'worker-1', 'bad key!=x'], nodes);
  assert.equal(r.code, 2);
  assert.match(r.text, /"bad key!" is not a node label key/);
  assert.equal(swarm.changes.length, 0);
  assert.deepEqual(labelChanges(['a=1', 'b='], 'c, d'), { a: '1', b: null, c: null, d: null });
});

test('nodes:drain pauses the node, moves its dynos off, then drains it', async () => {
  const swarm = cluster();
  const moved: string[] = [];
  const mover: NodeMover = {
    async moveOff(nodeId: string, out: Output) {
      moved.push(`${nodeId} while ${swarm.list.find((n) => n.id === nodeId)!.availability}`);
      await out.detail('shop: redeployed');
    },
  };
  const r = await run(['nodes:drain', 'worker-1'], new NodeService({ swarm, mover }));
  assert.equal(r.code, 0, r.text);
  assert.deepEqual(moved, ['w1bbbbbbbbbbbbbbbbbbbbbbb while pause']);
  assert.deepEqual(swarm.changes.map((c) => c.availability), ['pause', 'drain']);
  assert.match(r.text, /Moving 2 dynos off worker-1: shop web\.1, shop worker\.1/);
  assert.match(r.text, /shop: redeployed/);
  assert.match(r.text, /Node worker-1 is drained/);
});

test('nodes:drain of a node without dynos moves nothing; draining it again says so', async () => {
  const swarm = new MemorySwarm(cluster().list);
  const nodes = new NodeService({ swarm, mover: noMover });
  let r = await run(['nodes:drain', 'worker-2'], nodes);
  assert.equal(r.code, 0, r.text);
  assert.match(r.text, /no dynos run on it/);
  assert.deepEqual(swarm.changes.map((c) => c.availability), ['pause', 'drain']);
  r = await run(['nodes:drain', 'worker-2'], nodes);
  assert.equal(r.code, 0, r.text);
  assert.match(r.text, /drained already/);
  assert.equal(swarm.changes.length, 2);
});

test("nodes:drain refuses berth's own manager (services and the registry store run there) and says how to keep dynos off it", async () => {
  const swarm = cluster();
  const r = await run(['nodes:drain', 'manager-1'], new NodeService({ swarm, mover: noMover }));
  assert.equal(r.code, 1);
  assert.match(r.text, /node manager-1 is the manager whose engine berth uses \(--docker-host\): the backing services and the cluster's registry store are pinned to it/);
  assert.match(r.text, /ps:set APP TYPE placement node\.role!=manager/);
  assert.equal(swarm.changes.length, 0);
});

test('a drain whose move fails puts the node back as it was and says why', async () => {
  const swarm = cluster();
  const mover: NodeMover = {
    async moveOff() {
      throw new UserError('deploy_failed', 'app shop: web.3 failed its health check', { hint: 'see logs shop' });
    },
  };
  const r = await run(['nodes:drain', 'worker-1'], new NodeService({ swarm, mover }));
  assert.equal(r.code, 1);
  assert.match(r.text, /nodes:drain worker-1: moving its dynos off failed, so it is active again: app shop: web\.3 failed its health check/);
  assert.match(r.text, /see logs shop/);
  assert.deepEqual(swarm.changes.map((c) => c.availability), ['pause', 'active']);
  assert.equal(swarm.list[1]!.availability, 'active');
});

test('nodes:drain refuses the last ready node that takes tasks', async () => {
  const swarm = cluster();
  swarm.list[0]!.availability = 'drain';
  swarm.list[2]!.state = 'down';
  const r = await run(['nodes:drain', 'worker-1'], new NodeService({ swarm, mover: noMover }));
  assert.equal(r.code, 1);
  assert.match(r.text, /node worker-1 is the only ready node that takes tasks/);
  assert.equal(swarm.changes.length, 0);
});

test('nodes:activate lets a drained node take tasks again; nodes:join-command prints the command, for a worker or a manager', async () => {
  const swarm = cluster();
  swarm.list[2]!.availability = 'drain';
  const nodes = new NodeService({ swarm, mover: noMover });
  let r = await run(['nodes:activate', 'worker-2'], nodes);
  assert.equal(r.code, 0, r.text);
  assert.equal(swarm.list[2]!.availability, 'active');
  assert.match(r.text, /Node worker-2 is active/);
  r = await run(['nodes:join-command'], nodes);
  assert.match(r.text, /^docker swarm join --token SWMTKN-1-worker 10\.0\.0\.1:2377\n# then, on that machine, let only berth reach the dynos' published ports \(docs\/swarm\.md, "What a node exposes"\): iptables -I DOCKER-USER -p tcp -m conntrack --ctdir ORIGINAL --ctorigdstport 32768:60999 ! -s ADDRESS_OF_BERTH -j DROP$/m);
  r = await run(['nodes:join-command', '--manager'], nodes);
  assert.match(r.text, /^docker swarm join --token SWMTKN-1-manager 10\.0\.0\.1:2377$/m);
});

test('on the docker scheduler every nodes:* command says it needs --scheduler swarm', async () => {
  const nodes = new NodeService({ swarm: undefined, mover: undefined });
  for (const words of [['nodes:list'], ['nodes:join-command'], ['nodes:label', 'n', 'a=b'], ['nodes:label', 'n'], ['nodes:drain', 'n'], ['nodes:activate', 'n']]) {
    const r = await run(words, nodes);
    assert.equal(r.code, 1, words.join(' '));
    assert.match(r.text, /nodes:\* commands need the swarm scheduler: this berth runs apps on one Docker engine \(--scheduler docker\)/);
    assert.match(r.text, /--scheduler swarm/);
  }
});

test('a key scoped to apps may run no nodes:* command, and nothing changes', async () => {
  const swarm = cluster();
  const nodes = new NodeService({ swarm, mover: noMover });
  const key: KeyRecord = { name: 'deployer', fingerprint: 'SHA256:x', publicKey: 'ssh-ed25519 AAAA', addedAt: '2026-01-01T00:00:00Z', apps: [{ name: 'shop' }] };
  for (const words of [['nodes:list'], ['nodes:join-command'], ['nodes:label', 'worker-1', 'zone=b'], ['nodes:drain', 'worker-1'], ['nodes:activate', 'worker-1']]) {
    const r = await run(words, nodes, key);
    assert.equal(r.code, 1);
    assert.match(r.text, new RegExp(`key "deployer" may not run ${words[0]}: it is for admin keys`));
  }
  assert.equal(swarm.changes.length, 0);
});
