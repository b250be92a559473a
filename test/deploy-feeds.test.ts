// An app's deploy feed: what the pusher sees, line by line without terminal escapes, replayed to a
// watcher who comes late, ended with the result; other apps' watchers hear nothing of it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DeployFeeds, type DeployEvent } from '../src/platform/deploy-feeds.ts';
import { withoutEscapes } from '../src/ui/plain-text.ts';
import { MemoryOutput } from '../src/ui/output.ts';

test("a deploy's output reaches the user and the feed; a late watcher gets the start and every line so far, then the rest live", () => {
  const feeds = new DeployFeeds();
  const early: DeployEvent[] = [];
  const other: DeployEvent[] = [];
  feeds.watch('web', (e) => early.push(e));
  feeds.watch('api', (e) => other.push(e));
  const feed = feeds.begin('web', 'alice');
  assert.equal(feeds.running('web'), true);
  const user = new MemoryOutput();
  const out = feed.output(user);
  out.step('Building web');
  out.detail('line one\nline two');
  out.raw('\x1b[32mgreen\x1b[0m partial');

  const late: DeployEvent[] = [];
  feeds.watch('web', (e) => late.push(e));
  out.raw(' done\n');
  feed.end({ ok: true, release: 4 });
  assert.equal(feeds.running('web'), false);

  assert.equal(user.text(), '-----> Building web\n       line one\n       line two\n\x1b[32mgreen\x1b[0m partial done\n', 'the user sees it as ever');
  const lines = ['-----> Building web', '       line one', '       line two', 'green partial done'];
  const expected = (e: DeployEvent[]) => {
    assert.equal(e[0]!.kind, 'start');
    assert.equal((e[0] as { by: string }).by, 'alice');
    assert.deepEqual(e.slice(1, -1), lines.map((text) => ({ kind: 'line', text })));
    assert.deepEqual(e.at(-1), { kind: 'end', ok: true, release: 4 });
  };
  expected(early);
  expected(late);
  assert.deepEqual(other, []);
});

test('a failed deploy ends its feed with the error; nothing printed after the end reaches the feed', () => {
  const feeds = new DeployFeeds();
  const events: DeployEvent[] = [];
  feeds.watch('web', (e) => events.push(e));
  const feed = feeds.begin('web', 'bob');
  const out = feed.output(new MemoryOutput());
  out.error('build failed');
  feed.end({ ok: false, error: 'build failed' });
  out.line('after');
  assert.deepEqual(events.slice(1), [{ kind: 'line', text: ' !     build failed' }, { kind: 'end', ok: false, error: 'build failed' }]);
  const idle: DeployEvent[] = [];
  feeds.watch('web', (e) => idle.push(e));
  assert.deepEqual(idle, [], 'nothing to replay once the deploy is over');
});

test('a watcher that stops hears no more', () => {
  const feeds = new DeployFeeds();
  const events: DeployEvent[] = [];
  const stop = feeds.watch('web', (e) => events.push(e));
  stop();
  feeds.begin('web', 'alice').write('hello\n');
  assert.deepEqual(events, []);
});

test('terminal escapes and control characters are removed from feed lines, tabs kept', () => {
  assert.equal(withoutEscapes('\x1b[1;31mred\x1b[0m\tx\x07\x1b]0;title\x07y'), 'red\txy');
});

test('run: a deploy run through the feeds is on the feed from start to its result, a failed one too', async () => {
  const feeds = new DeployFeeds();
  const seen: DeployEvent[] = [];
  feeds.watch('shop', (e) => seen.push(e));
  const out = new MemoryOutput();
  const result = await feeds.run('shop', 'alice', out, async (fed) => {
    assert.equal(feeds.running('shop'), true);
    await fed.step('Restarting shop');
    return 'done';
  }, () => 7);
  assert.equal(result, 'done');
  assert.equal(feeds.running('shop'), false);
  assert.deepEqual(seen.map((e) => e.kind), ['start', 'line', 'end']);
  assert.deepEqual(seen.at(-1), { kind: 'end', ok: true, release: 7 });
  assert.match(out.text(), /Restarting shop/);
  await assert.rejects(feeds.run('shop', 'alice', out, async () => { throw new Error('no engine'); }, () => null));
  assert.equal(seen.at(-1)?.kind, 'end');
  assert.equal((seen.at(-1) as { ok: boolean }).ok, false);
});
