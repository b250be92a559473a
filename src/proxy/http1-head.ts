// Strict parsing of HTTP/1.x message heads for the proxy's fast path: only what berth needs to
// route and frame a message. Whatever is ambiguous (two lengths, a length and chunked, bare LF,
// obsolete line folding, control characters) is refused rather than guessed, because a proxy and
// an app that read one message two ways is how requests get smuggled.

/** A refused message: the status berth answers with (for a request) and a plain-text reason. */
export class HttpError extends Error {
  readonly status: 400 | 413 | 431 | 501 | 505;
  constructor(status: HttpError['status'], message: string) {
    super(message);
    this.name = 'HttpError';
    this.status = status;
  }
}

export const BODY_NONE = 0;
export const BODY_LENGTH = 1;
export const BODY_CHUNKED = 2;
/** Responses only: the body runs until the app closes the connection. */
export const BODY_UNTIL_CLOSE = 3;
export type BodyKind = typeof BODY_NONE | typeof BODY_LENGTH | typeof BODY_CHUNKED | typeof BODY_UNTIL_CLOSE;

export interface RequestHead {
  method: string;
  /** What goes on the upstream request line: origin-form `/path?query` (or `*` for OPTIONS). */
  path: string;
  /** 0 or 1: HTTP/1.0 or HTTP/1.1. */
  minor: number;
  /** The host the request names (Host header, or the authority of an absolute-form target), port included. */
  host: string | undefined;
  bodyKind: BodyKind;
  /** For BODY_LENGTH. */
  contentLength: number;
  /** Whether the client wants the connection kept after this exchange. */
  keepAlive: boolean;
  /** The Upgrade header's value when Connection names `upgrade`: the request asks to switch protocols. */
  upgrade: string | undefined;
  /** The header lines to forward, each ending in CRLF, hop-by-hop and X-Forwarded-* already removed. */
  forwardLines: string;
  /** X-Forwarded-For values the client sent, joined with ", " (the chain berth appends to). */
  forwardedFor: string;
  /** The client's X-Request-Id, when it has the accepted shape (see REQUEST_ID_PATTERN). */
  requestId: string | undefined;
}

export interface ResponseHead {
  status: number;
  minor: number;
  bodyKind: BodyKind;
  contentLength: number;
  /** Whether the app keeps the connection open after this response. */
  keepAlive: boolean;
  /** The status line and header lines to send on, each ending in CRLF, hop-by-hop headers removed (not for 101). */
  forwardHead: string;
  /** Seconds from `Keep-Alive: timeout=N`, when the app announced how long it keeps idle connections. */
  keepAliveHint: number | undefined;
}

export interface HeadLimits {
  /** Most header lines accepted in one head. */
  maxHeaders: number;
}

/** A client's X-Request-Id is passed on when it is 20-200 of these characters (Heroku's rule); otherwise berth makes one. */
export const REQUEST_ID_PATTERN = /^[A-Za-z0-9+=/_.:-]{20,200}$/;

/**
 * Parses a request head: `text` is everything before the blank line (latin1), without the final
 * CRLF CRLF. Throws an HttpError for anything berth will not forward.
 */
