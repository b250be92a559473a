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
