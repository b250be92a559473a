// Buildpack URLs as users write them (heroku/NAME, git with #ref, tarballs, folders), the stack id
// builds set as STACK, and the commands buildpack images start with: pure functions, no engine.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UserError } from '../src/errors.ts';
import { buildpackName, parseBuildpackUrl } from '../src/orchestrator/buildpack-fetcher.ts';
import { buildpackExecCmd, buildpackProcessCmd, processTypesFile } from '../src/orchestrator/buildpack-scripts.ts';
import { stackIdFor, stackIdOfImage } from '../src/orchestrator/buildpack-stack.ts';

test('heroku/NAME resolves to the official repository, with an optional #ref', () => {
  assert.deepEqual(parseBuildpackUrl('heroku/python'), { kind: 'git', url: 'https://github.com/heroku/heroku-buildpack-python.git', ref: undefined });
  assert.deepEqual(parseBuildpackUrl('heroku/nodejs#v300'), { kind: 'git', url: 'https://github.com/heroku/heroku-buildpack-nodejs.git', ref: 'v300' });
  assert.deepEqual(parseBuildpackUrl('heroku/jvm'), { kind: 'git', url: 'https://github.com/heroku/heroku-buildpack-jvm-common.git', ref: undefined });
  assert.equal(buildpackName('heroku/go'), 'heroku-buildpack-go');
});

test('git URLs keep their #ref; .tgz, .tar.gz and .tar URLs are tarballs; folders are used in place; anything else is refused', () => {
  assert.deepEqual(parseBuildpackUrl('https://github.com/heroku/heroku-buildpack-ruby.git#v250'), { kind: 'git', url: 'https://github.com/heroku/heroku-buildpack-ruby.git', ref: 'v250' });
  assert.deepEqual(parseBuildpackUrl('https://buildpack-registry.s3.amazonaws.com/buildpacks/heroku/python.tgz'), { kind: 'tarball', url: 'https://buildpack-registry.s3.amazonaws.com/buildpacks/heroku/python.tgz' });
  assert.equal(parseBuildpackUrl('https://example.test/bp/v1.tar.gz').kind, 'tarball');
  assert.equal(buildpackName('https://example.test/bp/custom.tar.gz'), 'custom');
  assert.deepEqual(parseBuildpackUrl('file:///srv/buildpacks/mine'), { kind: 'dir', dir: '/srv/buildpacks/mine' });
  for (const bad of ['git@github.com:heroku/heroku-buildpack-go.git', 'heroku/python#bad ref', 'ftp://example.test/bp.tgz', 'relative/dir']) {
    assert.throws(() => parseBuildpackUrl(bad), (e: unknown) => e instanceof UserError && e.code === 'invalid_buildpack_url', bad);
  }
});

test("the stack id comes from the image's STACK or CNB_STACK_ID, its io.buildpacks.stack.id label, or Heroku's image name", () => {
  assert.equal(stackIdOfImage('example.test/stack:1', ['PATH=/bin', 'CNB_STACK_ID=heroku-24'], {})?.id, 'heroku-24');
  assert.equal(stackIdOfImage('example.test/stack:1', ['STACK=heroku-22', 'CNB_STACK_ID=heroku-24'], {})?.id, 'heroku-22', 'STACK wins over CNB_STACK_ID');
  assert.equal(stackIdOfImage('example.test/stack:1', [], { 'io.buildpacks.stack.id': 'heroku-26' })?.id, 'heroku-26');
  assert.equal(stackIdOfImage('heroku/heroku:24-build', [], {})?.id, 'heroku-24');
  assert.equal(stackIdOfImage('heroku/heroku:22', [], {})?.id, 'heroku-22');
  assert.equal(stackIdOfImage('ubuntu:24.04', ['PATH=/bin'], {}), undefined);
});

test("the app's STACK config var overrides the image's stack id; an image without one gets heroku-24 and says why", () => {
  assert.deepEqual(stackIdFor({ STACK: 'heroku-22' }, 'heroku/heroku:24-build', [], {}), { id: 'heroku-22', from: "the app's STACK config var" });
  assert.equal(stackIdFor({}, 'heroku/heroku:24-build', [], {}).id, 'heroku-24');
  const fallback = stackIdFor({}, 'ubuntu:24.04', [], {});
  assert.equal(fallback.id, 'heroku-24');
  assert.match(fallback.from, /ubuntu:24\.04 names no stack id/);
});

test('processes of buildpack images start with /start TYPE and one-offs with /exec; images from an older berth keep their launcher', () => {
  assert.deepEqual(buildpackProcessCmd([], 'worker', 'node worker.js'), ['/start', 'worker']);
  assert.deepEqual(buildpackProcessCmd(['/berth/launch'], 'worker', 'node worker.js'), ['node worker.js']);
  assert.deepEqual(buildpackExecCmd([], 'echo $HOME'), ['/exec', 'echo $HOME']);
  assert.deepEqual(buildpackExecCmd([], ''), ['/exec']);
  assert.deepEqual(buildpackExecCmd(['/berth/launch'], 'ls'), ['ls']);
  assert.equal(processTypesFile({ web: 'node server.js', worker: 'node w.js\n--x' }), 'web: node server.js\nworker: node w.js --x\n');
});