export function parseRequestHead(text: string, limits: HeadLimits): RequestHead {
  const lines = text.split('\r\n');
  if (lines.length - 1 > limits.maxHeaders) throw new HttpError(431, `more than ${limits.maxHeaders} header lines`);
  const requestLine = REQUEST_LINE.exec(lines[0]!);
  if (!requestLine) throw new HttpError(lines[0]!.includes(' HTTP/') && !lines[0]!.includes(' HTTP/1.') ? 505 : 400, 'malformed request line');
  const method = requestLine[1]!;
  const target = requestLine[2]!;
  const minor = requestLine[3] === '1' ? 1 : 0;
  if (method === 'CONNECT') throw new HttpError(501, 'CONNECT is not supported');

  let path = target;
  let authority: string | undefined;
  if (target.charCodeAt(0) !== 47 /* / */) {
    if (target === '*' && method === 'OPTIONS') path = '*';
    else {
      const absolute = ABSOLUTE_FORM.exec(target);
      if (!absolute) throw new HttpError(400, 'the request target is not a path');
      authority = absolute[1]!;
      path = absolute[2] === undefined || absolute[2] === '' ? '/' : absolute[2].charCodeAt(0) === 63 /* ? */ ? '/' + absolute[2] : absolute[2];
    }
  }

  let host: string | undefined;
  let hostCount = 0;
  let contentLength = -1;
  let chunked = false;
  let transferEncoding = false;
  let connection = '';
  let upgrade: string | undefined;
  let forwardedFor = '';
  let requestId: string | undefined;
  let forwardLines = '';
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (!HEADER_LINE.test(line)) throw new HttpError(400, lineProblem(line));
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).toLowerCase();
    const special = REQUEST_SPECIAL.get(name);
    if (special === undefined) {
      forwardLines += line + '\r\n';
      continue;
    }
    const value = line.slice(colon + 1).trim();
    switch (special) {
      case H_HOST:
        hostCount++;
        host = value;
        forwardLines += line + '\r\n';
        break;
      case H_CONTENT_LENGTH: {
        if (!DIGITS.test(value)) throw new HttpError(400, 'invalid Content-Length');
        const n = Number(value);
        if (contentLength !== -1 && contentLength !== n) throw new HttpError(400, 'conflicting Content-Length headers');
        if (contentLength === -1) forwardLines += line + '\r\n';
        contentLength = n;
        break;
      }
      case H_TRANSFER_ENCODING:
        if (transferEncoding || value.toLowerCase() !== 'chunked') throw new HttpError(501, `unsupported Transfer-Encoding: ${value}`);
        transferEncoding = true;
        chunked = true;
        forwardLines += 'Transfer-Encoding: chunked\r\n';
        break;
      case H_CONNECTION:
        connection = connection === '' ? value.toLowerCase() : `${connection},${value.toLowerCase()}`;
        break;
      case H_UPGRADE:
        upgrade = value;
        break;
      case H_FORWARDED_FOR:
        if (value !== '') forwardedFor = forwardedFor === '' ? value : `${forwardedFor}, ${value}`;
        break;
      case H_REQUEST_ID:
        if (REQUEST_ID_PATTERN.test(value)) requestId = value;
        break;
      default:
      // H_DROP: hop-by-hop, or an X-Forwarded-* header berth sets itself.
    }
  }
  if (hostCount > 1) throw new HttpError(400, 'more than one Host header');
  if (authority !== undefined) {
    // RFC 9112 §3.2.2: the authority of an absolute-form target replaces the Host header.
    if (hostCount > 0) forwardLines = withoutHeaders(forwardLines, ['host']);
    forwardLines = `Host: ${authority}\r\n${forwardLines}`;
    host = authority;
  }
  else if (hostCount === 0 && minor === 1) throw new HttpError(400, 'an HTTP/1.1 request needs a Host header');
  if (host !== undefined && !HOST_VALUE.test(host)) throw new HttpError(400, 'invalid Host header');
  if (chunked && contentLength !== -1) throw new HttpError(400, 'both Content-Length and Transfer-Encoding');
  if (chunked && minor === 0) throw new HttpError(400, 'Transfer-Encoding in an HTTP/1.0 request');

  let keepAlive = minor === 1;
  let wantsUpgrade = false;
  if (connection !== '') {
    const tokens = connectionTokens(connection);
    keepAlive = minor === 1 ? !tokens.close : tokens.keepAlive && !tokens.close;
    wantsUpgrade = tokens.upgrade;
    if (tokens.custom) forwardLines = withoutHeaders(forwardLines, tokens.custom);
  } else if (minor === 0) keepAlive = false;
  return {
    method,
    path,
    minor,
    host,
    bodyKind: chunked ? BODY_CHUNKED : contentLength > 0 ? BODY_LENGTH : BODY_NONE,
    contentLength: contentLength > 0 ? contentLength : 0,
    keepAlive,
    upgrade: wantsUpgrade && upgrade !== undefined && upgrade !== '' ? upgrade : undefined,
    forwardLines,
    forwardedFor,
    requestId,
  };
}

