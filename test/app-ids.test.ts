// App ids and the key scopes that name them, on the state as a daemon of the previous version
// left it: apps without ids and keys scoped by app names load, get ids once (written back), and
// keep working; a scope waiting for a name binds to the first app created with it; one bound to
// a destroyed app reaches no later app of that name. (Over real SSH: scopes.test.ts.)
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { defaultConfig } from '../src/config.ts';
import { KeyStore, scopeAllows, scopeNames } from '../src/git/key-store.ts';
import { setLogSink } from '../src/log.ts';
import { createApp } from '../src/platform/app-service.ts';
import { loadState } from '../src/platform/state.ts';
import { tempDir } from './helpers/temp.ts';

const keyDir = tempDir('app-ids-keys');
setLogSink(() => undefined);
function publicKey(name: string): string {
  const file = path.join(keyDir, name);
  if (fs.existsSync(file + '.pub')) return fs.readFileSync(file + '.pub', 'utf8').trim();
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', file]);
  return fs.readFileSync(file + '.pub', 'utf8').trim();
}

/** A data dir as the previous version wrote it: app documents of schema 2, keys.json of schema 1. */
function previousVersionDataDir(): string {
  const dir = tempDir('app-ids');
  fs.mkdirSync(path.join(dir, 'state', 'apps'), { recursive: true });
  const app = (name: string) => ({ schema: 2, name, createdAt: '2026-01-01T00:00:00.000Z', releases: [], current: null, config: { A: '1' }, formation: {}, buildpacks: [], limits: {}, mounts: [], stopped: false, checks: { disabled: [], skipped: [], properties: {} } });
  for (const name of ['shop', 'blog']) fs.writeFileSync(path.join(dir, 'state', 'apps', `${name}.json`), JSON.stringify(app(name)));
  const keys = [
    { name: 'ops', fingerprint: 'SHA256:ops', publicKey: publicKey('ops'), addedAt: '2026-01-01T00:00:00.000Z' },
    { name: 'dev', fingerprint: 'SHA256:dev', publicKey: publicKey('dev'), addedAt: '2026-01-01T00:00:00.000Z', apps: ['shop', 'future'] },
  ];
  fs.writeFileSync(path.join(dir, 'state', 'keys.json'), JSON.stringify({ schema: 1, keys }));
  return dir;
}

test('apps and keys of the previous schema load: each app gets an id once, and each scoped name becomes its app id or waits for the name', async () => {
  const dir = previousVersionDataDir();
  const state = await loadState({ ...defaultConfig(), dataDir: dir });
  const shop = state.apps.get('shop')!;
  assert.match(shop.id, /^[0-9a-f-]{36}$/);
  assert.notEqual(shop.id, state.apps.get('blog')!.id);
  assert.deepEqual(shop.config, { A: '1' }, 'the rest of the record is as it was');
  const onDisk = JSON.parse(fs.readFileSync(path.join(dir, 'state', 'apps', 'shop.json'), 'utf8'));
  assert.equal(onDisk.schema, 3);
  assert.equal(onDisk.id, shop.id, 'the id is written back, so every later load reads the same one');

  const dev = state.keys.list().find((k) => k.name === 'dev')!;
  assert.deepEqual(dev.apps, [{ name: 'shop', id: shop.id }, { name: 'future' }]);
  assert.equal(state.keys.list().find((k) => k.name === 'ops')!.apps, undefined, 'an admin key stays an admin key');
  assert.equal(JSON.parse(fs.readFileSync(path.join(dir, 'state', 'keys.json'), 'utf8')).schema, 2);
  assert.ok(scopeAllows(dev, 'shop', shop), 'the key keeps working on its app');
  assert.ok(!scopeAllows(dev, 'blog', state.apps.get('blog')));
  assert.ok(scopeAllows(dev, 'future', undefined), 'it may create the name it was given');

  const again = await loadState({ ...defaultConfig(), dataDir: dir });
  assert.equal(again.apps.get('shop')!.id, shop.id);
  assert.deepEqual(again.keys.list().find((k) => k.name === 'dev')!.apps, dev.apps);
});

test('a waiting scope binds to the app created with its name; after that app is destroyed, a new app of the name is not the key\'s', async () => {
  const dir = previousVersionDataDir();
  const state = await loadState({ ...defaultConfig(), dataDir: dir });
  await createApp(state, 'future', 'test');
  const first = state.apps.get('future')!;
  let dev = state.keys.byFingerprint('SHA256:dev')!;
  assert.deepEqual(dev.apps![1], { name: 'future', id: first.id });
  assert.ok(scopeAllows(dev, 'future', first));

  await state.apps.remove('future');
  assert.ok(!scopeAllows(dev, 'future', undefined), 'the key may not create the name again');
  assert.deepEqual(scopeNames(dev.apps!, (id) => state.apps.byId(id)?.name), ['shop', '(destroyed app future)']);
  await createApp(state, 'future', 'test');
  dev = state.keys.byFingerprint('SHA256:dev')!;
  assert.ok(!scopeAllows(dev, 'future', state.apps.get('future')));
  assert.deepEqual(dev.apps![1], { name: 'future', id: first.id }, 'the scope still names the destroyed app');
});

test('setScope and remove change what byFingerprint returns and tell the listeners; an empty scope is refused', async () => {
  const store = new KeyStore(path.join(tempDir('app-ids-store'), 'keys.json'));
  await store.load();
  const changes: string[] = [];
  const stop = store.onChange(() => changes.push(store.list().map((k) => `${k.name}:${k.apps?.map((a) => a.name).join('+') ?? 'admin'}`).join(',')));
  const added = await store.add('kim', publicKey('kim'), [{ name: 'shop', id: 'id-shop' }]);
  await store.setScope('kim', [{ name: 'blog', id: 'id-blog' }]);
  assert.deepEqual(store.byFingerprint(added.fingerprint)!.apps, [{ name: 'blog', id: 'id-blog' }]);
  await assert.rejects(store.setScope('kim', []), /a scoped key needs at least one app/);
  await store.setScope('kim', undefined);
  assert.equal(store.byFingerprint(added.fingerprint)!.apps, undefined);
  await store.remove('kim');
  assert.equal(store.byFingerprint(added.fingerprint), undefined);
  stop();
  await store.add('lee', publicKey('lee'));
  assert.deepEqual(changes, ['kim:shop', 'kim:blog', 'kim:admin', '']);
});
