// The SSH port as the outside sees it, against the real binary: Debian's ssh-audit finds nothing
// to fail or warn about and no compression; the real OpenSSH client still logs in; connections
// that never authenticate are capped per address and in all, and closed after the grace time.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import ssh2 from 'ssh2';
import { makeKey, run, startDaemon, tempDir, waitFor, type Daemon } from './helpers/daemon.ts';

const GRACE_S = 3;
const PER_ADDRESS = 3;
const IN_ALL = 5;

let daemon: Daemon;
const work = tempDir('e2e-listener');
let admin: { privateKey: string; publicKey: string };
const opened: net.Socket[] = [];

before(async () => {
  daemon = await startDaemon({
    args: ['--ssh-login-grace-time', String(GRACE_S), '--ssh-max-startups-per-address', String(PER_ADDRESS), '--ssh-max-startups', String(IN_ALL)],
  });
  admin = makeKey(work, 'listener-admin');
  assert.equal(daemon.cli(['ssh-keys:add', 'listener-admin', admin.publicKey]).code, 0);
});

after(async () => {
  for (const s of opened) s.destroy();
  await daemon.stop();
});

interface Finding {
  level: 'fail' | 'warn';
  /** `kex ecdh-sha2-nistp256`, `mac hmac-sha1`, ... */
  on: string;
  text: string;
}

/** ssh-audit's text report, read line by line: each [fail] and [warn] with the algorithm it is about. */
function parseAudit(text: string): { findings: Finding[]; compression: string; sections: Record<string, string[]> } {
  const findings: Finding[] = [];
  const sections: Record<string, string[]> = {};
  let on = '';
  for (const line of text.split('\n')) {
    const head = /^\((\w+)\) (\S+?)(?::)?\s/.exec(line);
    if (head) {
      on = `${head[1]} ${head[2]}`;
      (sections[head[1]!] ??= []).push(head[2]!);
    }
    for (const m of line.matchAll(/\[(fail|warn)\] (.*)$/g)) findings.push({ level: m[1] as 'fail' | 'warn', on, text: m[2]!.trim() });
  }
  const compression = /^\(gen\) compression: (.*)$/m.exec(text)?.[1]?.trim() ?? '';
  return { findings, compression, sections };
}

/** A plain TCP connection that says nothing; `received` is what the server sent. */
async function idleConnection(localAddress: string): Promise<{ socket: net.Socket; received: () => string; closed: Promise<number> }> {
  const socket = net.connect({ host: '127.0.0.1', port: daemon.sshPort, localAddress });
  opened.push(socket);
  let data = '';
  socket.on('data', (d: Buffer) => (data += d.toString('latin1')));
  socket.on('error', () => undefined);
  const started = Date.now();
  const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now() - started)));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return { socket, received: () => data, closed };
}

async function admitted(localAddress: string): Promise<{ socket: net.Socket; closed: Promise<number> }> {
  const c = await idleConnection(localAddress);
  await waitFor(`the banner on a connection from ${localAddress}`, () => c.received().startsWith('SSH-2.0-berth'), 10_000);
  return c;
}

async function refusedUnanswered(localAddress: string): Promise<void> {
  const c = await idleConnection(localAddress);
  const ms = await Promise.race([c.closed, new Promise<number>((r) => setTimeout(() => r(-1), 10_000))]);
  assert.notEqual(ms, -1, `a connection from ${localAddress} over the cap stays open`);
  assert.equal(c.received(), '', 'a connection over the cap gets nothing, not even the banner');
}

function sshFrom(localAddress: string, extra: string[] = []) {
  return run('ssh', [...daemon.sshArgs(admin.privateKey), '-b', localAddress, ...extra, 'berth@127.0.0.1', 'apps:list'], { timeoutMs: 60_000 });
}

async function closeAll(conns: { socket: net.Socket; closed: Promise<number> }[]): Promise<void> {
  for (const c of conns) c.socket.destroy();
  await Promise.all(conns.map((c) => c.closed));
  // The server counts a login as ended when it sees the close; give it that moment.
  await waitFor('the server to see the closes', () => sshFrom('127.0.0.1').code === 0, 10_000);
}

