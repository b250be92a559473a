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
  /** The header lines to forward, each ending in CRLF, hop-by-hop headers and those berth sets (X-Forwarded-*, X-Real-IP, Forwarded) removed. */
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

const CRLF2 = Buffer.from('\r\n\r\n');

/**
 * Where the blank line ending a head starts in `buf` (the index of its CR LF CR LF), searching
 * from `from`; -1 when it is not there yet. A short search is a loop here: Buffer.indexOf costs
 * a call into C++ that is dearer than looking at a few hundred bytes.
 */
export function findHeadEnd(buf: Buffer, from: number): number {
  const len = buf.length;
  if (len - from > 512) return buf.indexOf(CRLF2, from);
  for (let i = from + 3; i < len; i++) {
    // Look at every LF: the last byte of CR LF CR LF.
    if (buf[i] === 10 && buf[i - 1] === 13 && buf[i - 2] === 10 && buf[i - 3] === 13) return i - 3;
  }
  return -1;
}

/**
 * Parses a request head: `text` is everything before the blank line (latin1), without the final
 * CRLF CRLF. Throws an HttpError for anything berth will not forward.
 *
 * One pass over the characters, with no split, no regular expression per line and no string per
 * forwarded header: the lines berth passes on are taken from `text` as whole runs.
 */
export function parseRequestHead(text: string, limits: HeadLimits): RequestHead {
  try {
    return readRequestHead(text, limits.maxHeaders);
  } catch (e) {
    // Too many lines is reported before any other problem, however far into the head that is.
    throw tooManyLines(text, limits.maxHeaders, 431) ?? e;
  }
}

/**
 * Parses a response head (everything before the blank line). `requestMethod` decides whether a
 * body follows (none for HEAD). Throws an HttpError (shown to the client as a 502) when malformed.
 */
export function parseResponseHead(text: string, requestMethod: string, limits: HeadLimits): ResponseHead {
  try {
    return readResponseHead(text, requestMethod, limits.maxHeaders);
  } catch (e) {
    throw tooManyLines(text, limits.maxHeaders, 400) ?? e;
  }
}

