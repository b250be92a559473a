// Per-app proxy settings (`proxy:set`): one JSON document, state/proxy.json, holding only what was
// overridden, as the user wrote it, restored app by app. The proxy reads the resolved settings and
// is told of changes.
import { validateAppName } from '../app-name.ts';
import { isSettingKey, normaliseSetting, requireSettingKey, resetsSetting, resolveSettings, type AppProxySettings, type SettingKey, type StoredOverrides } from './proxy-settings.ts';
import { check, JsonDocument, type DocumentSpec } from './json-document.ts';

interface ProxyDocument {
  apps: Record<string, StoredOverrides>;
}

const SCHEMA = 1;

const spec: DocumentSpec<ProxyDocument> = {
  schema: SCHEMA,
  empty: () => ({ apps: {} }),
  parse: (raw, entries) => ({ apps: entries.object(raw.apps, 'apps', 'app', parseOverrides) }),
};

/** One app's entry; a bad key or value sets the whole entry aside (the app falls back to the defaults). */
function parseOverrides(value: unknown, app: string): StoredOverrides {
  validateAppName(app);
  const overrides: StoredOverrides = {};
  for (const [key, text] of Object.entries(check.object(value, 'the settings'))) {
    if (!isSettingKey(key)) throw new Error(`unknown setting "${key}"`);
    overrides[key] = normaliseSetting(key, check.string(text, key));
  }
  return overrides;
}

export type SettingsListener = (settings: ReadonlyMap<string, AppProxySettings>) => void;

export class ProxySettingsStore {
  readonly #doc: JsonDocument<ProxyDocument>;
  #apps = new Map<string, StoredOverrides>();
  readonly #listeners: SettingsListener[] = [];

  constructor(file: string) {
    this.#doc = new JsonDocument(file, spec);
  }

  /** Reads the document; an app's entry that cannot be read is quarantined (reported in the log) and that app gets the defaults. */
  async load(): Promise<void> {
    this.#apps = new Map(Object.entries((await this.#doc.restore()).value.apps));
  }

  /** What `app` overrides (a copy). */
  overrides(app: string): StoredOverrides {
    return { ...this.#apps.get(app) };
  }

  /** Sets one key (`value` checked and normalised), or removes the override when `value` is undefined or says off. Returns the stored text. */
  async set(app: string, key: string, value: string | undefined): Promise<string | undefined> {
    const next: StoredOverrides = this.overrides(app);
    let stored: string | undefined;
    if (value === undefined || resetsSetting(key, value)) {
      requireSettingKey(key); // the key must exist even to be reset
      delete next[key as SettingKey];
    } else {
      stored = normaliseSetting(key, value);
      next[key as SettingKey] = stored;
    }
    const apps = new Map(this.#apps);
    if (Object.keys(next).length === 0) apps.delete(app);
    else apps.set(app, next);
    await this.#write(apps);
    return stored;
  }

  /** Carries an app's overrides over to its new name (apps:rename). */
  async renameApp(from: string, to: string): Promise<void> {
    const overrides = this.#apps.get(from);
    if (!overrides) return;
    const apps = new Map(this.#apps);
    apps.delete(from);
    apps.set(to, overrides);
    await this.#write(apps);
  }

  async removeApp(app: string): Promise<void> {
    if (!this.#apps.has(app)) return;
    const apps = new Map(this.#apps);
    apps.delete(app);
    await this.#write(apps);
  }

  /** Every app with overrides, resolved against the defaults. */
  resolved(): Map<string, AppProxySettings> {
    const out = new Map<string, AppProxySettings>();
    for (const [app, overrides] of this.#apps) out.set(app, resolveSettings(overrides));
    return out;
  }

  /** Called with the resolved settings after every change. */
  onChange(listener: SettingsListener): void {
    this.#listeners.push(listener);
  }

  async #write(apps: Map<string, StoredOverrides>): Promise<void> {
    await this.#doc.write({ apps: Object.fromEntries([...apps].sort(([a], [b]) => (a < b ? -1 : 1))) });
    this.#apps = apps;
    const resolved = this.resolved();
    for (const listener of this.#listeners) listener(resolved);
  }
}
