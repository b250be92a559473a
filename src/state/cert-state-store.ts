// The certificate settings and history kept in state/certs.json: which apps opted out of
// automatic certificates (certs:auto APP off), per domain the last order attempts, per app the
// times of its ACME orders in the last hour, and per ACME directory the account's pause after a
// rate-limited answer, so backoff, caps and `certs:report` survive a restart. Restored entry by
// entry: a bad one is quarantined.
import { validateAppName } from '../app-name.ts';
import { check, JsonDocument } from './json-document.ts';

export interface DomainAttempts {
  /** Failed orders in a row since the last success. */
  failures: number;
  lastAttemptAt?: string;
  lastSuccessAt?: string;
  /** The last failure's message; cleared by a success. */
  lastError?: string;
  /** Earliest time of the next attempt after a failure. */
  nextAttemptAt?: string;
  /** The challenge type that validated the last certificate. */
  challenge?: string;
}

/** The CA answered rate-limited: no order of the account goes out before `until`. */
export interface AccountRateLimit {
  until: string;
  /** When the answer came. */
  since: string;
  /** The domain whose order got it. */
  domain: string;
  /** The CA's problem detail. */
  detail: string;
}

interface CertState {
  autoOff: string[];
  domains: Record<string, DomainAttempts>;
  /** Per app, the start times of its recent ACME orders, oldest first (older than an hour: pruned when written). */
  orders: Record<string, string[]>;
  /** Per ACME directory URL, the account's pause after a rate-limited answer. */
  rateLimits: Record<string, AccountRateLimit>;
}

export class CertStateStore {
  readonly #doc: JsonDocument<CertState>;
  #state: CertState = { autoOff: [], domains: {}, orders: {}, rateLimits: {} };

  constructor(file: string) {
    this.#doc = new JsonDocument(file, {
      schema: 1,
      empty: () => ({ autoOff: [], domains: {}, orders: {}, rateLimits: {} }),
      // orders and rateLimits came later: a file without them has none.
      parse: (raw, entries) => ({
        autoOff: entries.array(raw.autoOff, 'autoOff', 'app', (a) => validateAppName(check.string(a, 'an app name'))),
        domains: entries.object(raw.domains, 'domains', 'domain', parseAttempts),
        orders: raw.orders === undefined ? {} : entries.object(raw.orders, 'orders', 'app', parseOrders),
        rateLimits: raw.rateLimits === undefined ? {} : entries.object(raw.rateLimits, 'rateLimits', 'directory', parseRateLimit),
      }),
    });
  }

  /** Reads the document; an entry that cannot be read is quarantined (reported in the log), the others load. */
  async load(): Promise<void> {
    this.#state = (await this.#doc.restore()).value;
  }

  isAuto(app: string): boolean {
    return !this.#state.autoOff.includes(app);
  }

  async setAuto(app: string, on: boolean): Promise<void> {
    const autoOff = this.#state.autoOff.filter((a) => a !== app);
    if (!on) autoOff.push(app);
    await this.#write({ ...this.#state, autoOff: autoOff.sort() });
  }

  attempts(domain: string): DomainAttempts {
    return this.#state.domains[domain] ?? { failures: 0 };
  }

  async setAttempts(domain: string, attempts: DomainAttempts): Promise<void> {
    await this.#write({ ...this.#state, domains: { ...this.#state.domains, [domain]: attempts } });
  }

  /** The start times of the app's recorded ACME orders, oldest first. */
  orders(app: string): readonly string[] {
    return this.#state.orders[app] ?? [];
  }

  /** Records an order of the app at `at`, dropping its orders from before `keepFrom`. */
  async recordOrder(app: string, at: string, keepFrom: string): Promise<void> {
    const kept = this.orders(app).filter((t) => t >= keepFrom);
    await this.#write({ ...this.#state, orders: { ...this.#state.orders, [app]: [...kept, at] } });
  }

  rateLimit(directory: string): AccountRateLimit | undefined {
    return this.#state.rateLimits[directory];
  }

  async setRateLimit(directory: string, limit: AccountRateLimit): Promise<void> {
    await this.#write({ ...this.#state, rateLimits: { ...this.#state.rateLimits, [directory]: limit } });
  }

  /** Carries an app's settings and order count over to its new name (apps:rename). */
  async renameApp(from: string, to: string): Promise<void> {
    const autoOff = this.#state.autoOff.includes(from);
    const orders = this.#state.orders[from];
    if (!autoOff && !orders) return;
    const next = { ...this.#state };
    if (autoOff) next.autoOff = [...this.#state.autoOff.filter((a) => a !== from), to].sort();
    if (orders) {
      const { [from]: _moved, ...rest } = this.#state.orders;
      next.orders = { ...rest, [to]: orders };
    }
    await this.#write(next);
  }

  /** Drops an app's settings and order count (the app is destroyed). */
  async forgetApp(app: string): Promise<void> {
    if (!this.#state.autoOff.includes(app) && !this.#state.orders[app]) return;
    const { [app]: _dropped, ...orders } = this.#state.orders;
    await this.#write({ ...this.#state, autoOff: this.#state.autoOff.filter((a) => a !== app), orders });
  }

  async #write(next: CertState): Promise<void> {
    this.#state = next;
    await this.#doc.write(next);
  }
}

function parseAttempts(value: unknown): DomainAttempts {
  const o = check.object(value, 'the attempts');
  const entry: DomainAttempts = { failures: check.number(o.failures, 'failures') };
  for (const key of ['lastAttemptAt', 'lastSuccessAt', 'lastError', 'nextAttemptAt', 'challenge'] as const) {
    const v = check.optionalString(o[key], key);
    if (v !== undefined) entry[key] = v;
  }
  return entry;
}

function parseOrders(value: unknown, app: string): string[] {
  validateAppName(app);
  return check.array(value, 'the orders').map((t) => isoTime(check.string(t, 'an order time'), 'an order time'));
}

function parseRateLimit(value: unknown): AccountRateLimit {
  const o = check.object(value, 'the rate limit');
  return {
    until: isoTime(check.string(o.until, 'until'), 'until'),
    since: isoTime(check.string(o.since, 'since'), 'since'),
    domain: check.string(o.domain, 'domain'),
    detail: check.string(o.detail, 'detail'),
  };
}

function isoTime(text: string, what: string): string {
  if (Number.isNaN(Date.parse(text))) throw new Error(`${what} must be a time`);
  return text;
}
