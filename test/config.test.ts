import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { loadConfig, parseListen, pushLimitsOf, SERVE_FLAGS, sshLoginLimitsOf } from '../src/config.ts';
import { DEFAULT_AUTH_LIMITS } from '../src/git/auth-limiter.ts';
import { UserError } from '../src/errors.ts';
import { DEFAULT_PUSH_LIMITS } from '../src/push-limits.ts';

test('flags override BERTH_* variables, which override the defaults', () => {
  const c = loadConfig(['--http-port', '9000', '--domain=Apps.Example.COM.'], { BERTH_HTTP_PORT: '8000', BERTH_SSH_PORT: '2300', BERTH_DATA_DIR: '/tmp/x' });
  assert.equal(c.httpPort, 9000);
  assert.equal(c.sshPort, 2300);
  assert.equal(c.dataDir, '/tmp/x');
  assert.equal(c.domain, 'apps.example.com');
});

test('every problem with the configuration is reported at once', () => {
  try {
    loadConfig(['--http-port', 'eighty', '--nope', '--domain', 'bad_domain!'], { BERTH_SSH_PORT: '70000' });
    assert.fail('expected an error');
  } catch (e) {
    assert.ok(e instanceof UserError);
    for (const part of ['--http-port', '--nope', '--domain', 'BERTH_SSH_PORT']) assert.match(e.message, new RegExp(part));
    assert.match(e.message, /4 problems/);
  }
});

test('a flag without a value is an error', () => {
  assert.throws(() => loadConfig(['--ssh-port'], {}), /--ssh-port needs a value/);
});

test('the stack image, buildpack list, build memory and kept images have documented defaults and flags', () => {
  const d = loadConfig([], {});
  assert.equal(d.stackImage, 'heroku/heroku:24-build');
  assert.equal(d.buildpacks[1], 'https://github.com/heroku/heroku-buildpack-nodejs.git');
  assert.equal(d.buildMemory, 1024 ** 3);
  assert.equal(d.keepImages, 5);
  const c = loadConfig(['--stack-image', 'my/stack:1', '--build-memory=512m', '--keep-images', '2'], { BERTH_BUILDPACKS: '/bp/a, file:///bp/b' });
  assert.equal(c.stackImage, 'my/stack:1');
  assert.deepEqual(c.buildpacks, ['/bp/a', 'file:///bp/b']);
  assert.equal(c.buildMemory, 512 * 1024 ** 2);
  assert.equal(c.keepImages, 2);
  assert.throws(() => loadConfig(['--build-memory', 'lots', '--keep-images', '0'], {}), /2 problems/);
});

test('app containers get a default memory and pids limit, each a flag', () => {
  const d = loadConfig([], {});
  assert.equal(d.containerMemory, 512 * 1024 ** 2);
  assert.equal(d.containerPids, 512);
  const c = loadConfig(['--container-memory', '1g'], { BERTH_CONTAINER_PIDS: '2048' });
  assert.equal(c.containerMemory, 1024 ** 3);
  assert.equal(c.containerPids, 2048);
  assert.throws(() => loadConfig(['--container-memory', '1m', '--container-pids', '0'], {}), /2 problems[\s\S]*--container-memory[\s\S]*--container-pids/);
});

test('--fetch-allow-host adds up when repeated, a flag list replaces BERTH_FETCH_ALLOW_HOST, and the default allows none', () => {
  assert.deepEqual(loadConfig([], {}).fetchAllowHosts, []);
  assert.deepEqual(loadConfig([], { BERTH_FETCH_ALLOW_HOST: 'git.internal, 10.0.0.5' }).fetchAllowHosts, ['git.internal', '10.0.0.5']);
  assert.deepEqual(loadConfig(['--fetch-allow-host', '127.0.0.1', '--fetch-allow-host=git.internal,[::1]'], { BERTH_FETCH_ALLOW_HOST: 'other' }).fetchAllowHosts, ['127.0.0.1', 'git.internal', '[::1]']);
  assert.throws(() => loadConfig(['--fetch-allow-host', ','], {}), /--fetch-allow-host: empty list/);
});

