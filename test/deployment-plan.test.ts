import assert from 'node:assert/strict';
import { test } from 'node:test';
import { commandFor, compareDynos, dynosOf, limitFor, webTargets } from '../src/orchestrator/deployment.ts';
import { LABEL, type ContainerState } from '../src/orchestrator/engine.ts';
import { chooseBuildpacks } from '../src/orchestrator/buildpack-builder.ts';
import { buildpackName, parseBuildpackUrl } from '../src/orchestrator/buildpack-fetcher.ts';
import { defaultSettings } from '../src/state/app-settings.ts';
import type { Release } from '../src/state/app-store.ts';

const release = (processTypes: Record<string, string>, builder: Release['builder'] = 'buildpacks'): Release => ({
  number: 3, image: 'berth/a:r3', commit: 'c', builder, createdAt: '', createdBy: '', config: {}, processTypes, description: '',
});

test('web runs once unless scaled, other types only when scaled; each dyno is named type.N', () => {
  const r = release({ web: 'node s.js', worker: 'node w.js', clock: 'node c.js' });
  assert.deepEqual(dynosOf(r, {}).map((d) => d.name), ['web.1']);
  assert.deepEqual(dynosOf(r, { web: 2, worker: 1 }).map((d) => d.name), ['web.1', 'web.2', 'worker.1']);
  assert.deepEqual(dynosOf(r, { web: 0, clock: 1 }).map((d) => d.name), ['clock.1']);
});

test('a process of a buildpack image starts with /start TYPE (an older one through its launcher), through sh -c otherwise, and an empty one keeps the image CMD', () => {
  assert.deepEqual(commandFor(release({}), 'node w.js', [], 'worker'), { cmd: ['/start', 'worker'] });
  assert.deepEqual(commandFor(release({}), 'node s.js', ['/berth/launch']), { cmd: ['node s.js'] });
  assert.deepEqual(commandFor(release({}, 'dockerfile'), 'node s.js --x "a b"', []), { cmd: ['/bin/sh', '-c', 'node s.js --x "a b"'] });
  assert.deepEqual(commandFor(release({}, 'dockerfile'), 'serve --x "a b"', ['/entry']), { cmd: ['serve', '--x', 'a b'] });
  assert.deepEqual(commandFor(release({}, 'image'), '', []), {});
});

test('a process type limit wins over the default one', () => {
  const limits = { '*': { memory: 1 }, web: { cpus: 0.5 } };
  assert.deepEqual(limitFor(limits, 'web'), { cpus: 0.5 });
  assert.deepEqual(limitFor(limits, 'worker'), { memory: 1 });
  assert.deepEqual(limitFor({}, 'web'), {});
  // The server's defaults fill in what the app's limit leaves unset, never what it sets.
  const server = { memory: 512, pids: 512 };
  assert.deepEqual(limitFor(limits, 'web', server), { memory: 512, pids: 512, cpus: 0.5 });
  assert.deepEqual(limitFor({ run: { pids: 24 } }, 'run', server), { memory: 512, pids: 24 });
  assert.deepEqual(limitFor({}, 'web', server), server);
});

test('buildpack URLs: git with #ref, heroku/NAME, file:// and absolute paths; anything else is refused', () => {
  assert.deepEqual(parseBuildpackUrl('https://example.test/bp.git#v1.2'), { kind: 'git', url: 'https://example.test/bp.git', ref: 'v1.2' });
  assert.deepEqual(parseBuildpackUrl('heroku/nodejs'), { kind: 'git', url: 'https://github.com/heroku/heroku-buildpack-nodejs.git', ref: undefined });
  assert.deepEqual(parseBuildpackUrl('file:///srv/bp/node'), { kind: 'dir', dir: '/srv/bp/node' });
  assert.deepEqual(parseBuildpackUrl('/srv/bp/x/'), { kind: 'dir', dir: '/srv/bp/x/' });
  assert.equal(buildpackName('https://example.test/org/heroku-buildpack-go.git#main'), 'heroku-buildpack-go');
  for (const bad of ['ftp://x/y', 'relative/path', 'https://x/y#bad ref']) assert.throws(() => parseBuildpackUrl(bad), /buildpack/, bad);
});

