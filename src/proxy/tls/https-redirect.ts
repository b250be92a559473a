// What the HTTP listener does before routing: answer ACME HTTP-01 challenges, and send every
// other request for a host that has a certificate to HTTPS. The challenge path is never
// redirected: a token berth does not know goes on to the app, which may be solving it itself.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ChallengeResponder } from '../edge-server.ts';
import { normaliseHostname } from '../route-table.ts';
import { isChallengePath, type AcmeChallenges } from './acme-challenges.ts';

export interface HttpsRedirectOptions {
  challenges: AcmeChallenges;
  hasCertificate(hostname: string): boolean;
  /** The HTTPS port to send clients to (left out of the URL when it is 443). */
  httpsPort(): number;
}

export function createHttpResponder(options: HttpsRedirectOptions): ChallengeResponder {
  return (req: IncomingMessage, res: ServerResponse) => {
    if (isChallengePath(req.url)) return options.challenges.answerHttp(req, res);
    const host = req.headers.host;
    if (!host) return false;
    const hostname = normaliseHostname(host.replace(/:\d*$/, ''));
    if (!options.hasCertificate(hostname)) return false;
    const path = originForm(req.url);
    if (path === undefined) return false;
    const port = options.httpsPort();
    const location = `https://${hostname}${port === 443 ? '' : `:${port}`}${path}`;
    // 308 keeps the method and body, so a POST to http:// is not turned into a GET.
    const body = `Moved to ${location}\n`;
    res.writeHead(308, { location, 'content-type': 'text/plain; charset=utf-8', 'content-length': String(Buffer.byteLength(body)), 'cache-control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : body);
    return true;
  };
}

function originForm(url: string | undefined): string | undefined {
  if (url === undefined) return undefined;
  if (url.startsWith('/')) return url;
  try {
    const parsed = new URL(url);
    return parsed.pathname + parsed.search;
  } catch {
    return undefined;
  }
}
