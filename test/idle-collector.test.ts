// The proxy's idle collector: one full GC when the event loop goes quiet after the heap grew, none
// while it is busy or when there is nothing to give back; and V8's own GC, reached without
// --expose-gc on the command line, really frees the heap.
import assert from 'node:assert/strict';
import test from 'node:test';
import v8 from 'node:v8';
import { IdleCollector } from '../src/daemon/idle-collector.ts';

const MB = 1024 * 1024;

/** A collector whose readings the test sets: the heap, the event loop's busy share, and a GC that shrinks the heap to `after`. */
function scripted(options: { after: number }) {
  const readings = { heap: 20 * MB, busy: 0, now: 0 };
  let collected = 0;
  const collector = new IdleCollector({
    heapBytes: () => readings.heap,
    busyShare: () => readings.busy,
    now: () => readings.now,
    collect: () => {
      collected++;
      readings.heap = options.after;
    },
  });
  collector.start();
  collector.stop();
  return { collector, readings, collected: () => collected };
}

test('a quiet second after the heap grew collects once, and not again until it grows again', () => {
  const { collector, readings, collected } = scripted({ after: 20 * MB });
  readings.busy = 0.9;
  readings.heap = 90 * MB;
  collector.check();
  assert.equal(collected(), 0, 'no collection while the event loop is busy');
  readings.busy = 0.01;
  collector.check();
  assert.equal(collected(), 1);
  collector.check();
  collector.check();
  assert.equal(collected(), 1, 'nothing to give back after the collection');
  readings.heap = 40 * MB;
  readings.now += 60_000;
  collector.check();
  assert.equal(collected(), 2);
});

test('under light steady traffic the heap grows again and again, and a collection comes at most once a minute', () => {
  const { collector, readings, collected } = scripted({ after: 20 * MB });
  readings.busy = 0.02;
  for (let second = 0; second < 180; second++) {
    readings.now = second * 1000;
    readings.heap += 10 * MB;
    collector.check();
  }
  assert.equal(collected(), 3, 'at 0 s, 60 s and 120 s');
});

test('a heap that grew by less than 8 MB is left alone, also when quiet', () => {
  const { collector, readings, collected } = scripted({ after: 20 * MB });
  readings.heap = 27 * MB;
  collector.check();
  assert.equal(collected(), 0);
});

test('growth counts from the smallest heap seen, so V8 shrinking it on its own does not hide new growth', () => {
  const { collector, readings, collected } = scripted({ after: 20 * MB });
  readings.busy = 0.5;
  readings.heap = 10 * MB;
  collector.check();
  readings.heap = 19 * MB;
  collector.check();
  readings.busy = 0;
  collector.check();
  assert.equal(collected(), 1);
});

test('the default collection is V8 full GC: garbage the heap held is gone after one quiet check', () => {
  let garbage: unknown[] | undefined = Array.from({ length: 400_000 }, (_, i) => ({ i, text: `object ${i}` }));
  const before = v8.getHeapStatistics().used_heap_size;
  garbage = undefined;
  assert.equal(garbage, undefined);
  // The heap readings say it grew: the real heap's growth is V8's business, the collection is what is tested.
  const heaps = [0, 100 * MB];
  const collector = new IdleCollector({ busyShare: () => 0, heapBytes: () => heaps.shift() ?? 0 });
  collector.start();
  collector.stop();
  collector.check();
  assert.equal(collector.collections, 1);
  const after = v8.getHeapStatistics().used_heap_size;
  assert.ok(after < before - 20 * MB, `used heap ${Math.round(before / MB)} MB before, ${Math.round(after / MB)} MB after`);
  assert.equal(typeof (globalThis as { gc?: unknown }).gc, 'undefined', 'gc stays out of the global scope');
});