test('BUILDPACK_URL wins over buildpacks:set, which wins over .buildpacks, which wins over detection', async () => {
  const source = (buildpacks?: string) => ({ app: 'a', commit: 'c', archive: () => { throw new Error('unused'); }, readFile: async (p: string) => (p === '.buildpacks' && buildpacks !== undefined ? Buffer.from(buildpacks) : undefined) });
  const app = (over: object) => ({ id: 'a', name: 'a', createdAt: '', releases: [], current: null, ...defaultSettings(), ...over });
  const defaults = ['/bp/default'];
  const u = (name: string) => `https://example.test/${name}.git`;
  assert.deepEqual(await chooseBuildpacks(source(`${u('file')}\n`), app({ config: { BUILDPACK_URL: u('env') }, buildpacks: ['/bp/set'] }), defaults), { urls: [u('env')], mode: 'all', from: 'BUILDPACK_URL' });
  assert.deepEqual(await chooseBuildpacks(source('/bp/file\n'), app({ buildpacks: ['/bp/set', '/bp/set2'] }), defaults), { urls: ['/bp/set', '/bp/set2'], mode: 'all', from: 'buildpacks:set' });
  assert.deepEqual(await chooseBuildpacks(source(`# mine\n${u('one')}\n\n${u('two')}\n`), app({}), defaults), { urls: [u('one'), u('two')], mode: 'all', from: '.buildpacks' });
  assert.deepEqual(await chooseBuildpacks(source(), app({}), defaults), { urls: ['/bp/default'], mode: 'detect', from: 'the default list' });
});

test('BUILDPACK_URL and .buildpacks may name only URLs: a folder on the server (a path or file:// URL) is refused, whoever pushed', async () => {
  const source = (buildpacks?: string) => ({ app: 'a', commit: 'c', archive: () => { throw new Error('unused'); }, readFile: async (p: string) => (p === '.buildpacks' && buildpacks !== undefined ? Buffer.from(buildpacks) : undefined) });
  const app = (over: object) => ({ id: 'a', name: 'a', createdAt: '', releases: [], current: null, ...defaultSettings(), ...over });
  await assert.rejects(chooseBuildpacks(source(), app({ config: { BUILDPACK_URL: '/etc' } }), []), /BUILDPACK_URL names \/etc, a folder on the server: BUILDPACK_URL may name only buildpack URLs/);
  await assert.rejects(chooseBuildpacks(source('https://example.test/x.git\nfile:///var/lib/berth\n'), app({}), []), /\.buildpacks names file:\/\/\/var\/lib\/berth, a folder on the server/);
});

test('dynos sort naturally, by type and then by number (web.2 before web.10), and web targets follow that order', () => {
  assert.deepEqual(['web.10', 'worker.1', 'web.2', 'web.1', 'clock.3', 'web.11'].sort(compareDynos), ['clock.3', 'web.1', 'web.2', 'web.10', 'web.11', 'worker.1']);
  const container = (dyno: string, ip: string | undefined): ContainerState => ({
    id: dyno, name: `shop.${dyno}.r3.ab12`, labels: { [LABEL.process]: dyno.split('.')[0]!, [LABEL.dyno]: dyno }, running: true, status: 'running', exitCode: 0, restartCount: 0, ip, startedAt: 1, oomKilled: false,
  });
  const targets = webTargets([container('web.10', '10.0.0.10'), container('worker.1', '10.0.0.20'), container('web.2', '10.0.0.2'), container('web.3', undefined), container('web.1', '10.0.0.1')]);
  assert.deepEqual(targets, [
    { id: 'shop.web.1.r3.ab12', host: '10.0.0.1', port: 5000 },
    { id: 'shop.web.2.r3.ab12', host: '10.0.0.2', port: 5000 },
    { id: 'shop.web.10.r3.ab12', host: '10.0.0.10', port: 5000 },
  ]);
});
