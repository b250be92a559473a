// One-time dashboard login links: a random token, kept only as its hash, good once and for five
// minutes. The token travels in the link's fragment, so it reaches no access log.
import { createHash, randomBytes } from 'node:crypto';
import type { Config } from '../config.ts';
import { UserError } from '../errors.ts';
import type { KeyRecord } from '../git/key-store.ts';
import { log } from '../log.ts';
import type { DashboardLogin } from '../platform/platform.ts';
import { publicOrigin } from '../public-origin.ts';
import { identityKey, identityOf, type Identity } from './identity.ts';

/** How long a login link may be used. */
export const LOGIN_LINK_TTL_MS = 5 * 60_000;
/** Links not used yet kept for one identity; past this, its oldest is forgotten. */
export const MAX_OPEN_LINKS_PER_IDENTITY = 10;
/** Links not used yet kept in all; past this, no new one is made until some expire. */
export const MAX_OPEN_LINKS = 1000;

export class LoginLinks {
  readonly #now: () => number;
  /** sha256(token) → who it logs in, and until when. */
  readonly #open = new Map<string, { identity: Identity; expiresAt: number }>();

  constructor(options: { now?: () => number } = {}) {
    this.#now = options.now ?? Date.now;
  }

  /** A new token for `identity`, and when it expires. */
  issue(identity: Identity): { token: string; expiresAt: Date } {
    this.#sweep();
    // Each identity's own oldest link goes: one key asking often forgets no other key's link.
    const who = identityKey(identity);
    const mine = [...this.#open].filter(([, entry]) => identityKey(entry.identity) === who);
    for (const [key] of mine.slice(0, Math.max(0, mine.length - MAX_OPEN_LINKS_PER_IDENTITY + 1))) this.#open.delete(key);
    if (this.#open.size >= MAX_OPEN_LINKS) {
      throw new UserError('too_many_login_links', `${MAX_OPEN_LINKS} dashboard login links are waiting to be used`, { hint: 'try again in a few minutes, when some have expired' });
    }
    const token = randomBytes(32).toString('base64url');
    const expiresAt = this.#now() + LOGIN_LINK_TTL_MS;
    this.#open.set(hash(token), { identity, expiresAt });
    return { token, expiresAt: new Date(expiresAt) };
  }

  /** Who the token logs in, once; undefined when it is unknown, used or expired. */
  redeem(token: unknown): Identity | undefined {
    if (typeof token !== 'string' || token.length === 0 || token.length > 200) return undefined;
    const key = hash(token);
    const entry = this.#open.get(key);
    if (!entry) return undefined;
    this.#open.delete(key);
    return entry.expiresAt > this.#now() ? entry.identity : undefined;
  }

  #sweep(): void {
    const now = this.#now();
    for (const [key, entry] of this.#open) if (entry.expiresAt <= now) this.#open.delete(key);
  }
}

export function hash(secret: string): string {
  return createHash('sha256').update(secret).digest('base64url');
}

/** The `dashboard` command's links: a token from the store in the dashboard's URLs. */
export class DashboardLinks implements DashboardLogin {
  readonly #store: LoginLinks;
  readonly #config: Pick<Config, 'domain' | 'httpPort' | 'httpsPort'>;
  readonly #hasCertificate: (hostname: string) => boolean;
  /** The admin listener's origin; undefined while the dashboard does not run. */
  readonly #localOrigin: () => string | undefined;

  /** The app that holds berth.DOMAIN (from a state made before berth kept the name), if one does: no public link then. */
  readonly #holder: () => string | undefined;

  constructor(deps: { store: LoginLinks; config: Pick<Config, 'domain' | 'httpPort' | 'httpsPort'>; hasCertificate(hostname: string): boolean; localOrigin(): string | undefined; holder?: () => string | undefined }) {
    this.#holder = deps.holder ?? (() => undefined);
    this.#store = deps.store;
    this.#config = deps.config;
    this.#hasCertificate = deps.hasCertificate;
    this.#localOrigin = deps.localOrigin;
  }

  /** https://berth.DOMAIN once its certificate is served; undefined before (a login over plain HTTP is refused). */
  publicOrigin(): string | undefined {
    const config = this.#config;
    const host = dashboardHost(config);
    // Over HTTPS only: plain HTTP would carry the login and the session cookie in cleartext.
    if (this.#holder() === undefined && this.#hasCertificate(host)) return publicOrigin(host, config, true);
    return undefined;
  }

  link(key: KeyRecord | undefined, options: { local: boolean }): { urls: string[]; expiresAt: Date; notes: string[] } {
    const local = this.#localOrigin();
    if (local === undefined) {
      throw new UserError('dashboard_not_running', 'the dashboard is not running: it could not listen on its address (--dashboard-listen)', {
        hint: "the daemon's log says why (dashboard_not_started); an admin can choose another address with --dashboard-listen HOST:PORT",
      });
    }
    const { token, expiresAt } = this.#store.issue(identityOf(key));
    const origin = this.publicOrigin();
    const urls: string[] = [];
    const notes: string[] = [];
    if (origin) urls.push(`${origin}/login#${token}`);
    else {
      const holder = this.#holder();
      if (holder !== undefined) notes.push(`${dashboardHost(this.#config)} is app ${holder}'s host name (from before berth kept it), so the dashboard is not served there: rename the app or remove the domain.`);
      else notes.push(`${dashboardHost(this.#config)} has no HTTPS certificate yet (\`certs\` says why), and the dashboard is not offered over plain HTTP.`);
      notes.push(`Open an SSH tunnel to the admin listener (as your login on the server): ${tunnelCommand(this.#config, local)}`);
    }
    // Without the public link, the admin listener's as the tunnel reaches it.
    if (options.local || !origin) urls.push(`${origin || options.local ? local : tunnelOrigin(local)}/login#${token}`);
    log.info('dashboard_link_issued', { key: key?.name ?? 'local', expiresAt: expiresAt.toISOString() });
    return { urls, expiresAt, notes };
  }
}

/** `ssh -L PORT:HOST:PORT YOU@DOMAIN`: a tunnel from the user's machine to the admin listener (at `local`, its origin). */
export function tunnelCommand(config: Pick<Config, 'domain'>, local: string): string {
  const { hostname, port } = new URL(local);
  return `ssh -L ${port}:${hostname}:${port} YOU@${config.domain}`;
}

/** The admin listener's origin on the user's machine, at the near end of tunnelCommand's tunnel. */
function tunnelOrigin(local: string): string {
  return `http://127.0.0.1:${new URL(local).port}`;
}

/** The host name the dashboard is served at through the proxy. */
export function dashboardHost(config: Pick<Config, 'domain'>): string {
  return `berth.${config.domain}`;
}
