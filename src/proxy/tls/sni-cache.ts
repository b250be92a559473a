// The certificates the TLS listener serves, by host name, in memory: a handshake looks one up
// synchronously and never waits on disk or network. Replaced whole by one assignment.
import { createSecureContext, type SecureContext } from 'node:tls';
import { isCurrent, type CertificateBundle } from './certificate.ts';

export type CertificateSource = 'acme' | 'custom';

export interface ServedCertificate {
  readonly bundle: CertificateBundle;
  readonly source: CertificateSource;
  readonly context: SecureContext;
}

export class SniCache {
  #byName: ReadonlyMap<string, ServedCertificate> = new Map();
  /** One context per certificate, reused when the table is rebuilt. */
  readonly #contexts = new WeakMap<CertificateBundle, SecureContext>();

  /** Makes `entries` the whole set of served certificates; contexts are built here, not in handshakes. */
  replace(entries: ReadonlyMap<string, { bundle: CertificateBundle; source: CertificateSource }>): void {
    const next = new Map<string, ServedCertificate>();
    for (const [name, { bundle, source }] of entries) next.set(name, Object.freeze({ bundle, source, context: this.#context(bundle) }));
    this.#byName = next;
  }

  /** The certificate for a host name, if there is one and it has not expired. */
  lookup(hostname: string, now = Date.now()): ServedCertificate | undefined {
    const entry = this.#byName.get(hostname);
    return entry && isCurrent(entry.bundle, now) ? entry : undefined;
  }

  #context(bundle: CertificateBundle): SecureContext {
    let context = this.#contexts.get(bundle);
    if (!context) {
      context = createSecureContext({ cert: bundle.certPem, key: bundle.keyPem });
      this.#contexts.set(bundle, context);
    }
    return context;
  }
}
