// The immutable map from host names to apps and their web targets that the edge server routes by.
import { validateAppName } from '../app-name.ts';
import { UserError } from '../errors.ts';

/** One web container the proxy can reach: `id` is the container name or id, `host` its IP on berth's network. */
export interface Target {
  readonly id: string;
  readonly host: string;
  readonly port: number;
}

/** What a host name resolves to. Frozen: a route handed out never changes under its holder. */
export interface AppRoute {
  readonly app: string;
  readonly hostnames: readonly string[];
  readonly targets: readonly Target[];
  /**
   * Targets that get no requests of their own: a request whose every target refused or reset it
   * is retried on one of these. A release on probation has the one before it here, kept warm.
   */
  readonly standby: readonly Target[];
}

/**
 * Never edited in place: every change returns a new table, so a deploy can build the next table
 * off to the side and the edge server can swap it in with one assignment.
 */
/** Route names of berth's own hosts (berth.DOMAIN) start with this: no app name can (a colon). */
export const OWN_ROUTE_PREFIX = 'berth:';

export class RouteTable {
  readonly #byApp: ReadonlyMap<string, AppRoute>;
  readonly #byHost: ReadonlyMap<string, AppRoute>;

  private constructor(byApp: ReadonlyMap<string, AppRoute>) {
    this.#byApp = byApp;
    const byHost = new Map<string, AppRoute>();
    for (const route of byApp.values()) for (const hostname of route.hostnames) byHost.set(hostname, route);
    this.#byHost = byHost;
  }

  static empty(): RouteTable {
    return new RouteTable(new Map());
  }

  /**
   * A new table in which `app` serves exactly `hostnames` with exactly `targets` and `standby`
   * (all replace what the app had). Throws a UserError when another app already holds one of the
   * host names, or when a host name or the app name is malformed.
   */
  withApp(app: string, hostnames: readonly string[], targets: readonly Target[], standby: readonly Target[] = []): RouteTable {
    if (!app.startsWith(OWN_ROUTE_PREFIX)) validateAppName(app);
    const names = [...new Set(hostnames.map(validHostname))];
    for (const name of names) {
      const holder = this.#byHost.get(name);
      if (holder && holder.app !== app) {
        throw new UserError('hostname_in_use', `host name ${name} is already served by app ${holder.app}`, {
          hint: `remove it from ${holder.app} first, then add it to ${app}`,
        });
      }
    }
    const route: AppRoute = Object.freeze({
      app,
      hostnames: Object.freeze(names),
      targets: Object.freeze(targets.map((t) => validTarget(app, t))),
      standby: Object.freeze(standby.map((t) => validTarget(app, t))),
    });
    const byApp = new Map(this.#byApp);
    byApp.set(app, route);
    return new RouteTable(byApp);
  }

  /** A new table without `app`; the same table when it was not there. */
  withoutApp(app: string): RouteTable {
    if (!this.#byApp.has(app)) return this;
    const byApp = new Map(this.#byApp);
    byApp.delete(app);
    return new RouteTable(byApp);
  }

  /** The route serving `hostname` (any case, with or without a trailing dot, no port). */
  lookup(hostname: string): AppRoute | undefined {
    return this.#byHost.get(normaliseHostname(hostname));
  }

  /** The route of one app, by app name. */
  route(app: string): AppRoute | undefined {
    return this.#byApp.get(app);
  }

  /** Every app's route, ordered by app name. */
  apps(): AppRoute[] {
    return [...this.#byApp.values()].sort((a, b) => (a.app < b.app ? -1 : a.app > b.app ? 1 : 0));
  }
}

/** Host names compare case-insensitively and `example.com.` is `example.com`. */
export function normaliseHostname(hostname: string): string {
  const lower = hostname.trim().toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

// Letters, digits, dashes and underscores in dot-separated labels; IPv4 literals pass too.
const HOSTNAME_PATTERN = /^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$/;

function validHostname(hostname: string): string {
  const name = normaliseHostname(hostname);
  if (!HOSTNAME_PATTERN.test(name)) {
    throw new UserError('invalid_hostname', `invalid host name: ${JSON.stringify(hostname)}`, {
      hint: 'a host name is dot-separated labels of letters, digits and dashes, e.g. app.example.com',
    });
  }
  return name;
}

// Targets come from the Docker engine, not from users, so a bad one is a bug: a plain Error.
function validTarget(app: string, target: Target): Target {
  if (!target.id || !target.host || !Number.isInteger(target.port) || target.port < 1 || target.port > 65535) {
    throw new Error(`app ${app}: invalid target ${JSON.stringify(target)}`);
  }
  return Object.freeze({ id: target.id, host: target.host, port: target.port });
}
