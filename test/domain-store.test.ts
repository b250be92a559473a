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

/** The local CLI: the admin, who may assign any name under DOMAIN not reserved for another app. */
const ADMIN = { admin: true };
/** A key limited to some apps. */
const SCOPED = { admin: false };

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
  assert.deepEqual(await domains.add('web', ['WWW.Example.com', 'shop.example.com', 'www.example.com'], ADMIN), ['www.example.com', 'shop.example.com']);
  assert.deepEqual(await domains.add('web', ['shop.example.com'], ADMIN), [], 'adding a domain the app has changes nothing');
  assert.deepEqual(domains.hostnames('web'), ['web.apps.example.com', 'www.example.com', 'shop.example.com']);
  await domains.remove('web', ['web.apps.example.com']);
  assert.deepEqual(domains.hostnames('web'), ['www.example.com', 'shop.example.com']);
  await assert.rejects(domains.remove('web', ['nope.example.com']), refusedWith('domain_not_found', /domains:list web/));
  assert.deepEqual(await domains.set('web', ['web.apps.example.com', 'api.example.com'], ADMIN), ['web.apps.example.com', 'api.example.com']);
  await assert.rejects(domains.set('web', [], ADMIN), refusedWith('bad_arguments'));
  assert.deepEqual(changes, ['web', 'web', 'web']);

  const reloaded = store(['web'], dir);
  await reloaded.load();
  assert.deepEqual(reloaded.hostnames('web'), ['web.apps.example.com', 'api.example.com']);
  assert.equal(fs.statSync(reloaded.file).mode & 0o777, 0o600);
});

test('a domain belongs to one app only: adding another app\'s domain is a clear conflict', async () => {
  const domains = store(['web', 'api']);
  await domains.load();
  await domains.add('web', ['www.example.com'], ADMIN);
  await assert.rejects(domains.add('api', ['www.example.com'], ADMIN), refusedWith('domain_in_use', /already belongs to app web[\s\S]*domains:remove web www\.example\.com/));
  await assert.rejects(domains.set('api', ['web.apps.example.com'], ADMIN), refusedWith('domain_reserved', /reserved for the app named web/), "another app's default domain is taken too");
  await assert.rejects(domains.add('nope', ['x.example.com'], ADMIN), refusedWith('app_not_found'));
  await assert.rejects(domains.add('web', ['bad domain'], ADMIN), refusedWith('invalid_domain'));
  assert.deepEqual(domains.hostnames('api'), ['api.apps.example.com'], 'a refused change changes nothing');
  await domains.remove('web', ['www.example.com']);
  assert.deepEqual(await domains.add('api', ['www.example.com'], ADMIN), ['www.example.com'], 'once released, the domain can move');
});

test('APP.DOMAIN and every name under it are reserved for the app APP, whether it exists yet or not, for admin and scoped keys alike', async () => {
  const apps = ['web'];
  const domains = store(apps);
  await domains.load();
  const before = fs.existsSync(domains.file) ? fs.readFileSync(domains.file, 'utf8') : undefined;
  for (const by of [SCOPED, ADMIN]) {
    await assert.rejects(domains.add('web', ['billing.apps.example.com'], by), refusedWith('domain_reserved', /billing\.apps\.example\.com is reserved for the app named billing[\s\S]*outside apps\.example\.com/));
    await assert.rejects(domains.add('web', ['www.billing.apps.example.com'], by), refusedWith('domain_reserved', /reserved for the app named billing/));
    await assert.rejects(domains.set('web', ['web.apps.example.com', 'billing.apps.example.com'], by), refusedWith('domain_reserved'));
  }
  assert.deepEqual(domains.hostnames('web'), ['web.apps.example.com'], 'nothing changed');
  assert.equal(fs.existsSync(domains.file) ? fs.readFileSync(domains.file, 'utf8') : undefined, before, 'nothing written');
  assert.equal(domains.appOf('billing.apps.example.com'), undefined);
  apps.push('billing');
  domains.checkCreatable('billing');
  assert.deepEqual(domains.hostnames('billing'), ['billing.apps.example.com'], 'the app gets its default domain when it is created');
  assert.deepEqual(await domains.add('web', ['www.web.apps.example.com'], SCOPED), ['www.web.apps.example.com'], 'names under its own default are the app\'s');
});

