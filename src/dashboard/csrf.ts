// Cross-site request refusal for the dashboard's POSTs: a JSON body (a cross-site form cannot send
// one without a CORS preflight, which is never answered), an Origin equal to the dashboard's own,
// and, once logged in, the session's CSRF token in X-Berth-CSRF.
import type http from 'node:http';
import { csrfMatches, type Session } from './sessions.ts';

/**
 * The dashboard's origin as the browser addressed it: its Host header, with the scheme the proxy
 * says the client used (X-Forwarded-Proto, which the proxy sets and never passes on from a client),
 * else http (the admin listener).
 */
export function ownOrigin(req: http.IncomingMessage): string | undefined {
  const host = req.headers.host;
  if (!host || !/^[A-Za-z0-9.:[\]-]+$/.test(host)) return undefined;
  const forwarded = req.headers['x-forwarded-proto'];
  const scheme = forwarded === 'https' ? 'https' : 'http';
  return `${scheme}://${host.toLowerCase()}`;
}

/**
 * Whether the request came through the proxy over plain HTTP: the proxy always sets
 * X-Forwarded-Proto (and drops a client's), so any value but https means a login or a session
 * cookie would cross the network in cleartext. A direct request to the admin listener has none.
 */
export function plainThroughProxy(req: http.IncomingMessage): boolean {
  const forwarded = req.headers['x-forwarded-proto'];
  return forwarded !== undefined && forwarded !== 'https';
}

/** Whether a POST may go on: JSON, from the dashboard's own origin, and (with a session) with its CSRF token. */
export function sameSitePost(req: http.IncomingMessage, session?: Session): boolean {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json') return false;
  const origin = req.headers.origin;
  const own = ownOrigin(req);
  if (!origin || !own || origin.toLowerCase() !== own) return false;
  if (session === undefined) return true;
  const header = req.headers['x-berth-csrf'];
  return csrfMatches(session, Array.isArray(header) ? undefined : header);
}
