import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UserError } from '../src/errors.ts';
import { parseExecCommand } from '../src/git/exec-command.ts';

test("git's receive-pack exec names the app as 'APP', '/APP' or 'APP.git'", () => {
  for (const line of [`git-receive-pack 'shop'`, `git-receive-pack '/shop'`, `git-receive-pack 'shop.git'`, `git-receive-pack '/shop.git'`, `git receive-pack 'shop'`]) {
    assert.deepEqual(parseExecCommand(line), { kind: 'receive-pack', app: 'shop' }, line);
  }
  assert.deepEqual(parseExecCommand(`git-upload-pack '/shop.git'`), { kind: 'upload-pack', app: 'shop' });
});

test('a receive-pack exec for a bad app name is refused before anything touches disk', () => {
  for (const line of [`git-receive-pack '/../x'`, `git-receive-pack 'A'`, `git-receive-pack '-x'`, `git-receive-pack ''`, `git-receive-pack '/'`]) {
    assert.throws(() => parseExecCommand(line), (e: unknown) => e instanceof UserError && e.code === 'invalid_app_name', line);
  }
});

test('anything else is an admin command, split into words like a shell would', () => {
  assert.deepEqual(parseExecCommand(`apps:create "my-app"`), { kind: 'command', words: ['apps:create', 'my-app'] });
  assert.deepEqual(parseExecCommand(''), { kind: 'command', words: [] });
});
