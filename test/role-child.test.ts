// The environment the supervisor starts each child with: the proxy's V8 options come first, so an
// operator's NODE_OPTIONS still reaches every child and wins where both set the same option.
import assert from 'node:assert/strict';
import test from 'node:test';
import { ROLE_NODE_OPTIONS, roleEnv } from '../src/daemon/role-child.ts';

test('the proxy starts with its V8 options before the NODE_OPTIONS of the supervisor', () => {
  assert.equal(roleEnv('proxy', { PATH: '/bin' }).NODE_OPTIONS, ROLE_NODE_OPTIONS.proxy);
  assert.equal(roleEnv('proxy', { NODE_OPTIONS: '--max-semi-space-size=8' }).NODE_OPTIONS, `${ROLE_NODE_OPTIONS.proxy} --max-semi-space-size=8`);
  assert.equal(roleEnv('proxy', { PATH: '/bin' }).PATH, '/bin');
});

test('the control plane starts with the supervisor environment as it is', () => {
  const env = { PATH: '/bin', NODE_OPTIONS: '--no-warnings' };
  assert.deepEqual(roleEnv('control', env), env);
});
