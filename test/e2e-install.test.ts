// berth install and uninstall with the real binary (dist/berth): --dry-run's output, an install
// into a temporary root checked by systemd-analyze verify and undone by uninstall (then --purge),
// refusals that change nothing, and the written socket units run for real under
// systemd-socket-activate: berth serves HTTP and SSH on the sockets it inherits, and connections
// made while berth serve restarts wait and are served.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { BINARY, run, tempDir, waitFor } from './helpers/daemon.ts';
import { runAsync } from './helpers/zero-downtime.ts';

const SYSTEM_PATHS = ['/usr/local/bin/berth', '/etc/berth', '/var/lib/berth', '/etc/systemd/system/berth.service', '/etc/systemd/system/berth-http.socket'];

function existing(paths: readonly string[]): string[] {
  return paths.filter((p) => fs.existsSync(p));
}

function berth(args: string[], options: { input?: string } = {}) {
  assert.ok(fs.existsSync(BINARY), `${BINARY} is missing: run \`node build.mjs\` first`);
  return run(BINARY, args, options);
}

/** Every path under a directory with its mode, sorted. */
function tree(dir: string): string[] {
  return fs
    .readdirSync(dir, { recursive: true, withFileTypes: true })
    .map((e) => path.join(e.parentPath, e.name))
    .map((full) => `${(fs.statSync(full).mode & 0o7777).toString(8)} ${path.relative(dir, full)}`)
    .sort();
}

/** The one value of `Key=` in a unit file. */
function unitValue(text: string, key: string): string {
  const values = [...text.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((m) => m[1]!);
  assert.equal(values.length, 1, `one ${key}= in\n${text}`);
  return values[0]!;
}

async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: n }, () => new Promise<net.Server>((resolve) => {
      const server = net.createServer();
      server.listen(0, '127.0.0.1', () => resolve(server));
    })),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

test('berth install --dry-run prints every file with its path, mode and content and every command, and changes nothing', () => {
  const before = existing(SYSTEM_PATHS);
  const r = berth(['install', '--dry-run', '--domain', 'apps.example.com', '--acme-email', 'ops@example.com']);
  assert.equal(r.code, 0, r.stderr);
  const out = r.stdout;
  assert.match(out, /^-----> berth install --dry-run: nothing is changed$/m);
  for (const line of [
    '       /etc/berth (0755)',
    '       /var/lib/berth (0700)',
    '=====> file /usr/local/bin/berth (0755)',
    '=====> file /etc/berth/berth.env (0600)',
    '=====> file /etc/systemd/system/berth-http.socket (0644)',
    '=====> file /etc/systemd/system/berth-https.socket (0644)',
    '=====> file /etc/systemd/system/berth-ssh.socket (0644)',
    '=====> file /etc/systemd/system/berth.service (0644)',
    '       ExecStart=/usr/local/bin/berth serve',
    '       EnvironmentFile=/etc/berth/berth.env',
    '       Sockets=berth-http.socket berth-https.socket berth-ssh.socket',
    '       ListenStream=80',
    '       ListenStream=443',
    '       ListenStream=2222',
    '       FileDescriptorName=http',
    '       FileDescriptorName=https',
    '       FileDescriptorName=ssh',
    '       BERTH_DOMAIN=apps.example.com',
    '       BERTH_ACME_EMAIL=ops@example.com',
    '       BERTH_DATA_DIR=/var/lib/berth',
    '       systemctl daemon-reload',
    '       systemctl enable --now berth-http.socket berth-https.socket berth-ssh.socket berth.service',
    '            git remote add berth ssh://berth@berth.apps.example.com:2222/myapp',
    '            git push berth main',
  ]) {
    assert.ok(out.split('\n').includes(line), `the dry run prints the line ${JSON.stringify(line)}:\n${out}`);
  }
  assert.match(out, new RegExp(`a copy of ${BINARY.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} \\(\\d+\\.\\d MB\\)`));
  assert.deepEqual(existing(SYSTEM_PATHS), before, 'nothing was written');
});