/**
 * Parses a response head (everything before the blank line). `requestMethod` decides whether a
 * body follows (none for HEAD). Throws an HttpError (shown to the client as a 502) when malformed.
 */
export function parseResponseHead(text: string, requestMethod: string, limits: HeadLimits): ResponseHead {
  const lines = text.split('\r\n');
  if (lines.length - 1 > limits.maxHeaders) throw new HttpError(400, `more than ${limits.maxHeaders} header lines`);
  const statusLine = lines[0]!;
  const match = STATUS_LINE.exec(statusLine);
  if (!match) throw new HttpError(400, 'malformed status line');
  const minor = match[1] === '1' ? 1 : 0;
  const status = Number(match[2]);
  const switching = status === 101;

  let contentLength = -1;
  let transferEncoding: string | undefined;
  let connection = '';
  let keepAliveHint: number | undefined;
  let forwardHead = statusLine + '\r\n';
  let lengthLine = '';
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (!HEADER_LINE.test(line)) throw new HttpError(400, lineProblem(line));
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).toLowerCase();
    const special = RESPONSE_SPECIAL.get(name);
    if (special === undefined || switching) {
      if (special === H_CONNECTION) connection = connection === '' ? line.slice(colon + 1).trim().toLowerCase() : `${connection},${line.slice(colon + 1).trim().toLowerCase()}`;
      forwardHead += line + '\r\n';
      continue;
    }
    const value = line.slice(colon + 1).trim();
    switch (special) {
      case H_CONTENT_LENGTH: {
        if (!DIGITS.test(value)) throw new HttpError(400, 'invalid Content-Length');
        const n = Number(value);
        if (contentLength !== -1 && contentLength !== n) throw new HttpError(400, 'conflicting Content-Length headers');
        if (contentLength === -1) lengthLine = line + '\r\n';
        contentLength = n;
        break;
      }
      case H_TRANSFER_ENCODING:
        transferEncoding = transferEncoding === undefined ? value.toLowerCase() : `${transferEncoding}, ${value.toLowerCase()}`;
        forwardHead += line + '\r\n';
        break;
      case H_CONNECTION:
        connection = connection === '' ? value.toLowerCase() : `${connection},${value.toLowerCase()}`;
        break;
      case H_KEEP_ALIVE: {
        const timeout = /(?:^|[,;\s])timeout\s*=\s*(\d+)/i.exec(value);
        if (timeout) keepAliveHint = Number(timeout[1]);
        break;
      }
      default:
      // H_DROP: hop-by-hop.
    }
  }

  let keepAlive = minor === 1;
  if (connection !== '') {
    const tokens = connectionTokens(connection);
    keepAlive = minor === 1 ? !tokens.close : tokens.keepAlive && !tokens.close;
    if (tokens.custom && !switching) forwardHead = withoutHeaders(forwardHead, tokens.custom, true);
  } else if (minor === 0) keepAlive = false;

  let bodyKind: BodyKind;
  if (requestMethod === 'HEAD' || status === 204 || status === 304 || (status >= 100 && status < 200)) {
    bodyKind = BODY_NONE;
    forwardHead += lengthLine; // a HEAD answer's length describes the GET body; pass it on
  } else if (transferEncoding !== undefined) {
    // A length next to a transfer coding is ignored (and not passed on): the coding frames the body.
    const codings = transferEncoding.split(',');
    bodyKind = codings[codings.length - 1]!.trim() === 'chunked' ? BODY_CHUNKED : BODY_UNTIL_CLOSE;
  } else if (contentLength !== -1) {
    bodyKind = contentLength === 0 ? BODY_NONE : BODY_LENGTH;
    forwardHead += lengthLine;
  } else {
    bodyKind = BODY_UNTIL_CLOSE;
  }
  if (bodyKind === BODY_UNTIL_CLOSE) keepAlive = false;
  return { status, minor, bodyKind, contentLength: contentLength > 0 ? contentLength : 0, keepAlive, forwardHead, keepAliveHint };
}

// ---------------------------------------------------------------------------------------------

