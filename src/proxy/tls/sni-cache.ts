// The certificates the TLS listener serves, by host name, in memory: a handshake looks one up
// synchronously and never waits on disk or network. Replaced whole by one assignment. The proxy
// process fills its own from the PEM the control plane sends (servedPem()).
import type { SecureContext } from 'node:tls';
import { isCurrent, type CertificateBundle } from './certificate.ts';
import type { AcmeChallenges } from './acme-challenges.ts';
import { profileContext } from './tls-profile.ts';

export type CertificateSource = 'acme' | 'custom';

export interface ServedCertificate {
  readonly bundle: CertificateBundle;
  readonly source: CertificateSource;
  readonly context: SecureContext;
}

/** A served certificate as data, for the proxy process. */
export interface ServedPem {
  name: string;
  certPem: string;
  keyPem: string;
  source: CertificateSource;
}

export class SniCache {
  #byName: ReadonlyMap<string, ServedCertificate> = new Map();
  /** One context per certificate, reused when the table is rebuilt. */
  readonly #contexts = new WeakMap<CertificateBundle, SecureContext>();
  readonly #listeners: Array<() => void> = [];

  /** Makes `entries` the whole set of served certificates; contexts are built here, not in handshakes. */
  replace(entries: ReadonlyMap<string, { bundle: CertificateBundle; source: CertificateSource }>): void {
    const next = new Map<string, ServedCertificate>();
    for (const [name, { bundle, source }] of entries) next.set(name, Object.freeze({ bundle, source, context: this.#context(bundle) }));
    this.#byName = next;
    for (const listener of this.#listeners) listener();
  }

  /** The certificate for a host name, if there is one and it has not expired. */
  lookup(hostname: string, now = Date.now()): ServedCertificate | undefined {
    const entry = this.#byName.get(hostname);
    return entry && isCurrent(entry.bundle, now) ? entry : undefined;
  }

  /** When each served name's certificate expires. */
  expiries(): Array<{ name: string; notAfter: Date; source: CertificateSource }> {
    return [...this.#byName].map(([name, { bundle, source }]) => ({ name, notAfter: bundle.info.notAfter, source }));
  }

  /** Every served certificate as PEM. */
  servedPem(): ServedPem[] {
    return [...this.#byName].map(([name, { bundle, source }]) => ({ name, certPem: bundle.certPem, keyPem: bundle.keyPem, source }));
  }

  /** Called after every replace(). */
  onReplace(listener: () => void): void {
    this.#listeners.push(listener);
  }

  #context(bundle: CertificateBundle): SecureContext {
    let context = this.#contexts.get(bundle);
    if (!context) {
      context = profileContext(bundle.certPem, bundle.keyPem);
      this.#contexts.set(bundle, context);
    }
    return context;
  }
}

/** The context for a TLS handshake, from memory only: a challenge's for `acme-tls/1`, else the served certificate's. */
export function handshakeContext(cache: SniCache, challenges: AcmeChallenges, servername: string, acmeTls: boolean): SecureContext | undefined {
  const name = servername.toLowerCase().replace(/\.$/, '');
  if (acmeTls) return challenges.alpnContext(name);
  // A TLS 1.2 validator's SNI comes before its ALPN: when the name has no certificate yet,
  // nothing is lost by answering with the challenge's.
  return cache.lookup(name)?.context ?? challenges.alpnContext(name);
}
