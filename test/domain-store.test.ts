import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { qualifiesForAcme, validateDomainName } from '../src/domain-name.ts';
import { isUserError } from '../src/errors.ts';
import { setLogSink } from '../src/log.ts';
import { DomainStore } from '../src/state/domain-store.ts';
import { logOf, quarantine, stateFile } from './helpers/state.ts';
import { tempDir } from './helpers/temp.ts';

setLogSink(() => {});

function store(apps: string[], dir = tempDir('domains')): DomainStore {
  return new DomainStore(path.join(dir, 'state', 'domains.json'), { domain: 'apps.example.com', apps: () => apps });
}

function refusedWith(code: string, pattern?: RegExp) {
  return (e: unknown) => isUserError(e) && e.code === code && (!pattern || pattern.test(e.message + '\n' + (e.hint ?? '')));
}

test('domain names are normalised to lowercase ASCII without a trailing dot', () => {
  assert.equal(validateDomainName('WWW.Example.COM.'), 'www.example.com');
  assert.equal(validateDomainName(' shop.example.com '), 'shop.example.com');
  assert.equal(validateDomainName('bücher.example'), 'xn--bcher-kva.example');
});

test('invalid domain names are refused with a reason and a hint', () => {
  const cases: Array<[string, RegExp]> = [
    ['', /empty/],
    ['localhost', /single label/],
    ['*.example.com', /wildcard/],
    ['https://example.com', /without a scheme/],
    ['example.com:8080', /without a scheme, port/],
    ['bad_name.example.com', /not a DNS label/],
    ['-x.example.com', /not a DNS label/],
    ['192.168.1.10', /IP addresses/],
    ['a'.repeat(64) + '.example.com', /not a DNS label/],
    [('abc.'.repeat(64)) + 'com', /longer than 253/],
  ];
  for (const [input, reason] of cases) assert.throws(() => validateDomainName(input), refusedWith('invalid_domain', reason), input);
});

test('names only a private network resolves do not qualify for a public certificate', () => {
  for (const name of ['app.localhost', 'printer.local', 'db.internal', 'nas.home.arpa']) assert.equal(qualifiesForAcme(name), false, name);
  for (const name of ['www.example.com', 'app.example.test']) assert.equal(qualifiesForAcme(name), true, name);
});

test('an app is served at APP.DOMAIN until its domains are changed', async () => {
  const domains = store(['web']);
  await domains.load();
  assert.deepEqual(domains.hostnames('web'), ['web.apps.example.com']);
  assert.equal(domains.appOf('web.apps.example.com'), 'web');
});

test('domains are added, removed and set, the default domain included, and survive a reload', async () => {
  const dir = tempDir('domains');
  const domains = store(['web'], dir);
  await domains.load();
  const changes: string[] = [];
  domains.onChange((app, forgotten) => changes.push(`${app}${forgotten ? ' forgotten' : ''}`));
  assert.deepEqual(await domains.add('web', ['WWW.Example.com', 'shop.example.com', 'www.example.com']), ['www.example.com', 'shop.example.com']);
  assert.deepEqual(await domains.add('web', ['shop.example.com']), [], 'adding a domain the app has changes nothing');
  assert.deepEqual(domains.hostnames('web'), ['web.apps.example.com', 'www.example.com', 'shop.example.com']);
  await domains.remove('web', ['web.apps.example.com']);
  assert.deepEqual(domains.hostnames('web'), ['www.example.com', 'shop.example.com']);
  await assert.rejects(domains.remove('web', ['nope.example.com']), refusedWith('domain_not_found', /domains:list web/));
  assert.deepEqual(await domains.set('web', ['web.apps.example.com', 'api.example.com']), ['web.apps.example.com', 'api.example.com']);
  await assert.rejects(domains.set('web', []), refusedWith('bad_arguments'));
  assert.deepEqual(changes, ['web', 'web', 'web']);

  const reloaded = store(['web'], dir);
  await reloaded.load();
  assert.deepEqual(reloaded.hostnames('web'), ['web.apps.example.com', 'api.example.com']);
  assert.equal(fs.statSync(reloaded.file).mode & 0o777, 0o600);
});

test('a domain belongs to one app only: adding another app\'s domain is a clear conflict', async () => {
  const domains = store(['web', 'api']);
  await domains.load();
  await domains.add('web', ['www.example.com']);
  await assert.rejects(domains.add('api', ['www.example.com']), refusedWith('domain_in_use', /already belongs to app web[\s\S]*domains:remove web www\.example\.com/));
  await assert.rejects(domains.set('api', ['web.apps.example.com']), refusedWith('domain_in_use', /belongs to app web/), "another app's default domain is taken too");
  await assert.rejects(domains.add('nope', ['x.example.com']), refusedWith('app_not_found'));
  await assert.rejects(domains.add('web', ['bad domain']), refusedWith('invalid_domain'));
  assert.deepEqual(domains.hostnames('api'), ['api.apps.example.com'], 'a refused change changes nothing');
  await domains.remove('web', ['www.example.com']);
  assert.deepEqual(await domains.add('api', ['www.example.com']), ['www.example.com'], 'once released, the domain can move');
});

test("a default domain that another app added first is left out of the new app's names", async () => {
  const apps = ['web'];
  const domains = store(apps);
  await domains.load();
  await domains.add('web', ['blog.apps.example.com']);
  apps.push('blog');
  assert.deepEqual(domains.hostnames('blog'), []);
  assert.equal(domains.appOf('blog.apps.example.com'), 'web');
});

test('forgetting a destroyed app releases its domains and says so to listeners', async () => {
  const apps = ['web'];
  const domains = store(apps);
  await domains.load();
  await domains.add('web', ['www.example.com']);
  const changes: string[] = [];
  domains.onChange((app, forgotten) => changes.push(`${app} ${forgotten}`));
  apps.length = 0;
  await domains.forget('web');
  assert.deepEqual(changes, ['web true']);
  apps.push('web');
  assert.deepEqual(domains.hostnames('web'), ['web.apps.example.com'], 'a new app of the same name starts from the default');
});

test('one bad app in domains.json is quarantined with its reason, and the other apps keep their domains', async () => {
  const { dir, file } = stateFile('domains.json', { schema: 1, apps: { web: { default: false, added: ['www.example.com'] }, api: { default: 'yes', added: [] } } });
  const domains = store(['web', 'api'], dir);
  const log = await logOf(() => domains.load());
  assert.deepEqual(domains.hostnames('web'), ['www.example.com']);
  assert.deepEqual(domains.hostnames('api'), ['api.apps.example.com'], 'the bad app gets its default domain');
  const { documents, entries } = quarantine(dir);
  assert.deepEqual(documents, []);
  assert.deepEqual(entries[0]?.entries.map((e) => [e.app, e.value]), [['api', { default: 'yes', added: [] }]], 'the unreadable entry is kept');
  assert.match(entries[0]!.entries[0]!.reason, /default must be a boolean/);
  assert.deepEqual(log.filter((l) => l.event === 'state_entry_quarantined').map((l) => [l.app, l.reason]), [['api', 'default must be a boolean']]);
  assert.deepEqual(Object.keys(JSON.parse(fs.readFileSync(file, 'utf8')).apps), ['web']);
});