const H_DROP = 0;
const H_HOST = 1;
const H_CONTENT_LENGTH = 2;
const H_TRANSFER_ENCODING = 3;
const H_CONNECTION = 4;
const H_UPGRADE = 5;
const H_FORWARDED_FOR = 6;
const H_REQUEST_ID = 7;
const H_KEEP_ALIVE = 8;

/** Request headers berth reads or drops: the hop-by-hop set (RFC 9110 §7.6.1) and the X-Forwarded-* berth sets. */
const REQUEST_SPECIAL = new Map<string, number>([
  ['host', H_HOST],
  ['content-length', H_CONTENT_LENGTH],
  ['transfer-encoding', H_TRANSFER_ENCODING],
  ['connection', H_CONNECTION],
  ['upgrade', H_UPGRADE],
  ['x-forwarded-for', H_FORWARDED_FOR],
  ['x-request-id', H_REQUEST_ID],
  ['keep-alive', H_DROP],
  ['proxy-connection', H_DROP],
  ['te', H_DROP],
  ['trailer', H_DROP],
  ['x-forwarded-proto', H_DROP],
  ['x-forwarded-host', H_DROP],
  ['x-forwarded-port', H_DROP],
]);

const RESPONSE_SPECIAL = new Map<string, number>([
  ['content-length', H_CONTENT_LENGTH],
  ['transfer-encoding', H_TRANSFER_ENCODING],
  ['connection', H_CONNECTION],
  ['keep-alive', H_KEEP_ALIVE],
  ['proxy-connection', H_DROP],
  ['te', H_DROP],
  ['trailer', H_DROP],
  ['upgrade', H_DROP],
]);

// RFC 9110 token characters for methods and header names; a target of visible ASCII; HTTP/1.0 or 1.1.
const REQUEST_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e]+) HTTP\/1\.([01])$/;
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: [\t\x20-\x7e\x80-\xff]*)?$/;
// A header line: a token, a colon, then only visible characters, spaces and tabs (no CR, LF or NUL).
const HEADER_LINE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*$/;
const ABSOLUTE_FORM = /^https?:\/\/([^/?#@\s]+)([/?][\x21-\x7e]*)?$/i;
const HOST_VALUE = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(?::\d{0,5})?$/;
const DIGITS = /^\d{1,15}$/;

interface ConnectionTokens {
  close: boolean;
  keepAlive: boolean;
  upgrade: boolean;
  /** Other header names the Connection header lists: hop-by-hop for this message, never the framing ones. */
  custom: string[] | undefined;
}

function connectionTokens(value: string): ConnectionTokens {
  const out: ConnectionTokens = { close: false, keepAlive: false, upgrade: false, custom: undefined };
  for (let t of value.split(',')) {
    t = t.trim();
    if (t === 'close') out.close = true;
    else if (t === 'keep-alive') out.keepAlive = true;
    else if (t === 'upgrade') out.upgrade = true;
    else if (t !== '' && !NEVER_HOP_BY_HOP.has(t)) (out.custom ??= []).push(t);
  }
  return out;
}

/** A Connection header may not make these disappear: they frame or route the message. */
const NEVER_HOP_BY_HOP = new Set(['host', 'content-length', 'transfer-encoding']);

function lineProblem(line: string): string {
  if (line === '' || line.charCodeAt(0) === 32 || line.charCodeAt(0) === 9) return 'obsolete line folding or an empty header line';
  if (!line.includes(':')) return 'a header line without a colon';
  return 'invalid characters in a header line';
}

/** Drops the header lines whose names are in `names` (lowercase) from CRLF-terminated lines. */
function withoutHeaders(block: string, names: readonly string[], keepFirstLine = false): string {
  const lines = block.split('\r\n');
  let out = '';
  for (let i = 0; i < lines.length - 1; i++) {
    const line = lines[i]!;
    if (!(keepFirstLine && i === 0)) {
      const name = line.slice(0, line.indexOf(':')).toLowerCase();
      if (names.includes(name)) continue;
    }
    out += line + '\r\n';
  }
  return out;
}
