import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfig } from '../src/config.ts';
import { UserError } from '../src/errors.ts';

test('flags override BERTH_* variables, which override the defaults', () => {
  const c = loadConfig(['--http-port', '9000', '--domain=Apps.Example.COM.'], { BERTH_HTTP_PORT: '8000', BERTH_SSH_PORT: '2300', BERTH_DATA_DIR: '/tmp/x' });
  assert.equal(c.httpPort, 9000);
  assert.equal(c.sshPort, 2300);
  assert.equal(c.dataDir, '/tmp/x');
  assert.equal(c.domain, 'apps.example.com');
});

test('every problem with the configuration is reported at once', () => {
  try {
    loadConfig(['--http-port', 'eighty', '--nope', '--domain', 'bad_domain!'], { BERTH_SSH_PORT: '70000' });
    assert.fail('expected an error');
  } catch (e) {
    assert.ok(e instanceof UserError);
    for (const part of ['--http-port', '--nope', '--domain', 'BERTH_SSH_PORT']) assert.match(e.message, new RegExp(part));
    assert.match(e.message, /4 problems/);
  }
});

test('a flag without a value is an error', () => {
  assert.throws(() => loadConfig(['--ssh-port'], {}), /--ssh-port needs a value/);
});
