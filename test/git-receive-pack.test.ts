// The real git client pushing to berth's receive-pack (over stdio instead of SSH).
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { GitFixture } from './helpers/stdio-receive-pack.ts';

describe('git push to berth', () => {
  let f: GitFixture;
  beforeEach(async () => {
    f = await GitFixture.create();
  });
  afterEach(async () => {
    await f.cleanup();
  });

  async function pushOk(args: string[], env: Record<string, string> = {}): Promise<string> {
    const r = await f.push(args, env);
    assert.equal(r.code, 0, `git push ${args.join(' ')} failed:\n${r.stderr}`);
    return r.stderr;
  }

  async function tempEntries(): Promise<string[]> {
    return (await readdir(path.join(f.gitdir, 'objects', 'pack'))).filter((n) => n.startsWith('tmp'));
  }

  test('a first push into an empty repository creates the repository and the branch', async () => {
    const head = await f.git('rev-parse', 'HEAD');
    const stderr = await pushOk(['main']);
    assert.match(stderr, /\* \[new branch\]\s+main -> main/);
    assert.equal(await f.bare('rev-parse', 'refs/heads/main'), head);
    assert.equal(await f.bare('symbolic-ref', 'HEAD'), 'refs/heads/main');
    await f.verifyStore();
    assert.deepEqual(await tempEntries(), []);
  });

  test('second and third pushes of a changed repository store self-contained packs that git verifies', async () => {
    await pushOk(['main']);
    for (const round of [2, 3]) {
      await f.write('README.md', `# demo\n${'line\n'.repeat(200 * round)}`);
      await f.write(`app/round-${round}.txt`, `round ${round}\n`);
      const head = await f.commitAll(`round ${round}`);
      const stderr = await pushOk(['main']);
      assert.match(stderr, /main -> main/);
      assert.equal(await f.bare('rev-parse', 'refs/heads/main'), head);
      // With a thin pack, fsck would report unresolved deltas here.
      await f.verifyStore();
    }
    const packs = (await readdir(path.join(f.gitdir, 'objects', 'pack'))).filter((n) => n.endsWith('.pack'));
    assert.equal(packs.length, 3);
  });

  test('a force push moves the branch to a rewritten history', async () => {
    await pushOk(['main']);
    await f.git('commit', '-q', '--amend', '-m', 'rewritten');
    const rewritten = await f.git('rev-parse', 'HEAD');
    const refused = await f.push(['main']);
    assert.notEqual(refused.code, 0, 'git refuses a non-fast-forward push without --force');
    const stderr = await pushOk(['--force', 'main']);
    assert.match(stderr, /\+ [0-9a-f]+\.\.\.[0-9a-f]+ main -> main \(forced update\)/);
    assert.equal(await f.bare('rev-parse', 'refs/heads/main'), rewritten);
    await f.verifyStore();
  });

  test('deleting a branch removes its ref and leaves the others', async () => {
    await pushOk(['main', 'main:refs/heads/feature/x']);
    assert.match(await f.bare('for-each-ref', '--format=%(refname)'), /refs\/heads\/feature\/x/);
    const stderr = await pushOk([':feature/x']);
    assert.match(stderr, /- \[deleted\]\s+feature\/x/);
    assert.equal(await f.bare('for-each-ref', '--format=%(refname)'), 'refs/heads/main');
    // The emptied refs/heads/feature directory must not block a branch called "feature".
    await pushOk(['main:refs/heads/feature']);
    assert.match(await f.bare('for-each-ref', '--format=%(refname)'), /refs\/heads\/feature$/m);
    await f.verifyStore();
  });

  test('lightweight and annotated tags are pushed', async () => {
    await pushOk(['main']);
    await f.git('tag', 'v1');
    await f.git('tag', '-a', 'v2', '-m', 'release 2');
    const stderr = await pushOk(['--tags']);
    assert.match(stderr, /\* \[new tag\]\s+v1 -> v1/);
    assert.match(stderr, /\* \[new tag\]\s+v2 -> v2/);
    assert.equal(await f.bare('cat-file', '-t', 'refs/tags/v2'), 'tag');
    assert.equal(await f.bare('rev-parse', 'refs/tags/v2^{commit}'), await f.git('rev-parse', 'HEAD'));
    await f.verifyStore();
  });

  test('several refs in one push are all updated and postReceive sees each of them', async () => {
    const postLog = path.join(f.root, 'post.log');
    const head = await f.git('rev-parse', 'HEAD');
    await f.git('branch', 'staging');
    await f.git('tag', 'v1');
    await pushOk(['main', 'staging', 'v1'], { BERTH_TEST_POST_LOG: postLog });
    const refs = await f.bare('for-each-ref', '--format=%(objectname) %(refname)');
    assert.equal(refs, [`${head} refs/heads/main`, `${head} refs/heads/staging`, `${head} refs/tags/v1`].join('\n'));
    const applied = (await readFile(postLog, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { ref: string });
    assert.deepEqual(applied.map((u) => u.ref).sort(), ['refs/heads/main', 'refs/heads/staging', 'refs/tags/v1']);
  });

  test('a preReceive rejection shows the reason as remote rejected and leaves the ref unchanged', async () => {
    await pushOk(['main']);
    const before = await f.bare('rev-parse', 'refs/heads/main');
    await f.write('README.md', 'changed\n');
    await f.commitAll('second');
    const r = await f.push(['main'], { BERTH_TEST_REJECT: 'build failed: no Procfile' });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /! \[remote rejected\] main -> main \(build failed: no Procfile\)/);
    assert.equal(await f.bare('rev-parse', 'refs/heads/main'), before);
    await f.verifyStore();
  });

  test('progress lines written during preReceive appear as remote: lines in order', async () => {
    const stderr = await pushOk(['main'], { BERTH_TEST_PROGRESS: '-----> Building demo|       step one|-----> Done' });
    const lines = stderr.split('\n').filter((l) => l.startsWith('remote:')).map((l) => l.trimEnd());
    assert.deepEqual(lines, ['remote: -----> Building demo', 'remote:        step one', 'remote: -----> Done']);
  });

  test('a ref that moved after the advertisement is refused as stale info', async () => {
    const first = await f.git('rev-parse', 'HEAD');
    await pushOk(['main:refs/heads/other']);
    await f.write('README.md', 'two\n');
    await f.commitAll('second');
    // While the push is in preReceive, another "push" creates main: the old id git sent is stale.
    const r = await f.push(['main'], { BERTH_TEST_RACE_TO: first });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /! \[remote rejected\] main -> main \(stale info\)/);
    assert.equal(await f.bare('rev-parse', 'refs/heads/main'), first);
  });

  test('refs outside branches and tags are refused one by one', async () => {
    const r = await f.push(['main', 'main:refs/notes/commits']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /\* \[new branch\]\s+main -> main/);
    assert.match(r.stderr, /! \[remote rejected\] main -> refs\/notes\/commits \(only refs\/heads\/\* and refs\/tags\/\* can be pushed\)/);
    assert.equal(await f.bare('for-each-ref', '--format=%(refname)'), 'refs/heads/main');
  });

  test('a pack over the maximum size is refused, with no ref moved and no temp file left', async () => {
    await f.write('big.bin', 'x'.repeat(1000) + Array.from({ length: 20000 }, (_, i) => i.toString(36)).join(','));
    await f.commitAll('big');
    const r = await f.push(['main'], { BERTH_TEST_MAX_PACK: '2000' });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /push refused: the pack has reached [\d.]+ KiB, over the cap of 2 KiB set by berth serve --max-pack-size/);
    assert.equal((await f.bare('for-each-ref')).trim(), '');
    assert.deepEqual(await tempEntries(), []);
  });

  test('a push with nothing new reports everything up to date', async () => {
    await pushOk(['main']);
    const stderr = await pushOk(['main']);
    assert.match(stderr, /Everything up-to-date/);
  });
});
