// The new control plane's gate (src/daemon/take-over.ts): pushes and commands asked before it has
// taken over wait, told why on standard error, and run once it opens; a client that leaves first
// runs nothing.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ExecSession } from '../src/git/exec-router.ts';
import { TakeOver } from '../src/daemon/take-over.ts';

function session(): { session: ExecSession; stderr: string[]; abort: AbortController } {
  const stderr: string[] = [];
  const abort = new AbortController();
  const s = { key: { name: 'k' }, address: '127.0.0.1', stderr: (d: string | Buffer) => void stderr.push(d.toString()), signal: abort.signal } as unknown as ExecSession;
  return { session: s, stderr, abort };
}

test('a command asked while an upgrade holds the new control plane waits, says why, and runs after take-over', async () => {
  const gate = new TakeOver();
  gate.hold();
  const ran: string[] = [];
  const { session: s, stderr } = session();
  const pending = gate.routes(() => true).command(['config:set', 'a', 'X=1'], s);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(ran.length, 0, 'nothing runs before take-over');
  assert.match(stderr.join(''), /berth is being upgraded: this waits until the previous version has finished/);
  gate.starting();
  assert.equal(gate.phase, 'starting');
  gate.open({
    command: async (words) => {
      ran.push(words.join(' '));
      return 0;
    },
    push: async () => undefined,
  }, (key) => key);
  assert.equal(await pending, 0);
  assert.deepEqual(ran, ['config:set a X=1']);
});

test('at start-up a push waits with its own message; once open, pushes run at once and silently', async () => {
  const gate = new TakeOver();
  const pushed: string[] = [];
  const first = session();
  const pending = gate.routes(() => true).push('app', first.session);
  await new Promise((resolve) => setImmediate(resolve));
  assert.match(first.stderr.join(''), /berth is starting: this runs once it has loaded its state/);
  gate.open({ command: async () => 0, push: async (app) => void pushed.push(app) }, (key) => key);
  await pending;
  const second = session();
  await gate.routes(() => true).push('other', second.session);
  assert.deepEqual(pushed, ['app', 'other']);
  assert.deepEqual(second.stderr, []);
});

test('a client that goes away while it waits runs nothing', async () => {
  const gate = new TakeOver();
  gate.hold();
  let ran = 0;
  const { session: s, abort } = session();
  const pending = gate.routes(() => true).command(['apps:destroy', 'a'], s);
  abort.abort();
  assert.equal(await pending, 255);
  gate.open({ command: async () => ++ran, push: async () => undefined }, (key) => key);
  assert.equal(ran, 0);
});

test('a command that waited runs with its key as the state has it after take-over, and not at all if the key was removed meanwhile', async () => {
  const gate = new TakeOver();
  gate.hold();
  const seen: string[] = [];
  const kept = session();
  const removed = session();
  (removed.session as { key: { name: string; fingerprint?: string } }).key = { name: 'gone', fingerprint: 'SHA256:gone' };
  const first = gate.routes(() => true).command(['ps:report', 'a'], kept.session);
  const second = gate.routes(() => true).command(['ps:report', 'a'], removed.session);
  gate.open(
    {
      command: async (_words, s) => {
        seen.push(`${s.key.name}:${JSON.stringify(s.key.apps)}`);
        return 0;
      },
      push: async () => undefined,
    },
    (key) => (key.name === 'gone' ? undefined : ({ ...key, apps: [{ name: 'a', id: 'app-1' }] } as typeof key)),
  );
  assert.equal(await first, 0);
  assert.equal(await second, 255);
  assert.deepEqual(seen, ['k:[{"name":"a","id":"app-1"}]']);
  assert.match(removed.stderr.join(''), /the key "gone" was removed while this waited/);
});
