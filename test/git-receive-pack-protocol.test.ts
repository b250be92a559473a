// receive-pack driven in-process with hand-made protocol bytes: broken clients, odd chunking,
// disconnects, and the checks a well-behaved git client never makes berth perform.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { isUserError, UserError } from '../src/errors.ts';
import { FLUSH, pkt, PktLineReader } from '../src/git/pkt-line.ts';
import { CAPABILITIES, serveReceivePack, type ReceivePackHooks, type ReceivePackOptions } from '../src/git/receive-pack.ts';
import { Repository, ZERO_OID } from '../src/git/repository.ts';
import { setLogSink } from '../src/log.ts';
import { GitFixture } from './helpers/stdio-receive-pack.ts';

setLogSink(() => undefined);

const CLIENT_CAPS = 'report-status side-band-64k quiet object-format=sha1 agent=git/test';

interface Decoded {
  advertised: string[];
  report: string[];
  progress: string;
  fatal: string;
  /** Packets after the advertisement when side-band was not used. */
  plain: string[];
  endsWithFlush: boolean;
}

function decode(bytes: Buffer): Decoded {
  const reader = new PktLineReader();
  reader.push(bytes);
  const d: Decoded = { advertised: [], report: [], progress: '', fatal: '', plain: [], endsWithFlush: false };
  for (let p = reader.next(); p && p.type === 'data'; p = reader.next()) d.advertised.push(p.data.toString('latin1'));
  const band1 = new PktLineReader();
  for (let p = reader.next(); p; p = reader.next()) {
    d.endsWithFlush = p.type === 'flush';
    if (p.type === 'flush') continue;
    const band = p.data[0];
    if (band === 1) band1.push(p.data.subarray(1));
    else if (band === 2) d.progress += p.data.toString('utf8', 1);
    else if (band === 3) d.fatal += p.data.toString('utf8', 1);
    else d.plain.push(p.data.toString('utf8'));
  }
  for (let p = band1.next(); p; p = band1.next()) if (p.type === 'data') d.report.push(p.data.toString('utf8').trimEnd());
  return d;
}

function commands(lines: string[], caps = CLIENT_CAPS): Buffer {
  return Buffer.concat([...lines.map((l, i) => pkt(i === 0 ? `${l}\0${caps}\n` : `${l}\n`)), FLUSH]);
}

interface Exchange {
  error: unknown;
  out: Decoded;
  raw: Buffer;
}

/** Runs one exchange: feeds `chunks` (each a separate write, a tick apart), then ends the input unless told not to. */
async function exchange(
  repo: Repository,
  chunks: Buffer[],
  opts: { end?: boolean; hooks?: ReceivePackHooks; options?: ReceivePackOptions; input?: PassThrough; output?: PassThrough; gapMs?: number } = {},
): Promise<Exchange> {
  const input = opts.input ?? new PassThrough();
  const output = opts.output ?? new PassThrough();
  const received: Buffer[] = [];
  output.on('data', (c: Buffer) => received.push(c));
  const done = serveReceivePack({ input, output }, repo, opts.hooks ?? {}, opts.options);
  for (const c of chunks) {
    if (input.destroyed) break;
    input.write(c);
    await new Promise((resolve) => (opts.gapMs ? setTimeout(resolve, opts.gapMs) : setImmediate(resolve)));
  }
  if (opts.end !== false && !input.destroyed) input.end();
  const error = await done.then(
    () => undefined,
    (e: unknown) => e,
  );
  const raw = Buffer.concat(received);
  return { error, out: decode(raw), raw };
}

/** A pack made by the real git: `git pack-objects --revs` with these revisions. */
function packObjects(cwd: string, revs: string[], extra: string[] = []): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn('git', ['pack-objects', '--stdout', '--revs', '-q', ...extra], { cwd, stdio: ['pipe', 'pipe', 'inherit'] });
    const out: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`pack-objects exited ${code}`))));
    child.stdin.end(revs.join('\n') + '\n');
  });
}

/** Splits bytes into `parts` chunks of about equal size. */
function split(bytes: Buffer, parts: number): Buffer[] {
  const size = Math.ceil(bytes.length / parts);
  return Array.from({ length: parts }, (_, i) => bytes.subarray(i * size, (i + 1) * size)).filter((b) => b.length > 0);
}

