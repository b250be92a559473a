// The proxy's one request policy. For a request on any front end (the HTTP/1.1 fast path, HTTP/2)
// it decides which app and targets serve it, or whether berth answers it itself (an ACME challenge
// token, the redirect to HTTPS, an error page); the app's limits; the request id and the forwarded
// headers; whether the client connection stays open; which requests may be sent twice; and the
// access-log line. The front ends only frame bytes and call it with what they already parsed.
import { log } from '../log.ts';
import type { AccessLog } from './access-log.ts';
import type { ErrorStatus } from './error-pages.ts';
import { REQUEST_ID_PATTERN } from './http1-head.ts';
import { DEFAULT_APP_SETTINGS, type AppProxySettings } from '../state/proxy-settings.ts';
import { newRequestId } from './request-id.ts';
import { normaliseHostname, type AppRoute, type RouteTable } from './route-table.ts';
import { CHALLENGE_PATH } from './tls/acme-challenges.ts';

/**
 * What the policy reads: the live state the edge server holds. Each is read once per request,
 * when its head is complete.
 */
export interface PolicySources {
  routes(): RouteTable;
  /** For a plain HTTP request to a host name with a certificate: the HTTPS port to redirect to. */
  httpsPortFor(hostname: string): number | undefined;
  settings(app: string): AppProxySettings;
  /** The key authorization for an ACME HTTP-01 token berth is solving, undefined for any other. */
  challengeAnswer(token: string): string | undefined;
}

/**
 * What berth does with a request: forward it to `route`'s targets, refuse it with an error page
 * (`status`, `text` the page's detail), redirect it (`text` the Location) or answer it itself (an
 * ACME challenge: `text` the body).
 */
export type Verdict = 'forward' | 'refuse' | 'redirect' | 'answer';

/**
 * The policy's answer for one request. A front end keeps one and hands it to decide() again for
 * its next request, so deciding allocates nothing (the fast path keeps one per connection).
 */
export class Decision {
  verdict: Verdict = 'forward';
  /** The id the app sees in X-Request-Id, the client on berth's own pages, and the access log. */
  requestId = '';
  /** The host name the request named, port removed and normalised ('' when it named none). */
  hostname = '';
  route: AppRoute | undefined = undefined;
  /** The app's limits; the defaults until the request is routed. */
  settings: AppProxySettings = DEFAULT_APP_SETTINGS;
  status: ErrorStatus = 404;
  text = '';
}

/** The body length a front end passes when the request has a body of unknown length (chunked, or HTTP/2 without content-length). */
export const UNKNOWN_LENGTH = -1;

export const UNREACHABLE = 'The app behind this address could not be reached. Try again in a moment.';
export const TOO_SLOW = 'The app behind this address took too long to answer.';
export const INVALID_ANSWER = 'The app behind this address sent an invalid answer.';

/**
 * Decides what happens to a request, in this order: a known ACME challenge token is answered (for
 * any host, on any front end); a plain HTTP request for a host with a certificate is redirected
 * with 308 (never the challenge path, whose unknown tokens go on to the app, which may be solving
 * its own); then the route, its targets and the app's max-body-size. `target` is the request
 * target as received (origin form, or absolute form on front ends that keep it); `bodyLength` the
 * declared body length, 0 for none, UNKNOWN_LENGTH when it is not declared; `clientId` the
 * client's X-Request-Id when it had the accepted shape (see acceptedRequestId).
 */
export function decide(
  sources: PolicySources,
  d: Decision,
  proto: 'http' | 'https',
  method: string,
  host: string | undefined,
  target: string,
  bodyLength: number,
  clientId: string | undefined,
): Verdict {
  // Every answer gets an id, berth's own pages too.
  d.requestId = clientId ?? newRequestId();
  d.route = undefined;
  d.settings = DEFAULT_APP_SETTINGS;
  if (host === undefined || host === '') {
    d.hostname = '';
    return refuse(d, 404, 'No app is served at this address (the request named no host).');
  }
  const hostname = normaliseHostname(stripPort(host));
  d.hostname = hostname;
  const challenge = target.startsWith(CHALLENGE_PATH) || (target.charCodeAt(0) !== 47 /* / */ && ABSOLUTE_CHALLENGE.test(target));
  if (challenge) {
    if (method === 'GET' || method === 'HEAD') {
      let answer: string | undefined;
      try {
        answer = sources.challengeAnswer(challengeToken(target));
      } catch (e) {
        log.error('proxy_challenge_error', { host, error: e });
        return refuse(d, 500, 'The certificate challenge could not be answered.');
      }
      if (answer !== undefined) {
        d.text = answer;
        return (d.verdict = 'answer');
      }
    }
  } else if (proto === 'http') {
    const httpsPort = sources.httpsPortFor(hostname);
    if (httpsPort !== undefined) {
      const path = originForm(target);
      if (path === undefined) return refuse(d, 400, 'The request target is not a path.');
      d.text = `https://${hostname}${httpsPort === 443 ? '' : `:${httpsPort}`}${path}`;
      return (d.verdict = 'redirect');
    }
  }
  const route = sources.routes().lookup(hostname);
  if (!route) return refuse(d, 404, `No app is served at ${hostname}.`);
  d.route = route;
  if (route.targets.length === 0) {
    log.warn('proxy_no_targets', { app: route.app, host: hostname });
    return refuse(d, 503, `The app at ${hostname} has no running web process. Try again in a moment.`);
  }
  const settings = sources.settings(route.app);
  d.settings = settings;
  if (bodyTooLarge(settings, bodyLength)) return refuse(d, 413, tooLargeDetail(settings));
  return (d.verdict = 'forward');
}

