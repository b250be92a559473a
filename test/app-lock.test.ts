import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AppLock } from '../src/platform/app-lock.ts';

test('a second holder of the same app waits for the first and is told so; other apps run in parallel', async () => {
  const lock = new AppLock();
  const order: string[] = [];
  let waited = 0;
  let releaseFirst!: () => void;
  const first = lock.run('a', async () => {
    order.push('a1 start');
    await new Promise<void>((r) => (releaseFirst = r));
    order.push('a1 end');
  });
  const second = lock.run('a', async () => void order.push('a2'), () => waited++);
  await lock.run('b', async () => void order.push('b'));
  assert.deepEqual(order, ['a1 start', 'b']);
  releaseFirst();
  await Promise.all([first, second]);
  assert.deepEqual(order, ['a1 start', 'b', 'a1 end', 'a2']);
  assert.equal(waited, 1);
  assert.equal(lock.isBusy('a'), false);
});

test('a holder that throws releases the lock for the next one', async () => {
  const lock = new AppLock();
  await assert.rejects(lock.run('a', async () => { throw new Error('boom'); }), /boom/);
  assert.equal(await lock.run('a', async () => 42), 42);
});
