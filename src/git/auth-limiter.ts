// Failed SSH logins counted per source address: an address that fails too often within a window
// is turned away at connect time for a while, so guessing keys or flooding the log is slow.

export interface AuthLimits {
  /** Failed connections from one address within `windowMs` that block it. Default 10. */
  maxFailures: number;
  /** How far back failures count. Default one minute. */
  windowMs: number;
  /** How long a blocked address is turned away, counted from its last failure. Default five minutes. */
  blockMs: number;
  /** Authentication attempts one connection may make before it is closed (and counted as failed). Default 10. */
  maxAttemptsPerConnection: number;
}

export const DEFAULT_AUTH_LIMITS: AuthLimits = { maxFailures: 10, windowMs: 60_000, blockMs: 5 * 60_000, maxAttemptsPerConnection: 10 };

/** Addresses kept at most; the oldest are forgotten first. */
const MAX_ADDRESSES = 10_000;

export class AuthLimiter {
  readonly limits: AuthLimits;
  private readonly failures = new Map<string, number[]>();
  private readonly blockedUntil = new Map<string, number>();
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
