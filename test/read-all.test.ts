// Reading standard input whole, and at most so many bytes of it (certs:add reads at most 64 KiB).
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { isUserError } from '../src/errors.ts';
import { readAll, readAtMost } from '../src/read-all.ts';

test('readAtMost gives the whole input when it fits, and refuses as soon as it grows past the cap', async () => {
  const small = new PassThrough();
  const got = readAtMost(small, 64 * 1024, 'the input');
  small.end(Buffer.alloc(1000, 1));
  assert.equal((await got).length, 1000);

  const big = new PassThrough();
  const refused = readAtMost(big, 64 * 1024, 'the certificate and key on standard input');
  big.write(Buffer.alloc(60 * 1024));
  big.write(Buffer.alloc(8 * 1024)); // never ended: the refusal does not wait for the end
  await assert.rejects(refused, (e: unknown) => {
    assert.ok(isUserError(e) && e.code === 'input_too_large');
    assert.match(e.message, /the certificate and key on standard input: more than 64 KiB, the most accepted/);
    return true;
  });
});

test('an input that closes before its end is a disconnect, for both readers', async () => {
  for (const read of [(s: PassThrough) => readAll(s), (s: PassThrough) => readAtMost(s, 1024, 'x')]) {
    const s = new PassThrough();
    const r = read(s);
    s.write('part');
    s.destroy();
    await assert.rejects(r, (e: unknown) => isUserError(e) && e.code === 'client_disconnected');
  }
});
