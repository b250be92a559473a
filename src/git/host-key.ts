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
    const pair = ssh2.utils.generateKeyPairSync('ed25519', { comment: 'berth host key' });
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
