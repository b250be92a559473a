import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { isUserError } from '../src/errors.ts';
import { DEFAULT_APP_SETTINGS, defaultText, normaliseSetting, parseDuration, parseSize, resetsSetting, resolveSettings } from '../src/state/proxy-settings.ts';
import { ProxySettingsStore } from '../src/state/proxy-settings-store.ts';
import { logOf, quarantine, stateFile } from './helpers/state.ts';
import { tempDir } from './helpers/temp.ts';

test('sizes take k, m and g units (powers of 1024), and 0 means no limit', () => {
  assert.equal(parseSize('10m'), 10 * 1024 * 1024);
  assert.equal(parseSize('512K'), 512 * 1024);
  assert.equal(parseSize('1gb'), 1024 ** 3);
  assert.equal(parseSize('1.5m'), 1.5 * 1024 * 1024);
  assert.equal(parseSize('2048'), 2048);
  assert.equal(parseSize('0'), 0);
  for (const bad of ['', 'ten', '-1m', '10x', '1e9']) assert.throws(() => parseSize(bad, 'max-body-size'), (e: unknown) => isUserError(e) && /max-body-size/.test(e.message));
});

test('durations take ms, s, m and h units, and a bare number is seconds', () => {
  assert.equal(parseDuration('90'), 90_000);
  assert.equal(parseDuration('90s'), 90_000);
  assert.equal(parseDuration('5m'), 300_000);
  assert.equal(parseDuration('1h'), 3_600_000);
  assert.equal(parseDuration('250ms'), 250);
  for (const bad of ['', 'soon', '5d', '-1s']) assert.throws(() => parseDuration(bad, 'read-timeout'), (e: unknown) => isUserError(e) && /read-timeout/.test(e.message));
});

test('a setting is normalised, an unknown key is refused with the list of keys', () => {
  assert.equal(normaliseSetting('max-body-size', ' 10M '), '10m');
  assert.equal(normaliseSetting('read-timeout', '90'), '90s');
  assert.throws(
    () => normaliseSetting('max-body', '1m'),
    (e: unknown) => isUserError(e) && e.code === 'unknown_proxy_setting' && /max-body-size, read-timeout, idle-timeout/.test(e.hint ?? ''),
  );
});

test('an HSTS policy is written as the header value, in any order and case, and a bad one is refused with what to give', () => {
  assert.equal(normaliseSetting('hsts', 'max-age=31536000'), 'max-age=31536000');
  assert.equal(normaliseSetting('hsts', 'includesubdomains, MAX-AGE=600'), 'max-age=600; includeSubDomains');
  assert.equal(normaliseSetting('hsts', 'max-age=63072000; includeSubDomains; preload'), 'max-age=63072000; includeSubDomains; preload');
  assert.equal(normaliseSetting('hsts', 'max-age=0'), 'max-age=0', 'max-age=0 tells browsers to forget the policy');
  for (const bad of ['', 'includeSubDomains', 'max-age=', 'max-age=-1', 'max-age=1y', 'max-age=1 max-age=2', 'max-age=99999999999', 'max-age=600 always', 'max-age=600 preload', 'max-age=600 includeSubDomains preload']) {
    assert.throws(() => normaliseSetting('hsts', bad), (e: unknown) => isUserError(e) && e.code === 'invalid_proxy_setting' && /^hsts: /.test(e.message) && e.hint !== undefined, bad);
  }
  assert.equal(resetsSetting('hsts', ' OFF '), true);
  assert.equal(resetsSetting('hsts', 'clear'), true);
  assert.equal(resetsSetting('max-body-size', 'off'), false);
  assert.equal(defaultText('hsts'), 'off');
  assert.equal(DEFAULT_APP_SETTINGS.hsts, '');
  assert.equal(resolveSettings({ hsts: 'max-age=600' }).hsts, 'max-age=600');
});

test('overrides replace only their own keys', () => {
  assert.deepEqual(resolveSettings(undefined), DEFAULT_APP_SETTINGS);
  assert.deepEqual(resolveSettings({ 'max-body-size': '1k' }), { ...DEFAULT_APP_SETTINGS, maxBodySize: 1024 });
});