test('the log level is a flag with its BERTH_* mirror, and a wrong one is refused', () => {
  assert.equal(loadConfig([], {}).logLevel, 'info');
  assert.equal(loadConfig([], { BERTH_LOG_LEVEL: 'debug' }).logLevel, 'debug');
  assert.equal(loadConfig(['--log-level', 'warn'], { BERTH_LOG_LEVEL: 'debug' }).logLevel, 'warn');
  assert.throws(() => loadConfig(['--log-level', 'loud'], {}), /--log-level: "loud" is not one of debug, info, warn, error/);
});

test('every BERTH_* variable named in src/ mirrors a flag, and the README lists every flag', () => {
  const src = path.join(import.meta.dirname, '..', 'src');
  const mirrors = new Set(SERVE_FLAGS.map((f) => f.env));
  const strays: string[] = [];
  for (const file of fs.readdirSync(src, { recursive: true, encoding: 'utf8' })) {
    if (!file.endsWith('.ts')) continue;
    const text = fs.readFileSync(path.join(src, file), 'utf8');
    for (const [name] of text.matchAll(/\bBERTH_[A-Z0-9_]+/g)) if (!mirrors.has(name)) strays.push(`src/${file}: ${name}`);
  }
  assert.deepEqual(strays, [], 'a BERTH_* variable that is no flag\'s mirror (test-only behaviour is injected by the tests, not switched on by the environment)');
  for (const flag of SERVE_FLAGS) assert.equal(flag.env, `BERTH_${flag.flag.slice(2).toUpperCase().replaceAll('-', '_')}`, `${flag.flag} is mirrored by the variable of its name`);
  const readme = fs.readFileSync(path.join(import.meta.dirname, '..', 'README.md'), 'utf8');
  const section = /## `berth serve` flags\n([\s\S]*?)\n## /.exec(readme)?.[1] ?? '';
  const listed = [...section.matchAll(/`(--[a-z-]+)`/g)].map((m) => m[1]);
  assert.deepEqual(listed.sort(), SERVE_FLAGS.map((f) => f.flag).sort(), "the README's flag list is the flag table");
});

test('the caps on one git push have documented defaults, flags and BERTH_* variables, and become the push limits', () => {
  const d = loadConfig([], {});
  assert.deepEqual(pushLimitsOf(d), DEFAULT_PUSH_LIMITS);
  const c = loadConfig(['--max-pack-size', '500m', '--max-object-size=64m', '--max-delta-depth', '50', '--max-push-objects', '5000000'], {
    BERTH_MAX_PUSH_REFS: '100',
    BERTH_MAX_PUSH_INFLATED_SIZE: '2g',
  });
  assert.deepEqual(pushLimitsOf(c), { packBytes: 500 * 1024 ** 2, objectBytes: 64 * 1024 ** 2, inflatedBytes: 2 * 1024 ** 3, deltaDepth: 50, objects: 5_000_000, refs: 100 });
  assert.throws(() => loadConfig(['--max-delta-depth', '5000', '--max-push-refs', '0', '--max-object-size', 'big'], {}), (e: unknown) => {
    assert.ok(e instanceof UserError);
    assert.match(e.message, /3 problems/);
    assert.match(e.message, /--max-delta-depth: "5000" is not a whole number from 1 to 4095/);
    return true;
  });
});

