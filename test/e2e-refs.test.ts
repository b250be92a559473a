// receive-pack over the real OpenSSH client to the real binary, with branches that do not deploy:
// several refs and tags in one push, later pushes of a changed repository, a force push, branch
// and tag deletion, and a push large enough to be indexed by the child process as it arrives.
import assert from 'node:assert/strict';
import { createCipheriv } from 'node:crypto';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { gitRepo, makeKey, mustRun, run, startDaemon, tempDir, waitFor, writeFiles, type Daemon } from './helpers/daemon.ts';

let daemon: Daemon;
let key: { privateKey: string; publicKey: string };
const work = tempDir('e2e-refs');
const repo = path.join(work, 'repo');
let gitdir: string;

before(async () => {
  daemon = await startDaemon();
  key = makeKey(work, 'refs');
  assert.equal(daemon.cli(['ssh-keys:add', 'refs', key.publicKey]).code, 0);
  gitdir = path.join(daemon.dataDir, 'repos', 'refs-app.git');
});

after(async () => {
  daemon.cli(['apps:destroy', 'refs-app', '--force']);
  await daemon.stop();
});

function push(args: string[]) {
  return run('git', ['push', daemon.remote('refs-app'), ...args], { cwd: repo, env: daemon.gitEnv(key.privateKey) });
}

function refs(): string {
  return mustRun('git', ['--git-dir', gitdir, 'for-each-ref', '--format=%(refname) %(objecttype)']).trim();
}

function verify(): void {
  mustRun('git', ['--git-dir', gitdir, 'fsck', '--strict', '--no-dangling']);
  for (const idx of mustRun('find', [path.join(gitdir, 'objects', 'pack'), '-name', '*.idx']).trim().split('\n').filter(Boolean)) {
    mustRun('git', ['--git-dir', gitdir, 'verify-pack', idx]);
  }
}

test('the first push of several branches and tags into an empty repository stores them all', () => {
  gitRepo(repo, { 'README.md': 'refs\n' });
  mustRun('git', ['branch', 'staging'], { cwd: repo });
  mustRun('git', ['tag', 'v1'], { cwd: repo });
  mustRun('git', ['tag', '-a', 'v2', '-m', 'release 2'], { cwd: repo });
  const r = push(['main:refs/heads/feature', 'staging', 'v1', 'v2']);
  assert.equal(r.code, 0, r.stderr);
  for (const line of [/\* \[new branch\]\s+main -> feature/, /\* \[new branch\]\s+staging -> staging/, /\* \[new tag\]\s+v1 -> v1/, /\* \[new tag\]\s+v2 -> v2/]) assert.match(r.stderr, line);
  assert.match(r.stderr, /remote: -----> refs\/heads\/feature stored; only main or master is deployed/);
  assert.equal(refs(), ['refs/heads/feature commit', 'refs/heads/staging commit', 'refs/tags/v1 commit', 'refs/tags/v2 tag'].join('\n'));
  verify();
});

test('second and third pushes of a changed repository are stored whole and verify', () => {
  for (const round of [2, 3]) {
    writeFiles(repo, { 'README.md': `refs\n${'a line that deltas well\n'.repeat(50 * round)}`, [`round-${round}.txt`]: `${round}\n` });
    const head = gitRepo(repo, {}, `round ${round}`);
    const r = push(['main:refs/heads/feature']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(mustRun('git', ['--git-dir', gitdir, 'rev-parse', 'refs/heads/feature']).trim(), head);
    verify();
  }
});

test('a force push rewrites a branch, and a push that is not a fast-forward without --force is refused by git', () => {
  mustRun('git', ['commit', '-q', '--amend', '-m', 'rewritten'], { cwd: repo });
  const rewritten = mustRun('git', ['rev-parse', 'HEAD'], { cwd: repo }).trim();
  const refused = push(['main:refs/heads/feature']);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /! \[rejected\]\s+main -> feature \(non-fast-forward\)/);
  const forced = push(['--force', 'main:refs/heads/feature']);
  assert.equal(forced.code, 0, forced.stderr);
  assert.match(forced.stderr, /\+ [0-9a-f]+\.\.\.[0-9a-f]+ main -> feature \(forced update\)/);
  assert.equal(mustRun('git', ['--git-dir', gitdir, 'rev-parse', 'refs/heads/feature']).trim(), rewritten);
  verify();
});

test('a branch and a tag are deleted in one push, and the other refs stay', () => {
  const r = push([':staging', ':refs/tags/v1']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /- \[deleted\]\s+staging/);
  assert.match(r.stderr, /- \[deleted\]\s+v1/);
  assert.equal(refs(), ['refs/heads/feature commit', 'refs/tags/v2 tag'].join('\n'));
  verify();
});

test('a push of a few megabytes streams into the index-pack child and is stored whole', async () => {
  const key16 = Buffer.alloc(16, 3);
  const files: Record<string, string> = {};
  for (let i = 0; i < 40; i++) {
    const iv = Buffer.alloc(16);
    iv.writeUInt32BE(i, 0);
    files[`blobs/b${i}.bin`] = createCipheriv('aes-128-ctr', key16, iv).update(Buffer.alloc(100_000)).toString('latin1');
  }
  writeFiles(repo, files);
  const head = gitRepo(repo, {}, 'four megabytes');
  const r = push(['main:refs/heads/large']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(mustRun('git', ['--git-dir', gitdir, 'rev-parse', 'refs/heads/large']).trim(), head);
  verify();
  await waitFor('the push to be logged', () => /"event":"git_push_received","app":"refs-app","updated":\["refs\/heads\/large"\][^\n]*"indexedIn":"child"/.test(daemon.logs()), 5_000);
});