/** Whether `bytes` of request body (declared, or counted so far) exceed the app's max-body-size. */
export function bodyTooLarge(settings: AppProxySettings, bytes: number): boolean {
  return settings.maxBodySize > 0 && bytes > settings.maxBodySize;
}

export function tooLargeDetail(settings: AppProxySettings): string {
  return `The request body is larger than this app accepts (${settings.maxBodySize} bytes).`;
}

/**
 * The keep-alive decision, the only one: whether a client connection stays open after an answer.
 * `clientWants`: the client asked to keep it (and asked for no protocol switch berth refused);
 * `requestRead`: the whole request was read, so the next bytes are the next request;
 * `answerDelimited`: the answer ends by its framing, not by closing.
 */
export function keepsConnection(clientWants: boolean, requestRead: boolean, answerDelimited: boolean, connectionClosing: boolean, draining: boolean): boolean {
  return clientWants && requestRead && answerDelimited && !connectionClosing && !draining;
}

/**
 * Whether a request may be sent again after the app closed the connection before answering
 * (RFC 9110 §9.2.2: idempotent methods; POST and PATCH never), provided it had no body to replay.
 */
export function mayRepeat(method: string, hasBody: boolean): boolean {
  return !hasBody && REPEATABLE_METHODS.has(method);
}

/** A client's X-Request-Id when it has the accepted shape (20-200 of `A-Za-z0-9+=/_.:-`, Heroku's rule). */
export function acceptedRequestId(value: string | undefined): string | undefined {
  return value !== undefined && REQUEST_ID_PATTERN.test(value) ? value : undefined;
}

/**
 * The request headers berth sets itself, lower case: whatever a client sends under these names is
 * dropped by every front end (its X-Forwarded-For chain is kept and appended to), so an app can
 * trust them. `Forwarded` (RFC 7239) is rewritten, not appended to: it carries only what berth
 * saw, one element, because RFC 7239 readers commonly take the first element as the client.
 */
export const SET_BY_BERTH: readonly string[] = Object.freeze([
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-forwarded-port',
  'x-forwarded-ssl',
  'x-real-ip',
  'forwarded',
  'x-request-id',
]);

/** The forwarded-header lines that never change on one client connection, made once for it. */
export interface ConnectionForwarding {
  readonly clientIp: string;
  /** `X-Forwarded-For: CLIENT` and `X-Forwarded-Proto: PROTO` lines, for a request that brought no X-Forwarded-For. */
  readonly forAndProto: string;
  /** The `X-Forwarded-Proto: PROTO` line. */
  readonly proto: string;
  /**
   * Ends the X-Forwarded-Host line, then the X-Forwarded-Port, X-Forwarded-Ssl and X-Real-IP
   * lines and the start of Forwarded's, up to its host.
   */
  readonly afterHost: string;
}

export function connectionForwarding(remoteAddress: string | undefined, proto: 'http' | 'https', port: number): ConnectionForwarding {
  const clientIp = clientAddress(remoteAddress);
  const protoLine = `X-Forwarded-Proto: ${proto}\r\n`;
  return {
    clientIp,
    forAndProto: `X-Forwarded-For: ${clientIp}\r\n${protoLine}`,
    proto: protoLine,
    afterHost: `\r\nX-Forwarded-Port: ${port}\r\nX-Forwarded-Ssl: ${proto === 'https' ? 'on' : 'off'}\r\nX-Real-IP: ${clientIp}\r\nForwarded: for=${forwardedNode(clientIp)};proto=${proto};host=`,
  };
}

/**
 * The headers berth adds to every forwarded request, in this order: X-Forwarded-For (the client's
 * chain with the client appended), -Proto, -Host, -Port, -Ssl, X-Real-IP, Forwarded, X-Request-Id;
 * as HTTP/1.1 lines ending the head. `priorFor`: the X-Forwarded-For values the client sent,
 * joined with ", " ('' for none).
 */
