// The SSH public keys allowed to push and run commands, kept in state/keys.json; parsed once
// and held in memory so the SSH server checks a new key the moment it is added.
import { createHash, timingSafeEqual } from 'node:crypto';
import ssh2 from 'ssh2';
import type { ParsedKey } from 'ssh2';
import { isValidAppName } from '../app-name.ts';
import { UserError } from '../errors.ts';
import { check, JsonDocument } from '../state/json-document.ts';

export interface KeyRecord {
  name: string;
  /** OpenSSH style, `SHA256:` + unpadded base64 of the key blob's SHA-256. */
  fingerprint: string;
  /** The public key line as given: `type base64 [comment]`. */
  publicKey: string;
  addedAt: string;
  /** Apps this key may use; undefined means an admin key that may do everything. */
  apps?: string[];
}

export interface KeyMatch {
  record: KeyRecord;
  key: ParsedKey;
}

const KEY_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

export class KeyStore {
  private readonly doc: JsonDocument<{ keys: KeyRecord[] }>;
  private records: KeyRecord[] = [];
  private parsed = new Map<string, ParsedKey>();

  constructor(file: string) {
    this.doc = new JsonDocument(file, {
      schema: 1,
      empty: () => ({ keys: [] }),
      parse: (raw, entries) => ({ keys: entries.array(raw.keys, 'keys', 'key', parseKeyRecord, (k, i) => (typeof (k as KeyRecord | null)?.name === 'string' ? (k as KeyRecord).name : `#${i}`)) }),
    });
  }

  /** Reads keys.json; a key entry that cannot be read is quarantined (reported in the log) and cannot log in; the others load. */
  async load(): Promise<void> {
    const { keys } = (await this.doc.restore()).value;
    const parsed = new Map<string, ParsedKey>();
    for (const record of keys) parsed.set(record.name, parsePublicKey(record.publicKey).key);
    this.records = keys;
    this.parsed = parsed;
  }

  list(): KeyRecord[] {
    return [...this.records];
  }

  /** Adds a key from the text of a public key file (one key). Refuses private keys, bad keys, and duplicates. */
  async add(name: string, text: string, apps?: string[]): Promise<KeyRecord> {
    if (!KEY_NAME.test(name)) {
      throw new UserError('invalid_key_name', `invalid key name "${name}"`, { hint: 'use letters, digits, dot, dash, underscore or @ (at most 64 characters)' });
    }
    for (const app of apps ?? []) if (!isValidAppName(app)) throw new UserError('invalid_app_name', `invalid app name "${app}" in --apps`);
    const { key, line } = parsePublicKey(text);
    const fingerprint = fingerprintOf(key);
    if (this.records.some((r) => r.name === name)) {
      throw new UserError('key_exists', `a key named "${name}" already exists`, { hint: `remove it first with \`ssh-keys:remove ${name}\`, or choose another name` });
    }
    const same = this.records.find((r) => r.fingerprint === fingerprint);
    if (same) throw new UserError('key_exists', `this key (${fingerprint}) is already added as "${same.name}"`);
    const record: KeyRecord = { name, fingerprint, publicKey: line, addedAt: new Date().toISOString(), ...(apps ? { apps } : {}) };
    const next = [...this.records, record];
    await this.doc.write({ keys: next });
    this.records = next;
    this.parsed.set(name, key);
    return record;
  }

  async remove(name: string): Promise<KeyRecord> {
    const record = this.records.find((r) => r.name === name);
    if (!record) throw new UserError('key_not_found', `no key named "${name}"`, { hint: 'see the names with `ssh-keys:list`' });
    const next = this.records.filter((r) => r !== record);
    await this.doc.write({ keys: next });
    this.records = next;
    this.parsed.delete(name);
    return record;
  }

  /** The stored key whose blob equals the one a client offered, compared in constant time. */
  match(algo: string, blob: Buffer): KeyMatch | undefined {
    for (const record of this.records) {
      const key = this.parsed.get(record.name);
      if (!key) continue;
      const stored = key.getPublicSSH();
      if (stored.length === blob.length && timingSafeEqual(stored, blob) && keyAlgoMatches(key.type, algo)) return { record, key };
    }
    return undefined;
  }
}

function parseKeyRecord(value: unknown): KeyRecord {
  const o = check.object(value, 'the key');
  const apps = o.apps === undefined ? undefined : check.array(o.apps, 'apps').map((a) => check.string(a, 'an app name'));
  const record: KeyRecord = {
    name: check.string(o.name, 'name'),
    fingerprint: check.string(o.fingerprint, 'fingerprint'),
    publicKey: check.string(o.publicKey, 'publicKey'),
    addedAt: check.string(o.addedAt, 'addedAt'),
    ...(apps ? { apps } : {}),
  };
  parsePublicKey(record.publicKey);
  return record;
}

/** Parses exactly one OpenSSH public key; anything else is a UserError that says what was wrong. */
export function parsePublicKey(text: string): { key: ParsedKey; line: string } {
  if (/PRIVATE KEY/.test(text)) throw new UserError('invalid_key', 'that is a private key; give the public key (the .pub file)');
  const lines = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  if (lines.length === 0) throw new UserError('invalid_key', 'no public key given', { hint: 'pass a public key file such as ~/.ssh/id_ed25519.pub, or - to read it from stdin' });
  if (lines.length > 1) throw new UserError('invalid_key', `expected one public key, got ${lines.length} lines`, { hint: 'add keys one at a time, each under its own name' });
  const line = lines[0]!;
  const parsed = ssh2.utils.parseKey(line);
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key || key instanceof Error) {
    throw new UserError('invalid_key', `not a valid SSH public key: ${key instanceof Error ? key.message : 'unreadable'}`, {
      hint: 'give one line such as "ssh-ed25519 AAAA... you@host"',
    });
  }
  if (key.isPrivateKey()) throw new UserError('invalid_key', 'that is a private key; give the public key (the .pub file)');
  return { key, line };
}

export function fingerprintOf(key: ParsedKey): string {
  return 'SHA256:' + createHash('sha256').update(key.getPublicSSH()).digest('base64').replace(/=+$/, '');
}

// An RSA key may be offered as rsa-sha2-256/512; the blob is the same ssh-rsa key.
function keyAlgoMatches(type: string, algo: string): boolean {
  if (type === algo) return true;
  return type === 'ssh-rsa' && (algo === 'rsa-sha2-256' || algo === 'rsa-sha2-512');
}
