// The answers to ACME challenges in flight: HTTP-01 tokens, answered by the request policy, and
// TLS-ALPN-01 certificates served on the TLS listener to clients that offer only `acme-tls/1`.
// Kept as PEM too, so the control plane can send them to the proxy process.
import type { SecureContext } from 'node:tls';
import { profileContext } from './tls-profile.ts';

export const CHALLENGE_PATH = '/.well-known/acme-challenge/';
export const ACME_TLS_PROTOCOL = 'acme-tls/1';

/** A TLS-ALPN-01 challenge certificate with its key, in PEM. */
export interface AlpnCertificate {
  certPem: string;
  keyPem: string;
}

/** Every challenge answer in flight, as data: what the control plane sends the proxy. */
export interface ChallengeSnapshot {
  http: Array<[token: string, keyAuthorization: string]>;
  alpn: Array<[domain: string, AlpnCertificate]>;
}

export class AcmeChallenges {
  readonly #tokens = new Map<string, string>();
  readonly #alpn = new Map<string, { pem: AlpnCertificate; context: SecureContext }>();
  readonly #listeners: Array<() => void> = [];

  setHttp(token: string, keyAuthorization: string): void {
    this.#tokens.set(token, keyAuthorization);
    this.#changed();
  }

  deleteHttp(token: string): void {
    this.#tokens.delete(token);
    this.#changed();
  }

  setAlpn(domain: string, pem: AlpnCertificate): void {
    this.#alpn.set(domain, { pem, context: profileContext(pem.certPem, pem.keyPem) });
    this.#changed();
  }

  deleteAlpn(domain: string): void {
    this.#alpn.delete(domain);
    this.#changed();
  }

  /** The TLS-ALPN-01 certificate for a domain whose challenge is in flight. */
  alpnContext(domain: string): SecureContext | undefined {
    return this.#alpn.get(domain)?.context;
  }

  /** The key authorization to answer `GET /.well-known/acme-challenge/TOKEN` with, when TOKEN is one of ours. */
  httpAnswer(token: string): string | undefined {
    return this.#tokens.get(token);
  }

  snapshot(): ChallengeSnapshot {
    return { http: [...this.#tokens], alpn: [...this.#alpn].map(([domain, { pem }]) => [domain, pem]) };
  }

  /** Makes `snapshot` the whole set of answers (the proxy process, from the control plane's). */
  replace(snapshot: ChallengeSnapshot): void {
    this.#tokens.clear();
    for (const [token, answer] of snapshot.http) this.#tokens.set(token, answer);
    const kept = new Map(this.#alpn);
    this.#alpn.clear();
    for (const [domain, pem] of snapshot.alpn) {
      const old = kept.get(domain);
      if (old && old.pem.certPem === pem.certPem && old.pem.keyPem === pem.keyPem) this.#alpn.set(domain, old);
      else this.#alpn.set(domain, { pem, context: profileContext(pem.certPem, pem.keyPem) });
    }
    this.#changed();
  }

  /** Called after every change. */
  onChange(listener: () => void): void {
    this.#listeners.push(listener);
  }

  #changed(): void {
    for (const listener of this.#listeners) listener();
  }
}
