import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { AppStore } from '../src/state/app-store.ts';
import { JsonDocument, StateError, check } from '../src/state/json-document.ts';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'berth-state-'));

test('a document is written atomically with mode 0600 and a schema version, and read back', async () => {
  const dir = tmp();
  const doc = new JsonDocument(path.join(dir, 'sub', 'doc.json'), { schema: 3, empty: () => ({ n: 0 }), parse: (r) => ({ n: check.number(r.n, 'n') }) });
  assert.deepEqual(await doc.read(), { n: 0 });
  await Promise.all([doc.write({ n: 1 }), doc.write({ n: 2 }), doc.write({ n: 3 })]);
  assert.deepEqual(await doc.read(), { n: 3 });
  const raw = JSON.parse(fs.readFileSync(doc.file, 'utf8'));
  assert.equal(raw.schema, 3);
  assert.equal(fs.statSync(doc.file).mode & 0o777, 0o600);
  assert.deepEqual(fs.readdirSync(path.dirname(doc.file)), ['doc.json'], 'no temp files are left behind');
});

test('a document of another schema version is refused rather than misread', async () => {
  const dir = tmp();
  const file = path.join(dir, 'doc.json');
  fs.writeFileSync(file, JSON.stringify({ schema: 99, n: 1 }));
  const doc = new JsonDocument(file, { schema: 1, empty: () => ({ n: 0 }), parse: (r) => ({ n: check.number(r.n, 'n') }) });
  await assert.rejects(doc.read(), (e: unknown) => e instanceof StateError && /schema version 99/.test(e.message));
});

test('one corrupt app document is quarantined and the other apps still load', async () => {
  const dir = tmp();
  const apps = new AppStore(path.join(dir, 'apps'));
  await apps.load();
  await apps.create('good');
  await apps.create('other');
  fs.writeFileSync(path.join(dir, 'apps', 'other.json'), '{ not json');
  const again = new AppStore(path.join(dir, 'apps'));
  const quarantined = await again.load();
  assert.deepEqual(quarantined, ['other']);
  assert.deepEqual(again.list().map((a) => a.name), ['good']);
  assert.equal(fs.readdirSync(path.join(dir, 'quarantine')).length, 1);
});

test('an app update whose change throws leaves the live record and the file as they were', async () => {
  const dir = tmp();
  const apps = new AppStore(path.join(dir, 'apps'));
  await apps.load();
  await apps.create('app');
  const before = fs.readFileSync(path.join(dir, 'apps', 'app.json'), 'utf8');
  await assert.rejects(
    apps.update('app', (a) => {
      a.current = 7;
      throw new Error('midway');
    }),
    /midway/,
  );
  assert.equal(apps.get('app')!.current, null);
  assert.equal(fs.readFileSync(path.join(dir, 'apps', 'app.json'), 'utf8'), before);
});

test('an app document of schema 1 is migrated to schema 2: settings added, releases keep their image as the web process', async () => {
  const dir = tmp();
  fs.mkdirSync(path.join(dir, 'apps'));
  const v1 = { schema: 1, name: 'old', createdAt: '2026-01-01T00:00:00.000Z', current: 1, releases: [{ number: 1, image: 'berth/old:r1', commit: 'abcdef1234', builder: 'dockerfile', createdAt: '2026-01-01T00:00:00.000Z', createdBy: 'admin' }] };
  fs.writeFileSync(path.join(dir, 'apps', 'old.json'), JSON.stringify(v1));
  const apps = new AppStore(path.join(dir, 'apps'));
  assert.deepEqual(await apps.load(), []);
  const app = apps.get('old')!;
  assert.deepEqual(app.config, {});
  assert.deepEqual(app.formation, {});
  assert.deepEqual(app.buildpacks, []);
  assert.equal(app.stopped, false);
  assert.deepEqual(app.releases[0], { ...v1.releases[0], config: {}, processTypes: { web: '' }, description: 'Deploy abcdef1' });
  await apps.update('old', (a) => void (a.config.X = '1'));
  assert.equal(JSON.parse(fs.readFileSync(path.join(dir, 'apps', 'old.json'), 'utf8')).schema, 2, 'written back as schema 2');
});

test('a document with a version that has no migration path is still refused', async () => {
  const dir = tmp();
  const file = path.join(dir, 'doc.json');
  fs.writeFileSync(file, JSON.stringify({ schema: 1, n: 1 }));
  const doc = new JsonDocument(file, { schema: 3, migrate: { 1: (r) => ({ ...r, n: 2 }) }, empty: () => ({ n: 0 }), parse: (r) => ({ n: check.number(r.n, 'n') }) });
  await assert.rejects(doc.read(), /schema version 2 is not the supported version 3/);
});
