// The answers to ACME challenges in flight: HTTP-01 tokens, answered by the request policy, and
// TLS-ALPN-01 certificates served on the TLS listener to clients that offer only `acme-tls/1`.
import type { SecureContext } from 'node:tls';

export const CHALLENGE_PATH = '/.well-known/acme-challenge/';
export const ACME_TLS_PROTOCOL = 'acme-tls/1';

export class AcmeChallenges {
  readonly #tokens = new Map<string, string>();
  readonly #alpn = new Map<string, SecureContext>();

  setHttp(token: string, keyAuthorization: string): void {
    this.#tokens.set(token, keyAuthorization);
  }

  deleteHttp(token: string): void {
    this.#tokens.delete(token);
  }

  setAlpn(domain: string, context: SecureContext): void {
    this.#alpn.set(domain, context);
  }

  deleteAlpn(domain: string): void {
    this.#alpn.delete(domain);
  }

  /** The TLS-ALPN-01 certificate for a domain whose challenge is in flight. */
  alpnContext(domain: string): SecureContext | undefined {
    return this.#alpn.get(domain);
  }

  /** The key authorization to answer `GET /.well-known/acme-challenge/TOKEN` with, when TOKEN is one of ours. */
  httpAnswer(token: string): string | undefined {
    return this.#tokens.get(token);
  }
}
