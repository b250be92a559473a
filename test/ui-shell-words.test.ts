import assert from 'node:assert/strict';
import { test } from 'node:test';
import { shellWords } from '../src/ui/shell-words.ts';
import { UserError } from '../src/errors.ts';

test('words split on blanks, and quotes keep spaces and equals signs inside one word', () => {
  assert.deepEqual(shellWords(`config:set app "GREETING='hello world'"`), ['config:set', 'app', "GREETING='hello world'"]);
  assert.deepEqual(shellWords(`config:set app GREETING='hello world'`), ['config:set', 'app', 'GREETING=hello world']);
  assert.deepEqual(shellWords('  a\t b  '), ['a', 'b']);
});

test('backslashes escape outside quotes and only $ ` " \\ inside double quotes', () => {
  assert.deepEqual(shellWords('a\\ b'), ['a b']);
  assert.deepEqual(shellWords('"a\\"b\\n"'), ['a"b\\n']);
  assert.deepEqual(shellWords("'a\\b'"), ['a\\b']);
});

test('empty quotes make an empty word', () => {
  assert.deepEqual(shellWords(`x '' ""`), ['x', '', '']);
});

test('an unterminated quote or a trailing backslash is a user error, not a crash', () => {
  for (const bad of [`"abc`, `'abc`, 'abc\\']) assert.throws(() => shellWords(bad), UserError);
});

test('random input never throws anything but a UserError', () => {
  for (let i = 0; i < 2000; i++) {
    const s = Array.from({ length: Math.floor(Math.random() * 20) }, () => String.fromCharCode(Math.floor(Math.random() * 128))).join('');
    try {
      shellWords(s);
    } catch (e) {
      assert.ok(e instanceof UserError, `input ${JSON.stringify(s)} threw ${e}`);
    }
  }
});
