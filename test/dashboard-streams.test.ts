// The dashboard's open event streams, with a response stand-in: each ends when its session ends
// or expires, when its key no longer sees its app, and when its app is destroyed or renamed
// (e2e-dashboard.test.ts shows the same on the real binary).
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import http from 'node:http';
import { test } from 'node:test';
import { once } from 'node:events';
import { cappedOutput } from '../src/dashboard/actions.ts';
import { ApiError, MAX_BUFFERED_EVENTS, startEvents } from '../src/dashboard/answers.ts';
import { MAX_STREAMS_PER_SESSION, OpenStreams, type OpenStream } from '../src/dashboard/open-streams.ts';
import { Sessions } from '../src/dashboard/sessions.ts';

class Response extends EventEmitter {
  writableEnded = false;
  end(): void {
    if (this.writableEnded) return;
    this.writableEnded = true;
    this.emit('close');
  }
}

test('a stream ends when its session ends, when it may no longer go on, and when its client goes', () => {
  const sessions = new Sessions();
  const alice = sessions.create({ kind: 'key', name: 'alice', fingerprint: 'SHA256:alice' });
  const bob = sessions.create({ kind: 'key', name: 'bob', fingerprint: 'SHA256:bob' });
  const apps = new Map([['shop', 'id-1']]);
  const streams = new OpenStreams((s: OpenStream) => sessions.alive(s.session) && apps.get(s.app) === s.appId);
  const open = (session: typeof alice.session) => {
    const res = new Response();
    const signal = streams.open({ session, app: 'shop', appId: 'id-1' }, res as unknown as http.ServerResponse);
    return { res, signal };
  };
  const a = open(alice.session);
  const b = open(bob.session);
  const gone = open(bob.session);
  assert.equal(streams.size, 3);
  gone.res.end();
  assert.equal(gone.signal.aborted, true, 'the client went');
  assert.equal(streams.size, 2);

  sessions.end(alice.cookie);
  streams.sweep();
  assert.equal(a.res.writableEnded, true, 'logged out');
  assert.equal(a.signal.aborted, true);
  assert.equal(b.res.writableEnded, false);

  apps.delete('shop');
  apps.set('shop', 'id-2'); // destroyed, and another app of its name made
  streams.sweep();
  assert.equal(b.res.writableEnded, true);
  assert.equal(streams.size, 0);
});

test("a stream's life is capped at its session's expiry", () => {
  let now = 1_000_000;
  const sessions = new Sessions({ now: () => now });
  const { session } = sessions.create({ kind: 'local' });
  const streams = new OpenStreams((s) => sessions.alive(s.session));
  const res = new Response();
  streams.open({ session, app: 'shop', appId: 'id-1' }, res as unknown as http.ServerResponse);
  now = session.expiresAt - 1;
  streams.sweep();
  assert.equal(res.writableEnded, false);
  now = session.expiresAt;
  streams.sweep();
  assert.equal(res.writableEnded, true);
});

test('a session holds at most 8 streams, and all sessions together at most the global cap: 429 too_many_streams', () => {
  const sessions = new Sessions();
  const a = sessions.create({ kind: 'local' }).session;
  const b = sessions.create({ kind: 'local' }).session;
  const c = sessions.create({ kind: 'local' }).session;
  const streams = new OpenStreams(() => true, { perSession: MAX_STREAMS_PER_SESSION, total: 12 });
  const open = (session: typeof a) => streams.open({ session, app: 'shop', appId: 'id-1' }, new Response() as unknown as http.ServerResponse);
  for (let i = 0; i < MAX_STREAMS_PER_SESSION; i++) open(a);
  const refused = (session: typeof a) => {
    try {
      open(session);
    } catch (e) {
      return e instanceof ApiError && e.status === 429 && e.code === 'too_many_streams';
    }
    return false;
  };
  assert.equal(refused(a), true, 'a ninth for one session');
  for (let i = 0; i < 4; i++) open(b);
  assert.equal(streams.size, 12);
  assert.equal(refused(c), true, 'past the global cap');
});

test("an event stream's write waits for 'drain' from a slow client, and a client that stops reading is cut past 1 MiB unsent", async (t) => {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const asked = once(server, 'request') as Promise<[http.IncomingMessage, http.ServerResponse]>;
  const req = http.get({ host: '127.0.0.1', port: (server.address() as { port: number }).port, path: '/', agent: false });
  req.on('error', () => {});
  t.after(() => req.destroy());
  const [, answer] = await asked;
  const events = startEvents(answer);
  const [res] = (await once(req, 'response')) as [http.IncomingMessage];
  res.pause(); // a client that reads nothing
  const line = 'x'.repeat(1000);
  let waited: Promise<void> | undefined;
  for (let i = 0; i < 200_000 && !answer.destroyed; i++) {
    const r = events.event('line', line);
    if (r && !waited) waited = r;
  }
  assert.ok(waited instanceof Promise, 'a write returned a promise once the client fell behind');
  assert.equal(answer.destroyed, true, 'cut once over the cap');
  await waited; // settles with the close
  assert.ok(MAX_BUFFERED_EVENTS === 1024 * 1024);
});

test("an action's output is capped, with a note, and its ANSI removed", () => {
  const out = cappedOutput(20);
  out.line('\x1b[1mabc\x1b[0m');
  out.raw('0123456789abcdef');
  assert.equal(out.text(), 'abc\n01234567\n[output truncated: 8 more characters; run the command over SSH to see all of it]\n');
  const small = cappedOutput(100);
  small.line('done');
  assert.equal(small.text(), 'done\n');
});
