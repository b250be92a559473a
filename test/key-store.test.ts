import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import ssh2 from 'ssh2';
import { UserError } from '../src/errors.ts';
import { KeyStore } from '../src/git/key-store.ts';
import { logOf, quarantine } from './helpers/state.ts';
import { tempDir } from './helpers/temp.ts';

const dir = tempDir('keys');
function keygen(name: string, type = 'ed25519'): { pub: string; priv: string } {
  const file = path.join(dir, name);
  execFileSync('ssh-keygen', ['-q', '-t', type, '-N', '', '-C', name, '-f', file]);
  return { pub: fs.readFileSync(file + '.pub', 'utf8'), priv: fs.readFileSync(file, 'utf8') };
}

test('a key gets the same SHA256 fingerprint that ssh-keygen prints, and survives a reload', async () => {
  const { pub } = keygen('alice');
  const store = new KeyStore(path.join(dir, 'keys1.json'));
  await store.load();
  const record = await store.add('alice', pub);
  const expected = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', path.join(dir, 'alice.pub')], { encoding: 'utf8' }).split(' ')[1];
  assert.equal(record.fingerprint, expected);
  const again = new KeyStore(path.join(dir, 'keys1.json'));
  await again.load();
  assert.deepEqual(again.list().map((k) => k.name), ['alice']);
});

test('a duplicate name or the same key under another name is refused', async () => {
  const { pub } = keygen('bob');
  const { pub: other } = keygen('carol', 'rsa');
  const store = new KeyStore(path.join(dir, 'keys2.json'));
  await store.load();
  await store.add('bob', pub);
  await assert.rejects(store.add('bob', other), (e: unknown) => e instanceof UserError && e.code === 'key_exists');
  await assert.rejects(store.add('bob2', pub), (e: unknown) => e instanceof UserError && /already added as "bob"/.test(e.message));
});

test('private keys, garbage, several keys at once and bad names are refused with a reason', async () => {
  const { priv, pub } = keygen('dave');
  const store = new KeyStore(path.join(dir, 'keys3.json'));
  await store.load();
  await assert.rejects(store.add('dave', priv), /private key/);
  await assert.rejects(store.add('dave', 'ssh-ed25519 AAAAnotakey'), /not a valid SSH public key/);
  await assert.rejects(store.add('dave', pub + pub), /expected one public key/);
  await assert.rejects(store.add('../dave', pub), /invalid key name/);
  await assert.rejects(store.add('dave', ''), /no public key given/);
  assert.equal(store.list().length, 0);
});

test('match finds a key by its blob, including an RSA key offered as rsa-sha2-512', async () => {
  const { pub } = keygen('erin', 'rsa');
  const store = new KeyStore(path.join(dir, 'keys4.json'));
  await store.load();
  await store.add('erin', pub);
  const parsed = ssh2.utils.parseKey(pub);
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  assert.ok(key && !(key instanceof Error));
  assert.equal(store.match('rsa-sha2-512', key.getPublicSSH())?.record.name, 'erin');
  assert.equal(store.match('ssh-ed25519', key.getPublicSSH()), undefined);
  await store.remove('erin');
  assert.equal(store.match('ssh-rsa', key.getPublicSSH()), undefined);
});

test('a key entry in keys.json that cannot be read is quarantined with its name and reason, and the other keys still match', async () => {
  const { pub } = keygen('frank');
  const file = path.join(dir, 'state', 'keys.json');
  const store = new KeyStore(file);
  await store.load();
  await store.add('frank', pub);
  const doc = JSON.parse(fs.readFileSync(file, 'utf8'));
  doc.keys.push({ name: 'mallory', fingerprint: 'SHA256:x', publicKey: 'ssh-ed25519 AAAAnotakey', addedAt: doc.keys[0].addedAt });
  fs.writeFileSync(file, JSON.stringify(doc));
  const again = new KeyStore(file);
  const log = await logOf(() => again.load());
  assert.deepEqual(again.list().map((k) => k.name), ['frank']);
  const parsed = ssh2.utils.parseKey(pub);
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  assert.ok(key && !(key instanceof Error));
  assert.equal(again.match('ssh-ed25519', key.getPublicSSH())?.record.name, 'frank');
  const [moved] = quarantine(dir).entries;
  assert.deepEqual(moved?.entries.map((e) => [e.entry, e.key]), [['keys[1]', 'mallory']]);
  assert.match(moved!.entries[0]!.reason, /not a valid SSH public key/);
  assert.deepEqual(log.filter((l) => l.event === 'state_entry_quarantined').map((l) => l.key), ['mallory']);
});
