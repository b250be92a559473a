// The caps on one push, in berth's own index-pack and delta code: hostile packs written byte by
// byte (a delta declaring a huge result, a long chain, a blob declaring gigabytes, a blob
// inflating past its header) are refused with a message naming the cap and its flag, before
// the work or memory they would cost.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { isUserError } from '../src/errors.ts';
import { indexPackOffThread } from '../src/git/index-pack-process.ts';
import { applyDelta, DeltaTooLargeError } from '../src/git/pack-format.ts';
import { indexPack, type IndexOptions } from '../src/git/pack-index.ts';
import { deltaBombPack, deltaChainPack, lyingBlobPack, zlibBombPack, type HostilePack } from './helpers/hostile-packs.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-push-limits-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

let n = 0;
function write(pack: HostilePack): { pack: string; idx: string } {
  const file = path.join(root, `p${++n}.pack`);
  fs.writeFileSync(file, pack.pack);
  return { pack: file, idx: path.join(root, `p${n}.idx`) };
}

async function refusal(pack: HostilePack, options: IndexOptions = {}): Promise<{ code: string; message: string }> {
  const files = write(pack);
  try {
    await indexPack(files.pack, files.idx, options);
  } catch (e) {
    assert.ok(isUserError(e), `a user error, not ${String(e)}`);
    assert.equal(fs.existsSync(files.idx), false, 'no index is written for a refused pack');
    return { code: e.code, message: e.message };
  }
  assert.fail('the pack was indexed');
}

describe('the caps in the pack indexer', () => {
  test('a delta declaring a 1 GiB result from 16 KiB of instructions is refused by --max-object-size before it is applied', async () => {
    const bomb = deltaBombPack(4, 1024 ** 3);
    assert.ok(bomb.pack.length < 16 * 1024, `the bomb is ${bomb.pack.length} bytes`);
    const r = await refusal(bomb);
    assert.equal(r.code, 'git_push_limit');
    assert.match(r.message, /^push refused: the delta at offset \d+ declares a result of 1 GiB, over the cap of 256 MiB set by berth serve --max-object-size$/);
  });

  test('the same delta under a raised cap is applied and indexed', async () => {
    const small = deltaBombPack(2, 1024 ** 2);
    const files = write(small);
    const summary = await indexPack(files.pack, files.idx, { limits: { objectBytes: 2 * 1024 ** 2 } });
    assert.equal(summary.objects, 3);
    assert.equal(summary.deltas, 2);
  });

  test('a blob whose header declares 4 GiB is refused by --max-object-size from its header, before inflating', async () => {
    const r = await refusal(zlibBombPack(4 * 1024 ** 3));
    assert.equal(r.code, 'git_push_limit');
    assert.match(r.message, /^push refused: the blob at offset 12 inflates to 4 GiB, over the cap of 256 MiB set by berth serve --max-object-size$/);
  });

  test('a blob that inflates past what its header declares is cut off, whole or streamed', async () => {
    const whole = await refusal(lyingBlobPack(1000, 8 << 20));
    assert.equal(whole.code, 'git_pack_invalid');
    assert.match(whole.message, /the object at offset 12 inflates to more than the 1000 bytes its header says/);
    const streamed = await refusal(lyingBlobPack(100_000, 64 << 20), { streamAbove: 16 });
    assert.equal(streamed.code, 'git_pack_invalid');
    assert.match(streamed.message, /the object at offset 12 inflates to more than the 100000 bytes its header says/);
  });

  test('a delta chain deeper than --max-delta-depth is refused; one at the cap is indexed as git indexes it', async () => {
    const deep = await refusal(deltaChainPack(30), { limits: { deltaDepth: 20 } });
    assert.equal(deep.code, 'git_push_limit');
    assert.match(deep.message, /^push refused: the delta at offset \d+ is 21 deltas away from a whole object, over the cap of 20 set by berth serve --max-delta-depth$/);

    const atCap = deltaChainPack(20);
    const files = write(atCap);
    await indexPack(files.pack, files.idx, { limits: { deltaDepth: 20 } });
    assert.ok(fs.readFileSync(files.idx).equals(atCap.idx), 'the index names every object by its real id');
    const copy = path.join(root, 'git-chain.pack');
    fs.copyFileSync(files.pack, copy);
    const git = spawnSync('git', ['index-pack', copy], { encoding: 'utf8' });
    assert.equal(git.status, 0, git.stderr);
    assert.ok(fs.readFileSync(copy.replace(/\.pack$/, '.idx')).equals(atCap.idx), 'git builds the same index');
  });

  test('deltas each under the object cap are refused once their results together pass --max-push-inflated-size', async () => {
    const r = await refusal(deltaBombPack(8, 1024 ** 2), { limits: { objectBytes: 2 * 1024 ** 2, inflatedBytes: 4 * 1024 ** 2 } });
    assert.equal(r.code, 'git_push_limit');
    assert.match(r.message, /^push refused: the objects up to offset \d+ inflate to [\d.]+ MiB together, over the cap of 4 MiB set by berth serve --max-push-inflated-size$/);
  });

  test('a pack of more objects than --max-push-objects is refused from its header', async () => {
    const r = await refusal(deltaChainPack(10), { limits: { objects: 5 } });
    assert.equal(r.code, 'git_push_limit');
    assert.match(r.message, /^push refused: the pack holds 11 objects, over the cap of 5 set by berth serve --max-push-objects$/);
  });

  test('the child process refuses with the same cap, passed on its command line', async () => {
    const files = write(deltaChainPack(30));
    await assert.rejects(indexPackOffThread(files.pack, files.idx, { limits: { deltaDepth: 10 } }), (e: unknown) => {
      assert.ok(isUserError(e));
      assert.equal(e.code, 'git_push_limit');
      assert.match(e.message, /over the cap of 10 set by berth serve --max-delta-depth/);
      return true;
    });
  });
});

test('applyDelta refuses a declared result beyond its cap before allocating it', () => {
  const base = Buffer.alloc(16);
  const delta = Buffer.from([16, 0x80, 0x80, 0x80, 0x80, 0x10, 0x80]); // base 16, result 2^32
  assert.throws(() => applyDelta(base, delta, 1 << 20), (e: unknown) => e instanceof DeltaTooLargeError && e.resultSize === 2 ** 32);
});