function errorCode(e: unknown): string | undefined {
  return isUserError(e) ? e.code : undefined;
}

describe('receive-pack protocol', () => {
  let f: GitFixture;
  let repo: Repository;
  let head: string;

  beforeEach(async () => {
    f = await GitFixture.create();
    repo = await Repository.open(f.repos, 'app', { create: true });
    head = await f.git('rev-parse', 'HEAD');
  });
  afterEach(async () => {
    await f.cleanup();
  });

  async function pushHead(): Promise<void> {
    const pack = await packObjects(f.work, [head]);
    const r = await exchange(repo, [commands([`${ZERO_OID} ${head} refs/heads/main`]), pack]);
    assert.equal(r.error, undefined);
    assert.deepEqual(r.out.report, ['unpack ok', 'ok refs/heads/main']);
  }

  async function leftovers(): Promise<string[]> {
    return (await readdir(path.join(repo.gitdir, 'objects', 'pack'))).filter((n) => n.startsWith('tmp'));
  }

  test('an empty repository advertises a zero id capabilities^{} line with berth capabilities', async () => {
    const r = await exchange(repo, []);
    assert.equal(r.error, undefined);
    assert.deepEqual(r.out.advertised, [`${ZERO_OID} capabilities^{}\0${CAPABILITIES}\n`]);
    assert.match(CAPABILITIES, /\bno-thin\b/);
    assert.match(CAPABILITIES, /\bside-band-64k\b/);
  });

  test('branches and tags are advertised in name order with the capabilities on the first line only', async () => {
    await pushHead();
    await repo.updateRef('refs/tags/v1', ZERO_OID, head);
    const r = await exchange(repo, [FLUSH]);
    assert.deepEqual(r.out.advertised, [`${head} refs/heads/main\0${CAPABILITIES}\n`, `${head} refs/tags/v1\n`]);
    assert.deepEqual(r.out.report, [], 'a flush alone means nothing to push: no report');
  });

  test('a push arriving one byte at a time is stored and reported like any other', async () => {
    const bytes = Buffer.concat([commands([`${ZERO_OID} ${head} refs/heads/main`]), await packObjects(f.work, [head])]);
    const chunks = Array.from(bytes, (b) => Buffer.from([b]));
    const r = await exchange(repo, chunks, { end: false });
    assert.equal(r.error, undefined);
    assert.deepEqual(r.out.report, ['unpack ok', 'ok refs/heads/main']);
    assert.ok(r.out.endsWithFlush);
    assert.equal(await repo.resolveRef('refs/heads/main'), head);
    await f.verifyStore();
  });

  test('the pack is found complete by its trailer while the client keeps the stream open', async () => {
    const pack = await packObjects(f.work, [head]);
    // No end of input: the exchange must finish on the checksum alone.
    const r = await exchange(repo, [commands([`${ZERO_OID} ${head} refs/heads/main`]), pack], { end: false });
    assert.equal(r.error, undefined);
    assert.deepEqual(r.out.report, ['unpack ok', 'ok refs/heads/main']);
  });

  test('without side-band the report is plain pkt-lines', async () => {
    const pack = await packObjects(f.work, [head]);
    const r = await exchange(repo, [commands([`${ZERO_OID} ${head} refs/heads/main`], 'report-status'), pack]);
    assert.equal(r.error, undefined);
    assert.deepEqual(r.out.plain, ['unpack ok\n', 'ok refs/heads/main\n']);
  });

  test('a stale old id is answered with ng stale info and the ref stays', async () => {
    await pushHead();
    const other = 'f'.repeat(40);
    const r = await exchange(repo, [commands([`${other} ${ZERO_OID} refs/heads/main`])]);
    assert.equal(r.error, undefined);
    assert.deepEqual(r.out.report, ['unpack ok', 'ng refs/heads/main stale info']);
    assert.equal(await repo.resolveRef('refs/heads/main'), head);
  });

  test('creating a ref that already exists is stale too', async () => {
    await pushHead();
    const r = await exchange(repo, [commands([`${ZERO_OID} ${head} refs/heads/main`]), await packObjects(f.work, [head])]);
    assert.deepEqual(r.out.report, ['unpack ok', 'ng refs/heads/main stale info']);
  });

  test('a delete-only push reads no pack and deletes the ref', async () => {
    await pushHead();
    await repo.updateRef('refs/heads/old', ZERO_OID, head);
    const r = await exchange(repo, [commands([`${head} ${ZERO_OID} refs/heads/old`])], { end: false });
    assert.equal(r.error, undefined);
    assert.deepEqual(r.out.report, ['unpack ok', 'ok refs/heads/old']);
    assert.equal(await repo.resolveRef('refs/heads/old'), undefined);
  });

  test('a branch pointing at a tree is refused while a tag may', async () => {
    const tree = await f.git('rev-parse', 'HEAD^{tree}');
    const r = await exchange(repo, [
      commands([`${ZERO_OID} ${tree} refs/heads/tree`, `${ZERO_OID} ${tree} refs/tags/tree`]),
      await packObjects(f.work, [head]),
    ]);
    assert.equal(r.error, undefined);
    assert.deepEqual(r.out.report, ['unpack ok', 'ng refs/heads/tree a branch must point to a commit, not a tree', 'ok refs/tags/tree']);
  });

  test('a new id that is in no pack is refused as missing necessary objects', async () => {
    const empty = await packObjects(f.work, []);
    const r = await exchange(repo, [commands([`${ZERO_OID} ${'a'.repeat(40)} refs/heads/main`]), empty]);
    assert.equal(r.error, undefined);
    assert.deepEqual(r.out.report, ['unpack ok', 'ng refs/heads/main missing necessary objects']);
    assert.equal(await repo.resolveRef('refs/heads/main'), undefined);
  });

  test('invalid and duplicate ref names are refused one by one', async () => {
    const pack = await packObjects(f.work, [head]);
    const r = await exchange(repo, [
      commands([
        `${ZERO_OID} ${head} refs/heads/a..b`,
        `${ZERO_OID} ${head} refs/heads/x.lock`,
        `${ZERO_OID} ${head} refs/heads/ok`,
        `${ZERO_OID} ${head} refs/heads/ok`,
        `${ZERO_OID} ${head} HEAD`,
      ]),
      pack,
    ]);
    assert.equal(r.error, undefined);
    assert.deepEqual(r.out.report, [
      'unpack ok',
      'ng refs/heads/a..b invalid ref name: contains ".."',
      'ng refs/heads/x.lock invalid ref name: a path component ends with ".lock"',
      'ok refs/heads/ok',
      'ng refs/heads/ok duplicate update of this ref',
      'ng HEAD only refs/heads/* and refs/tags/* can be pushed',
    ]);
    assert.deepEqual(await repo.listRefs(), [{ ref: 'refs/heads/ok', oid: head }]);
  });

  test('garbage instead of a pkt-line is answered with ERR, rejects, and changes nothing', async () => {
    const r = await exchange(repo, [Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')]);
    assert.equal(errorCode(r.error), 'git_protocol_error');
    assert.match((r.error as Error).message, /invalid pkt-line length "GET "/);
    assert.match(r.raw.toString('latin1'), /ERR invalid pkt-line length/);
    assert.deepEqual(await repo.listRefs(), []);
  });

  test('a command line that is not <old> <new> <ref> is a protocol error', async () => {
    const r = await exchange(repo, [commands([`${ZERO_OID} nothex refs/heads/main`])]);
    assert.equal(errorCode(r.error), 'git_protocol_error');
    assert.match(r.out.fatal, /invalid command line/, 'side-band was agreed on the first line, so the error goes to band 3');
  });

  test('a pkt-line that claims more bytes than arrive before the end is a disconnect', async () => {
    const r = await exchange(repo, [Buffer.from('00ff' + '0'.repeat(40))]);
    assert.equal(errorCode(r.error), 'git_client_disconnected');
    assert.deepEqual(await repo.listRefs(), []);
  });

  test('a pkt-line length of 1 to 3 is refused', async () => {
    const r = await exchange(repo, [Buffer.from('0003')], { end: false });
    assert.equal(errorCode(r.error), 'git_protocol_error');
  });

  test('a shallow push is refused with a hint', async () => {
    const r = await exchange(repo, [pkt(`shallow ${head}\n`), commands([`${ZERO_OID} ${head} refs/heads/main`])]);
    assert.equal(errorCode(r.error), 'git_shallow_push');
    assert.match(r.raw.toString(), /ERR pushing from a shallow clone is not supported/);
  });

  test('a pack with a wrong checksum is refused when the stream ends and leaves no temp file', async () => {
    const pack = await packObjects(f.work, [head]);
    pack[pack.length - 1]! ^= 0xff;
    const r = await exchange(repo, [commands([`${ZERO_OID} ${head} refs/heads/main`]), pack]);
    assert.equal(errorCode(r.error), 'git_pack_invalid');
    assert.match((r.error as Error).message, /checksum is wrong/);
    assert.match(r.out.fatal, /checksum is wrong/);
    assert.deepEqual(await repo.listRefs(), []);
    assert.deepEqual(await leftovers(), []);
  });

  test('a pack that ends early is refused and leaves no temp file', async () => {
    const pack = await packObjects(f.work, [head]);
    const r = await exchange(repo, [commands([`${ZERO_OID} ${head} refs/heads/main`]), pack.subarray(0, pack.length - 30)]);
    assert.equal(errorCode(r.error), 'git_pack_invalid');
    assert.deepEqual(await repo.listRefs(), []);
    assert.deepEqual(await leftovers(), []);
  });

  test('data that is not a pack is refused at once with a band-3 message', async () => {
    const r = await exchange(repo, [commands([`${ZERO_OID} ${head} refs/heads/main`]), Buffer.from('JUNKJUNKJUNK')], { end: false });
    assert.equal(errorCode(r.error), 'git_pack_invalid');
    assert.match(r.out.fatal, /not a pack/);
    assert.deepEqual(await leftovers(), []);
  });

  test('a pack over the maximum size is refused with a band-3 message', async () => {
    const pack = await packObjects(f.work, [head]);
    const r = await exchange(repo, [commands([`${ZERO_OID} ${head} refs/heads/main`]), pack], { end: false, options: { limits: { packBytes: 100 } } });
    assert.equal(errorCode(r.error), 'git_push_limit');
    assert.match(r.out.fatal, /push refused: the pack has reached \d+ bytes, over the cap of 100 bytes set by berth serve --max-pack-size/);
    assert.deepEqual(await leftovers(), []);
  });

  test('a push updating more refs than --max-push-refs is refused with the cap named, before any pack', async () => {
    const lines = ['a', 'b', 'c'].map((b) => `${ZERO_OID} ${head} refs/heads/${b}`);
    const r = await exchange(repo, [commands(lines), await packObjects(f.work, [head])], { end: false, options: { limits: { refs: 2 } } });
    assert.equal(errorCode(r.error), 'git_push_limit');
    assert.match(r.out.fatal, /push refused: the push updates more than 2 refs, over the cap of 2 set by berth serve --max-push-refs/);
    assert.deepEqual(await repo.listRefs(), []);
    assert.deepEqual(await readdir(path.join(repo.gitdir, 'objects', 'pack')), []);
  });

  test('a pack whose every command is refused is not kept; one with a command applied is', async () => {
    const pack = await packObjects(f.work, [head]);
    const refuseAll: ReceivePackHooks = { preReceive: async (updates) => new Map(updates.map((u) => [u.ref, 'not today'])) };
    const r = await exchange(repo, [commands([`${ZERO_OID} ${head} refs/heads/main`]), pack], { hooks: refuseAll });
    assert.deepEqual(r.out.report, ['unpack ok', 'ng refs/heads/main not today']);
    assert.deepEqual(await readdir(path.join(repo.gitdir, 'objects', 'pack')), []);
    await pushHead();
    assert.equal((await readdir(path.join(repo.gitdir, 'objects', 'pack'))).filter((n) => n.endsWith('.pack')).length, 1);
  });

  test('packs no ref needs are pruned after a deletion or a force push, and a fast-forward keeps every pack', async () => {
    const packs = async () => (await readdir(path.join(repo.gitdir, 'objects', 'pack'))).filter((n) => n.endsWith('.pack')).sort();
    await pushHead();
    const [first] = await packs();
    await f.write('feature.txt', 'a feature\n');
    const feature = await f.commitAll('feature');
    const r1 = await exchange(repo, [commands([`${ZERO_OID} ${feature} refs/heads/feature`]), await packObjects(f.work, [feature, `^${head}`])]);
    assert.deepEqual(r1.out.report, ['unpack ok', 'ok refs/heads/feature']);
    assert.equal((await packs()).length, 2);

    const r2 = await exchange(repo, [commands([`${feature} ${ZERO_OID} refs/heads/feature`])]);
    assert.deepEqual(r2.out.report, ['unpack ok', 'ok refs/heads/feature']);
    assert.deepEqual(await packs(), [first], 'the feature pack went with its branch');
    await f.verifyStore();

    const r3 = await exchange(repo, [commands([`${head} ${feature} refs/heads/main`]), await packObjects(f.work, [feature, `^${head}`])]);
    assert.deepEqual(r3.out.report, ['unpack ok', 'ok refs/heads/main']);
    assert.equal((await packs()).length, 2, 'a fast-forward keeps every pack');

    const empty = Buffer.from('5041434b0000000200000000', 'hex'); // what git sends when the server has every object
    const r4 = await exchange(repo, [commands([`${feature} ${head} refs/heads/main`]), Buffer.concat([empty, createHash('sha1').update(empty).digest()])]);
    assert.deepEqual(r4.out.report, ['unpack ok', 'ok refs/heads/main']);
    assert.deepEqual(await packs(), [first], 'a force push back drops the pack only the old tip needed');
    await f.verifyStore();
  });

  test('a pack that announces more objects than it holds is refused as it arrives and moves no ref', async () => {
    const pack = await packObjects(f.work, [head]);
    const body = Buffer.from(pack.subarray(0, pack.length - 20));
    body.writeUInt32BE(body.readUInt32BE(8) + 1, 8);
    const lying = Buffer.concat([body, createHash('sha1').update(body).digest()]);
    const r = await exchange(repo, [commands([`${ZERO_OID} ${head} refs/heads/main`]), lying], { end: false });
    assert.equal(errorCode(r.error), 'git_pack_invalid');
    assert.match(r.out.fatal, /the pack ends after \d+ of the \d+ objects it announces/);
    assert.deepEqual(await repo.listRefs(), []);
    assert.deepEqual(await leftovers(), []);
    assert.deepEqual((await readdir(path.join(repo.gitdir, 'objects', 'pack'))), []);
  });

  test('a thin pack is an unpack error even though its bases are in the repository', async () => {
    await pushHead();
    await f.write('README.md', `# demo\n${'a line that deltas well\n'.repeat(100)}`);
    await f.commitAll('base');
    const base = await f.git('rev-parse', 'HEAD');
    const r1 = await exchange(repo, [commands([`${head} ${base} refs/heads/main`]), await packObjects(f.work, [base, `^${head}`])]);
    assert.deepEqual(r1.out.report, ['unpack ok', 'ok refs/heads/main']);
    await f.write('README.md', `# demo\n${'a line that deltas well\n'.repeat(100)}one more\n`);
    const next = await f.commitAll('next');
    const thin = await packObjects(f.work, [next, `^${base}`], ['--thin']);
    const r = await exchange(repo, [commands([`${base} ${next} refs/heads/main`]), thin], { end: false });
    assert.equal(errorCode(r.error), 'git_pack_invalid');
    assert.match(r.out.report[0]!, /^unpack thin pack: \d+ deltas refer to objects outside the pack/);
    assert.equal(await repo.resolveRef('refs/heads/main'), base);
    await f.verifyStore();
  });

  describe('a pack indexed by the child process while it arrives', () => {
    const streamed: ReceivePackOptions = {};
    // Chunks a moment apart, so each arrives on its own and the pack is handed to the child part way.
    const gapMs = 30;

    test('completes on its trailer while the client keeps the stream open, and git verifies it', async () => {
      const pack = await packObjects(f.work, [head]);
      const chunks = [commands([`${ZERO_OID} ${head} refs/heads/main`]), ...split(pack, 7)];
      const r = await exchange(repo, chunks, { end: false, options: streamed, gapMs });
      assert.equal(r.error, undefined);
      assert.deepEqual(r.out.report, ['unpack ok', 'ok refs/heads/main']);
      assert.equal(await repo.resolveRef('refs/heads/main'), head);
      await f.verifyStore();
      assert.deepEqual(await leftovers(), []);
    });

    test('a pack announcing more objects than it holds is refused at once, not waited for', async () => {
      const pack = await packObjects(f.work, [head]);
      const body = Buffer.from(pack.subarray(0, pack.length - 20));
      body.writeUInt32BE(body.readUInt32BE(8) + 1, 8);
      const lying = Buffer.concat([body, createHash('sha1').update(body).digest()]);
      const r = await exchange(repo, [commands([`${ZERO_OID} ${head} refs/heads/main`]), ...split(lying, 3)], { end: false, options: streamed, gapMs });
      assert.equal(errorCode(r.error), 'git_pack_invalid');
      assert.match(r.out.fatal, /the pack ends after \d+ of the \d+ objects it announces/);
      assert.deepEqual(await repo.listRefs(), []);
      assert.deepEqual(await leftovers(), []);
    });

    test('a damaged object is refused while the pack is still arriving', async () => {
      const pack = Buffer.from(await packObjects(f.work, [head]));
      pack[14]! ^= 0xff; // inside the first object's zlib stream
      const r = await exchange(repo, [commands([`${ZERO_OID} ${head} refs/heads/main`]), pack.subarray(0, 100)], { end: false, options: streamed, gapMs });
      assert.equal(errorCode(r.error), 'git_pack_invalid');
      assert.match(r.out.fatal, /the object at offset 12/);
      assert.deepEqual(await leftovers(), []);
    });

    test('a wrong checksum and a pack cut short are refused when the client closes', async () => {
      const pack = await packObjects(f.work, [head]);
      const wrong = Buffer.from(pack);
      wrong[wrong.length - 1]! ^= 1;
      for (const bytes of [wrong, pack.subarray(0, pack.length - 30)]) {
        const r = await exchange(repo, [commands([`${ZERO_OID} ${head} refs/heads/main`]), ...split(bytes, 2)], { options: streamed, gapMs });
        assert.equal(errorCode(r.error), 'git_pack_invalid');
        assert.deepEqual(await repo.listRefs(), []);
        assert.deepEqual(await leftovers(), []);
      }
    });

    test('bytes after the trailer are refused', async () => {
      const pack = await packObjects(f.work, [head]);
      const r = await exchange(repo, [commands([`${ZERO_OID} ${head} refs/heads/main`]), Buffer.concat([pack, Buffer.from('extra')])], { end: false, options: streamed, gapMs });
      assert.equal(errorCode(r.error), 'git_pack_invalid');
      assert.deepEqual(await repo.listRefs(), []);
      assert.deepEqual(await leftovers(), []);
    });
  });

  test('a preReceive that throws rejects every ref with its message', async () => {
    const pack = await packObjects(f.work, [head]);
    const r = await exchange(repo, [commands([`${ZERO_OID} ${head} refs/heads/main`, `${ZERO_OID} ${head} refs/tags/v1`]), pack], {
      hooks: {
        preReceive: async () => {
          throw new UserError('build_failed', 'build failed\nwith details');
        },
      },
    });
    assert.equal(r.error, undefined);
    assert.deepEqual(r.out.report, ['unpack ok', 'ng refs/heads/main build failed with details', 'ng refs/tags/v1 build failed with details']);
    assert.deepEqual(await repo.listRefs(), []);
  });

  test('hooks see the validated updates, progress goes out as band 2, and postReceive gets what was applied', async () => {
    const pack = await packObjects(f.work, [head]);
    const seen: string[] = [];
    const r = await exchange(repo, [commands([`${ZERO_OID} ${head} refs/heads/main`, `${ZERO_OID} ${head} refs/tags/v1`, `${ZERO_OID} ${head} refs/x`]), pack], {
      hooks: {
        preReceive: async (updates, progress) => {
          seen.push(`pre ${updates.map((u) => u.ref).join(',')}`);
          progress('-----> building');
          progress('partial\r');
          return new Map([['refs/tags/v1', 'tags are frozen']]);
        },
        postReceive: async (applied, progress) => {
          seen.push(`post ${applied.map((u) => `${u.ref}:${u.oldOid.slice(0, 4)}:${u.newOid}`).join(',')}`);
          progress('-----> deployed\n');
        },
      },
    });
    assert.equal(r.error, undefined);
    assert.deepEqual(seen, ['pre refs/heads/main,refs/tags/v1', `post refs/heads/main:0000:${head}`]);
    assert.equal(r.out.progress, '-----> building\npartial\r-----> deployed\n');
    assert.deepEqual(r.out.report, ['unpack ok', 'ok refs/heads/main', 'ng refs/tags/v1 tags are frozen', 'ng refs/x only refs/heads/* and refs/tags/* can be pushed']);
  });

  test('a client that disconnects in the middle of the pack causes no unhandled error and leaves no temp file', async () => {
    const pack = await packObjects(f.work, [head]);
    const input = new PassThrough();
    const output = new PassThrough();
    const pending = exchange(repo, [commands([`${ZERO_OID} ${head} refs/heads/main`]), pack.subarray(0, 40)], { end: false, input, output });
    await new Promise((resolve) => setTimeout(resolve, 20));
    input.destroy();
    output.destroy();
    const r = await pending;
    assert.equal(errorCode(r.error), 'git_pack_invalid');
    assert.deepEqual(await repo.listRefs(), []);
    assert.deepEqual(await leftovers(), []);
  });

  test('a client that goes away during preReceive still gets its push applied, and late writes are dropped', async () => {
    const pack = await packObjects(f.work, [head]);
    const input = new PassThrough();
    const output = new PassThrough();
    const r = await exchange(repo, [commands([`${ZERO_OID} ${head} refs/heads/main`]), pack], {
      end: false,
      input,
      output,
      hooks: {
        preReceive: async (_updates, progress) => {
          input.destroy();
          output.destroy();
          progress('nobody is listening');
          await new Promise((resolve) => setTimeout(resolve, 10));
          progress('still nobody');
        },
      },
    });
    assert.equal(r.error, undefined);
    assert.equal(await repo.resolveRef('refs/heads/main'), head);
  });

  test('a client that sends nothing within the idle timeout is given up on', async () => {
    const r = await exchange(repo, [commands([`${ZERO_OID} ${head} refs/heads/main`])], { end: false, options: { idleTimeoutMs: 50 } });
    assert.equal(errorCode(r.error), 'git_client_idle');
    assert.match(r.out.fatal, /sent nothing for/);
    assert.deepEqual(await leftovers(), []);
  });

  test('a client that stops in the middle of its pack is given up on after the idle timeout, leaving no ref and no temp file', async () => {
    const pack = await packObjects(f.work, [head]);
    const r = await exchange(repo, [commands([`${ZERO_OID} ${head} refs/heads/main`]), pack.subarray(0, pack.length - 30)], { end: false, options: { idleTimeoutMs: 100 } });
    assert.equal(errorCode(r.error), 'git_client_idle');
    assert.match(r.out.fatal, /push refused: the client sent nothing for 0.1 s \(berth serve --push-timeout\); nothing was changed/);
    assert.deepEqual(await repo.listRefs(), []);
    assert.deepEqual(await leftovers(), []);
  });

  test('a client that stops reading is given up on after the idle timeout: the hook runs to its end, the push is applied, later output is dropped', async () => {
    const pack = await packObjects(f.work, [head]);
    const input = new PassThrough();
    // Takes one write and never finishes it: a client that reads nothing more.
    const output = new Writable({ highWaterMark: 1024, write: () => undefined });
    let waits = 0;
    let hookDone = false;
    const done = serveReceivePack({ input, output }, repo, {
      preReceive: async (_updates, progress) => {
        for (let i = 0; i < 50; i++) {
          const full = progress('x'.repeat(500));
          if (full) {
            waits++;
            await full;
          }
        }
        hookDone = true;
      },
    }, { idleTimeoutMs: 100 });
    input.write(commands([`${ZERO_OID} ${head} refs/heads/main`]));
    // Ended, so that only the output can wait on the client.
    input.end(pack);
    await done;
    assert.ok(hookDone);
    assert.equal(waits, 1, 'the hook waited for the client once, then its output was dropped');
    assert.equal(await repo.resolveRef('refs/heads/main'), head);
  });
});