test('the SSH login limits, the push timeout and the disk limits have documented defaults and flags, and the login limits match the SSH server\'s', () => {
  const d = loadConfig([], {});
  assert.equal(d.pushTimeout, 120_000);
  assert.equal(d.appDiskQuota, 2 * 1024 ** 3);
  assert.equal(d.minFreeDisk, 1024 ** 3);
  const { loginGraceMs, maxStartups, maxStartupsPerAddress } = DEFAULT_AUTH_LIMITS;
  assert.deepEqual(sshLoginLimitsOf(d), { loginGraceMs, maxStartups, maxStartupsPerAddress });
  const c = loadConfig(['--push-timeout', '5', '--app-disk-quota=500m', '--ssh-login-grace-time', '0', '--ssh-max-startups', '20'], {
    BERTH_MIN_FREE_DISK: '10g',
    BERTH_SSH_MAX_STARTUPS_PER_ADDRESS: '3',
  });
  assert.equal(c.pushTimeout, 5000);
  assert.equal(c.appDiskQuota, 500 * 1024 ** 2);
  assert.equal(c.minFreeDisk, 10 * 1024 ** 3);
  assert.deepEqual(sshLoginLimitsOf(c), { loginGraceMs: 0, maxStartups: 20, maxStartupsPerAddress: 3 });
  assert.throws(() => loadConfig(['--push-timeout', 'soon', '--ssh-max-startups', '0', '--app-disk-quota', '1k'], {}), /3 problems/);
});

test('parseListen reads both admin listeners (--metrics-listen, --dashboard-listen), naming the flag when the value is wrong', () => {
  assert.deepEqual(parseListen('[::1]:9181', '--dashboard-listen'), { host: '::1', port: 9181 });
  assert.equal(parseListen('off', '--dashboard-listen'), undefined);
  assert.throws(() => parseListen('localhost:70000', '--dashboard-listen'), /--dashboard-listen: "localhost:70000" is not HOST:PORT \(such as 127\.0\.0\.1:9181\) or off/);
  assert.throws(() => loadConfig(['--dashboard-listen', '9181'], {}), /--dashboard-listen: "9181" is not HOST:PORT/);
});

test('--scheduler is docker by default, swarm when asked, and any other value is refused', () => {
  assert.equal(loadConfig([], {}).scheduler, 'docker');
  assert.equal(loadConfig([], { BERTH_SCHEDULER: 'swarm' }).scheduler, 'swarm');
  assert.equal(loadConfig(['--scheduler', 'docker'], { BERTH_SCHEDULER: 'swarm' }).scheduler, 'docker');
  assert.throws(() => loadConfig(['--scheduler', 'k8s'], {}), /--scheduler: "k8s" is not one of docker, swarm/);
});

test('with --scheduler swarm, --network must be a DNS label (it starts Swarm service names); on docker a dot is fine', () => {
  assert.equal(loadConfig(['--network', 'my.net'], {}).network, 'my.net');
  assert.equal(loadConfig(['--scheduler', 'swarm', '--network', 'my-net'], {}).network, 'my-net');
  assert.throws(() => loadConfig(['--scheduler', 'swarm', '--network', 'my.net'], {}), /--network: "my\.net" has a "\." or "_": with --scheduler swarm/);
  assert.throws(() => loadConfig(['--scheduler', 'swarm', '--network', 'my_net'], {}), /--network: "my_net"/);
});

test('--registry-image is checked at start, naming the flag; a capital in its repository is refused, one in the registry host or tag is not', () => {
  assert.equal(loadConfig([], {}).registryImage, 'registry:2');
  assert.equal(loadConfig(['--registry-image', 'Registry.Example.com:5000/mirror/registry:V2'], {}).registryImage, 'Registry.Example.com:5000/mirror/registry:V2');
  assert.throws(() => loadConfig(['--registry-image', 'not an image'], {}), /--registry-image: "not an image" is not an image reference \(such as registry:2/);
  assert.throws(() => loadConfig([], { BERTH_REGISTRY_IMAGE: 'Registry:2' }), /--registry-image: "Registry:2" is not an image reference: its repository Registry must be lowercase/);
  assert.throws(() => loadConfig(['--registry-image', 'example.com/Team/registry:2'], {}), /its repository Team\/registry must be lowercase/);
});
