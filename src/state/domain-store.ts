// The domains each app is served at, kept in state/domains.json: the default APP.DOMAIN (from
// --domain, so it follows a change of that flag) unless removed, plus the domains added by hand.
// A domain belongs to one app only. Restored app by app: a bad entry is quarantined.
import { validateAppName } from '../app-name.ts';
import { validateDomainName } from '../domain-name.ts';
import { UserError } from '../errors.ts';
import { log } from '../log.ts';
import { check, JsonDocument } from './json-document.ts';

export interface AppDomains {
  /** Whether APP.DOMAIN is served. */
  default: boolean;
  /** Domains added with domains:add or domains:set, in the order they were added. */
  added: string[];
}

export interface DomainStoreOptions {
  /** The --domain suffix: an app's default domain is APP.DOMAIN. */
  domain: string;
  /** The names of the apps that exist; only they hold domains. */
  apps(): readonly string[];
}

/** `forgotten` when the app was destroyed. */
export type DomainChangeListener = (app: string, forgotten: boolean) => void;

const DEFAULTS: AppDomains = Object.freeze({ default: true, added: Object.freeze([]) as unknown as string[] });

export class DomainStore {
  readonly #doc: JsonDocument<{ apps: Record<string, AppDomains> }>;
  readonly #domain: string;
  readonly #apps: () => readonly string[];
  readonly #listeners = new Set<DomainChangeListener>();
  #records = new Map<string, AppDomains>();

