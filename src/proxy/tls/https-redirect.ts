// What the HTTP listener does for hosts with certificates: ACME HTTP-01 challenge answers come
// first (a token berth does not know goes on to the app, which may be solving it itself), and
// every other request for a host with a certificate is sent to HTTPS.
import type { ChallengeResponder, HttpsRedirect } from '../edge-server.ts';
import type { AcmeChallenges } from './acme-challenges.ts';

export function createChallengeResponder(challenges: AcmeChallenges): ChallengeResponder {
  return (token) => challenges.httpAnswer(token);
}

export interface HttpsRedirectOptions {
  hasCertificate(hostname: string): boolean;
  /** The HTTPS port to send clients to (left out of the URL when it is 443). */
  httpsPort(): number;
}

/** The request policy asks this for every plain HTTP request (but those for the challenge path). */
export function createHttpsRedirect(options: HttpsRedirectOptions): HttpsRedirect {
  return (hostname) => (options.hasCertificate(hostname) ? options.httpsPort() : undefined);
}
