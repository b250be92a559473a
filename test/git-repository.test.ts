// The bare repository: creation, refs read and moved by compare-and-swap, and name checks.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { isUserError } from '../src/errors.ts';
import { checkRefName, Repository, ZERO_OID } from '../src/git/repository.ts';

const A = 'a'.repeat(40);
const B = 'b'.repeat(40);

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    assert.ok(isUserError(e), `expected a UserError, got ${String(e)}`);
    return e.code;
  }
  assert.fail('expected a failure');
}

describe('repository', () => {
  let root: string;
  let repo: Repository;
  beforeEach(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'berth-repo-'));
    repo = await Repository.open(root, 'demo', { create: true });
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  test('open creates a bare repository named after the app with HEAD on main', async () => {
    assert.equal(repo.gitdir, path.join(root, 'demo.git'));
    assert.equal(repo.app, 'demo');
    assert.equal(await repo.resolveRef('HEAD'), undefined);
    assert.deepEqual(await repo.listRefs(), []);
    const again = await Repository.open(root, 'demo', { create: false });
    assert.equal(again.gitdir, repo.gitdir);
  });

  test('open refuses a bad app name and a missing repository without create', async () => {
    assert.equal(await codeOf(Repository.open(root, '../etc', { create: true })), 'invalid_app_name');
    assert.equal(await codeOf(Repository.open(root, 'Demo', { create: true })), 'invalid_app_name');
    assert.equal(await codeOf(Repository.open(root, 'other', { create: false })), 'git_repository_not_found');
    assert.deepEqual(await readdir(root), ['demo.git']);
  });

  test('updateRef creates, moves and deletes refs only from the expected old id', async () => {
    await repo.updateRef('refs/heads/main', ZERO_OID, A);
    assert.equal(await repo.resolveRef('refs/heads/main'), A);
    assert.equal(await repo.resolveRef('HEAD'), A);
    assert.equal(await codeOf(repo.updateRef('refs/heads/main', ZERO_OID, B)), 'git_ref_stale');
    assert.equal(await codeOf(repo.updateRef('refs/heads/main', B, A)), 'git_ref_stale');
    await repo.updateRef('refs/heads/main', A, B);
    assert.equal(await repo.resolveRef('refs/heads/main'), B);
    assert.equal(await codeOf(repo.updateRef('refs/heads/main', A, ZERO_OID)), 'git_ref_stale');
    await repo.updateRef('refs/heads/main', B, ZERO_OID);
    assert.equal(await repo.resolveRef('refs/heads/main'), undefined);
    assert.deepEqual((await readdir(path.join(repo.gitdir, 'refs', 'heads'))), [], 'no lock file is left behind');
  });

  test('concurrent updates from the same old id let exactly one win', async () => {
    await repo.updateRef('refs/heads/main', ZERO_OID, A);
    const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => repo.updateRef('refs/heads/main', A, String(i).repeat(40))));
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
    for (const r of results) if (r.status === 'rejected') assert.ok(isUserError(r.reason) && ['git_ref_stale', 'git_ref_locked'].includes(r.reason.code));
  });

  test('a ref and a ref below it cannot both exist, and a deleted one frees the name', async () => {
    await repo.updateRef('refs/heads/feature/x', ZERO_OID, A);
    assert.equal(await codeOf(repo.updateRef('refs/heads/feature', ZERO_OID, A)), 'git_ref_conflict');
    assert.equal(await codeOf(repo.updateRef('refs/heads/feature/x/y', ZERO_OID, A)), 'git_ref_conflict');
    await repo.updateRef('refs/heads/feature/x', A, ZERO_OID);
    await repo.updateRef('refs/heads/feature', ZERO_OID, B);
    assert.deepEqual(await repo.listRefs(), [{ ref: 'refs/heads/feature', oid: B }]);
  });

  test('packed refs are listed, resolved, moved and deleted', async () => {
    await writeFile(path.join(repo.gitdir, 'packed-refs'), `# pack-refs with: peeled fully-peeled sorted \n${A} refs/heads/packed\n${B} refs/tags/v1\n^${A}\n`);
    assert.deepEqual(await repo.listRefs(), [
      { ref: 'refs/heads/packed', oid: A },
      { ref: 'refs/tags/v1', oid: B },
    ]);
    await repo.updateRef('refs/heads/packed', A, B);
    assert.equal(await repo.resolveRef('refs/heads/packed'), B, 'the loose ref wins over the packed one');
    await repo.updateRef('refs/tags/v1', B, ZERO_OID);
    assert.equal(await repo.resolveRef('refs/tags/v1'), undefined);
    assert.deepEqual(await repo.listRefs(), [{ ref: 'refs/heads/packed', oid: B }]);
  });

  test('a lock left by a crash a while ago is broken, a fresh one is respected', async () => {
    await repo.updateRef('refs/heads/main', ZERO_OID, A);
    const lock = path.join(repo.gitdir, 'refs', 'heads', 'main.lock');
    await writeFile(lock, '');
    assert.equal(await codeOf(repo.updateRef('refs/heads/main', A, B)), 'git_ref_locked');
    assert.equal(await repo.resolveRef('refs/heads/main'), A);
    const old = new Date(Date.now() - 5 * 60_000);
    await utimes(lock, old, old);
    await repo.updateRef('refs/heads/main', A, B);
    assert.equal(await repo.resolveRef('refs/heads/main'), B);
    await assert.rejects(stat(lock));
    assert.deepEqual(await repo.listRefs(), [{ ref: 'refs/heads/main', oid: B }], 'lock files are never listed as refs');
  });

  test('updateRef refuses bad names and object ids before touching disk', async () => {
    assert.equal(await codeOf(repo.updateRef('refs/heads/../../config', ZERO_OID, A)), 'git_ref_invalid');
    assert.equal(await codeOf(repo.updateRef('refs/heads/main', ZERO_OID, 'A'.repeat(40))), 'git_ref_invalid');
    assert.deepEqual(await readdir(path.join(repo.gitdir, 'refs', 'heads')), []);
  });

  test('checkRefName follows git check-ref-format and allows only branches and tags', () => {
    for (const ok of ['refs/heads/main', 'refs/heads/feature/x-1', 'refs/tags/v1.2.3', 'refs/heads/ünïcode', 'refs/heads/a.b']) {
      assert.equal(checkRefName(ok), undefined, ok);
    }
    for (const bad of [
      'HEAD',
      'main',
      'refs/heads/',
      'refs/notes/x',
      'refs/heads/a..b',
      'refs/heads/a b',
      'refs/heads/a\tb',
      'refs/heads/a~1',
      'refs/heads/a^',
      'refs/heads/a:b',
      'refs/heads/a?',
      'refs/heads/a*',
      'refs/heads/a[',
      'refs/heads/a\\b',
      'refs/heads/a/',
      'refs/heads/a.',
      'refs/heads/x.lock',
      'refs/heads/x.lock/y',
      'refs/heads/.hidden',
      'refs/heads/a//b',
      'refs/heads/a@{1}',
      'refs/heads/@',
      'refs/heads/HEAD',
      'refs/heads/a\x7f',
      `refs/heads/${'x'.repeat(1100)}`,
    ]) {
      assert.notEqual(checkRefName(bad), undefined, JSON.stringify(bad));
    }
  });
});
