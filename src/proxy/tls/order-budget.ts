// Which ACME orders may go out now: each app's domains place at most --max-app-acme-orders in
// any hour, and after the CA answers rate-limited the whole account waits (every domain, every
// app) until the CA's Retry-After. Both live in state/certs.json, so a restart neither resets the
// count nor forgets the pause. Time comes from an injected clock.
import { ACME_ORDER_WINDOW_MS } from '../../domain-caps.ts';
import type { AccountRateLimit, CertStateStore } from '../../state/cert-state-store.ts';

/** The account's pause when a rate-limited answer has no Retry-After. */
export const DEFAULT_RATE_LIMIT_PAUSE_MS = 60 * 60 * 1000;
/** The longest pause berth takes from a Retry-After (Let's Encrypt's longest window is a week). */
export const MAX_RATE_LIMIT_PAUSE_MS = 7 * 24 * 60 * 60 * 1000;

/** An order that must wait for the app's cap or the account's pause: not a failure, it goes out at `until`. */
export class OrderDeferred extends Error {
  readonly until: number;
  constructor(message: string, until: number) {
    super(message);
    this.name = 'OrderDeferred';
    this.until = until;
  }
}

export interface OrderBudgetOptions {
  state: CertStateStore;
  /** The ACME directory: its account is the one a rate limit pauses. */
  directory: string;
  /** Orders per app per hour (--max-app-acme-orders). */
  maxPerHour: number;
  now: () => number;
}

export interface AppOrdersReport {
  /** Orders the app's domains placed in the last hour. */
  lastHour: number;
  cap: number;
  /** When the app may order again, when its hour is full. */
  nextOrderAt: string | null;
}

export class OrderBudget {
  readonly #options: OrderBudgetOptions;

  constructor(options: OrderBudgetOptions) {
    this.#options = options;
  }

  get maxPerHour(): number {
    return this.#options.maxPerHour;
  }

  /** The account's pause, while it lasts. */
  pause(): AccountRateLimit | undefined {
    const limit = this.#options.state.rateLimit(this.#options.directory);
    return limit && Date.parse(limit.until) > this.#options.now() ? limit : undefined;
  }

  /** When the app's next order may go out (epoch ms): now (or earlier), or when its hour has room, or when the account's pause ends. */
  nextOrderAt(app: string): number {
    const pause = this.pause();
    return Math.max(pause ? Date.parse(pause.until) : 0, this.#roomAt(app));
  }

  /** Why the app's next order waits, or undefined when it may go out now. */
  waitReason(app: string): string | undefined {
    const pause = this.pause();
    if (pause) return `the ACME account is paused until ${pause.until}: the CA answered rate-limited (${pause.detail})`;
    const room = this.#roomAt(app);
    if (room > this.#options.now()) return `${app} placed ${this.#options.maxPerHour} ACME orders in the last hour, its cap (berth serve --max-app-acme-orders); the next one at ${new Date(room).toISOString()}`;
    return undefined;
  }

  /** Counts one order of the app, or throws OrderDeferred (and counts nothing) when it must wait. */
  async take(app: string, domain: string): Promise<void> {
    const reason = this.waitReason(app);
    if (reason !== undefined) throw new OrderDeferred(`${domain}: ${reason}`, this.nextOrderAt(app));
    const now = this.#options.now();
    await this.#options.state.recordOrder(app, new Date(now).toISOString(), new Date(now - ACME_ORDER_WINDOW_MS).toISOString());
  }

  /** Pauses the whole account after a rate-limited answer for `domain`: for the CA's Retry-After, or an hour without one. */
  async rateLimited(domain: string, detail: string, retryAfterMs: number | undefined): Promise<AccountRateLimit> {
    const now = this.#options.now();
    const wait = Math.min(Math.max(retryAfterMs ?? DEFAULT_RATE_LIMIT_PAUSE_MS, 1000), MAX_RATE_LIMIT_PAUSE_MS);
    const until = now + wait;
    const current = this.pause();
    // Two answers close together: the later end wins, so a short Retry-After never shortens a long pause.
    if (current && Date.parse(current.until) >= until) return current;
    const limit: AccountRateLimit = { until: new Date(until).toISOString(), since: new Date(now).toISOString(), domain, detail };
    await this.#options.state.setRateLimit(this.#options.directory, limit);
    return limit;
  }

  report(app: string): AppOrdersReport {
    const room = this.#roomAt(app);
    return {
      lastHour: this.#recent(app).length,
      cap: this.#options.maxPerHour,
      nextOrderAt: room > this.#options.now() ? new Date(room).toISOString() : null,
    };
  }

  /** The app's orders within the last hour, oldest first. */
  #recent(app: string): number[] {
    const from = this.#options.now() - ACME_ORDER_WINDOW_MS;
    return this.#options.state.orders(app).map((t) => Date.parse(t)).filter((t) => t > from);
  }

  /** When the app's hour has room for one more order: when the order that fills the cap leaves the window. */
  #roomAt(app: string): number {
    const recent = this.#recent(app);
    const max = this.#options.maxPerHour;
    return recent.length < max ? 0 : recent[recent.length - max]! + ACME_ORDER_WINDOW_MS;
  }
}
