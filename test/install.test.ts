// berth install and uninstall in-process, on a temporary directory that stands for /, with a
// recorded systemctl: the order of what they do where systemd runs, what they say where it does
// not, and that bad input changes nothing. The real binary, systemd-analyze and socket
// activation are in test/e2e-install.test.ts.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { execFileSync } from 'node:child_process';
import { runInstall, type InstallContext } from '../src/cli/install.ts';
import { runUninstall } from '../src/cli/uninstall.ts';
import { UserError } from '../src/errors.ts';
import { MemoryOutput } from '../src/ui/output.ts';
import { tempDir } from './helpers/temp.ts';

interface World {
  root: string;
  out: MemoryOutput;
  /** What the context ran, in order, with the files that existed at that moment. */
  ran: Array<{ command: string; unitsPresent: boolean; binaryPresent: boolean }>;
  ctx: InstallContext;
  publicKey: string;
}

function world(options: { systemd?: boolean; root?: boolean; failing?: string; stdin?: string } = {}): World {
  const root = tempDir('install-root');
  const home = tempDir('install-home');
  const executable = path.join(home, 'berth');
  fs.writeFileSync(executable, '#!/bin/sh\necho berth\n', { mode: 0o755 });
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'me@laptop', '-f', path.join(home, 'id')]);
  const out = new MemoryOutput();
  const ran: World['ran'] = [];
  const ctx: InstallContext = {
    out,
    isRoot: options.root ?? true,
    executable,
    systemdRunning: options.systemd ?? true,
    runProgram(program, args) {
      const command = [program, ...args].join(' ');
      ran.push({
        command,
        unitsPresent: fs.existsSync(path.join(root, 'etc/systemd/system/berth.service')),
        binaryPresent: fs.existsSync(path.join(root, 'usr/local/bin/berth')),
      });
      return command === options.failing ? { code: 1, output: 'Failed to enable unit: Access denied' } : { code: 0, output: '' };
    },
    readStdin: async () => Buffer.from(options.stdin ?? ''),
    cwd: home,
    systemRoot: root,
  };
  return { root, out, ran, ctx, publicKey: path.join(home, 'id.pub') };
}

/** Every path under a directory, with its mode, for "nothing changed" checks. */
function tree(dir: string): string[] {
  const found: string[] = [];
  for (const entry of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    const full = path.join(entry.parentPath, entry.name);
    found.push(`${(fs.statSync(full).mode & 0o7777).toString(8)} ${path.relative(dir, full)}`);
  }
  return found.sort();
}

