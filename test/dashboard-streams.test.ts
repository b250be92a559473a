// The dashboard's open event streams, with a response stand-in: each ends when its session ends
// or expires, when its key no longer sees its app, and when its app is destroyed or renamed
// (e2e-dashboard.test.ts shows the same on the real binary).
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type http from 'node:http';
import { test } from 'node:test';
import { OpenStreams, type OpenStream } from '../src/dashboard/open-streams.ts';
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
