// Standby targets on real loopback sockets: while a release is on probation the one before it
// stands behind it in the route, gets no requests of its own, and takes the ones the new targets
// refuse or reset (the moments between a container's crash and the engine's event about it).
// End to end under wrk load in e2e-probation.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setLogSink } from '../src/log.ts';
import { RouteTable } from '../src/proxy/route-table.ts';
import { call, freePort, startNamedUpstream, startProxy, startUpstream } from './helpers/loopback.ts';

const logLines: Array<Record<string, unknown>> = [];
setLogSink((line) => logLines.push(JSON.parse(line) as Record<string, unknown>));

test('a standby target gets no requests while the routed one answers', async (t) => {
  const next = await startNamedUpstream(t, 'web-next');
  const old = await startNamedUpstream(t, 'web-old');
  const proxy = await startProxy(t, RouteTable.empty().withApp('shop', ['shop.example.com'], [next.target], [old.target]));
  for (let i = 0; i < 10; i++) assert.equal((await call(proxy.httpPort, { host: 'shop.example.com' })).body.toString(), 'web-next');
  assert.equal(old.connections(), 0);
});

test('a request the routed target refuses goes to the standby one, whatever its method', async (t) => {
  const gone = { id: 'web-crashed', host: '127.0.0.1', port: await freePort() };
  const old = await startNamedUpstream(t, 'web-old');
  const proxy = await startProxy(t, RouteTable.empty().withApp('shop', ['shop.example.com'], [gone], [old.target]));
  const get = await call(proxy.httpPort, { host: 'shop.example.com' });
  assert.equal(get.status, 200);
  assert.equal(get.body.toString(), 'web-old');
  const post = await call(proxy.httpPort, { host: 'shop.example.com', method: 'POST', body: Buffer.from('order') });
  assert.equal(post.status, 200, 'nothing reached the crashed target: a POST may go elsewhere too');
  assert.equal(post.body.toString(), 'web-old');
  assert.deepEqual(logLines.filter((l) => l.event === 'proxy_upstream_error').map((l) => [l.target, l.phase, l.status]), [['web-crashed', 'connect', undefined], ['web-crashed', 'connect', undefined]], 'logged, and answered by the standby target');
});

test('a GET the routed target resets before answering is retried on the standby one', async (t) => {
  const dying = await startUpstream(t, 'web-dying', (req) => req.socket.destroy());
  const old = await startNamedUpstream(t, 'web-old');
  const proxy = await startProxy(t, RouteTable.empty().withApp('shop', ['shop.example.com'], [dying.target], [old.target]));
  const reply = await call(proxy.httpPort, { host: 'shop.example.com' });
  assert.equal(reply.status, 200);
  assert.equal(reply.body.toString(), 'web-old');
  const bare = await startProxy(t, RouteTable.empty().withApp('shop', ['shop.example.com'], [dying.target]));
  assert.equal((await call(bare.httpPort, { host: 'shop.example.com' })).status, 502, 'without a standby target the reset is a 502');
});
