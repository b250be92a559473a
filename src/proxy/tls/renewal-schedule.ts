// When a managed certificate is due: renewal once a third of its lifetime remains, and after a
// failed order an exponential backoff with jitter, so retries neither hammer the CA nor line up.
import type { CertificateInfo } from './certificate.ts';

/** The longest wait between two attempts, however many failed before. */
export const MAX_RETRY_DELAY_MS = 6 * 60 * 60 * 1000;

/**
 * When renewal starts: two thirds into the lifetime (30 days before expiry for Let's Encrypt's
 * 90-day certificates). `renewAfterMs` (tests only) puts it that long after notBefore instead.
 */
export function renewalTime(info: Pick<CertificateInfo, 'notBefore' | 'notAfter'>, renewAfterMs?: number): number {
  const start = info.notBefore.getTime();
  const end = info.notAfter.getTime();
  if (renewAfterMs !== undefined) return Math.min(start + renewAfterMs, end);
  return end - (end - start) / 3;
}

/**
 * The wait after the `failures`-th failure in a row (1, 2, ...): `baseMs` doubled each time up
 * to MAX_RETRY_DELAY_MS, then jittered into its upper half ("equal jitter").
 */
export function retryDelay(failures: number, baseMs: number, random: () => number = Math.random): number {
  const exponent = Math.min(Math.max(failures - 1, 0), 30);
  const delay = Math.min(baseMs * 2 ** exponent, Math.max(MAX_RETRY_DELAY_MS, baseMs));
  return Math.round(delay / 2 + random() * (delay / 2));
}
