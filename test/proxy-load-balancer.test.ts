import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LoadBalancer, TargetRegistry } from '../src/proxy/load-balancer.ts';
import { RouteTable } from '../src/proxy/route-table.ts';

const targets = [
  { id: 'web-1', host: '10.0.0.1', port: 5000 },
  { id: 'web-2', host: '10.0.0.2', port: 5000 },
  { id: 'web-3', host: '10.0.0.3', port: 5000 },
];

function setup() {
  const registry = new TargetRegistry();
  const balancer = new LoadBalancer(registry);
  const route = RouteTable.empty().withApp('shop', ['shop.example.com'], targets).route('shop')!;
  return { registry, balancer, route };
}

test('targets with equal load take turns', () => {
  const { balancer, route } = setup();
  const picks = Array.from({ length: 6 }, () => balancer.pick(route, 0)!.id);
  assert.deepEqual(picks, ['web-1', 'web-2', 'web-3', 'web-1', 'web-2', 'web-3']);
});

test('the target with the fewest requests in flight gets the next one', () => {
  const { balancer, route, registry } = setup();
  registry.state(targets[0]!).begin();
  registry.state(targets[0]!).begin();
  registry.state(targets[1]!).begin();
  assert.equal(balancer.pick(route, 0)!.id, 'web-3');
  registry.state(targets[2]!).begin();
  registry.state(targets[2]!).begin();
  assert.equal(balancer.pick(route, 0)!.id, 'web-2');
});

test('a target marked down is skipped until its time is up, unless every target is down', () => {
  const { balancer, route, registry } = setup();
  registry.state(targets[0]!).markDown(1000, 5000);
  const picks = new Set(Array.from({ length: 6 }, () => balancer.pick(route, 2000)!.id));
  assert.deepEqual([...picks].sort(), ['web-2', 'web-3']);
  assert.ok(Array.from({ length: 3 }, () => balancer.pick(route, 6000)!.id).includes('web-1'), 'back after its time');
  registry.state(targets[1]!).markDown(1000, 3000);
  registry.state(targets[2]!).markDown(1000, 4000);
  assert.equal(balancer.pick(route, 2000)!.id, 'web-2', 'all down: the one back soonest');
});

test('targets that already failed a request are not picked again for it', () => {
  const { balancer, route, registry } = setup();
  const tried = [registry.state(targets[0]!), registry.state(targets[1]!)];
  assert.equal(balancer.pick(route, 0, tried)!.id, 'web-3');
  assert.equal(balancer.pick(route, 0, [...tried, registry.state(targets[2]!)]), undefined);
});

test('a target keeps its state when a new table names the same address, and is forgotten once unused', () => {
  const { registry } = setup();
  const state = registry.state(targets[0]!);
  state.begin();
  const moved = RouteTable.empty().withApp('shop', ['shop.example.com'], [{ ...targets[0]!, id: 'web-1-renamed' }]).route('shop')!;
  assert.equal(registry.state(moved.targets[0]!), state);
  assert.equal(state.id, 'web-1-renamed');
  registry.prune(new Set());
  assert.equal(registry.find(targets[0]!), state, 'kept while a request is in flight');
  state.end();
  registry.prune(new Set());
  assert.equal(registry.find(targets[0]!), undefined);
});
