// Per-app proxy settings (`proxy:set`): one JSON document, state/proxy.json, holding only what was
// overridden, as the user wrote it. The proxy reads the resolved settings and is told of changes.
import { log } from '../log.ts';
import { isSettingKey, normaliseSetting, resolveSettings, type AppProxySettings, type SettingKey, type StoredOverrides } from './proxy-settings.ts';
import { check, JsonDocument, type DocumentSpec } from './json-document.ts';

interface ProxyDocument {
  apps: Record<string, StoredOverrides>;
}

const SCHEMA = 1;

const spec: DocumentSpec<ProxyDocument> = {
  schema: SCHEMA,
  empty: () => ({ apps: {} }),
  parse(raw) {
    const apps: Record<string, StoredOverrides> = {};
    for (const [app, value] of Object.entries(check.object(raw.apps, 'apps'))) {
      const overrides: StoredOverrides = {};
      for (const [key, text] of Object.entries(check.object(value, `apps.${app}`))) {
        if (!isSettingKey(key)) throw new Error(`apps.${app}: unknown setting "${key}"`);
        overrides[key] = normaliseSetting(key, check.string(text, `apps.${app}.${key}`));
      }
      apps[app] = overrides;
    }
    return { apps };
  },
};

export type SettingsListener = (settings: ReadonlyMap<string, AppProxySettings>) => void;

export class ProxySettingsStore {
  readonly #doc: JsonDocument<ProxyDocument>;
  #apps = new Map<string, StoredOverrides>();
  readonly #listeners: SettingsListener[] = [];

  constructor(file: string) {
    this.#doc = new JsonDocument(file, spec);
  }

  /** Reads the document; one that cannot be read is quarantined (reported in the log) and berth starts from the defaults. */
  async load(): Promise<void> {
    try {
      this.#apps = new Map(Object.entries((await this.#doc.read()).apps));
    } catch (e) {
      const movedTo = await this.#doc.quarantine().catch(() => undefined);
      log.error('state_proxy_settings_quarantined', { file: this.#doc.file, movedTo, error: e });
      this.#apps = new Map();
    }
  }

  /** What `app` overrides (a copy). */
  overrides(app: string): StoredOverrides {
    return { ...this.#apps.get(app) };
  }

  /** Sets one key (`value` checked and normalised), or removes the override when `value` is undefined. Returns the stored text. */
  async set(app: string, key: string, value: string | undefined): Promise<string | undefined> {
    const next: StoredOverrides = this.overrides(app);
    let stored: string | undefined;
    if (value === undefined) {
      normaliseSetting(key, '0'); // the key must exist even to be reset
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
