// Dashboard sessions, in the control plane's memory (a restart or an upgrade ends them): a random
// cookie value kept only as its hash, a CSRF token, an idle expiry. A session acts as its
// identity, which the server looks up again on every request.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { ApiError } from './answers.ts';
import { identityKey, type Identity } from './identity.ts';
import { hash } from './login-links.ts';

/** A session nobody used for this long is over. */
export const SESSION_IDLE_MS = 12 * 60 * 60_000;
/**
 * `__Host-`: the browser keeps it only as set by this very host, Secure, on `/`, without a Domain.
 * An app at APP.DOMAIN (same site) can set a `Domain=DOMAIN` cookie of another name only.
 */
export const SESSION_COOKIE = '__Host-berth_session';
/** Sessions one identity keeps at once; past this, its session idle longest ends. */
export const MAX_SESSIONS_PER_IDENTITY = 20;
/** Sessions kept at once in all; past this, sessions idle past their expiry are dropped, and a login waits for room. */
export const MAX_SESSIONS = 10_000;

export interface Session {
  identity: Identity;
  csrf: string;
  expiresAt: number;
}

export class Sessions {
  readonly #now: () => number;
  /** sha256(cookie value) → session; in order of last use. */
  readonly #byHash = new Map<string, Session>();
  /** The sessions in #byHash. */
  readonly #live = new WeakSet<Session>();

  constructor(options: { now?: () => number } = {}) {
    this.#now = options.now ?? Date.now;
  }

  /** A new session; returns the cookie value, which is kept nowhere. */
  create(identity: Identity): { cookie: string; session: Session } {
    const cookie = randomBytes(32).toString('base64url');
    const session: Session = { identity, csrf: randomBytes(24).toString('base64url'), expiresAt: this.#now() + SESSION_IDLE_MS };
    // The identity's own session idle longest goes: one key logging in often ends no other key's session.
    const who = identityKey(identity);
    const mine = [...this.#byHash].filter(([, other]) => identityKey(other.identity) === who);
    for (const [key] of mine.slice(0, Math.max(0, mine.length - MAX_SESSIONS_PER_IDENTITY + 1))) this.#drop(key);
    if (this.#byHash.size >= MAX_SESSIONS) {
      const now = this.#now();
      for (const [key, other] of this.#byHash) if (other.expiresAt <= now) this.#drop(key);
      if (this.#byHash.size >= MAX_SESSIONS) throw new ApiError(503, 'too_many_sessions', `the dashboard holds ${MAX_SESSIONS} sessions, the most it keeps`, 'try again later, or restart berth to end them all');
    }
    this.#live.add(session);
    this.#byHash.set(hash(cookie), session);
    return { cookie, session };
  }

  /** Whether `session` is still open: not ended, not idle past its expiry. Its event streams end when it is not. */
  alive(session: Session): boolean {
    return this.#live.has(session) && session.expiresAt > this.#now();
  }

  /** The live session of a cookie value, its idle expiry pushed back; undefined when none is. */
  use(cookie: string | undefined): Session | undefined {
    if (!cookie) return undefined;
    const key = hash(cookie);
    const session = this.#byHash.get(key);
    if (!session) return undefined;
    const now = this.#now();
    if (session.expiresAt <= now) {
      this.#drop(key);
      return undefined;
    }
    this.#byHash.delete(key);
    session.expiresAt = now + SESSION_IDLE_MS;
    this.#byHash.set(key, session);
    return session;
  }

  end(cookie: string | undefined): void {
    if (cookie) this.#drop(hash(cookie));
  }

  /** Ends every session whose identity `gone` says is gone (a removed key). */
  endWhere(gone: (identity: Identity) => boolean): void {
    for (const [key, session] of this.#byHash) if (gone(session.identity)) this.#drop(key);
  }

  #drop(key: string): void {
    const session = this.#byHash.get(key);
    if (session) this.#live.delete(session);
    this.#byHash.delete(key);
  }
}

/** Whether a CSRF header matches the session's token (constant time). */
export function csrfMatches(session: Session, header: string | undefined): boolean {
  if (!header) return false;
  const a = Buffer.from(header);
  const b = Buffer.from(session.csrf);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * The session cookie's value in a Cookie header, if any. Two cookies of its name (one planted
 * beside the real one) are no session: which one the browser sent first is not ours to trust.
 */
export function sessionCookie(header: string | undefined): string | undefined {
  let found: string | undefined;
  for (const part of (header ?? '').split(';')) {
    const [name, ...value] = part.trim().split('=');
    if (name !== SESSION_COOKIE) continue;
    if (found !== undefined) return undefined;
    found = value.join('=');
  }
  return found;
}

export function setCookie(value: string): string {
  return `${SESSION_COOKIE}=${value}; HttpOnly; Secure; SameSite=Strict; Path=/`;
}

export function clearCookie(): string {
  return `${SESSION_COOKIE}=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0`;
}
