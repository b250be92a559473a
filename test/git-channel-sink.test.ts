// Backpressure made visible: a sink over a full stream returns a promise that settles when it
// drains, and a demultiplexer's source is paused while its consumer is full.
import assert from 'node:assert/strict';
import { PassThrough, Writable } from 'node:stream';
import { test } from 'node:test';
import { channelSink } from '../src/git/channel-sink.ts';
import { sink } from '../src/orchestrator/docker-wire.ts';

test('a write the stream cannot take returns a promise that settles once it drains; writes after close are dropped', async () => {
  const taken: string[] = [];
  let release: (() => void) | undefined;
  const slow = new Writable({
    highWaterMark: 4,
    write(chunk: Buffer, _enc, done) {
      taken.push(chunk.toString());
      release = done;
    },
  });
  const write = channelSink(slow, (d) => d.toString().toUpperCase());
  assert.equal(write('ab'), undefined);
  const full = write('cdefgh');
  assert.ok(full instanceof Promise);
  assert.equal(write('ij'), full, 'one promise while the stream is full');
  let settled = false;
  void full.then(() => (settled = true));
  await new Promise((r) => setImmediate(r));
  assert.equal(settled, false);
  while (release) {
    const r = release;
    release = undefined;
    r();
    await new Promise((r2) => setImmediate(r2));
  }
  await full;
  assert.deepEqual(taken, ['AB', 'CDEFGH', 'IJ']);
  slow.destroy();
  assert.equal(write('late'), undefined);
});

test('the demultiplexing sink pauses its source while a write is pending, and resumes it after', async () => {
  const source = new PassThrough();
  source.resume();
  let finish: (() => void) | undefined;
  const out = sink(() => new Promise<void>((resolve) => (finish = resolve)), source);
  out.write(Buffer.from('x'));
  assert.equal(source.isPaused(), true);
  finish!();
  await new Promise((r) => setImmediate(r));
  assert.equal(source.isPaused(), false);
});
