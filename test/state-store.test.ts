import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { AppStore } from '../src/state/app-store.ts';
import { CertStateStore } from '../src/state/cert-state-store.ts';
import { JsonDocument, StateError, check, type DocumentSpec } from '../src/state/json-document.ts';
import { logOf, quarantine, stateFile } from './helpers/state.ts';
import { tempDir } from './helpers/temp.ts';

const tmp = () => tempDir('state');

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
  let quarantined: string[] = [];
  const log = await logOf(async () => (quarantined = await again.load()));
  assert.deepEqual(quarantined, ['other']);
  assert.deepEqual(again.list().map((a) => a.name), ['good']);
  assert.deepEqual(quarantine(dir).documents.map((n) => n.replace(/\d+$/, 'TIME')), ['other.json.TIME'], 'the document is kept, not lost');
  const [reported] = log.filter((l) => l.event === 'state_document_quarantined');
  assert.equal(reported?.app, 'other', 'the log names the app');
  assert.match(String((reported?.error as { message?: string })?.message ?? reported?.error), /not valid JSON/);
});

// A document of named entries, read entry by entry, as proxy.json, domains.json and certs.json are.
const scores: DocumentSpec<{ title: string; scores: Record<string, number>; tags: string[] }> = {
  schema: 1,
  empty: () => ({ title: '', scores: {}, tags: [] }),
  parse: (raw, entries) => ({
    title: check.string(raw.title, 'title'),
    scores: entries.object(raw.scores, 'scores', 'app', (v) => check.number(v, 'the score')),
    tags: entries.array(raw.tags, 'tags', 'tag', (v) => check.string(v, 'a tag')),
  }),
};

test('restore sets a bad entry aside with its name and reason, loads the rest, and rewrites the document without it', async () => {
  const { dir, file } = stateFile('scores.json', { schema: 1, title: 'x', scores: { a: 1, b: 'two', c: 3 }, tags: ['t', 7] });
  const doc = new JsonDocument(file, scores);
  await assert.rejects(doc.read(), (e: unknown) => e instanceof StateError && /scores\.b: the score must be a number; tags\[1\]: a tag must be a string/.test(e.message), 'read() is strict');
  const log = await logOf(async () => {
    const restored = await doc.restore();
    assert.deepEqual(restored.value, { title: 'x', scores: { a: 1, c: 3 }, tags: ['t'] });
    assert.equal(restored.quarantined, false);
    assert.deepEqual(restored.badEntries.map((b) => b.path), ['scores.b', 'tags[1]']);
  });
  const { entries } = quarantine(dir);
  assert.equal(entries.length, 1);
  assert.equal(entries[0]!.file, file);
  assert.deepEqual(entries[0]!.entries, [
    { entry: 'scores.b', app: 'b', reason: 'the score must be a number', value: 'two' },
    { entry: 'tags[1]', tag: '#1', reason: 'a tag must be a string', value: 7 },
  ]);
  assert.deepEqual(log.filter((l) => l.event === 'state_entry_quarantined').map((l) => [l.entry, l.app ?? l.tag, l.reason]), [
    ['scores.b', 'b', 'the score must be a number'],
    ['tags[1]', '#1', 'a tag must be a string'],
  ]);
  assert.deepEqual(await doc.read(), { title: 'x', scores: { a: 1, c: 3 }, tags: ['t'] }, 'the document holds what loaded');
  assert.equal(fs.statSync(path.join(dir, 'quarantine', fs.readdirSync(path.join(dir, 'quarantine'))[0]!)).mode & 0o777, 0o600);
});

test('restore moves a document whose frame is wrong aside whole, and gives the empty document', async () => {
  const { dir, file } = stateFile('scores.json', { schema: 1, title: 5, scores: {}, tags: [] });
  const doc = new JsonDocument(file, scores);
  let restored: Awaited<ReturnType<typeof doc.restore>> | undefined;
  const log = await logOf(async () => (restored = await doc.restore({ app: 'demo' })));
  assert.deepEqual(restored, { value: { title: '', scores: {}, tags: [] }, quarantined: true, badEntries: [], migrated: false });
  assert.equal(fs.existsSync(file), false);
  assert.equal(quarantine(dir).documents.length, 1);
  assert.ok(log.some((l) => l.event === 'state_document_quarantined' && l.app === 'demo' && l.file === file));
});

test('one bad entry in certs.json is quarantined, and the other apps and domains keep their settings and history', async () => {
  const { dir, file } = stateFile('certs.json', {
    schema: 1,
    autoOff: ['blog', 'Not An App'],
    domains: { 'a.example.com': { failures: 2, lastError: 'timeout' }, 'b.example.com': { failures: 'many' } },
  });
  const certs = new CertStateStore(file);
  const log = await logOf(() => certs.load());
  assert.equal(certs.isAuto('blog'), false);
  assert.equal(certs.isAuto('shop'), true);
  assert.deepEqual(certs.attempts('a.example.com'), { failures: 2, lastError: 'timeout' });
  assert.deepEqual(certs.attempts('b.example.com'), { failures: 0 }, 'the bad domain starts afresh');
  const [moved] = quarantine(dir).entries;
  assert.deepEqual(moved?.entries.map((e) => [e.entry, e.app ?? e.domain]), [['autoOff[1]', 'Not An App'], ['domains.b.example.com', 'b.example.com']]);
  assert.deepEqual(log.filter((l) => l.event === 'state_entry_quarantined').map((l) => l.app ?? l.domain), ['Not An App', 'b.example.com']);
  const written = JSON.parse(fs.readFileSync(file, 'utf8'));
  assert.deepEqual(written.autoOff, ['blog']);
  assert.deepEqual(Object.keys(written.domains), ['a.example.com']);
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

test('an app document of schema 1 is migrated to the current schema: settings added, releases keep their image as the web process', async () => {
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
  assert.equal(JSON.parse(fs.readFileSync(path.join(dir, 'apps', 'old.json'), 'utf8')).schema, 3, 'written back as schema 3');
});

test('a document with a version that has no migration path is still refused', async () => {
  const dir = tmp();
  const file = path.join(dir, 'doc.json');
  fs.writeFileSync(file, JSON.stringify({ schema: 1, n: 1 }));
  const doc = new JsonDocument(file, { schema: 3, migrate: { 1: (r) => ({ ...r, n: 2 }) }, empty: () => ({ n: 0 }), parse: (r) => ({ n: check.number(r.n, 'n') }) });
  await assert.rejects(doc.read(), /schema version 2 is not the supported version 3/);
});

test('src/state/ imports nothing from the proxy, the orchestrator, git, the CLI or the application layer', () => {
  const state = path.join(import.meta.dirname, '..', 'src', 'state');
  const violations: string[] = [];
  for (const file of fs.readdirSync(state).filter((f) => f.endsWith('.ts'))) {
    const text = fs.readFileSync(path.join(state, file), 'utf8');
    for (const [, spec] of text.matchAll(/^\s*(?:import|export)\b[^;]*?\bfrom\s+'([^']+)'/gm)) {
      const target = path.relative(path.join(state, '..'), path.resolve(state, spec!));
      if (/^(proxy|orchestrator|git|cli|platform)\//.test(target) || /^(serve|services|main)\.ts$/.test(target)) violations.push(`src/state/${file} imports ${spec}`);
    }
  }
  assert.deepEqual(violations, []);
});
