// The services' records and passwords on disk, and who may manage a service (mayManage): a key
// limited to apps manages a service linked only to its apps, or one it created not linked yet.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import type { KeyRecord } from '../src/git/key-store.ts';
import { setLogSink } from '../src/log.ts';
import { mayManage } from '../src/platform/service-service.ts';
import { newServicePassword, ServiceStore, validateServiceName, type ServiceRecord } from '../src/state/service-store.ts';
import { tempDir } from './helpers/temp.ts';

setLogSink(() => {});

function store(dir: string): ServiceStore {
  return new ServiceStore(path.join(dir, 'state', 'services.json'), path.join(dir, 'services'));
}

test('a created service has a generated password in its own 0600 file, in a 0700 folder, and never in services.json', async () => {
  const dir = tempDir('service-store');
  const services = store(dir);
  await services.load();
  const record = await services.create({ kind: 'postgres', name: 'db', image: 'postgres:17', createdBy: 'local' });
  const password = await services.password('postgres', 'db');
  assert.match(password, /^[A-Za-z0-9_-]{32}$/);
  assert.notEqual(password, await (async () => (await services.create({ kind: 'postgres', name: 'db2', image: 'postgres:17', createdBy: 'local' }), services.password('postgres', 'db2')))());
  assert.equal(fs.statSync(path.join(dir, 'services', 'postgres', 'db', 'secret')).mode & 0o777, 0o600);
  assert.equal(fs.statSync(path.join(dir, 'services', 'postgres', 'db')).mode & 0o777, 0o700);
  const json = fs.readFileSync(path.join(dir, 'state', 'services.json'), 'utf8');
  assert.ok(!json.includes(password));
  assert.equal(fs.statSync(path.join(dir, 'state', 'services.json')).mode & 0o777, 0o600);
  const again = store(dir);
  await again.load();
  assert.deepEqual(again.get('postgres', 'db'), record);
  await assert.rejects(services.create({ kind: 'postgres', name: 'db', image: 'x', createdBy: 'local' }), /a postgres service named "db" already exists/);
});

test('links follow a renamed app and go with a destroyed one; remove takes the password folder', async () => {
  const dir = tempDir('service-store');
  const services = store(dir);
  await services.load();
  await services.create({ kind: 'redis', name: 'cache', image: 'redis:7', createdBy: 'local' });
  await services.update('redis', 'cache', (d) => void d.links.push({ app: 'shop', alias: 'REDIS' }, { app: 'blog', alias: 'CACHE' }));
  await services.renameApp('shop', 'store');
  assert.deepEqual(services.linkedTo('store').map((s) => s.name), ['cache']);
  assert.deepEqual(services.linkedTo('shop'), []);
  await services.forgetApp('blog');
  assert.deepEqual(services.require('redis', 'cache').links, [{ app: 'store', alias: 'REDIS' }]);
  await services.remove('redis', 'cache');
  assert.equal(fs.existsSync(path.join(dir, 'services', 'redis', 'cache')), false);
  assert.throws(() => services.require('redis', 'cache'), /no redis service named "cache"/);
});

test('a bad entry of services.json is set aside and the others load', async () => {
  const dir = tempDir('service-store');
  const services = store(dir);
  await services.load();
  await services.create({ kind: 'postgres', name: 'good', image: 'postgres:17', createdBy: 'local' });
  const file = path.join(dir, 'state', 'services.json');
  const doc = JSON.parse(fs.readFileSync(file, 'utf8'));
  doc.services.push({ kind: 'postgres', name: '../escape', id: 'x', image: 'y', createdAt: 'z', createdBy: 'w', links: [] });
  const entry = { kind: 'postgres', id: 'x', image: 'y', createdAt: 'z', createdBy: 'w', links: [] };
  doc.services.push({ ...entry, name: 'kindless', kind: 'mongo' });
  doc.services.push({ ...entry, name: 'badlink', links: [{ app: '../etc', alias: 'DATABASE' }] });
  doc.services.push({ ...entry, name: 'badalias', links: [{ app: 'shop', alias: 'NOT A KEY' }] });
  doc.services.push({ ...entry, name: 'badport', exposedPort: 70000 });
  doc.services.push({ ...entry, name: 'goodtoo', links: [{ app: 'shop', alias: 'DATABASE' }], exposedPort: 15432 });
  fs.writeFileSync(file, JSON.stringify(doc));
  const again = new ServiceStore(file, path.join(dir, 'services'), { kinds: ['postgres', 'redis'] });
  await again.load();
  assert.deepEqual(again.list().map((s) => s.name), ['good', 'goodtoo'], 'an unknown kind, a link to no app name, an alias that is no config key, a port out of range are set aside');
});

test('service names are checked where they enter: they name containers, volumes and folders', () => {
  assert.equal(validateServiceName('db-1'), 'db-1');
  for (const bad of ['', 'Db', '1db', 'db-', '../x', 'a'.repeat(41), 'db;rm']) assert.throws(() => validateServiceName(bad), /invalid service name/, bad);
  assert.notEqual(newServicePassword(), newServicePassword());
});

test('mayManage: admins manage every service; a key limited to apps the ones linked only to its apps, or the unlinked ones it created', () => {
  const apps = new Map([['shop', { id: 'id-shop' }], ['blog', { id: 'id-blog' }]]);
  const state = { apps: { get: (name: string) => apps.get(name) } } as unknown as Parameters<typeof mayManage>[0];
  const key: KeyRecord = { name: 'tenant', fingerprint: 'SHA256:tenant', publicKey: 'x', addedAt: 'now', apps: [{ name: 'shop', id: 'id-shop' }], services: true };
  const service = (links: string[], createdByKey?: string): ServiceRecord => ({ kind: 'postgres', name: 'db', id: 'i', image: 'p', createdAt: 'c', createdBy: 'b', ...(createdByKey ? { createdByKey } : {}), links: links.map((app) => ({ app, alias: 'DATABASE' })) });
  assert.equal(mayManage(state, service(['blog']), undefined), true, 'admin');
  assert.equal(mayManage(state, service(['shop']), key), true);
  assert.equal(mayManage(state, service(['blog']), key), false);
  assert.equal(mayManage(state, service(['shop', 'blog']), key), false, 'shared with an app outside the scope: the admin\'s');
  assert.equal(mayManage(state, service([]), key), false, 'unlinked, made by someone else');
  assert.equal(mayManage(state, service([], 'SHA256:tenant'), key), true, 'unlinked, made by this key');
});
