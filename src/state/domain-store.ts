// The domains each app is served at, kept in state/domains.json: the default APP.DOMAIN (from
// --domain, so it follows a change of that flag) unless removed, plus the domains added by hand.
// A domain belongs to one app only; APP.DOMAIN and the names under it are reserved for the app
// called APP, whether it exists yet or not. Restored app by app: a bad entry is quarantined.
import { isValidAppName, validateAppName } from '../app-name.ts';
import { DEFAULT_MAX_APP_DOMAINS } from '../domain-caps.ts';
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
  /** The most domains one app may have, its default domain included (--max-app-domains). Default: DEFAULT_MAX_APP_DOMAINS. */
  maxDomains?: number;
}

/** Who asks for a domain: only the admin (local CLI, admin key) may assign names under DOMAIN that no app name reserves. */
export interface DomainRequester {
  admin: boolean;
}

/**
 * A name held by an app other than the one it is reserved for: added before names under DOMAIN
 * were reserved, or left by a change of --domain. Kept (nothing is taken from the holder) and
 * reported; the app it is reserved for cannot be created (or renamed to) until it is released.
 */
export interface DomainConflict {
  domain: string;
  holder: string;
  reservedFor: string;
}

/** `forgotten` when the app was destroyed. */
export type DomainChangeListener = (app: string, forgotten: boolean) => void;

const DEFAULTS: AppDomains = Object.freeze({ default: true, added: Object.freeze([]) as unknown as string[] });

export class DomainStore {
  readonly #doc: JsonDocument<{ apps: Record<string, AppDomains> }>;
  readonly #domain: string;
  readonly #apps: () => readonly string[];
  readonly #maxDomains: number;
  readonly #listeners = new Set<DomainChangeListener>();
  #records = new Map<string, AppDomains>();