test('ssh-audit (Debian) finds no fail and no warn on the SSH port, and no compression', (t) => {
  const r = run('ssh-audit', ['-n', '-p', String(daemon.sshPort), '127.0.0.1'], { timeoutMs: 120_000 });
  assert.match(r.stdout, /# key exchange algorithms/, `ssh-audit did not audit:\n${r.stdout}\n${r.stderr}`);
  const { findings, compression, sections } = parseAudit(r.stdout);
  // ssh-audit 2.5 predates OpenSSH's strict key exchange (the Terrapin countermeasure) and warns
  // about its name only.
  const real = findings.filter((f) => f.text !== 'unknown algorithm');
  assert.deepEqual(real, [], `ssh-audit findings:\n${r.stdout}`);
  assert.deepEqual(findings.filter((f) => f.text === 'unknown algorithm').map((f) => f.on), ['kex kex-strict-s-v00@openssh.com']);
  assert.equal(compression, 'disabled', 'no compression is offered, before authentication or after');
  assert.doesNotMatch(r.stdout, /^\(rec\)/m, 'ssh-audit recommends no change');
  assert.deepEqual(sections.key, ['ssh-ed25519']);
  for (const [section, names] of Object.entries(sections)) t.diagnostic(`${section}: ${names.join(', ')}`);
});

test('the real OpenSSH client logs in and runs a command with its defaults, and with compression asked for', () => {
  const plain = sshFrom('127.0.0.1');
  assert.equal(plain.code, 0, plain.stderr);
  const compressed = sshFrom('127.0.0.1', ['-o', 'Compression=yes']);
  assert.equal(compressed.code, 0, compressed.stderr);
});

test('connections that never authenticate are capped per address: the next one from that address is closed unanswered, another address still logs in', async () => {
  const held = [];
  for (let i = 0; i < PER_ADDRESS; i++) held.push(await admitted('127.0.0.1'));
  await refusedUnanswered('127.0.0.1');
  const blocked = sshFrom('127.0.0.1');
  assert.equal(blocked.code, 255, 'the real ssh client from the full address is turned away');
  const other = sshFrom('127.0.0.2');
  assert.equal(other.code, 0, other.stderr);
  assert.match(daemon.logs(), /"event":"ssh_connection_refused".*"reason":"too_many_unauthenticated_from_address"/);
  await closeAll(held);
});

test('connections that never authenticate are capped in all: over the cap every address is closed unanswered', async () => {
  const held = [];
  for (let i = 0; i < PER_ADDRESS; i++) held.push(await admitted('127.0.0.2'));
  for (let i = PER_ADDRESS; i < IN_ALL; i++) held.push(await admitted('127.0.0.3'));
  await refusedUnanswered('127.0.0.4');
  assert.match(daemon.logs(), /"event":"ssh_connection_refused".*"reason":"too_many_unauthenticated"/);
  await closeAll(held);
  const after = sshFrom('127.0.0.4');
  assert.equal(after.code, 0, after.stderr);
});

test('a connection that does not authenticate within the grace time is closed: silent, and after the key exchange with authentication stalled', async () => {
  const silent = await admitted('127.0.0.5');
  // ssh2's client, a real SSH implementation, completes the key exchange and then never answers
  // the authentication step.
  const client = new ssh2.Client();
  const started = Date.now();
  let handshake = false;
  client.on('handshake', () => (handshake = true));
  client.on('error', () => undefined);
  const stalledClosed = new Promise<number>((resolve) => client.once('close', () => resolve(Date.now() - started)));
  client.connect({ host: '127.0.0.1', port: daemon.sshPort, localAddress: '127.0.0.5', username: 'berth', readyTimeout: 120_000, authHandler: () => undefined } as ssh2.ConnectConfig);
  const [silentMs, stalledMs] = await Promise.all([silent.closed, stalledClosed]);
  assert.ok(handshake, 'the stalled client finished the key exchange');
  for (const ms of [silentMs, stalledMs]) {
    assert.ok(ms >= GRACE_S * 1000 - 500, `closed after ${ms} ms, before the grace time`);
    assert.ok(ms < GRACE_S * 1000 + 20_000, `closed only after ${ms} ms`);
  }
  assert.equal((daemon.logs().match(/"event":"ssh_login_timeout"/g) ?? []).length >= 2, true);
  const later = sshFrom('127.0.0.5');
  assert.equal(later.code, 0, later.stderr);
});
