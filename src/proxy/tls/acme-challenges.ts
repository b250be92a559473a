// The answers to ACME challenges in flight: HTTP-01 tokens served on the HTTP listener, and
// TLS-ALPN-01 certificates served on the TLS listener to clients that offer only `acme-tls/1`.
import type { IncomingMessage, ServerResponse } from 'node:http';
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

  /** Answers `GET /.well-known/acme-challenge/TOKEN` when TOKEN is one of ours; false otherwise. */
  answerHttp(req: IncomingMessage, res: ServerResponse): boolean {
    const url = req.url ?? '';
    if (!isChallengePath(url) || (req.method !== 'GET' && req.method !== 'HEAD')) return false;
    const token = url.slice(url.indexOf(CHALLENGE_PATH) + CHALLENGE_PATH.length).split('?')[0]!;
    const answer = this.#tokens.get(token);
    if (answer === undefined) return false;
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(Buffer.byteLength(answer)), 'cache-control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : answer);
    return true;
  }
}

/** Whether a request path is an ACME HTTP-01 challenge (origin form or absolute form). */
export function isChallengePath(url: string | undefined): boolean {
  if (url === undefined) return false;
  if (url.startsWith(CHALLENGE_PATH)) return true;
  return /^https?:\/\/[^/]*\/\.well-known\/acme-challenge\//i.test(url);
}