test('the store keeps overrides in state/proxy.json, tells listeners, and resets a key without a value', async () => {
  const dir = tempDir('proxy-settings');
  const file = path.join(dir, 'state', 'proxy.json');
  const store = new ProxySettingsStore(file);
  await store.load();
  const seen: number[] = [];
  store.onChange((settings) => seen.push(settings.get('shop')?.maxBodySize ?? -1));
  assert.equal(await store.set('shop', 'max-body-size', '10M'), '10m');
  await store.set('shop', 'read-timeout', '2m');
  assert.deepEqual(JSON.parse(fs.readFileSync(file, 'utf8')), { schema: 1, apps: { shop: { 'max-body-size': '10m', 'read-timeout': '2m' } } });
  assert.equal((fs.statSync(file).mode & 0o777).toString(8), '600');

  const reloaded = new ProxySettingsStore(file);
  await reloaded.load();
  assert.deepEqual(reloaded.resolved().get('shop'), { ...DEFAULT_APP_SETTINGS, maxBodySize: 10 * 1024 * 1024, readTimeout: 120_000 });

  await store.set('shop', 'max-body-size', undefined);
  assert.deepEqual(store.overrides('shop'), { 'read-timeout': '2m' });
  await store.set('shop', 'read-timeout', undefined);
  assert.deepEqual(JSON.parse(fs.readFileSync(file, 'utf8')).apps, {});
  assert.deepEqual(seen, [10 * 1024 * 1024, 10 * 1024 * 1024, DEFAULT_APP_SETTINGS.maxBodySize, -1]);
  await assert.rejects(store.set('shop', 'max-body-size', 'lots'), (e: unknown) => isUserError(e) && e.code === 'invalid_proxy_setting');

  assert.equal(await store.set('shop', 'hsts', 'max-age=600 includeSubDomains'), 'max-age=600; includeSubDomains');
  assert.deepEqual(JSON.parse(fs.readFileSync(file, 'utf8')).apps, { shop: { hsts: 'max-age=600; includeSubDomains' } });
  assert.equal(store.resolved().get('shop')?.hsts, 'max-age=600; includeSubDomains');
  assert.equal(await store.set('shop', 'hsts', 'off'), undefined);
  assert.deepEqual(JSON.parse(fs.readFileSync(file, 'utf8')).apps, {}, 'hsts off removes the override');
  await assert.rejects(store.set('shop', 'colour', undefined), (e: unknown) => isUserError(e) && e.code === 'unknown_proxy_setting');
});

test('one bad app in proxy.json is quarantined with its reason, and the other apps keep their settings', async () => {
  const { dir, file } = stateFile('proxy.json', { schema: 1, apps: { shop: { 'max-body-size': 'huge' }, blog: { 'read-timeout': '90' }, wiki: { colour: 'blue' } } });
  const store = new ProxySettingsStore(file);
  const log = await logOf(() => store.load());
  assert.deepEqual([...store.resolved().keys()], ['blog']);
  assert.equal(store.resolved().get('blog')?.readTimeout, 90_000);
  const { documents, entries } = quarantine(dir);
  assert.deepEqual(documents, []);
  assert.deepEqual(entries[0]?.entries.map((e) => [e.app, e.entry, e.value]), [['shop', 'apps.shop', { 'max-body-size': 'huge' }], ['wiki', 'apps.wiki', { colour: 'blue' }]]);
  assert.match(entries[0]!.entries[0]!.reason, /max-body-size: "huge" is not a size/);
  assert.match(entries[0]!.entries[1]!.reason, /unknown setting "colour"/);
  const reported = log.filter((l) => l.event === 'state_entry_quarantined');
  assert.deepEqual(reported.map((l) => l.app), ['shop', 'wiki'], 'each bad app is reported by name');
  assert.ok(reported.every((l) => typeof l.reason === 'string' && l.movedTo), 'with the reason and where it went');
  assert.deepEqual(JSON.parse(fs.readFileSync(file, 'utf8')).apps, { blog: { 'read-timeout': '90s' } }, 'the document keeps only what loaded');
});

test('a proxy.json that is not JSON is moved aside whole, and every app gets the defaults', async () => {
  const { dir, file } = stateFile('proxy.json', '{"schema": 1, "apps": {');
  const store = new ProxySettingsStore(file);
  const log = await logOf(() => store.load());
  assert.equal(store.resolved().size, 0);
  assert.equal(fs.existsSync(file), false);
  assert.equal(quarantine(dir).documents.length, 1);
  assert.ok(log.some((l) => l.event === 'state_document_quarantined' && l.file === file));
});
