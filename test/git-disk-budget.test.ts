// The disk budget of a push: the smaller of what the app's quota and the free space kept leave,
// a push refused up front when nothing is left, and a pack refused by the receiver as it
// reaches the budget, leaving nothing behind. The sizes are measured on real files.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { isUserError } from '../src/errors.ts';
import { diskBudget, directoryBytes, freeBytes } from '../src/git/disk-budget.ts';
import { PackReceiver } from '../src/git/pack-receiver.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-disk-budget-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

const MiB = 1024 ** 2;
const rules = { appQuotaBytes: 100 * MiB, minFreeBytes: 10 * MiB };

test('the budget is what the quota leaves, or what the free space kept leaves, whichever is smaller', () => {
  assert.equal(diskBudget('web', rules, { repositoryBytes: 30 * MiB, cacheBytes: 20 * MiB, freeBytes: 500 * MiB }).bytes, 50 * MiB);
  assert.equal(diskBudget('web', rules, { repositoryBytes: 30 * MiB, cacheBytes: 20 * MiB, freeBytes: 40 * MiB }).bytes, 30 * MiB);
});

test('a push is refused up front on a disk below the free space kept, or an app at its quota, with the flag named', () => {
  assert.throws(
    () => diskBudget('web', rules, { repositoryBytes: 0, cacheBytes: 0, freeBytes: 8 * MiB }),
    (e: unknown) => isUserError(e) && e.code === 'disk_full' && /the server's disk has 8 MiB free, under the 10 MiB berth keeps free \(berth serve --min-free-disk\)/.test(e.message),
  );
  assert.throws(
    () => diskBudget('web', rules, { repositoryBytes: 60 * MiB, cacheBytes: 40 * MiB, freeBytes: 500 * MiB }),
    (e: unknown) => isUserError(e) && e.code === 'disk_quota' && /web uses 100 MiB \(repository 60 MiB, build cache 40 MiB\), at or over its quota of 100 MiB set by berth serve --app-disk-quota/.test(e.message),
  );
});

test('the pack receiver refuses a pack as it reaches the budget and leaves no file behind', async () => {
  const gitdir = path.join(root, 'app.git');
  fs.mkdirSync(path.join(gitdir, 'objects', 'pack'), { recursive: true });
  const budget = diskBudget('web', { appQuotaBytes: 4 * MiB + 1000, minFreeBytes: 0 }, { repositoryBytes: 4 * MiB, cacheBytes: 0, freeBytes: 500 * MiB });
  const receiver = new PackReceiver(gitdir, { budget });
  const header = Buffer.alloc(12);
  header.write('PACK', 0, 'latin1');
  header.writeUInt32BE(2, 4);
  header.writeUInt32BE(1, 8);
  await receiver.write(header);
  await assert.rejects(receiver.write(Buffer.alloc(2000)), (e: unknown) => isUserError(e) && e.code === 'git_push_limit' && /goes over its quota of 4 MiB set by berth serve --app-disk-quota/.test(e.message));
  await receiver.abort();
  assert.deepEqual(fs.readdirSync(path.join(gitdir, 'objects', 'pack')), []);
});

test('directory sizes add up everything below (links not followed), and the free space of a real file system is read', async () => {
  const dir = path.join(root, 'tree');
  fs.mkdirSync(path.join(dir, 'a', 'b'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'one'), Buffer.alloc(1000));
  fs.writeFileSync(path.join(dir, 'a', 'b', 'two'), Buffer.alloc(234));
  fs.symlinkSync('/etc/passwd', path.join(dir, 'a', 'link'));
  // The files, the link and the three directories themselves.
  const dirs = [dir, path.join(dir, 'a'), path.join(dir, 'a', 'b')].reduce((n, d) => n + fs.lstatSync(d).size, 0);
  assert.equal(await directoryBytes(dir), 1234 + fs.lstatSync(path.join(dir, 'a', 'link')).size + dirs);
  assert.equal(await directoryBytes(path.join(root, 'missing')), 0);
  assert.ok((await freeBytes(root)) > 0);
});