  constructor(file: string, options: DomainStoreOptions) {
    this.#domain = options.domain;
    this.#apps = options.apps;
    this.#maxDomains = options.maxDomains ?? DEFAULT_MAX_APP_DOMAINS;
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

  /** The most domains one app may have (--max-app-domains). */
  get maxDomains(): number {
    return this.#maxDomains;
  }

  /**
   * Whom a (validated) name is reserved for: the app APP for APP.DOMAIN and every name under it;
   * null (the admin only) for DOMAIN itself and names under it whose label is no app name;
   * undefined for names outside DOMAIN, which any app may add.
   */
  reservedFor(name: string): string | null | undefined {
    if (name === this.#domain) return null;
    if (!name.endsWith('.' + this.#domain)) return undefined;
    const label = name.slice(0, -this.#domain.length - 1).split('.').at(-1)!;
    return isValidAppName(label) ? label : null;
  }

  /** Every name an existing app holds that is reserved for another app (see DomainConflict). */
  conflicts(): DomainConflict[] {
    const apps = this.#apps();
    const found: DomainConflict[] = [];
    for (const [holder, record] of this.#records) {
      if (!apps.includes(holder)) continue;
      for (const domain of record.added) {
        const reservedFor = this.reservedFor(domain);
        if (typeof reservedFor === 'string' && reservedFor !== holder) found.push({ domain, holder, reservedFor });
      }
    }
    return found;
  }

  /**
   * Refuses to create an app (or rename one to `app`) while another app holds a name reserved for
   * it, so that an app always starts with its default domain and never silently without it.
   */
  checkCreatable(app: string): void {
    validateAppName(app);
    const held = this.conflicts().filter((c) => c.reservedFor === app);
    if (held.length === 0) return;
    const list = held.map((c) => `${c.domain} (held by app ${c.holder})`).join(', ');
    throw new UserError('domain_reserved_held', `names reserved for an app named ${app} are held by another app, from before names under ${this.#domain} were reserved for their app: ${list}`, {
      hint: `an admin can release them with ${held.map((c) => `\`domains:remove ${c.holder} ${c.domain}\``).join(', ')}; then create ${app}, which gets ${this.defaultDomain(app)}`,
    });
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

  /** Adds domains to an app; returns the ones that were not there yet. Refused beyond the cap of domains per app. */
  async add(app: string, inputs: readonly string[], by: DomainRequester): Promise<string[]> {
    const names = this.#validate(app, inputs, by);
    const current = this.hostnames(app);
    const fresh = names.filter((n) => !current.includes(n));
    if (fresh.length === 0) return [];
    this.#checkCap(app, current.length + fresh.length);
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
  async set(app: string, inputs: readonly string[], by: DomainRequester): Promise<string[]> {
    if (inputs.length === 0) {
      throw new UserError('bad_arguments', 'domains:set needs at least one domain', { hint: `to take a domain away, use \`domains:remove ${app} DOMAIN\`` });
    }
    const names = this.#validate(app, inputs, by);
    this.#checkCap(app, names.length);
    const record: AppDomains = { default: names.includes(this.defaultDomain(app)), added: names.filter((n) => n !== this.defaultDomain(app)) };
    await this.#save(app, record);
    return this.hostnames(app);
  }

  /**
   * Moves an app's domains to its new name (apps:rename): added domains go along, and the default
   * follows the name (TO.DOMAIN instead of FROM.DOMAIN), and so do added names under the old
   * default (www.FROM.DOMAIN becomes www.TO.DOMAIN), which are reserved for the old name. No
   * change is announced: the rename publishes the new routes itself, replacing the old ones in
   * one swap.
   */
  async rename(from: string, to: string): Promise<void> {
    const record = this.#records.get(from);
    if (!record) return;
    const under = '.' + this.defaultDomain(from);
    const added = record.added.map((n) => (n.endsWith(under) ? n.slice(0, -under.length) + '.' + this.defaultDomain(to) : n));
    const next = new Map(this.#records);
    next.delete(from);
    next.set(to, { default: record.default, added: [...new Set(added)] });
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

  /**
   * Normalises the names and refuses any that is reserved for another app (or for the admin), or
   * that another existing app serves. Names the app has already pass: a name it held before the
   * reservation stays its own.
   */
  #validate(app: string, inputs: readonly string[], by: DomainRequester): string[] {
    validateAppName(app);
    if (!this.#apps().includes(app)) {
      throw new UserError('app_not_found', `app "${app}" does not exist`, { hint: `create it with \`apps:create ${app}\` or by pushing to it` });
    }
    const names = [...new Set(inputs.map(validateDomainName))];
    const current = this.hostnames(app);
    for (const name of names) {
      if (current.includes(name)) continue;
      const reservedFor = this.reservedFor(name);
      if (typeof reservedFor === 'string' && reservedFor !== app) {
        throw new UserError('domain_reserved', `${name} is reserved for the app named ${reservedFor}: every app is served at APP.${this.#domain}, and the names under it are that app's alone, whether it exists yet or not`, {
          hint: `give ${app} a domain outside ${this.#domain}, or names under ${this.defaultDomain(app)}`,
        });
      }
      if (reservedFor === null && !by.admin) {
        throw new UserError('domain_reserved', `${name} is under berth's own domain ${this.#domain}, whose names only an admin assigns`, {
          hint: `give ${app} a domain outside ${this.#domain}, or names under ${this.defaultDomain(app)}`,
        });
      }
      const holder = this.appOf(name);
      if (holder !== undefined && holder !== app) {
        throw new UserError('domain_in_use', `${name} already belongs to app ${holder}`, {
          hint: `a domain belongs to one app only: remove it there first with \`domains:remove ${holder} ${name}\``,
        });
      }
    }
    return names;
  }

  #checkCap(app: string, count: number): void {
    if (count <= this.#maxDomains) return;
    throw new UserError('domain_cap', `${app} would have ${count} domains, and an app may have at most ${this.#maxDomains}, its default domain included (berth serve --max-app-domains)`, {
      hint: `remove one first with \`domains:remove ${app} DOMAIN\`, or ask the admin to raise --max-app-domains`,
    });
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
