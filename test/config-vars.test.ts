import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseAssignments, validateConfigKey } from '../src/config-vars.ts';
import { joinCommand } from '../src/orchestrator/one-off.ts';
import { parseMount } from '../src/cli/commands/storage.ts';

test('a value keeps everything after the first =, including spaces, = and newlines', () => {
  assert.deepEqual(parseAssignments(['A=1', 'URL=postgres://u:p@h/db?x=y', 'MULTI=line one\nline two', 'EMPTY=', '_X= spaced ']), {
    A: '1',
    URL: 'postgres://u:p@h/db?x=y',
    MULTI: 'line one\nline two',
    EMPTY: '',
    _X: ' spaced ',
  });
});

test('bad keys are all reported at once, and PORT and DYNO are reserved', () => {
  assert.throws(() => parseAssignments(['1A=x', 'noequals', 'OK=1', 'PORT=80', 'B-C=1']), (e: Error) => {
    for (const part of ['"1A"', '"noequals" is not KEY=value', 'PORT is set by berth', '"B-C"']) assert.ok(e.message.includes(part), part);
    return true;
  });
  assert.throws(() => validateConfigKey('DYNO'), /DYNO is set by berth/);
  assert.equal(validateConfigKey('DATABASE_URL'), 'DATABASE_URL');
});

test('a one-off command of one word is kept as written; several are joined with the spaced ones quoted', () => {
  assert.equal(joinCommand(['echo $HOME && ls']), 'echo $HOME && ls');
  assert.equal(joinCommand(['node', '-e', "console.log('a b')"]), `node -e 'console.log('\\''a b'\\'')'`);
  assert.equal(joinCommand(['echo', '$HOME']), 'echo $HOME');
});

test('a mount is two absolute paths and an optional :ro, normalised; anything else is refused', () => {
  assert.equal(parseMount('/srv/data/:/data:ro'), '/srv/data:/data:ro');
  assert.equal(parseMount('/srv/x:/x:rw'), '/srv/x:/x');
  for (const bad of ['data:/data', '/a:b', '/a/../etc:/x', '/a:/', '/a:/b:rx', '/a', '/a,b:/c']) assert.throws(() => parseMount(bad), /is not a mount/, bad);
});