test('names under DOMAIN that no app name reserves, and DOMAIN itself, only the admin assigns', async () => {
  const domains = store(['web']);
  await domains.load();
  await assert.rejects(domains.add('web', ['apps.example.com'], SCOPED), refusedWith('domain_reserved', /berth's own domain apps\.example\.com, whose names only an admin assigns/));
  await assert.rejects(domains.add('web', ['9lives.apps.example.com'], SCOPED), refusedWith('domain_reserved', /only an admin/));
  assert.deepEqual(domains.hostnames('web'), ['web.apps.example.com']);
  assert.deepEqual(await domains.add('web', ['apps.example.com', '9lives.apps.example.com'], ADMIN), ['apps.example.com', '9lives.apps.example.com']);
  assert.deepEqual(await domains.add('web', ['www.example.com'], SCOPED), ['www.example.com'], 'a name outside DOMAIN any app may add');
});

test('a reserved name another app holds from before the reservation loads without loss, is reported, and blocks creating its app until released', async () => {
  const apps = ['web', 'api'];
  const { dir } = stateFile('domains.json', { schema: 1, apps: { web: { default: true, added: ['blog.apps.example.com', 'www.example.com'] }, api: { default: true, added: ['www.shop.apps.example.com'] } } });
  const domains = store(apps, dir);
  await domains.load();
  assert.deepEqual(domains.hostnames('web'), ['web.apps.example.com', 'blog.apps.example.com', 'www.example.com'], 'the holder keeps serving it');
  assert.deepEqual(domains.conflicts(), [
    { domain: 'blog.apps.example.com', holder: 'web', reservedFor: 'blog' },
    { domain: 'www.shop.apps.example.com', holder: 'api', reservedFor: 'shop' },
  ]);
  assert.throws(() => domains.checkCreatable('blog'), refusedWith('domain_reserved_held', /blog\.apps\.example\.com \(held by app web\)[\s\S]*domains:remove web blog\.apps\.example\.com[\s\S]*then create blog, which gets blog\.apps\.example\.com/));
  assert.deepEqual(await domains.set('web', ['web.apps.example.com', 'blog.apps.example.com'], SCOPED), ['web.apps.example.com', 'blog.apps.example.com'], 'the holder may keep it in a domains:set');
  await domains.remove('web', ['blog.apps.example.com']);
  domains.checkCreatable('blog');
  apps.push('blog');
  assert.deepEqual(domains.hostnames('blog'), ['blog.apps.example.com']);
  await assert.rejects(domains.add('web', ['blog.apps.example.com'], ADMIN), refusedWith('domain_reserved'), 'once released it cannot be taken back');
});

test('an app that already exists while another holds its default domain is served at its other names, and the conflict is reported until released', async () => {
  const apps = ['web', 'blog'];
  const { dir } = stateFile('domains.json', { schema: 1, apps: { web: { default: true, added: ['blog.apps.example.com'] } } });
  const domains = store(apps, dir);
  await domains.load();
  assert.deepEqual(domains.hostnames('blog'), []);
  assert.equal(domains.appOf('blog.apps.example.com'), 'web');
  assert.deepEqual(domains.conflicts(), [{ domain: 'blog.apps.example.com', holder: 'web', reservedFor: 'blog' }]);
  await domains.remove('web', ['blog.apps.example.com']);
  assert.deepEqual(domains.hostnames('blog'), ['blog.apps.example.com'], 'released, it goes back to its app');
  assert.deepEqual(domains.conflicts(), []);
});

test('the cap on domains per app refuses the domain beyond it, the default domain counted, for the admin too, and changes nothing', async () => {
  const dir = tempDir('domains');
  const domains = new DomainStore(path.join(dir, 'state', 'domains.json'), { domain: 'apps.example.com', apps: () => ['web'], maxDomains: 3 });
  await domains.load();
  assert.deepEqual(await domains.add('web', ['a.example.com', 'b.example.com'], SCOPED), ['a.example.com', 'b.example.com']);
  const written = fs.readFileSync(domains.file, 'utf8');
  for (const by of [SCOPED, ADMIN]) {
    await assert.rejects(domains.add('web', ['c.example.com'], by), refusedWith('domain_cap', /web would have 4 domains, and an app may have at most 3, its default domain included \(berth serve --max-app-domains\)[\s\S]*domains:remove web DOMAIN/));
    await assert.rejects(domains.set('web', ['a.example.com', 'b.example.com', 'c.example.com', 'd.example.com'], by), refusedWith('domain_cap', /--max-app-domains/));
  }
  assert.deepEqual(domains.hostnames('web'), ['web.apps.example.com', 'a.example.com', 'b.example.com'], 'nothing changed');
  assert.equal(fs.readFileSync(domains.file, 'utf8'), written, 'nothing written');
  assert.deepEqual(await domains.add('web', ['a.example.com'], SCOPED), [], 'a name it has is no new domain');
  await domains.remove('web', ['web.apps.example.com']);
  assert.deepEqual(await domains.add('web', ['c.example.com'], SCOPED), ['c.example.com'], 'room made, one more fits');
});

test('a renamed app takes the names under its old default along to its new one', async () => {
  const apps = ['web'];
  const domains = store(apps);
  await domains.load();
  await domains.add('web', ['www.web.apps.example.com', 'www.example.com'], SCOPED);
  apps[0] = 'site';
  await domains.rename('web', 'site');
  assert.deepEqual(domains.hostnames('site'), ['site.apps.example.com', 'www.site.apps.example.com', 'www.example.com']);
  assert.deepEqual(domains.conflicts(), []);
});

test('forgetting a destroyed app releases its domains and says so to listeners', async () => {
  const apps = ['web'];
  const domains = store(apps);
  await domains.load();
  await domains.add('web', ['www.example.com'], ADMIN);
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