test('where systemd runs, install writes everything first, then reloads systemd and enables and starts the sockets and the service', async () => {
  const w = world();
  assert.equal(await runInstall(['--domain', 'apps.example.com', '--acme-email', 'ops@example.com', '--admin-key', w.publicKey], w.ctx), 0);
  assert.deepEqual(
    w.ran.map((r) => r.command),
    ['systemctl daemon-reload', 'systemctl enable --now berth-http.socket berth-https.socket berth-ssh.socket berth.service'],
  );
  assert.ok(w.ran.every((r) => r.unitsPresent && r.binaryPresent), 'the units and the binary are in place before systemctl runs');
  assert.deepEqual(tree(w.root).filter((l) => !/ (etc|etc\/systemd|usr|usr\/local|var|var\/lib)$/.test(l)), [
    '600 var/lib/berth/state/keys.json',
    '644 etc/systemd/system/berth-http.socket',
    '644 etc/systemd/system/berth-https.socket',
    '644 etc/systemd/system/berth-ssh.socket',
    '644 etc/systemd/system/berth.service',
    '700 var/lib/berth',
    '700 var/lib/berth/state',
    '755 etc/berth',
    '755 etc/systemd/system',
    '755 usr/local/bin',
    '755 usr/local/bin/berth',
    '600 etc/berth/berth.env',
  ].sort());
  const env = fs.readFileSync(path.join(w.root, 'etc/berth/berth.env'), 'utf8');
  assert.match(env, /^BERTH_DOMAIN=apps\.example\.com$/m);
  assert.match(env, /^BERTH_ACME_EMAIL=ops@example\.com$/m);
  assert.match(env, /^BERTH_DATA_DIR=\/var\/lib\/berth$/m);
  const keys = JSON.parse(fs.readFileSync(path.join(w.root, 'var/lib/berth/state/keys.json'), 'utf8')) as { keys: Array<{ name: string; publicKey: string }> };
  assert.deepEqual(keys.keys.map((k) => k.name), ['admin']);
  const text = w.out.text();
  assert.match(text, /Running systemctl enable --now/);
  assert.match(text, /git remote add berth ssh:\/\/berth@berth\.apps\.example\.com:2222\/myapp/);
  assert.match(text, /git push berth main/);
  assert.match(text, /Open https:\/\/myapp\.apps\.example\.com\//);
  assert.doesNotMatch(text, /systemd is not running/);
});

test('where systemd does not run, install writes the files, says so plainly, and prints the command that starts berth by hand', async () => {
  const w = world({ systemd: false });
  assert.equal(await runInstall(['--domain', 'apps.example.com'], w.ctx), 0);
  assert.deepEqual(w.ran, [], 'no systemctl was run');
  assert.ok(fs.existsSync(path.join(w.root, 'etc/systemd/system/berth.service')));
  const text = w.out.text();
  assert.match(text, /systemd is not running on this machine \(there is no \/run\/systemd\/system\): berth is installed but not enabled or started/);
  assert.match(text, /sh -c 'set -a && \. \/etc\/berth\/berth\.env && set \+a && exec \/usr\/local\/bin\/berth serve'/);
  assert.match(text, /Open http:\/\/myapp\.apps\.example\.com\/ \(HTTP only/);
  assert.match(text, /berth ssh-keys:add admin ~\/\.ssh\/id_ed25519\.pub/);
});

test('the admin key may come from standard input, and a reinstall with the same key keeps it', async () => {
  const w = world();
  w.ctx.readStdin = async () => fs.readFileSync(w.publicKey);
  await runInstall(['--domain', 'apps.example.com', '--admin-key', '-'], w.ctx);
  await runInstall(['--domain', 'apps.example.com', '--admin-key', '-'], w.ctx);
  assert.match(w.out.text(), /The admin key \(SHA256:[^)]+\) is already added as "admin"/);
  const keys = JSON.parse(fs.readFileSync(path.join(w.root, 'var/lib/berth/state/keys.json'), 'utf8')) as { keys: unknown[] };
  assert.equal(keys.keys.length, 1);
});

test('a failing systemctl is a clear error with its output', async () => {
  const w = world({ failing: 'systemctl enable --now berth-http.socket berth-https.socket berth-ssh.socket berth.service' });
  await assert.rejects(runInstall(['--domain', 'apps.example.com'], w.ctx), (e: unknown) => {
    assert.ok(e instanceof UserError);
    assert.equal(e.code, 'systemctl_failed');
    assert.match(e.message, /exited with 1:\nFailed to enable unit: Access denied/);
    assert.match(e.hint!, /journalctl -u berth/);
    return true;
  });
});

test('bad input is refused with what to do, and changes nothing', async () => {
  const cases: Array<{ args: string[]; root?: boolean; code: string; message: RegExp; hint?: RegExp }> = [
    { args: ['--domain', 'apps.example.com'], root: false, code: 'not_root', message: /must run as root/, hint: /sudo|--dry-run/ },
    { args: ['--acme-email', 'ops@example.com'], code: 'missing_domain', message: /needs --domain/, hint: /berth install --domain apps\.example\.com/ },
    { args: ['--domain', 'apps.example.com', '--frobnicate'], code: 'bad_arguments', message: /unknown flag "--frobnicate"/, hint: /berth install --help/ },
    { args: ['--domain', 'apps.example.com', 'extra'], code: 'bad_arguments', message: /unexpected argument "extra"/ },
    { args: ['--domain', 'bad_domain!'], code: 'invalid_config', message: /berth install: a problem.*\n.*--domain: "bad_domain!" is not a valid DNS name/ },
    { args: ['--domain', 'apps.example.com', '--ssh-port', '0'], code: 'bad_arguments', message: /--ssh-port 0: a systemd socket needs a fixed port/ },
    { args: ['--domain', 'apps.example.com', '--bind', 'localhost'], code: 'bad_arguments', message: /--bind "localhost": a systemd socket listens on an IP address/ },
    { args: ['--domain', 'apps.example.com', '--stack-image', "it's"], code: 'bad_arguments', message: /BERTH_STACK_IMAGE: a value with a quote/ },
    { args: ['--domain', 'apps.example.com', '--admin-key', 'missing.pub'], code: 'key_file_unreadable', message: /--admin-key: cannot read missing\.pub: ENOENT/ },
    { args: ['--domain', 'apps.example.com', '--admin-key'], code: 'bad_arguments', message: /--admin-key needs a value/ },
    { args: ['--domain', 'apps.example.com', '--root', 'no/such/dir'], code: 'bad_arguments', message: /--root: no\/such\/dir is not a directory/ },
  ];
  for (const c of cases) {
    const w = world({ root: c.root ?? true });
    const before = tree(w.root);
    await assert.rejects(runInstall(c.args, w.ctx), (e: unknown) => {
      assert.ok(e instanceof UserError, `${c.args.join(' ')}: ${String(e)}`);
      assert.equal(e.code, c.code, c.args.join(' '));
      assert.match(e.message, c.message);
      if (c.hint) assert.match(e.hint ?? '', c.hint);
      return true;
    });
    assert.deepEqual(tree(w.root), before, `${c.args.join(' ')} changed nothing`);
    assert.deepEqual(w.ran, []);
  }
  // A private key, or a second "admin" key, is refused before anything is written.
  const w = world();
  await assert.rejects(runInstall(['--domain', 'apps.example.com', '--admin-key', w.publicKey.replace(/\.pub$/, '')], w.ctx), /private key/i);
  await runInstall(['--domain', 'apps.example.com', '--admin-key', w.publicKey], w.ctx);
  const other = world();
  const before = tree(w.root);
  w.ran.length = 0;
  await assert.rejects(runInstall(['--domain', 'apps.example.com', '--ssh-port', '22', '--admin-key', other.publicKey], w.ctx), (e: unknown) => {
    assert.ok(e instanceof UserError && e.code === 'key_exists');
    assert.match(e.hint!, /berth ssh-keys:add NAME/);
    return true;
  });
  assert.deepEqual(tree(w.root), before);
  assert.deepEqual(w.ran, []);
});

test('an admin key is refused, changing nothing, while berth serve runs on the data dir: the daemon owns keys.json', async () => {
  const w = world();
  await runInstall(['--domain', 'apps.example.com'], w.ctx);
  fs.writeFileSync(path.join(w.root, 'var/lib/berth/berth.pid'), `${process.pid}\n`);
  const before = tree(w.root);
  w.ran.length = 0;
  await assert.rejects(runInstall(['--domain', 'apps.example.com', '--admin-key', w.publicKey], w.ctx), (e: unknown) => {
    assert.ok(e instanceof UserError && e.code === 'berth_running', String(e));
    assert.match(e.hint!, /berth ssh-keys:add admin /);
    return true;
  });
  assert.deepEqual(tree(w.root), before);
  assert.deepEqual(w.ran, []);
  // Without the key, a reinstall goes ahead and says that a running berth keeps its flags until restarted.
  await runInstall(['--domain', 'apps.example.com'], w.ctx);
  assert.match(w.out.text(), /berth was installed before: if it was running, it keeps its flags and binary until `systemctl restart berth`/);
});

test('where systemd runs, uninstall stops and disables the units before removing them, reloads after, and keeps the data', async () => {
  const w = world();
  await runInstall(['--domain', 'apps.example.com'], w.ctx);
  fs.mkdirSync(path.join(w.root, 'var/lib/berth/state'));
  fs.writeFileSync(path.join(w.root, 'var/lib/berth/state/marker'), 'apps');
  w.ran.length = 0;
  assert.equal(await runUninstall([], w.ctx), 0);
  assert.deepEqual(
    w.ran.map((r) => [r.command, r.unitsPresent]),
    [
      ['systemctl disable --now berth-http.socket berth-https.socket berth-ssh.socket berth.service', true],
      ['systemctl daemon-reload', false],
    ],
  );
  assert.ok(!fs.existsSync(path.join(w.root, 'usr/local/bin/berth')));
  assert.ok(fs.existsSync(path.join(w.root, 'var/lib/berth/state/marker')));
  assert.ok(fs.existsSync(path.join(w.root, 'etc/berth/berth.env')));
  assert.match(w.out.text(), /Kept \/var\/lib\/berth and \/etc\/berth .*berth uninstall --purge removes them/);
  // Again, with nothing installed: no systemctl, nothing to remove.
  w.ran.length = 0;
  assert.equal(await runUninstall(['--purge'], w.ctx), 0);
  assert.deepEqual(w.ran, []);
  assert.ok(!fs.existsSync(path.join(w.root, 'var/lib/berth')));
  assert.ok(!fs.existsSync(path.join(w.root, 'etc/berth')));
});

test('uninstall refuses, changing nothing, while a berth started by hand runs on the data dir where systemd does not run', async () => {
  const w = world({ systemd: false });
  await runInstall(['--domain', 'apps.example.com'], w.ctx);
  // The pid file names a live process (this one), as a running berth serve's would.
  fs.writeFileSync(path.join(w.root, 'var/lib/berth/berth.pid'), `${process.pid}\n`);
  const before = tree(w.root);
  await assert.rejects(runUninstall(['--purge'], w.ctx), (e: unknown) => {
    assert.ok(e instanceof UserError && e.code === 'berth_running');
    assert.match(e.message, new RegExp(`berth serve \\(pid ${process.pid}\\) is running on /var/lib/berth`));
    assert.match(e.hint!, new RegExp(`kill ${process.pid}`));
    return true;
  });
  assert.deepEqual(tree(w.root), before);
});

test('uninstall --purge removes a data dir only when it looks like berth\'s, whatever the environment file says', async () => {
  const w = world({ systemd: false });
  const elsewhere = path.join(w.root, 'srv/precious');
  fs.mkdirSync(elsewhere, { recursive: true });
  fs.writeFileSync(path.join(elsewhere, 'thesis.tex'), 'years of work');
  await runInstall(['--domain', 'apps.example.com'], w.ctx);
  // An operator edits BERTH_DATA_DIR to a folder that is not berth's.
  const envFile = path.join(w.root, 'etc/berth/berth.env');
  fs.writeFileSync(envFile, fs.readFileSync(envFile, 'utf8').replace('BERTH_DATA_DIR=/var/lib/berth', 'BERTH_DATA_DIR=/srv/precious'));
  const before = tree(w.root);
  await assert.rejects(runUninstall(['--purge'], w.ctx), (e: unknown) => {
    assert.ok(e instanceof UserError && e.code === 'not_a_data_dir', String(e));
    assert.match(e.message, /\/srv\/precious \(BERTH_DATA_DIR in \/etc\/berth\/berth\.env\) does not look like berth's data dir/);
    return true;
  });
  assert.deepEqual(tree(w.root), before);
});

test('uninstall takes no unknown flag and needs root, except for --dry-run', async () => {
  const w = world({ root: false });
  await assert.rejects(runUninstall([], w.ctx), /must run as root/);
  await assert.rejects(runUninstall(['--dry-run', '--force'], w.ctx), /berth uninstall: unknown flag "--force"/);
  assert.equal(await runUninstall(['--dry-run'], w.ctx), 0);
  assert.match(w.out.text(), /nothing: berth is not installed/);
});