test('an install into a temporary root passes systemd-analyze verify; uninstall removes the units and the binary and keeps the data; --purge removes the data', () => {
  const root = tempDir('install-root');
  const key = path.join(tempDir('install-key'), 'id');
  run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
  const r = berth(['install', '--root', root, '--domain', 'apps.example.com', '--acme-email', 'ops@example.com', '--ssh-port', '22', '--admin-key', '-'], { input: fs.readFileSync(`${key}.pub`, 'utf8') });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Installed under .*, so no systemctl was run/);
  assert.match(r.stdout, /git remote add berth ssh:\/\/berth@berth\.apps\.example\.com:22\/myapp/);
  assert.deepEqual(tree(root), [
    '600 etc/berth/berth.env',
    '600 var/lib/berth/state/keys.json',
    '644 etc/systemd/system/berth-http.socket',
    '644 etc/systemd/system/berth-https.socket',
    '644 etc/systemd/system/berth-ssh.socket',
    '644 etc/systemd/system/berth.service',
    '700 var/lib/berth',
    '700 var/lib/berth/state',
    '755 etc',
    '755 etc/berth',
    '755 etc/systemd',
    '755 etc/systemd/system',
    '755 usr',
    '755 usr/local',
    '755 usr/local/bin',
    '755 usr/local/bin/berth',
    '755 var',
    '755 var/lib',
  ]);
  assert.ok(fs.readFileSync(path.join(root, 'usr/local/bin/berth')).equals(fs.readFileSync(BINARY)), 'the binary is a copy of dist/berth');
  assert.match(fs.readFileSync(path.join(root, 'etc/systemd/system/berth-ssh.socket'), 'utf8'), /^ListenStream=22$/m);

  // systemd-analyze resolves the units' dependencies (sysinit.target, ...) in the same root: the
  // system's own units are copied in beside berth's.
  fs.cpSync('/usr/lib/systemd/system', path.join(root, 'usr/lib/systemd/system'), { recursive: true, verbatimSymlinks: true });
  const units = ['berth.service', 'berth-http.socket', 'berth-https.socket', 'berth-ssh.socket'].map((u) => `/etc/systemd/system/${u}`);
  const verify = run('systemd-analyze', ['verify', `--root=${root}`, ...units]);
  assert.equal(verify.code, 0, `systemd-analyze verify:\n${verify.stdout}${verify.stderr}`);
  assert.equal(`${verify.stdout}${verify.stderr}`.trim(), '', 'systemd-analyze verify has no warning');
  // The check is real: a unit whose ExecStart is missing fails it.
  fs.renameSync(path.join(root, 'usr/local/bin/berth'), path.join(root, 'usr/local/bin/berth.away'));
  const broken = run('systemd-analyze', ['verify', `--root=${root}`, ...units]);
  assert.notEqual(broken.code, 0);
  assert.match(broken.stderr, /Command \/usr\/local\/bin\/berth is not executable/);
  fs.renameSync(path.join(root, 'usr/local/bin/berth.away'), path.join(root, 'usr/local/bin/berth'));
  fs.rmSync(path.join(root, 'usr/lib'), { recursive: true });

  const dry = berth(['uninstall', '--root', root, '--dry-run']);
  assert.equal(dry.code, 0, dry.stderr);
  for (const file of ['berth-http.socket', 'berth-https.socket', 'berth-ssh.socket', 'berth.service'].map((u) => `/etc/systemd/system/${u}`).concat('/usr/local/bin/berth')) {
    assert.ok(dry.stdout.split('\n').includes(`       ${file}`), `the dry run of uninstall lists ${file}:\n${dry.stdout}`);
  }
  assert.ok(fs.existsSync(path.join(root, 'usr/local/bin/berth')), 'the dry run of uninstall removed nothing');
  const removed = berth(['uninstall', '--root', root]);
  assert.equal(removed.code, 0, removed.stderr);
  assert.match(removed.stdout, /Kept \/var\/lib\/berth and \/etc\/berth/);
  assert.deepEqual(tree(root), [
    '600 etc/berth/berth.env',
    '600 var/lib/berth/state/keys.json',
    '700 var/lib/berth',
    '700 var/lib/berth/state',
    '755 etc',
    '755 etc/berth',
    '755 etc/systemd',
    '755 etc/systemd/system',
    '755 usr',
    '755 usr/local',
    '755 usr/local/bin',
    '755 var',
    '755 var/lib',
  ]);
  const purged = berth(['uninstall', '--root', root, '--purge']);
  assert.equal(purged.code, 0, purged.stderr);
  assert.deepEqual(tree(root), ['755 etc', '755 etc/systemd', '755 etc/systemd/system', '755 usr', '755 usr/local', '755 usr/local/bin', '755 var', '755 var/lib']);
});