  constructor(file: string, options: DomainStoreOptions) {
    this.#domain = options.domain;
    this.#apps = options.apps;
    this.#doc = new JsonDocument(file, {
      schema: 1,
      empty: () => ({ apps: {} }),
      parse: (raw, entries) => ({ apps: entries.object(raw.apps, 'apps', 'app', parseAppDomains) }),
    });
  }

  get file(): string {
    return this.#doc.file;
  }

  /**
   * Reads the document. An app's entry that cannot be read is quarantined (reported in the log)
   * and that app gets its default domain; the others load.
   */
  async load(): Promise<void> {
    this.#records = new Map(Object.entries((await this.#doc.restore()).value.apps));
  }

  /** The app's default domain, APP.DOMAIN, whether or not it is served. */
  defaultDomain(app: string): string {
    return `${app}.${this.#domain}`;
  }

  /**
   * The domains `app` is served at, the default first. The default is left out when another
   * app has added that same name by hand (possible when it was added before this app existed).
   */
  hostnames(app: string): string[] {
    const record = this.#records.get(app) ?? DEFAULTS;
    const names: string[] = [];
    if (record.default) {
      const name = this.defaultDomain(app);
      if (!this.#addedByOther(app, name)) names.push(name);
    }
    for (const name of record.added) if (!names.includes(name)) names.push(name);
    return names;
  }

  /** The existing app that serves `domain`, if any. */
  appOf(domain: string): string | undefined {
    for (const app of this.#apps()) if (this.hostnames(app).includes(domain)) return app;
    return undefined;
  }

  /** Adds domains to an app; returns the ones that were not there yet. */
  async add(app: string, inputs: readonly string[]): Promise<string[]> {
    const names = this.#validate(app, inputs);
    const current = this.hostnames(app);
    const fresh = names.filter((n) => !current.includes(n));
    if (fresh.length === 0) return [];
    const record = this.#copy(app);
    for (const name of fresh) {
      if (name === this.defaultDomain(app)) record.default = true;
      else record.added.push(name);
    }
    await this.#save(app, record);
    return fresh;
  }

  /** Removes domains from an app (its default domain too); every name must be one of the app's. */
  async remove(app: string, inputs: readonly string[]): Promise<string[]> {
    const names = inputs.map(validateDomainName);
    validateAppName(app);
    const current = this.hostnames(app);
    const missing = names.filter((n) => !current.includes(n));
    if (missing.length > 0) {
      throw new UserError('domain_not_found', `${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not a domain of ${app}`, {
        hint: `see the app's domains with \`domains:list ${app}\``,
      });
    }
    const record = this.#copy(app);
    for (const name of names) {
      if (name === this.defaultDomain(app)) record.default = false;
      record.added = record.added.filter((n) => n !== name);
    }
    await this.#save(app, record);
    return [...new Set(names)];
  }

  /** Replaces all of an app's domains (the default domain is kept only if it is listed). */
  async set(app: string, inputs: readonly string[]): Promise<string[]> {
    if (inputs.length === 0) {
      throw new UserError('bad_arguments', 'domains:set needs at least one domain', { hint: `to take a domain away, use \`domains:remove ${app} DOMAIN\`` });
    }
    const names = this.#validate(app, inputs);
    const record: AppDomains = { default: names.includes(this.defaultDomain(app)), added: names.filter((n) => n !== this.defaultDomain(app)) };
    await this.#save(app, record);
    return this.hostnames(app);
  }

  /**
   * Moves an app's domains to its new name (apps:rename): added domains go along, and the default
   * follows the name (TO.DOMAIN instead of FROM.DOMAIN). No change is announced: the rename
   * publishes the new routes itself, replacing the old ones in one swap.
   */
  async rename(from: string, to: string): Promise<void> {
    const record = this.#records.get(from);
    if (!record) return;
    const next = new Map(this.#records);
    next.delete(from);
    next.set(to, record);
    await this.#doc.write({ apps: Object.fromEntries(next) });
    this.#records = next;
  }

  /** Forgets an app that is destroyed, releasing its domains. */
  async forget(app: string): Promise<void> {
    if (this.#records.has(app)) {
      const next = new Map(this.#records);
      next.delete(app);
      await this.#doc.write({ apps: Object.fromEntries(next) });
      this.#records = next;
    }
    this.#emit(app, true);
  }

  /** Called after every change of an app's domains (in the daemon: re-publish routes, fetch certificates). */
  onChange(listener: DomainChangeListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Normalises the names and refuses any that another existing app serves. */
  #validate(app: string, inputs: readonly string[]): string[] {
    validateAppName(app);
    if (!this.#apps().includes(app)) {
      throw new UserError('app_not_found', `app "${app}" does not exist`, { hint: `create it with \`apps:create ${app}\` or by pushing to it` });
    }
    const names = [...new Set(inputs.map(validateDomainName))];
    for (const name of names) {
      const holder = this.appOf(name);
      if (holder !== undefined && holder !== app) {
        throw new UserError('domain_in_use', `${name} already belongs to app ${holder}`, {
          hint: `a domain belongs to one app only: remove it there first with \`domains:remove ${holder} ${name}\``,
        });
      }
    }
    return names;
  }

  #addedByOther(app: string, name: string): boolean {
    for (const [other, record] of this.#records) if (other !== app && record.added.includes(name) && this.#apps().includes(other)) return true;
    return false;
  }

  #copy(app: string): AppDomains {
    const record = this.#records.get(app) ?? DEFAULTS;
    return { default: record.default, added: [...record.added] };
  }

  async #save(app: string, record: AppDomains): Promise<void> {
    const next = new Map(this.#records);
    next.set(app, record);
    await this.#doc.write({ apps: Object.fromEntries(next) });
    this.#records = next;
    this.#emit(app, false);
  }

  #emit(app: string, forgotten: boolean): void {
    for (const listener of this.#listeners) {
      try {
        listener(app, forgotten);
      } catch (e) {
        log.error('domains_listener_failed', { app, error: e });
      }
    }
  }
}

function parseAppDomains(value: unknown, app: string): AppDomains {
  validateAppName(app);
  const o = check.object(value, 'the domains');
  if (typeof o.default !== 'boolean') throw new Error('default must be a boolean');
  const added = check.array(o.added, 'added').map((d) => validateDomainName(check.string(d, 'a domain')));
  return { default: o.default, added: [...new Set(added)] };
}
