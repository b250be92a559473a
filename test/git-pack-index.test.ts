// berth's own index-pack against git's: packs made by the real git, indexes compared byte for
// byte with `git index-pack`, in-process and in the child process, and corrupt packs refused.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import zlib from 'node:zlib';
import { isUserError } from '../src/errors.ts';
import { indexPackOffThread } from '../src/git/index-pack-process.ts';
import { indexPack } from '../src/git/pack-index.ts';
import { ObjectStore } from '../src/git/object-store.ts';
import { applyDelta, parseEntryHeader } from '../src/git/pack-format.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-pack-index-'));
const work = path.join(root, 'work');

function git(args: string[], options: { cwd?: string; input?: string } = {}): Buffer {
  const r = spawnSync('git', args, { cwd: options.cwd ?? work, input: options.input, maxBuffer: 256 << 20 });
  if (r.status !== 0) throw new Error(`git ${args.join(' ')}: ${r.stderr.toString()}`);
  return r.stdout;
}

/** A pack of HEAD's history from the real git; `ofs` picks offset deltas over ref deltas. */
function makePack(name: string, { ofs, extra = [] }: { ofs: boolean; extra?: string[] }): string {
  const pack = git(['pack-objects', '--revs', '--stdout', '-q', ...(ofs ? ['--delta-base-offset'] : []), ...extra], { input: 'HEAD\n' });
  const file = path.join(root, `${name}.pack`);
  fs.writeFileSync(file, pack);
  return file;
}

/** The .idx git itself writes for a copy of the pack. */
function gitIdx(packFile: string): Buffer {
  const copy = path.join(root, `git-${path.basename(packFile)}`);
  fs.copyFileSync(packFile, copy);
  git(['index-pack', '-o', copy.replace(/\.pack$/, '.idx'), copy], { cwd: root });
  return fs.readFileSync(copy.replace(/\.pack$/, '.idx'));
}

let counter = 0;
function idxPath(): string {
  return path.join(root, `out-${++counter}.idx`);
}

/** Rewrites a pack's trailer so its checksum matches its (changed) body. */
function withChecksum(body: Buffer): Buffer {
  return Buffer.concat([body, createHash('sha1').update(body).digest()]);
}

async function refusal(packBytes: Buffer): Promise<string> {
  const file = path.join(root, `bad-${++counter}.pack`);
  fs.writeFileSync(file, packBytes);
  try {
    await indexPack(file, idxPath());
  } catch (e) {
    assert.ok(isUserError(e) && e.code === 'git_pack_invalid', `a UserError git_pack_invalid, got ${String(e)}`);
    return e.message;
  }
  assert.fail('the corrupt pack was indexed');
}

before(() => {
  fs.mkdirSync(work);
  git(['init', '-q', '-b', 'main']);
  git(['config', 'user.email', 'dev@example.test']);
  git(['config', 'user.name', 'Dev']);
  // History that deltas well (a growing file, edits), plus incompressible content and a tag.
  for (let i = 1; i <= 25; i++) {
    fs.writeFileSync(path.join(work, 'grows.txt'), Array.from({ length: i * 60 }, (_, n) => `line ${n} of a file that grows\n`).join(''));
    fs.writeFileSync(path.join(work, `small-${i % 4}.txt`), `version ${i}\n`);
    fs.writeFileSync(path.join(work, `noise-${i % 3}.bin`), createHash('sha512').update(String(i)).digest());
    git(['add', '-A']);
    git(['commit', '-q', '-m', `commit ${i}`]);
  }
  git(['tag', '-a', 'v1', '-m', 'the first release']);
});

after(() => fs.rmSync(root, { recursive: true, force: true }));