export function forwardedLines(c: ConnectionForwarding, priorFor: string, host: string | undefined, requestId: string): string {
  return (
    (priorFor === '' ? c.forAndProto : 'X-Forwarded-For: ' + priorFor + ', ' + c.clientIp + '\r\n' + c.proto) +
    'X-Forwarded-Host: ' + host + c.afterHost + forwardedHost(host ?? '') + '\r\nX-Request-Id: ' + requestId + '\r\n\r\n'
  );
}

/** The same headers as forwardedLines, as [name, value, ...] for a front end that forwards through a client library. */
export function forwardedPairs(clientIp: string, proto: 'http' | 'https', port: number, priorFor: string, host: string, requestId: string): string[] {
  return [
    'X-Forwarded-For', priorFor === '' ? clientIp : `${priorFor}, ${clientIp}`,
    'X-Forwarded-Proto', proto,
    'X-Forwarded-Host', host,
    'X-Forwarded-Port', String(port),
    'X-Forwarded-Ssl', proto === 'https' ? 'on' : 'off',
    'X-Real-IP', clientIp,
    'Forwarded', `for=${forwardedNode(clientIp)};proto=${proto};host=${forwardedHost(host)}`,
    'X-Request-Id', requestId,
  ];
}

/** A client address as RFC 7239 §6 writes a node: IPv6 in brackets and quotes, `unknown` when there is none. */
export function forwardedNode(ip: string): string {
  if (ip === '') return 'unknown';
  return ip.includes(':') ? `"[${ip}]"` : ip;
}

/**
 * A Host value for Forwarded's host=: bare when it is a token (a name or IPv4 address), else a
 * quoted-string (a port's colon and IPv6 brackets are not token characters).
 */
export function forwardedHost(host: string): string {
  return TOKEN_HOST.test(host) ? host : '"' + host.replace(/["\\]/g, '\\$&') + '"';
}

/**
 * The Strict-Transport-Security value berth puts on an app's answer: the app's `hsts` setting,
 * over HTTPS only (RFC 6797 §7.2: never over plain HTTP); '' for none. It goes before any the app
 * sent itself, and browsers heed only the first (RFC 6797 §8.1), so the setting wins.
 */
export function hstsFor(proto: 'http' | 'https', settings: AppProxySettings): string {
  return proto === 'https' ? settings.hsts : '';
}

/** A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d; apps expect a.b.c.d. */
export function clientAddress(address: string | undefined): string {
  if (address === undefined) return '';
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

/**
 * One access-log line for an answered request. `target`: the request target (its query string is
 * left out: queries carry tokens); `started` and `now`: performance.now() when the head was
 * complete and when the answer ended; `status` 499 when the client left before an answer.
 */
export function logAccess(
  accessLog: AccessLog,
  d: Decision,
  client: string,
  proto: 'http' | 'https',
  host: string | undefined,
  method: string,
  target: string,
  status: number,
  bytes: number,
  started: number,
  now: number,
  targetId: string | undefined,
): void {
  const q = target.indexOf('?');
  accessLog.write({
    id: d.requestId,
    client,
    proto,
    host: host ?? '',
    method,
    path: q === -1 ? target : target.slice(0, q),
    status,
    bytes,
    ms: now - started,
    at: now,
    app: d.route?.app,
    target: targetId,
  });
}

/** `example.com:8080` → `example.com`; `[::1]:8080` → `[::1]`. */
export function stripPort(host: string): string {
  if (host.charCodeAt(0) === 91 /* [ */) {
    const end = host.indexOf(']');
    return end === -1 ? host : host.slice(0, end + 1);
  }
  const colon = host.indexOf(':');
  return colon === -1 ? host : host.slice(0, colon);
}

/** The path and query of a request target: origin form as is, absolute form (`http://host/p?q`) reduced to them, anything else undefined. */
export function originForm(target: string): string | undefined {
  if (target.charCodeAt(0) === 47 /* / */) return target;
  if (!ABSOLUTE_FORM.test(target)) return undefined;
  try {
    const url = new URL(target);
    return url.pathname + url.search;
  } catch {
    return undefined;
  }
}

/** Methods whose bodiless requests may be sent twice. */
const REPEATABLE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

const ABSOLUTE_FORM = /^https?:\/\//i;
const TOKEN_HOST = /^[A-Za-z0-9.-]+$/;
const ABSOLUTE_CHALLENGE = /^https?:\/\/[^/]*\/\.well-known\/acme-challenge\//i;

function challengeToken(target: string): string {
  const start = target.indexOf(CHALLENGE_PATH) + CHALLENGE_PATH.length;
  const q = target.indexOf('?', start);
  return q === -1 ? target.slice(start) : target.slice(start, q);
}

function refuse(d: Decision, status: ErrorStatus, detail: string): Verdict {
  d.status = status;
  d.text = detail;
  return (d.verdict = 'refuse');
}