test('install refuses bad input with what to do, changing nothing: not root, an unknown flag, no domain', () => {
  const root = tempDir('install-refused');
  const before = existing(SYSTEM_PATHS);
  // As nobody: the real check of the real process's uid.
  const asNobody = run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', BINARY, 'install', '--domain', 'apps.example.com']);
  assert.equal(asNobody.code, 1);
  assert.match(asNobody.stderr, /berth install writes to \/usr\/local\/bin, \/etc and \/var\/lib and runs systemctl, so it must run as root/);
  assert.match(asNobody.stderr, /run it with sudo, or add --dry-run/);
  const unknown = berth(['install', '--root', root, '--domain', 'apps.example.com', '--yes']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /berth install: unknown flag "--yes"/);
  assert.match(unknown.stderr, /run `berth install --help`/);
  const noDomain = berth(['install', '--root', root]);
  assert.equal(noDomain.code, 2);
  assert.match(noDomain.stderr, /berth install needs --domain/);
  const uninstallUnknown = berth(['uninstall', '--root', root, '--all']);
  assert.equal(uninstallUnknown.code, 2);
  assert.match(uninstallUnknown.stderr, /berth uninstall: unknown flag "--all"/);
  assert.deepEqual(tree(root), []);
  assert.deepEqual(existing(SYSTEM_PATHS), before);
  const help = berth(['install', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /--admin-key FILE\|-/);
});

test('under systemd-socket-activate with the installed socket units, berth serves HTTP and SSH on the inherited sockets, and connections made while it restarts wait and are served', async () => {
  const root = tempDir('install-activate');
  const dataDir = path.join(root, 'data');
  const gate = path.join(root, 'restart-now');
  const [httpPort, httpsPort, sshPort] = (await freePorts(3)) as [number, number, number];
  const install = berth(['install', '--root', root, '--data-dir', dataDir, '--domain', 'berth.test', '--bind', '127.0.0.1', '--http-port', String(httpPort), '--https-port', String(httpsPort), '--ssh-port', String(sshPort), '--network', 'berth-test']);
  assert.equal(install.code, 0, install.stderr);

  // What the units say, as systemd would take it: each socket's address and name, and the command.
  const sockets = ['http', 'https', 'ssh'].map((name) => fs.readFileSync(path.join(root, `etc/systemd/system/berth-${name}.socket`), 'utf8'));
  const listen = sockets.map((text) => unitValue(text, 'ListenStream'));
  const names = sockets.map((text) => unitValue(text, 'FileDescriptorName'));
  assert.deepEqual(listen, [`127.0.0.1:${httpPort}`, `127.0.0.1:${httpsPort}`, `127.0.0.1:${sshPort}`]);
  const service = fs.readFileSync(path.join(root, 'etc/systemd/system/berth.service'), 'utf8');
  const [binary, ...serveArgs] = unitValue(service, 'ExecStart').split(' ');
  assert.equal(binary, '/usr/local/bin/berth');
  const envFile = path.join(root, unitValue(service, 'EnvironmentFile'));
  const installed = path.join(root, binary!);

  // systemd-socket-activate execs its command, so it cannot hold the sockets across a restart
  // itself: the shell it runs keeps them open (as PID 1 does) and starts berth serve twice, the
  // second time once the test opens the gate. Each berth serve gets its own LISTEN_PID, as systemd gives.
  const start = `export LISTEN_PID=$$ && set -a && . "$1" && set +a && exec "$0" ${serveArgs.join(' ')}`;
  const script = `sh -c '${start}' "$1" "$2"; while [ ! -e "$3" ]; do sleep 0.1; done; sh -c '${start}' "$1" "$2"`;
  const activator = spawn('systemd-socket-activate', [...listen.flatMap((l) => ['-l', l]), `--fdname=${names.join(':')}`, 'sh', '-c', script, 'sh', installed, envFile, gate], {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let output = '';
  activator.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  activator.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise((resolve) => activator.once('exit', resolve));
  const started = () => output.split('\n').filter((l) => l.includes('"berth_started"')).length;
  const lockFile = path.join(dataDir, 'berth.pid');
  try {
    await waitFor('systemd-socket-activate listening', () => output.includes(`Listening on 127.0.0.1:${sshPort}`), 30_000);
    // The first connection starts the service (socket activation); it waits in the backlog meanwhile.
    const first = await runAsync('curl', ['-sS', '-m', '120', '-o', '/dev/null', '-w', '%{http_code}', '-H', 'Host: nothing.berth.test', `http://127.0.0.1:${httpPort}/`], { timeoutMs: 130_000 });
    assert.equal(first.stdout, '404', `berth's proxy answered on the inherited HTTP socket:\n${first.stderr}\n${output}`);
    await waitFor('berth_started', () => started() === 1, 60_000);
    const startedLine = JSON.parse(output.split('\n').find((l) => l.includes('"berth_started"'))!) as { httpPort: number; sshPort: number; pid: number };
    assert.deepEqual([startedLine.httpPort, startedLine.sshPort], [httpPort, sshPort]);
    const keyscan = await runAsync('ssh-keyscan', ['-T', '30', '-p', String(sshPort), '127.0.0.1'], { timeoutMs: 40_000 });
    assert.match(keyscan.stderr, /SSH-2\.0-berth_/, `berth's SSH server answered on the inherited SSH socket:\n${keyscan.stderr}`);
    assert.match(keyscan.stdout, /^\[127\.0\.0\.1\]:\d+ ssh-ed25519 AAAA/m);

    // Restart: the supervisor exits; nothing serves until the gate opens, yet connections are taken.
    const supervisor = Number(fs.readFileSync(lockFile, 'utf8').trim());
    assert.equal(supervisor, startedLine.pid);
    process.kill(supervisor, 'SIGTERM');
    await waitFor('the first berth serve to exit', () => !alive(supervisor), 60_000);
    const web = await connected(httpPort);
    web.write('GET / HTTP/1.1\r\nHost: nothing.berth.test\r\nConnection: close\r\n\r\n');
    const ssh = await connected(sshPort);
    assert.equal(started(), 1, 'no berth serve runs while the connections are made');
    assert.ok(!alive(supervisor) && !fs.existsSync(lockFile), 'no berth serve runs while the connections are made');
    fs.writeFileSync(gate, '');
    const [webAnswer, sshAnswer] = await Promise.all([readUntil(web, /\r\n\r\n/), readUntil(ssh, /\r\n/)]);
    assert.match(webAnswer, /^HTTP\/1\.1 404 /, 'the HTTP connection made during the restart is served by the new berth');
    assert.match(sshAnswer, /^SSH-2\.0-berth_/, 'the SSH connection made during the restart gets the new berth\'s banner');
    await waitFor('the second berth_started', () => started() === 2, 60_000);
    const after = await runAsync('curl', ['-sS', '-m', '30', '-o', '/dev/null', '-w', '%{http_code}', '-H', 'Host: nothing.berth.test', `http://127.0.0.1:${httpPort}/`], { timeoutMs: 40_000 });
    assert.equal(after.stdout, '404');
    process.kill(Number(fs.readFileSync(lockFile, 'utf8').trim()), 'SIGTERM');
    await exited;
  } finally {
    // Whatever failed: the process group (activator, shell, berth serve and its children) goes.
    if (activator.exitCode === null && activator.signalCode === null) {
      try {
        process.kill(-activator.pid!, 'SIGKILL');
      } catch {}
      await exited;
    }
    if (fs.existsSync(lockFile)) {
      const pid = Number(fs.readFileSync(lockFile, 'utf8').trim());
      if (pid > 0 && alive(pid)) process.kill(pid, 'SIGKILL');
    }
  }
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A TCP connection whose handshake completed (the kernel took it into the listen backlog). */
function connected(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
  });
}

function readUntil(socket: net.Socket, end: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    socket.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      if (end.test(text)) {
        socket.destroy();
        resolve(text);
      }
    });
    socket.once('error', reject);
    socket.once('close', () => reject(new Error(`closed before an answer; got ${JSON.stringify(text)}`)));
  });
}
