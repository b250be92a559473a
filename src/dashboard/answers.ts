// How the dashboard answers: the security headers on everything, JSON bodies and errors in the
// contract's shape ({"error": {code, message, hint?}}), request bodies read with a cap.
import type http from 'node:http';

export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

/** An API answer that is not a success: its status and the error body's fields. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly hint: string | undefined;

  constructor(status: number, code: string, message: string, hint?: string) {
    super(message);
    this.status = status;
    this.code = code;
    this.hint = hint;
  }
}

export const noSession = () => new ApiError(401, 'no_session', 'log in with a link from the `dashboard` command');
export const notFound = (what = 'not found') => new ApiError(404, 'not_found', what);
export const httpsRequired = (hint: string) => new ApiError(403, 'https_required', 'the dashboard is not served over plain HTTP: a login or a session would cross the network in cleartext', hint);
export const crossSite = () => new ApiError(403, 'cross_site', 'cross-site request refused');

export function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'content-length': String(Buffer.byteLength(text)), ...headers });
  res.end(text);
}

export function sendError(res: http.ServerResponse, e: ApiError): void {
  sendJson(res, e.status, { error: { code: e.code, message: e.message, ...(e.hint ? { hint: e.hint } : {}) } });
}

/** The request's JSON body (an object), at most `maxBytes`; an ApiError 400/413 otherwise. */
export async function readJson(req: http.IncomingMessage, maxBytes: number): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw new ApiError(413, 'too_large', `the request body is larger than ${maxBytes} bytes`);
    chunks.push(chunk);
  }
  let body: unknown;
  try {
    body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new ApiError(400, 'bad_json', 'the request body is not JSON');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ApiError(400, 'bad_json', 'the request body is not a JSON object');
  return body as Record<string, unknown>;
}

/** What an event stream may hold unsent for a slow client; past it, the stream ends. */
export const MAX_BUFFERED_EVENTS = 1024 * 1024;

/**
 * Starts a Server-Sent Events answer; returns a writer of events and comments. An event returns
 * a promise while the client has not read what was sent (it settles on 'drain', or when the
 * answer closes); past MAX_BUFFERED_EVENTS unsent, the answer is cut (the page opens it again).
 */
export function startEvents(res: http.ServerResponse): { event(name: string, data: unknown): void | Promise<void>; comment(text: string): void } {
  res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', 'x-accel-buffering': 'no' });
  res.flushHeaders();
  const write = (text: string): void | Promise<void> => {
    if (res.writableEnded || res.destroyed) return;
    if (res.write(text)) return;
    if (res.writableLength > MAX_BUFFERED_EVENTS) {
      res.destroy();
      return;
    }
    return new Promise<void>((resolve) => {
      const done = () => {
        res.off('drain', done);
        res.off('close', done);
        resolve();
      };
      res.on('drain', done);
      res.on('close', done);
    });
  };
  return {
    event: (name, data) => write(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`),
    comment: (text) => void write(`: ${text}\n\n`),
  };
}
