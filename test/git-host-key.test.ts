import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import ssh2 from 'ssh2';
import { loadOrCreateHostKey } from '../src/git/host-key.ts';

test('a host key is created once with mode 0600, and every key made parses back (ssh2 drops a zero byte in 1 of 256)', async () => {
  // 600 keys: a key with a leading zero byte in its public half turns up about twice on average.
  for (let i = 0; i < 600; i++) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-hostkey-'));
    const first = await loadOrCreateHostKey(dir);
    assert.equal(first.created, true);
    const pub = fs.readFileSync(path.join(dir, 'ssh_host_ed25519_key.pub'), 'utf8');
    assert.ok(!(ssh2.utils.parseKey(pub) instanceof Error), `public key ${i} parses`);
    if (i === 0) {
      assert.equal(fs.statSync(path.join(dir, 'ssh_host_ed25519_key')).mode & 0o777, 0o600);
      const again = await loadOrCreateHostKey(dir);
      assert.equal(again.created, false);
      assert.equal(again.fingerprint, first.fingerprint);
    }
    fs.rmSync(dir, { recursive: true });
  }
});
