// Engine.exec on the real Docker engine: a process in a running container of the base image, its
// stdin streamed in, its stdout and stderr apart as they come, its exit code; 100 MB of output
// streams through with the container held back while the reader is (nothing buffered whole).
import assert from 'node:assert/strict';
import { randomBytes, createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import v8 from 'node:v8';
import vm from 'node:vm';
import { before, after, test } from 'node:test';
import { DockerEngine } from '../src/orchestrator/docker-engine.ts';
import { NotFoundError } from '../src/orchestrator/engine.ts';
import { sleep } from '../src/sleep.ts';

const BASE_IMAGE = 'berth-test/base:latest';
// Buffers still referenced are told apart from garbage not yet collected by collecting first.
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;
let engine: DockerEngine;
let id: string;

before(async () => {
  engine = await DockerEngine.connect(process.env.DOCKER_HOST ?? '/var/run/docker.sock', `test-exec-${process.pid}`);
  const state = await engine.run({
    name: `berth-test-exec-${process.pid}`,
    image: BASE_IMAGE,
    env: {},
    labels: {},
    network: 'none',
    aliases: [],
    cmd: ['sleep', '3600'],
    restart: false,
  });
  id = state.id;
});

after(async () => {
  if (id) await engine.stopAndRemove(id, 0);
});

test('a process reads what is streamed to its stdin and its output comes back whole', async () => {
  const input = randomBytes(5 * 1024 * 1024);
  const chunks: Buffer[] = [];
  const stdin = Readable.from((function* () {
    for (let i = 0; i < input.length; i += 64 * 1024) yield input.subarray(i, i + 64 * 1024);
  })());
  const { code } = await engine.exec(id, { cmd: ['cat'], stdin, onStdout: (d) => void chunks.push(d), onStderr: () => {} });
  assert.equal(code, 0);
  const output = Buffer.concat(chunks);
  assert.equal(output.length, input.length);
  assert.equal(sha(output), sha(input));
});

test('stdout and stderr arrive apart, the exit code is the process\'s, and env and user are applied', async () => {
  let out = '';
  let err = '';
  const { code } = await engine.exec(id, {
    cmd: ['sh', '-c', 'echo "out $GREETING"; echo err >&2; id -u >&2; exit 7'],
    env: ['GREETING=hello'],
    user: '65534',
    onStdout: (d) => void (out += d.toString()),
    onStderr: (d) => void (err += d.toString()),
  });
  assert.equal(code, 7);
  assert.equal(out, 'out hello\n');
  assert.equal(err, 'err\n65534\n');
});

test('100 MB of stdout streams through: a reader that waits holds the process back, and memory stays far below the output', async () => {
  const total = 100 * 1024 * 1024;
  const marker = `/tmp/exec-done-${Date.now()}`;
  let received = 0;
  let held = false;
  let heldProducerDone: number | undefined;
  let peakBuffers = 0;
  const hash = createHash('sha256');
  gc();
  const baseline = process.memoryUsage().arrayBuffers;
  let nextSample = 0;
  const { code } = await engine.exec(id, {
    cmd: ['sh', '-c', `yes ${LINE} | head -c ${total}; touch ${marker}`],
    onStdout: async (d) => {
      received += d.length;
      hash.update(d);
      if (received >= nextSample) {
        nextSample += 10 * 1024 * 1024;
        // The buffers freed by a collection leave the count when V8's background sweeper has
        // released them, later under load: a second collection waits for the first one's.
        gc();
        gc();
        peakBuffers = Math.max(peakBuffers, process.memoryUsage().arrayBuffers - baseline);
      }
      if (!held && received >= 1024 * 1024) {
        held = true;
        // The reader stops for a while: the process in the container must stop with it.
        await sleep(1500);
        heldProducerDone = (await engine.exec(id, { cmd: ['test', '-e', marker], onStdout: () => {}, onStderr: () => {} })).code;
      }
    },
    onStderr: () => {},
  });
  assert.equal(code, 0);
  assert.equal(received, total);
  assert.equal(heldProducerDone, 1, 'the process had not finished while the reader was waiting');
  assert.ok(peakBuffers < 16 * 1024 * 1024, `${peakBuffers} bytes of buffers held at once`);
  assert.equal(hash.digest('hex'), expectedHash(total), 'the bytes are the ones written, in order');
  assert.equal((await engine.exec(id, { cmd: ['rm', marker], onStdout: () => {}, onStderr: () => {} })).code, 0);
});

test('a process on a terminal writes one stream; a signal, or a reader that breaks, ends a long one in the container', async () => {
  let out = '';
  const { code } = await engine.exec(id, { cmd: ['sh', '-c', 'test -t 1 && echo terminal'], tty: true, onStdout: (d) => void (out += d.toString()), onStderr: () => assert.fail('no stderr on a terminal') });
  assert.equal(code, 0);
  assert.equal(out.trim(), 'terminal');

  const started = Date.now();
  const signal = AbortSignal.timeout(300);
  await assert.rejects(engine.exec(id, { cmd: ['sh', '-c', 'sleep 31 & sleep 32'], onStdout: () => {}, onStderr: () => {}, signal }));
  assert.ok(Date.now() - started < 5000, 'the signal ended the wait');
  assert.deepEqual(await leftovers(), [], 'the process and what it started were ended');

  // A reader that breaks (an SSH client gone) ends the process too, which the engine would leave blocked on its output.
  await assert.rejects(engine.exec(id, { cmd: ['yes', 'berth-exec-reader-gone'], onStdout: () => { throw new Error('the output was closed'); }, onStderr: () => {} }), /the output was closed/);
  assert.deepEqual(await leftovers(), []);
});

/** The command lines of the test's processes still in the container a moment after they were sent SIGTERM. */
async function leftovers(): Promise<string[]> {
  for (let i = 0; ; i++) {
    let out = '';
    await engine.exec(id, { cmd: ['ps', '-o', 'args'], onStdout: (d) => void (out += d.toString()), onStderr: () => {} });
    const left = out.split('\n').filter((l) => /sleep 3[12]|berth-exec-reader-gone/.test(l));
    if (left.length === 0 || i === 20) return left;
    await sleep(100);
  }
}

test('exec in a container the engine does not have is a NotFoundError', async () => {
  await assert.rejects(engine.exec('berth-no-such-container', { cmd: ['true'], onStdout: () => {}, onStderr: () => {} }), NotFoundError);
});

const LINE = 'berth-streams-this-line';

/** The sha256 of the first `total` bytes of `yes LINE`, made here without holding them. */
function expectedHash(total: number): string {
  const hash = createHash('sha256');
  const block = Buffer.from(`${LINE}\n`.repeat(4096));
  let left = total;
  while (left > 0) {
    const n = Math.min(left, block.length);
    hash.update(block.subarray(0, n));
    left -= n;
  }
  return hash.digest('hex');
}

function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}