describe('index-pack', () => {
  test('an offset-delta pack gets the very index git writes', async () => {
    const pack = makePack('ofs', { ofs: true });
    const out = idxPath();
    const summary = await indexPack(pack, out);
    assert.ok(summary.deltas > 10, `the pack has deltas (${summary.deltas})`);
    assert.ok(fs.readFileSync(out).equals(gitIdx(pack)));
  });

  test('a ref-delta pack gets the very index git writes', async () => {
    const pack = makePack('ref', { ofs: false });
    const out = idxPath();
    const summary = await indexPack(pack, out);
    assert.ok(summary.deltas > 10);
    assert.ok(fs.readFileSync(out).equals(gitIdx(pack)));
  });

  test('with a tiny cache and every object streamed, bases are read back from the file and the index is the same', async () => {
    const pack = makePack('tiny', { ofs: true });
    const out = idxPath();
    await indexPack(pack, out, { cacheBytes: 1, streamAbove: 16 });
    assert.ok(fs.readFileSync(out).equals(gitIdx(pack)));
  });

  test('the child process indexes the same way and reports progress up to the total', async () => {
    const pack = makePack('child', { ofs: true });
    const out = idxPath();
    const seen = new Map<string, [number, number]>();
    const summary = await indexPackOffThread(pack, out, { onProgress: (phase, done, total) => seen.set(phase, [done, total]) });
    assert.equal(summary.where, 'child');
    assert.ok(summary.childMaxRssBytes > 0);
    assert.ok(fs.readFileSync(out).equals(gitIdx(pack)));
    const [done, total] = seen.get('Indexing objects')!;
    assert.equal(done, total);
    assert.equal(total, summary.objects);
    assert.deepEqual(seen.get('Resolving deltas'), [summary.deltas, summary.deltas]);
  });

  test('the child process reports a corrupt pack as the same user error', async () => {
    const good = fs.readFileSync(makePack('child-bad', { ofs: true }));
    const body = Buffer.from(good.subarray(0, good.length - 20));
    body.writeUInt32BE(body.readUInt32BE(8) + 1, 8);
    const file = path.join(root, 'child-bad-count.pack');
    fs.writeFileSync(file, withChecksum(body));
    await assert.rejects(indexPackOffThread(file, idxPath()), (e: unknown) => {
      assert.ok(isUserError(e) && e.code === 'git_pack_invalid');
      assert.match((e as Error).message, /the pack ends after \d+ of the \d+ objects it announces/);
      return true;
    });
  });

  test('the object store reads every object of the indexed pack as git does', async () => {
    const repo = path.join(root, 'store.git');
    git(['init', '-q', '--bare', repo], { cwd: root });
    const pack = makePack('store', { ofs: false });
    const name = `pack-${fs.readFileSync(pack).subarray(-20).toString('hex')}`;
    fs.copyFileSync(pack, path.join(repo, 'objects', 'pack', `${name}.pack`));
    await indexPack(path.join(repo, 'objects', 'pack', `${name}.pack`), path.join(repo, 'objects', 'pack', `${name}.idx`));
    const store = new ObjectStore(repo);
    try {
      const listed = git(['--git-dir', repo, 'cat-file', '--batch-all-objects', '--batch-check'], { cwd: root }).toString().trim().split('\n');
      assert.ok(listed.length > 50);
      for (const line of listed) {
        const [oid, type] = line.split(' ') as [string, string];
        const object = await store.read(oid);
        assert.equal(object?.type, type);
        assert.equal(await store.type(oid), type);
        assert.ok(object!.content.equals(git(['--git-dir', repo, 'cat-file', type, oid], { cwd: root })), `content of ${oid}`);
      }
      assert.equal(await store.read('0'.repeat(40)), undefined);
    } finally {
      await store.close();
    }
  });

  test('a pack with a wrong checksum is refused', async () => {
    const pack = Buffer.from(fs.readFileSync(makePack('sum', { ofs: true })));
    pack[pack.length - 1]! ^= 1;
    assert.match(await refusal(pack), /checksum is wrong/);
  });

  test('a pack cut short is refused', async () => {
    const pack = fs.readFileSync(makePack('short', { ofs: true }));
    // Where the cut falls differs from run to run (commit times change the pack): whatever the
    // bytes there look like, the object they start or cut is refused by its offset.
    assert.match(await refusal(withChecksum(pack.subarray(0, Math.floor(pack.length / 2)))), /offset \d+|ends after \d+ of the \d+ objects/);
  });

  test('bytes after the last object are refused', async () => {
    const pack = fs.readFileSync(makePack('trail', { ofs: true }));
    assert.match(await refusal(withChecksum(Buffer.concat([pack.subarray(0, pack.length - 20), Buffer.from('garbage')]))), /7 bytes of garbage after the last object/);
  });

  test('an object whose zlib data is damaged is refused with its offset', async () => {
    const pack = Buffer.from(fs.readFileSync(makePack('zlib', { ofs: true })));
    const head = parseEntryHeader(pack.subarray(12, 44), 12)!;
    pack[12 + head.headerLength + 1]! ^= 0xff; // inside the first object's zlib header
    assert.match(await refusal(withChecksum(pack.subarray(0, pack.length - 20))), /the object at offset 12/);
  });

  test('an object whose header lies about its size is refused', async () => {
    const content = Buffer.from('hello world\n');
    const body = Buffer.concat([Buffer.from('PACK\0\0\0\x02\0\0\0\x01', 'latin1'), Buffer.from([0x30 | 5]), zlib.deflateSync(content)]);
    assert.match(await refusal(withChecksum(body)), /inflates to more than the 5 bytes its header says/);
  });

  test('a thin pack is refused as thin', async () => {
    const pack = git(['pack-objects', '--revs', '--stdout', '-q', '--thin'], { input: 'HEAD\n^HEAD~1\n' });
    assert.match(await refusal(pack), /thin pack: \d+ deltas refer to objects outside the pack/);
  });

  test('a pack that holds one object twice is refused', async () => {
    const entry = Buffer.concat([Buffer.from([0x30 | 3]), zlib.deflateSync(Buffer.from('abc'))]);
    const body = Buffer.concat([Buffer.from('PACK\0\0\0\x02\0\0\0\x02', 'latin1'), entry, entry]);
    assert.match(await refusal(withChecksum(body)), /holds the object [0-9a-f]{40} twice/);
  });

  test('a file that is not a pack is refused', async () => {
    assert.match(await refusal(Buffer.alloc(64, 0x41)), /does not start with a pack header/);
  });
});

describe('applyDelta', () => {
  test('copies and inserts as instructed, and refuses a copy past the base', () => {
    const base = Buffer.from('0123456789');
    // base size 10, result size 7: copy offset 2 size 3 ("234"), insert "abcd".
    const delta = Buffer.from([10, 7, 0x80 | 0x01 | 0x10, 2, 3, 4, ...Buffer.from('abcd')]);
    assert.equal(applyDelta(base, delta).toString(), '234abcd');
    assert.throws(() => applyDelta(base, Buffer.from([10, 3, 0x80 | 0x01 | 0x10, 9, 3])), /past the end of the base/);
    assert.throws(() => applyDelta(base, Buffer.from([11, 1, 1, 0x41])), /expects a base of 11 bytes/);
    assert.throws(() => applyDelta(base, Buffer.from([10, 1, 0])), /reserved delta instruction/);
  });
});
