// The SSH server's host key: generated once (ed25519) into the data dir and kept, so clients'
// known_hosts entries stay valid across restarts.
import fs from 'node:fs/promises';
import path from 'node:path';
import ssh2 from 'ssh2';
import { writeFileAtomic } from '../state/atomic-file.ts';
import { fingerprintOf } from './key-store.ts';

export async function loadOrCreateHostKey(dir: string): Promise<{ privateKey: string; fingerprint: string; created: boolean }> {
  const file = path.join(dir, 'ssh_host_ed25519_key');
  let created = false;
  let privateKey: string;
  try {
    privateKey = await fs.readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    const pair = generateUsableEd25519();
    await writeFileAtomic(file, pair.private, 0o600);
    await writeFileAtomic(file + '.pub', pair.public + '\n', 0o644);
    privateKey = pair.private;
    created = true;
  }
  const parsed = ssh2.utils.parseKey(privateKey);
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key || key instanceof Error) throw new Error(`${file}: not a usable SSH private key${key instanceof Error ? `: ${key.message}` : ''}`);
  return { privateKey, fingerprint: fingerprintOf(key), created };
}

/**
 * ssh2 1.17 drops leading zero bytes of an ed25519 public key when it generates one, so about one
 * key in 256 cannot be read back (mscdex/ssh2#1513). Keep only a pair that parses both ways.
 */
export function generateUsableEd25519(): { private: string; public: string } {
  for (let attempt = 0; attempt < 32; attempt++) {
    const pair = ssh2.utils.generateKeyPairSync('ed25519', { comment: 'berth host key' });
    if (!(ssh2.utils.parseKey(pair.private) instanceof Error) && !(ssh2.utils.parseKey(pair.public) instanceof Error)) return pair;
  }
  throw new Error('could not generate a usable ed25519 host key in 32 attempts');
}