function readRequestHead(text: string, maxHeaders: number): RequestHead {
  const len = text.length;
  let lineEnd = text.indexOf('\r\n');
  if (lineEnd === -1) lineEnd = len;
  // Request line: token SP visible-ASCII SP "HTTP/1." [01]
  let i = 0;
  while (i < lineEnd && (charClass(text.charCodeAt(i)) & TOKEN) !== 0) i++;
  const methodEnd = i;
  if (methodEnd === 0 || i === lineEnd || text.charCodeAt(i) !== 32) throw badRequestLine(text.slice(0, lineEnd));
  const targetStart = ++i;
  while (i < lineEnd && (charClass(text.charCodeAt(i)) & TARGET) !== 0) i++;
  const targetEnd = i;
  const version = text.charCodeAt(lineEnd - 1);
  if (targetEnd === targetStart || lineEnd - targetEnd !== 9 || !text.startsWith(' HTTP/1.', targetEnd) || (version !== 48 && version !== 49)) {
    throw badRequestLine(text.slice(0, lineEnd));
  }
  const method = methodName(text, methodEnd);
  const target = text.slice(targetStart, targetEnd);
  const minor = version - 48;
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
  let connection = '';
  let upgrade: string | undefined;
  let forwardedFor = '';
  let requestId: string | undefined;
  let forwardLines = '';
  // The lines passed on unchanged are copied as runs: [runStart, runEnd) of `text`.
  let runStart = lineEnd + 2;
  let runEnd = runStart;
  let lines = 0;
  for (let pos = lineEnd + 2; pos < len + 2; ) {
    if (++lines > maxHeaders) throw new HttpError(431, `more than ${maxHeaders} header lines`);
    const colon = scanHeaderLine(text, pos);
    const eol = scannedLineEnd;
    const kind = requestHeaderKind(text, pos, colon - pos);
    if (kind === H_FORWARD) {
      if (runEnd !== pos) {
        forwardLines = appendRun(forwardLines, text, runStart, runEnd);
        runStart = pos;
      }
      runEnd = eol + 2;
      pos = eol + 2;
      continue;
    }
    let keep = false;
    let vs = colon + 1;
    let ve = eol;
    while (vs < ve && isOws(text.charCodeAt(vs))) vs++;
    while (ve > vs && isOws(text.charCodeAt(ve - 1))) ve--;
    switch (kind) {
      case H_HOST:
        hostCount++;
        host = text.slice(vs, ve);
        keep = true;
        break;
      case H_CONTENT_LENGTH: {
        const n = decimal(text, vs, ve);
        if (n === -1) throw new HttpError(400, 'invalid Content-Length');
        if (contentLength !== -1 && contentLength !== n) throw new HttpError(400, 'conflicting Content-Length headers');
        keep = contentLength === -1;
        contentLength = n;
        break;
      }
      case H_TRANSFER_ENCODING:
        if (chunked || ve - vs !== 7 || !sameLetters(text, vs, 'chunked')) throw new HttpError(501, `unsupported Transfer-Encoding: ${text.slice(vs, ve)}`);
        chunked = true;
        forwardLines = appendRun(forwardLines, text, runStart, runEnd) + 'Transfer-Encoding: chunked\r\n';
        runStart = runEnd = eol + 2;
        break;
      case H_CONNECTION: {
        const value = text.slice(vs, ve).toLowerCase();
        connection = connection === '' ? value : `${connection},${value}`;
        break;
      }
      case H_UPGRADE:
        upgrade = text.slice(vs, ve);
        break;
      case H_FORWARDED_FOR:
        if (ve > vs) forwardedFor = forwardedFor === '' ? text.slice(vs, ve) : `${forwardedFor}, ${text.slice(vs, ve)}`;
        break;
      case H_REQUEST_ID: {
        const value = text.slice(vs, ve);
        if (REQUEST_ID_PATTERN.test(value)) requestId = value;
        break;
      }
      default:
      // H_DROP: hop-by-hop, or a forwarded header berth sets itself.
    }
    if (keep) {
      if (runEnd !== pos) {
        forwardLines = appendRun(forwardLines, text, runStart, runEnd);
        runStart = pos;
      }
      runEnd = eol + 2;
    }
    pos = eol + 2;
  }
  forwardLines = appendRun(forwardLines, text, runStart, runEnd);
  if (hostCount > 1) throw new HttpError(400, 'more than one Host header');
  if (authority !== undefined) {
    // RFC 9112 §3.2.2: the authority of an absolute-form target replaces the Host header.
    if (hostCount > 0) forwardLines = withoutHeaders(forwardLines, ['host']);
    forwardLines = `Host: ${authority}\r\n${forwardLines}`;
    host = authority;
  }
  else if (hostCount === 0 && minor === 1) throw new HttpError(400, 'an HTTP/1.1 request needs a Host header');
  if (host !== undefined && !validHost(host)) throw new HttpError(400, 'invalid Host header');
  if (chunked && contentLength !== -1) throw new HttpError(400, 'both Content-Length and Transfer-Encoding');
  if (chunked && minor === 0) throw new HttpError(400, 'Transfer-Encoding in an HTTP/1.0 request');

  let keepAlive = minor === 1;
  let wantsUpgrade = false;
  if (connection === 'keep-alive') keepAlive = true;
  else if (connection === 'close') keepAlive = false;
  else if (connection !== '') {
    const tokens = connectionTokens(connection);
    keepAlive = minor === 1 ? !tokens.close : tokens.keepAlive && !tokens.close;
    wantsUpgrade = tokens.upgrade;
    if (tokens.custom) forwardLines = withoutHeaders(forwardLines, tokens.custom);
  }
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

function readResponseHead(text: string, requestMethod: string, maxHeaders: number): ResponseHead {
  const len = text.length;
  let lineEnd = text.indexOf('\r\n');
  if (lineEnd === -1) lineEnd = len;
  // Status line: "HTTP/1." [01] SP [1-9] DIGIT DIGIT [ SP reason ]
  const v = text.charCodeAt(7);
  const s1 = text.charCodeAt(9);
  const s2 = text.charCodeAt(10);
  const s3 = text.charCodeAt(11);
  if (
    lineEnd < 12 || !text.startsWith('HTTP/1.') || (v !== 48 && v !== 49) || text.charCodeAt(8) !== 32 ||
    s1 < 49 || s1 > 57 || s2 < 48 || s2 > 57 || s3 < 48 || s3 > 57 || (lineEnd > 12 && text.charCodeAt(12) !== 32)
  ) {
    throw new HttpError(400, 'malformed status line');
  }
  for (let i = 13; i < lineEnd; i++) if ((charClass(text.charCodeAt(i)) & VALUE) === 0) throw new HttpError(400, 'malformed status line');
  const minor = v - 48;
  const status = (s1 - 48) * 100 + (s2 - 48) * 10 + (s3 - 48);
  const switching = status === 101;

  let contentLength = -1;
  let transferEncoding: string | undefined;
  let connection = '';
  let keepAliveHint: number | undefined;
  let forwardHead = '';
  let lengthLine = '';
  // The status line and the lines passed on unchanged are copied as runs: [runStart, runEnd) of `text`.
  let runStart = 0;
  let runEnd = lineEnd + 2;
  let lines = 0;
  for (let pos = lineEnd + 2; pos < len + 2; ) {
    if (++lines > maxHeaders) throw new HttpError(400, `more than ${maxHeaders} header lines`);
    const colon = scanHeaderLine(text, pos);
    const eol = scannedLineEnd;
    const kind = responseHeaderKind(text, pos, colon - pos);
    let keep = kind === H_FORWARD || kind === H_TRANSFER_ENCODING || switching;
    if (kind !== H_FORWARD) {
      let vs = colon + 1;
      let ve = eol;
      while (vs < ve && isOws(text.charCodeAt(vs))) vs++;
      while (ve > vs && isOws(text.charCodeAt(ve - 1))) ve--;
      if (kind === H_CONNECTION) {
        const value = text.slice(vs, ve).toLowerCase();
        connection = connection === '' ? value : `${connection},${value}`;
      } else if (!switching) {
        switch (kind) {
          case H_CONTENT_LENGTH: {
            const n = decimal(text, vs, ve);
            if (n === -1) throw new HttpError(400, 'invalid Content-Length');
            if (contentLength !== -1 && contentLength !== n) throw new HttpError(400, 'conflicting Content-Length headers');
            if (contentLength === -1) lengthLine = eol + 2 <= len ? text.slice(pos, eol + 2) : text.slice(pos, eol) + '\r\n';
            contentLength = n;
            break;
          }
          case H_TRANSFER_ENCODING: {
            const value = text.slice(vs, ve).toLowerCase();
            transferEncoding = transferEncoding === undefined ? value : `${transferEncoding}, ${value}`;
            break;
          }
          case H_KEEP_ALIVE:
            keepAliveHint = keepAliveTimeout(text, vs, ve) ?? keepAliveHint;
            break;
          default:
          // H_DROP: hop-by-hop.
        }
      }
    }
    if (keep) {
      if (runEnd !== pos) {
        forwardHead = appendRun(forwardHead, text, runStart, runEnd);
        runStart = pos;
      }
      runEnd = eol + 2;
    }
    pos = eol + 2;
  }
  forwardHead = appendRun(forwardHead, text, runStart, runEnd);

  let keepAlive = minor === 1;
  if (connection === 'keep-alive') keepAlive = true;
  else if (connection === 'close') keepAlive = false;
  else if (connection !== '') {
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

const H_FORWARD = -1;
const H_DROP = 0;
const H_HOST = 1;
const H_CONTENT_LENGTH = 2;
const H_TRANSFER_ENCODING = 3;
const H_CONNECTION = 4;
const H_UPGRADE = 5;
const H_FORWARDED_FOR = 6;
const H_REQUEST_ID = 7;
const H_KEEP_ALIVE = 8;

/**
 * Request headers berth reads or drops: the hop-by-hop set (RFC 9110 §7.6.1) and the forwarded
 * headers berth sets (SET_BY_BERTH in request-policy.ts; a test checks the two agree). Told apart
 * by length first, so most names are passed on after one comparison.
 */
function requestHeaderKind(text: string, start: number, length: number): number {
  switch (length) {
    case 2:
      return sameLetters(text, start, 'te') ? H_DROP : H_FORWARD;
    case 4:
      return sameLetters(text, start, 'host') ? H_HOST : H_FORWARD;
    case 7:
      return sameLetters(text, start, 'upgrade') ? H_UPGRADE : sameLetters(text, start, 'trailer') ? H_DROP : H_FORWARD;
    case 9:
      return sameLetters(text, start, 'forwarded') || sameLetters(text, start, 'x-real-ip') ? H_DROP : H_FORWARD;
    case 10:
      return sameLetters(text, start, 'connection') ? H_CONNECTION : sameLetters(text, start, 'keep-alive') ? H_DROP : H_FORWARD;
    case 12:
      return sameLetters(text, start, 'x-request-id') ? H_REQUEST_ID : H_FORWARD;
    case 14:
      return sameLetters(text, start, 'content-length') ? H_CONTENT_LENGTH : H_FORWARD;
    case 15:
      return sameLetters(text, start, 'x-forwarded-for') ? H_FORWARDED_FOR : sameLetters(text, start, 'x-forwarded-ssl') ? H_DROP : H_FORWARD;
    case 16:
      return sameLetters(text, start, 'proxy-connection') || sameLetters(text, start, 'x-forwarded-host') || sameLetters(text, start, 'x-forwarded-port') ? H_DROP : H_FORWARD;
    case 17:
      return sameLetters(text, start, 'transfer-encoding') ? H_TRANSFER_ENCODING : sameLetters(text, start, 'x-forwarded-proto') ? H_DROP : H_FORWARD;
    default:
      return H_FORWARD;
  }
}

function responseHeaderKind(text: string, start: number, length: number): number {
  switch (length) {
    case 2:
      return sameLetters(text, start, 'te') ? H_DROP : H_FORWARD;
    case 7:
      return sameLetters(text, start, 'upgrade') || sameLetters(text, start, 'trailer') ? H_DROP : H_FORWARD;
    case 10:
      return sameLetters(text, start, 'connection') ? H_CONNECTION : sameLetters(text, start, 'keep-alive') ? H_KEEP_ALIVE : H_FORWARD;
    case 14:
      return sameLetters(text, start, 'content-length') ? H_CONTENT_LENGTH : H_FORWARD;
    case 16:
      return sameLetters(text, start, 'proxy-connection') ? H_DROP : H_FORWARD;
    case 17:
      return sameLetters(text, start, 'transfer-encoding') ? H_TRANSFER_ENCODING : H_FORWARD;
    default:
      return H_FORWARD;
  }
}

/** Whether `text` at `start` holds `lower` (lowercase ASCII), ignoring the case of letters. */
function sameLetters(text: string, start: number, lower: string): boolean {
  for (let k = 0; k < lower.length; k++) {
    let c = text.charCodeAt(start + k);
    if (c >= 65 && c <= 90) c += 32;
    if (c !== lower.charCodeAt(k)) return false;
  }
  return true;
}

// Character classes of latin1 code units: RFC 9110 token characters (methods, header names),
// field-value characters (HTAB, SP, visible ASCII, obs-text), request-target characters (visible ASCII).
const TOKEN = 1;
const VALUE = 2;
const TARGET = 4;
/** Characters of a reg-name or IPv4 address in a Host header. */
const HOST_CHAR = 8;
const CHAR_CLASS = new Uint8Array(256);
for (let c = 0; c < 256; c++) {
  let k = 0;
  if (c === 9 || (c >= 0x20 && c <= 0x7e) || c >= 0x80) k |= VALUE;
  if (c >= 0x21 && c <= 0x7e) k |= TARGET;
  if ((c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || "!#$%&'*+-.^_`|~".includes(String.fromCharCode(c))) k |= TOKEN;
  if ((c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || "._~!$&'()*+,;=%-".includes(String.fromCharCode(c))) k |= HOST_CHAR;
  CHAR_CLASS[c] = k;
}

function charClass(c: number): number {
  return c < 256 ? CHAR_CLASS[c]! : 0;
}

/** Where the line scanHeaderLine() read last ends: at its CRLF, or at the end of the text. */
let scannedLineEnd = 0;

/**
 * Reads the header line starting at `start` in one pass: returns the colon that ends its name and
 * leaves the line's end in scannedLineEnd. Throws unless the line is a token, a colon, then
 * field-value characters up to a CRLF (or the end of the text).
 */
function scanHeaderLine(text: string, start: number): number {
  const len = text.length;
  let i = start;
  while (i < len && (charClass(text.charCodeAt(i)) & TOKEN) !== 0) i++;
  const colon = i;
  if (colon === start || colon === len || text.charCodeAt(colon) !== 58) throw badHeaderLine(text, start);
  for (i = colon + 1; i < len; i++) {
    const c = text.charCodeAt(i);
    if ((charClass(c) & VALUE) === 0) {
      // CR ends the line when LF follows it; any other control character is refused.
      if (c === 13 && text.charCodeAt(i + 1) === 10) break;
      throw badHeaderLine(text, start);
    }
  }
  scannedLineEnd = i;
  return colon;
}

/** The error for the malformed line starting at `start` (the line runs to the next CRLF). */
function badHeaderLine(text: string, start: number): HttpError {
  const end = text.indexOf('\r\n', start);
  return new HttpError(400, lineProblem(text.slice(start, end === -1 ? text.length : end)));
}

/** What String.prototype.trim removes from a header value that passed headerColon: SP, HTAB, NBSP. */
function isOws(c: number): boolean {
  return c === 32 || c === 9 || c === 0xa0;
}

/** 1 to 15 decimal digits as a number; -1 otherwise. */
function decimal(text: string, start: number, end: number): number {
  if (end <= start || end - start > 15) return -1;
  let n = 0;
  for (let i = start; i < end; i++) {
    const d = text.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

/** `timeout=N` in a Keep-Alive header value, the usual form read without a regular expression. */
function keepAliveTimeout(text: string, start: number, end: number): number | undefined {
  if (end - start > 8 && sameLetters(text, start, 'timeout=')) {
    const n = decimal(text, start + 8, end);
    if (n !== -1) return n;
  }
  const timeout = /(?:^|[,;\s])timeout\s*=\s*(\d+)/i.exec(text.slice(start, end));
  return timeout ? Number(timeout[1]) : undefined;
}

/** The usual methods as shared constants (no new string per request); others sliced. */
function methodName(text: string, end: number): string {
  switch (end) {
    case 3:
      if (text.startsWith('GET')) return 'GET';
      if (text.startsWith('PUT')) return 'PUT';
      break;
    case 4:
      if (text.startsWith('POST')) return 'POST';
      if (text.startsWith('HEAD')) return 'HEAD';
      break;
    case 6:
      if (text.startsWith('DELETE')) return 'DELETE';
      break;
  }
  return text.slice(0, end);
}

/** `[start, end)` of `text` appended to `out`; the last line of a head comes without its CRLF. */
function appendRun(out: string, text: string, start: number, end: number): string {
  if (end <= start) return out;
  return end <= text.length ? out + text.slice(start, end) : out + text.slice(start, text.length) + '\r\n';
}

function badRequestLine(line: string): HttpError {
  return new HttpError(line.includes(' HTTP/') && !line.includes(' HTTP/1.') ? 505 : 400, 'malformed request line');
}

/** The error to report instead when the head has more header lines than allowed; undefined otherwise. */
function tooManyLines(text: string, maxHeaders: number, status: 400 | 431): HttpError | undefined {
  let lines = 0;
  for (let i = text.indexOf('\r\n'); i !== -1; i = text.indexOf('\r\n', i + 2)) if (++lines > maxHeaders) return new HttpError(status, `more than ${maxHeaders} header lines`);
  return undefined;
}

/** A Host header value: a reg-name or IPv4 address (or an IPv6 literal), then an optional port of up to 5 digits. */
function validHost(host: string): boolean {
  if (host.charCodeAt(0) === 91 /* [ */) return HOST_VALUE.test(host);
  const len = host.length;
  let i = 0;
  while (i < len) {
    const c = host.charCodeAt(i);
    if (c === 58 /* : */) break;
    if (c >= 256 || (CHAR_CLASS[c]! & HOST_CHAR) === 0) return false;
    i++;
  }
  if (i === len) return true;
  if (len - i - 1 > 5) return false;
  for (i++; i < len; i++) {
    const c = host.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}


const ABSOLUTE_FORM = /^https?:\/\/([^/?#@\s]+)([/?][\x21-\x7e]*)?$/i;
const HOST_VALUE = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(?::\d{0,5})?$/;

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
