import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import ssh2 from 'ssh2';
import { generateUsableEd25519, loadOrCreateHostKey } from '../src/git/host-key.ts';
import { tempDir } from './helpers/temp.ts';

test('a host key is created once with mode 0600 and kept', async () => {
  const dir = tempDir('hostkey');
  const first = await loadOrCreateHostKey(dir);
  assert.equal(first.created, true);
  assert.equal(fs.statSync(path.join(dir, 'ssh_host_ed25519_key')).mode & 0o777, 0o600);
  const again = await loadOrCreateHostKey(dir);
  assert.equal(again.created, false);
  assert.equal(again.fingerprint, first.fingerprint);
});

test('every generated host key parses back, though ssh2 drops a zero byte in about 1 of 256', () => {
  // 2000 pairs: a bad one would turn up about 8 times if it were not caught.
  for (let i = 0; i < 2000; i++) {
    const pair = generateUsableEd25519();
    assert.ok(!(ssh2.utils.parseKey(pair.public) instanceof Error), `public key ${i} parses`);
    assert.ok(!(ssh2.utils.parseKey(pair.private) instanceof Error), `private key ${i} parses`);
  }
});
