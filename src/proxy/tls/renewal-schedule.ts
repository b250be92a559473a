// When a managed certificate is due: renewal once a third of its lifetime remains, and after a
// failed order an exponential backoff with jitter, so retries neither hammer the CA nor line up.
// The certificate manager takes these as a RenewalPolicy, so a test can inject a faster one.
import type { CertificateInfo } from './certificate.ts';

/** When certificates are renewed and failed orders retried. */
export interface RenewalPolicy {
  /** When renewal of a certificate starts (epoch ms). */
  renewAt(info: Pick<CertificateInfo, 'notBefore' | 'notAfter'>): number;
  /** The wait in ms after the `failures`-th failed order in a row (1, 2, ...). */
  retryDelay(failures: number): number;
}

/** The first wait after a failed order: 1 min, doubled after each further failure. */
export const RETRY_BASE_MS = 60_000;

/** The longest wait between two attempts, however many failed before. */
export const MAX_RETRY_DELAY_MS = 6 * 60 * 60 * 1000;

/** berth's policy: renewal at renewalTime(), retries after retryDelay() from RETRY_BASE_MS. */
export const DEFAULT_RENEWAL_POLICY: RenewalPolicy = Object.freeze({
  renewAt: (info: Pick<CertificateInfo, 'notBefore' | 'notAfter'>) => renewalTime(info),
  retryDelay: (failures: number) => retryDelay(failures, RETRY_BASE_MS),
});

/** When renewal starts: two thirds into the lifetime (30 days before expiry for Let's Encrypt's 90-day certificates). */
export function renewalTime(info: Pick<CertificateInfo, 'notBefore' | 'notAfter'>): number {
  const start = info.notBefore.getTime();
  const end = info.notAfter.getTime();
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
