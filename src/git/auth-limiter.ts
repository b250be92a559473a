// Failed SSH logins counted per source address: an address that fails too often within a window
// is turned away at connect time for a while, so guessing keys or flooding the log is slow. Also
// the logins in progress (connections not yet authenticated), capped per address and in all, as
// OpenSSH's MaxStartups and PerSourceMaxStartups, so idle handshakes cannot fill the server.

export interface AuthLimits {
  /** Failed connections from one address within `windowMs` that block it. Default 10. */
  maxFailures: number;
  /** How far back failures count. Default one minute. */
  windowMs: number;
  /** How long a blocked address is turned away, counted from its last failure. Default five minutes. */
  blockMs: number;
  /** Authentication attempts one connection may make before it is closed (and counted as failed). Default 10. */
  maxAttemptsPerConnection: number;
  /** How long a connection may take to authenticate before it is closed (and counted as failed); 0 never. Default 30 s (--ssh-login-grace-time). */
  loginGraceMs: number;
  /** Connections not yet authenticated from one address; more are closed at once. Default 10 (--ssh-max-startups-per-address). */
  maxStartupsPerAddress: number;
  /** Connections not yet authenticated in all; more are closed at once. Default 100 (--ssh-max-startups). */
  maxStartups: number;
}

export const DEFAULT_AUTH_LIMITS: AuthLimits = {
  maxFailures: 10,
  windowMs: 60_000,
  blockMs: 5 * 60_000,
  maxAttemptsPerConnection: 10,
  loginGraceMs: 30_000,
  maxStartupsPerAddress: 10,
  maxStartups: 100,
};

/** Addresses kept at most; the oldest are forgotten first. */
const MAX_ADDRESSES = 10_000;

export class AuthLimiter {
  readonly limits: AuthLimits;
  private readonly failures = new Map<string, number[]>();
  private readonly blockedUntil = new Map<string, number>();
  /** Connections not yet authenticated, per address (only addresses with one or more). */
  private readonly startups = new Map<string, number>();
  private startupsInAll = 0;
  private readonly now: () => number;

  constructor(limits: Partial<AuthLimits> = {}, now: () => number = Date.now) {
    this.limits = { ...DEFAULT_AUTH_LIMITS, ...limits };
    this.now = now;
  }

  /** Milliseconds the address is still turned away for, or 0. */
  blockedFor(address: string): number {
    const until = this.blockedUntil.get(address);
    if (until === undefined) return 0;
    const left = until - this.now();
    if (left > 0) return left;
    this.blockedUntil.delete(address);
    return 0;
  }

  /** Records a failed connection; returns true when this failure blocks the address. */
  recordFailure(address: string): boolean {
    const now = this.now();
    const recent = (this.failures.get(address) ?? []).filter((t) => now - t < this.limits.windowMs);
    recent.push(now);
    this.failures.delete(address);
    this.failures.set(address, recent);
    this.forgetOldest();
    if (recent.length < this.limits.maxFailures) return false;
    const wasBlocked = this.blockedFor(address) > 0;
    this.blockedUntil.set(address, now + this.limits.blockMs);
    return !wasBlocked;
  }

  /**
   * Counts a new connection from `address` as a login in progress, or names the cap it would go
   * beyond ('address' or 'total'; then it is not counted). Each counted one ends with `loginEnded`.
   */
  startLogin(address: string): 'address' | 'total' | undefined {
    const fromAddress = this.startups.get(address) ?? 0;
    if (fromAddress >= this.limits.maxStartupsPerAddress) return 'address';
    if (this.startupsInAll >= this.limits.maxStartups) return 'total';
    this.startups.set(address, fromAddress + 1);
    this.startupsInAll++;
    return undefined;
  }

  /** A login in progress authenticated, or its connection closed. */
  loginEnded(address: string): void {
    const fromAddress = this.startups.get(address);
    if (fromAddress === undefined) return;
    if (fromAddress <= 1) this.startups.delete(address);
    else this.startups.set(address, fromAddress - 1);
    this.startupsInAll--;
  }

  /** A successful login clears the address's record. */
  recordSuccess(address: string): void {
    this.failures.delete(address);
  }

  private forgetOldest(): void {
    for (const key of this.failures.keys()) {
      if (this.failures.size <= MAX_ADDRESSES) break;
      this.failures.delete(key);
    }
    for (const key of this.blockedUntil.keys()) {
      if (this.blockedUntil.size <= MAX_ADDRESSES) break;
      this.blockedUntil.delete(key);
    }
  }
}
