// The text berth install writes: the service, the three socket units and the environment file,
// read back by the readers that take them (a POSIX shell for the environment file; systemd's own
// checks are in test/e2e-install.test.ts).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { spawnSync } from 'node:child_process';
import type { SocketName } from '../src/daemon/listen-sockets.ts';
import {
  ALL_UNITS,
  byHandCommand,
  envValue,
  INSTALL_PATHS,
  listenAddress,
  parseEnvFile,
  renderEnvFile,
  renderInstallFiles,
  renderServiceUnit,
  SOCKET_UNITS,
} from '../src/cli/systemd-units.ts';
import { tempDir } from './helpers/temp.ts';

/** `[Section]` → key → values (a key may repeat). */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | undefined;
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const header = /^\[(\w+)\]$/.exec(line);
    if (header) {
      current = new Map();
      sections.set(header[1]!, current);
      continue;
    }
    const m = /^(\w+)=(.*)$/.exec(line);
    assert.ok(m && current, `a key=value line inside a section: ${line}`);
    current.set(m[1]!, [...(current.get(m[1]!) ?? []), m[2]!]);
  }
  return sections;
}

function value(unit: Map<string, Map<string, string[]>>, section: string, key: string): string | undefined {
  return unit.get(section)?.get(key)?.join(' | ');
}

test('the service runs the installed binary with the environment file, is handed the three sockets and stops the supervisor alone', () => {
  const unit = parseUnit(renderServiceUnit());
  const sockets = 'berth-http.socket berth-https.socket berth-ssh.socket';
  assert.equal(value(unit, 'Service', 'ExecStart'), '/usr/local/bin/berth serve');
  assert.equal(value(unit, 'Service', 'ExecReload'), '/usr/local/bin/berth upgrade');
  assert.equal(value(unit, 'Service', 'EnvironmentFile'), '/etc/berth/berth.env');
  assert.equal(value(unit, 'Service', 'Sockets'), sockets);
  assert.equal(value(unit, 'Service', 'KillMode'), 'mixed');
  assert.equal(value(unit, 'Service', 'Restart'), 'on-failure');
  assert.equal(value(unit, 'Unit', 'Requires'), sockets);
  assert.match(value(unit, 'Unit', 'After')!, /berth-http\.socket berth-https\.socket berth-ssh\.socket .*docker\.service/);
  assert.equal(value(unit, 'Install', 'WantedBy'), 'multi-user.target');
  assert.equal(value(unit, 'Install', 'Also'), sockets);
  assert.deepEqual(ALL_UNITS, ['berth-http.socket', 'berth-https.socket', 'berth-ssh.socket', 'berth.service']);
});

test("each socket unit names its socket as the supervisor looks it up, and hands it to berth.service", () => {
  // The names are src/daemon/listen-sockets.ts's: a name it does not know would not type-check here.
  const names: SocketName[] = SOCKET_UNITS.map((s) => s.fdName);
  assert.deepEqual(names, ['http', 'https', 'ssh']);
  const files = renderInstallFiles({ httpPort: 80, httpsPort: 443, sshPort: 2222, bindHost: undefined }, [['BERTH_DOMAIN', 'example.com']]);
  assert.deepEqual(
    files.map((f) => [f.path, f.mode.toString(8)]),
    [
      ['/etc/berth/berth.env', '600'],
      ['/etc/systemd/system/berth-http.socket', '644'],
      ['/etc/systemd/system/berth-https.socket', '644'],
      ['/etc/systemd/system/berth-ssh.socket', '644'],
      ['/etc/systemd/system/berth.service', '644'],
    ],
  );
  const expected = [
    ['80', 'http'],
    ['443', 'https'],
    ['2222', 'ssh'],
  ];
  files.slice(1, 4).forEach((file, i) => {
    const unit = parseUnit(file.content);
    assert.equal(value(unit, 'Socket', 'ListenStream'), expected[i]![0]);
    assert.equal(value(unit, 'Socket', 'FileDescriptorName'), expected[i]![1]);
    assert.equal(value(unit, 'Socket', 'Service'), 'berth.service');
    assert.equal(value(unit, 'Install', 'WantedBy'), 'sockets.target');
  });
});

test('a socket listens on every address unless an address is given; an IPv6 one goes in brackets', () => {
  assert.equal(listenAddress(undefined, 80), '80');
  assert.equal(listenAddress('192.0.2.7', 2222), '192.0.2.7:2222');
  assert.equal(listenAddress('2001:db8::7', 443), '[2001:db8::7]:443');
  const files = renderInstallFiles({ httpPort: 8080, httpsPort: 8443, sshPort: 22, bindHost: '127.0.0.1' }, []);
  assert.match(files[3]!.content, /^ListenStream=127\.0\.0\.1:22$/m);
});

test('the environment file holds the variables in order, and a POSIX shell reads back the same values, running none of them', () => {
  const env: Array<[string, string]> = [
    ['BERTH_DATA_DIR', '/var/lib/berth'],
    ['BERTH_DOMAIN', 'apps.example.com'],
    ['BERTH_ACME_EMAIL', 'ops+berth@example.com'],
    ['BERTH_BUILDPACKS', 'https://github.com/heroku/heroku-buildpack-nodejs.git#v300,file:///opt/bp'],
    ['BERTH_STACK_IMAGE', 'registry.example.com/stack:24 build'],
    ['BERTH_ACME_CA_FILE', '/etc/ssl/my ca $HOME.pem'],
    ['BERTH_NETWORK', 'x;touch pwned-semicolon `touch pwned-backtick` $(touch pwned-dollar)'],
  ];
  const text = renderEnvFile(env);
  assert.match(text, /^BERTH_DOMAIN=apps\.example\.com$/m);
  assert.match(text, /^BERTH_STACK_IMAGE='registry\.example\.com\/stack:24 build'$/m);
  assert.deepEqual([...parseEnvFile(text)], env);
  const dir = tempDir('env-file');
  const file = path.join(dir, 'berth.env');
  fs.writeFileSync(file, text);
  const shell = spawnSync('sh', ['-c', 'set -a && . "$0" && set +a && env -0', file], { cwd: dir, encoding: 'utf8', env: { PATH: process.env.PATH } });
  assert.deepEqual(fs.readdirSync(dir), ['berth.env'], 'no value ran as a command');
  assert.equal(shell.status, 0, shell.stderr);
  const seen = new Map(shell.stdout.split('\0').filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)] as const));
  for (const [key, v] of env) assert.equal(seen.get(key), v, key);
});

test('a value neither reader can take literally is refused, not mangled', () => {
  assert.throws(() => envValue('BERTH_DOMAIN', "it's"), /BERTH_DOMAIN: a value with a quote/);
  assert.throws(() => envValue('BERTH_DOMAIN', 'a\nBERTH_X=1'), /line break/);
  assert.throws(() => envValue('BERTH_DOMAIN', 'a\\b'), /backslash/);
  assert.equal(envValue('BERTH_DOMAIN', '#x'), "'#x'");
});

test('the command that starts berth by hand reads the same environment file the service does', () => {
  assert.equal(byHandCommand(), `sh -c 'set -a && . ${INSTALL_PATHS.envFile} && set +a && exec /usr/local/bin/berth serve'`);
});
