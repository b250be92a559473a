import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isUserError } from '../src/errors.ts';
import { OWN_ROUTE } from '../src/platform/route-publisher.ts';
import { RouteTable, type Target } from '../src/proxy/route-table.ts';

const web1: Target = { id: 'web-1', host: '172.30.0.2', port: 5000 };
const web2: Target = { id: 'web-2', host: '172.30.0.3', port: 5000 };

test('an empty table routes nothing and lists no apps', () => {
  const table = RouteTable.empty();
  assert.equal(table.lookup('example.com'), undefined);
  assert.deepEqual(table.apps(), []);
});

test('withApp returns a new table and leaves the old one as it was', () => {
  const before = RouteTable.empty();
  const after = before.withApp('shop', ['shop.example.com'], [web1]);
  assert.notEqual(after, before);
  assert.equal(before.lookup('shop.example.com'), undefined);
  assert.deepEqual(after.lookup('shop.example.com'), { app: 'shop', hostnames: ['shop.example.com'], targets: [web1], standby: [] });
});

test('host names are matched without regard to case or a trailing dot', () => {
  const table = RouteTable.empty().withApp('shop', ['Shop.Example.COM.'], [web1]);
  assert.deepEqual(table.lookup('shop.example.com')?.hostnames, ['shop.example.com']);
  assert.equal(table.lookup('SHOP.example.com.')?.app, 'shop');
});

test('withApp replaces the host names and targets an app had', () => {
  const first = RouteTable.empty().withApp('shop', ['old.example.com'], [web1]);
  const second = first.withApp('shop', ['new.example.com'], [web2]);
  assert.equal(second.lookup('old.example.com'), undefined);
  assert.deepEqual(second.lookup('new.example.com')?.targets, [web2]);
  assert.equal(second.apps().length, 1);
});

test('withApp refuses a hostname another app holds', () => {
  const table = RouteTable.empty().withApp('shop', ['shop.example.com'], [web1]);
  assert.throws(
    () => table.withApp('blog', ['SHOP.example.com'], [web2]),
    (e: unknown) => isUserError(e) && e.code === 'hostname_in_use' && /already served by app shop/.test(e.message),
  );
  assert.equal(table.lookup('shop.example.com')?.app, 'shop');
});

test('withApp refuses malformed host names and app names', () => {
  const table = RouteTable.empty();
  for (const bad of ['', 'exa mple.com', 'a..b', '-lead.example.com', 'x'.repeat(64) + '.com', 'evil.com/<script>']) {
    assert.throws(() => table.withApp('shop', [bad], [web1]), (e: unknown) => isUserError(e) && e.code === 'invalid_hostname', bad);
  }
  assert.throws(() => table.withApp('Bad_Name', ['ok.example.com'], [web1]), (e: unknown) => isUserError(e) && e.code === 'invalid_app_name');
});

test('withApp refuses a target without a usable port', () => {
  assert.throws(() => RouteTable.empty().withApp('shop', ['shop.example.com'], [{ id: 'web-1', host: '172.30.0.2', port: 0 }]), /invalid target/);
});

test('an app may hold several host names and no targets', () => {
  const table = RouteTable.empty().withApp('shop', ['a.example.com', 'b.example.com', 'A.example.com'], []);
  assert.deepEqual(table.lookup('b.example.com'), { app: 'shop', hostnames: ['a.example.com', 'b.example.com'], targets: [], standby: [] });
});

test('withoutApp removes the app and all its host names', () => {
  const table = RouteTable.empty().withApp('shop', ['a.example.com', 'b.example.com'], [web1]).withApp('blog', ['blog.example.com'], [web2]);
  const next = table.withoutApp('shop');
  assert.equal(next.lookup('a.example.com'), undefined);
  assert.equal(next.lookup('b.example.com'), undefined);
  assert.equal(next.lookup('blog.example.com')?.app, 'blog');
  assert.equal(table.lookup('a.example.com')?.app, 'shop');
  assert.equal(next.withoutApp('missing'), next);
});

test('a host name freed by withoutApp can be taken by another app', () => {
  const table = RouteTable.empty().withApp('shop', ['shop.example.com'], [web1]).withoutApp('shop').withApp('blog', ['shop.example.com'], [web2]);
  assert.equal(table.lookup('shop.example.com')?.app, 'blog');
});

test('apps lists every route ordered by app name, and route finds one by name', () => {
  const table = RouteTable.empty().withApp('zoo', ['zoo.example.com'], [web1]).withApp('api', ['api.example.com'], [web2]);
  assert.deepEqual(table.apps().map((r) => r.app), ['api', 'zoo']);
  assert.deepEqual(table.route('zoo')?.targets, [web1]);
  assert.equal(table.route('nope'), undefined);
});

test('a route handed out cannot be changed, and later changes to the caller arrays do not leak in', () => {
  const hostnames = ['shop.example.com'];
  const targets: Target[] = [{ ...web1 }];
  const table = RouteTable.empty().withApp('shop', hostnames, targets);
  hostnames.push('other.example.com');
  targets.push(web2);
  const route = table.lookup('shop.example.com')!;
  assert.deepEqual(route.targets, [web1]);
  assert.equal(table.lookup('other.example.com'), undefined);
  assert.throws(() => (route.targets as Target[]).push(web2), TypeError);
  assert.throws(() => {
    (route.targets[0] as { port: number }).port = 1;
  }, TypeError);
});

test("berth's own route (berth.DOMAIN) is in a slot no app name can take: an app named berth is another route", () => {
  assert.doesNotMatch(OWN_ROUTE, /^[a-z][a-z0-9-]*$/, 'not an app name');
  const table = RouteTable.empty().withApp(OWN_ROUTE, ['berth.example.com'], [web1]).withApp('berth', ['old.example.com'], [web2]);
  assert.equal(table.lookup('berth.example.com')?.app, OWN_ROUTE);
  assert.equal(table.lookup('old.example.com')?.app, 'berth');
  assert.deepEqual(table.withoutApp('berth').lookup('berth.example.com')?.targets, [web1], "removing the app berth leaves berth's own route");
  assert.throws(() => RouteTable.empty().withApp('berth:', ['x.example.com'], [web1]).withApp('shop:x', [], []), (e: unknown) => isUserError(e) && /invalid app name/.test((e as Error).message));
});
