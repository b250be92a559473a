// The SSH public keys allowed to push and run commands, kept in state/keys.json; parsed once
// and held in memory so the SSH server checks a new key the moment it is added, and looks each
// key up again by fingerprint for every command and push. A scoped key names apps by their id,
// so a new app of a destroyed app's name is not the key's.
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
  apps?: AppScope[];
  /** A key limited to apps may create backing services (ssh-keys:add --apps A --services); admin keys always may. */
  services?: boolean;
}

/**
 * One app a scoped key may use. With `id`: that app, whatever it is called now (`name` is the
 * name it had when last seen, for messages once it is destroyed). Without: a name no app bears
 * yet, which the key may create; the first app to bear it binds the scope to its id.
 */
export interface AppScope {
  name: string;
  id?: string;
}

/** Whether a key may use the app called `name` (`app`: that app, if it exists). */
export function scopeAllows(key: KeyRecord, name: string, app: { id: string } | undefined): boolean {
  if (!key.apps) return true;
  return key.apps.some((s) => (app ? s.id === app.id : s.id === undefined && s.name === name));
}

/** A scoped key's apps as people read them: their names now (`nameOf` looks an id up), `(destroyed app NAME)` for one that is gone. */
export function scopeNames(apps: readonly AppScope[], nameOf: (id: string) => string | undefined): string[] {
  return apps.map((s) => (s.id === undefined ? s.name : (nameOf(s.id) ?? `(destroyed app ${s.name})`)));
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
  private readonly listeners: Array<() => void> = [];
  /** Changes run one at a time, each on the records the one before left. */
  private changing: Promise<unknown> = Promise.resolve();
  /** The id of the app called `name` now, for the migration of keys.json from names to ids. */
  private appIdOf: (name: string) => string | undefined = () => undefined;

  constructor(file: string) {
    this.doc = new JsonDocument(file, {
      schema: 2,
      empty: () => ({ keys: [] }),
      // Schema 1 scoped keys by app name: each name becomes the app that bears it at the upgrade.
      migrate: { 1: (raw) => ({ ...raw, keys: Array.isArray(raw.keys) ? raw.keys.map((k) => this.migrateKey(k)) : raw.keys }) },
      parse: (raw, entries) => ({ keys: entries.array(raw.keys, 'keys', 'key', parseKeyRecord, (k, i) => (typeof (k as KeyRecord | null)?.name === 'string' ? (k as KeyRecord).name : `#${i}`)) }),
    });
  }

  /**
   * Reads keys.json; a key entry that cannot be read is quarantined (reported in the log) and
   * cannot log in; the others load. `appIdOf` gives the id of the app of a name, for a keys.json
   * from before scopes held ids (load the apps first); a migration is written back only with it
   * (one without the apps' ids would lose the scopes' apps for good). `readOnly`: nothing is
   * written, not even a quarantine. Listeners hear of the load: connections of keys no longer
   * there are closed.
   */
  async load(options: { appIdOf?: (name: string) => string | undefined; readOnly?: boolean } = {}): Promise<void> {
    if (options.appIdOf) this.appIdOf = options.appIdOf;
    const readOnly = options.readOnly === true;
    const restored = await this.doc.restore({}, { readOnly });
    const { keys } = restored.value;
    const parsed = new Map<string, ParsedKey>();
    for (const record of keys) parsed.set(record.name, parsePublicKey(record.publicKey).key);
    this.records = keys;
    this.parsed = parsed;
    if (restored.migrated && options.appIdOf && !readOnly) await this.doc.write({ keys });
    this.changed();
  }

  list(): KeyRecord[] {
    return [...this.records];
  }

  /** The key with this fingerprint now: what a connection authenticated with it may do (undefined: removed). */
  byFingerprint(fingerprint: string): KeyRecord | undefined {
    return this.records.find((r) => r.fingerprint === fingerprint);
  }

  /** Calls `listener` after every change of the keys (added, removed, scope changed); returns what stops it. */
  onChange(listener: () => void): () => void {
    this.listeners.push(listener);
    return () => {
      const i = this.listeners.indexOf(listener);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  /** Adds a key from the text of a public key file (one key). Refuses private keys, bad keys, and duplicates. */
  add(name: string, text: string, apps?: AppScope[], options: { services?: boolean } = {}): Promise<KeyRecord> {
    return this.serial(() => this.addNow(name, text, apps, options.services === true));
  }

  private async addNow(name: string, text: string, apps: AppScope[] | undefined, services: boolean): Promise<KeyRecord> {
    if (!KEY_NAME.test(name)) {
      throw new UserError('invalid_key_name', `invalid key name "${name}"`, { hint: 'use letters, digits, dot, dash, underscore or @ (at most 64 characters)' });
    }
    checkScopes(apps);
    const { key, line } = parsePublicKey(text);
    const fingerprint = fingerprintOf(key);
    if (this.records.some((r) => r.name === name)) {
      throw new UserError('key_exists', `a key named "${name}" already exists`, { hint: `remove it first with \`ssh-keys:remove ${name}\`, or choose another name` });
    }
    const same = this.records.find((r) => r.fingerprint === fingerprint);
    if (same) throw new UserError('key_exists', `this key (${fingerprint}) is already added as "${same.name}"`);
    const record: KeyRecord = { name, fingerprint, publicKey: line, addedAt: new Date().toISOString(), ...(apps ? { apps } : {}), ...(apps && services ? { services } : {}) };
    const next = [...this.records, record];
    await this.doc.write({ keys: next });
    this.records = next;
    this.parsed.set(name, key);
    this.changed();
    return record;
  }

  remove(name: string): Promise<KeyRecord> {
    return this.serial(() => this.removeNow(name));
  }

  private async removeNow(name: string): Promise<KeyRecord> {
    const record = this.records.find((r) => r.name === name);
    if (!record) throw new UserError('key_not_found', `no key named "${name}"`, { hint: 'see the names with `ssh-keys:list`' });
    const next = this.records.filter((r) => r !== record);
    await this.doc.write({ keys: next });
    this.records = next;
    this.parsed.delete(name);
    this.changed();
    return record;
  }

  /** Changes a key's scope (undefined: an admin key); open connections use it from their next command. */
  setScope(name: string, apps: AppScope[] | undefined, options: { services?: boolean } = {}): Promise<KeyRecord> {
    return this.serial(async () => {
      checkScopes(apps);
      const record = this.records.find((r) => r.name === name);
      if (!record) throw new UserError('key_not_found', `no key named "${name}"`, { hint: 'see the names with `ssh-keys:list`' });
      const { apps: _old, services: _was, ...rest } = record;
      const updated: KeyRecord = { ...rest, ...(apps ? { apps } : {}), ...(apps && options.services ? { services: true } : {}) };
      await this.replace((r) => (r === record ? updated : r));
      return updated;
    });
  }

  /** The app called `name` now exists as `id`: scopes waiting for that name are bound to it. */
  bindApp(name: string, id: string): Promise<void> {
    return this.serial(() =>
      this.replace((r) => {
        if (!r.apps?.some((s) => s.id === undefined && s.name === name)) return r;
        return { ...r, apps: r.apps.map((s) => (s.id === undefined && s.name === name ? { name, id } : s)) };
      }),
    );
  }

  /** The app `id` is called `name` now: scopes keep its new name for their messages. */
  appRenamed(id: string, name: string): Promise<void> {
    return this.serial(() => this.replace((r) => (r.apps?.some((s) => s.id === id) ? { ...r, apps: r.apps.map((s) => (s.id === id ? { name, id } : s)) } : r)));
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.changing.then(fn);
    this.changing = next.catch(() => {});
    return next;
  }

  /** Writes the records `change` maps to, if it changed any. */
  private async replace(change: (record: KeyRecord) => KeyRecord): Promise<void> {
    const next = this.records.map(change);
    if (next.every((r, i) => r === this.records[i])) return;
    await this.doc.write({ keys: next });
    this.records = next;
    this.changed();
  }

  private changed(): void {
    for (const listener of this.listeners) listener();
  }

  private migrateKey(k: unknown): unknown {
    const apps = (k as { apps?: unknown } | null)?.apps;
    if (!Array.isArray(apps)) return k;
    return {
      ...(k as object),
      apps: apps.map((name) => {
        const id = typeof name === 'string' ? this.appIdOf(name) : undefined;
        return id ? { name, id } : { name };
      }),
    };
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
  const apps =
    o.apps === undefined
      ? undefined
      : check.array(o.apps, 'apps').map((a): AppScope => {
          const scope = check.object(a, 'an app scope');
          const id = check.optionalString(scope.id, 'an app id');
          return { name: check.string(scope.name, 'an app name'), ...(id ? { id } : {}) };
        });
  const record: KeyRecord = {
    name: check.string(o.name, 'name'),
    fingerprint: check.string(o.fingerprint, 'fingerprint'),
    publicKey: check.string(o.publicKey, 'publicKey'),
    addedAt: check.string(o.addedAt, 'addedAt'),
    ...(apps ? { apps } : {}),
    ...(apps && o.services === true ? { services: true } : {}),
  };
  parsePublicKey(record.publicKey);
  return record;
}

function checkScopes(apps: AppScope[] | undefined): void {
  for (const app of apps ?? []) if (!isValidAppName(app.name)) throw new UserError('invalid_app_name', `invalid app name "${app.name}" in --apps`);
  if (apps?.length === 0) throw new UserError('invalid_scope', 'a scoped key needs at least one app', { hint: 'give --apps APP,APP, or make it an admin key' });
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
