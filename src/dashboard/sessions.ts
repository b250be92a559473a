// Dashboard sessions, in the control plane's memory (a restart or an upgrade ends them): a random
// cookie value kept only as its hash, a CSRF token, an idle expiry. A session acts as its
// identity, which the server looks up again on every request.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Identity } from './identity.ts';
import { hash } from './login-links.ts';

/** A session nobody used for this long is over. */
export const SESSION_IDLE_MS = 12 * 60 * 60_000;
/**
 * `__Host-`: the browser keeps it only as set by this very host, Secure, on `/`, without a Domain.
 * An app at APP.DOMAIN (same site) can set a `Domain=DOMAIN` cookie of another name only.
 */
export const SESSION_COOKIE = '__Host-berth_session';
/** Sessions kept at once; past this, the one idle longest ends. */
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
    this.#live.add(session);
    this.#byHash.set(hash(cookie), session);
    if (this.#byHash.size > MAX_SESSIONS) this.#drop(this.#byHash.keys().next().value!);
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
