import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isValidAppName, validateAppName } from '../src/app-name.ts';
import { UserError } from '../src/errors.ts';

test('names of lowercase letters, digits and dashes starting with a letter are valid', () => {
  for (const ok of ['a', 'hello', 'my-app-2', 'a' + 'b'.repeat(62)]) assert.equal(validateAppName(ok), ok);
});

test('path tricks, capitals, leading dashes and empty names are refused with a message', () => {
  for (const bad of ['../x', 'A', '-x', '', 'x/y', 'a'.repeat(64), 'x_y', 'x-', 'app.git', '1app', 'a b', 'é']) {
    assert.equal(isValidAppName(bad), false, bad);
    assert.throws(() => validateAppName(bad), (e: unknown) => e instanceof UserError && e.code === 'invalid_app_name' && /invalid app name/.test(e.message));
  }
});
