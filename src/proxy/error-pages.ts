// The proxy's one error renderer: the small HTML pages a visitor sees when berth itself answers.
import type { Http2ServerResponse } from 'node:http2';

export type ErrorStatus = 400 | 404 | 408 | 413 | 431 | 500 | 501 | 502 | 503 | 504 | 505;

export interface ErrorPage {
  readonly status: ErrorStatus;
  readonly headers: Readonly<Record<string, string>>;
  /** Empty for HEAD; `content-length` still gives the length a GET would get. */
  readonly body: string;
}

/** The page for `status`; `detail` is plain text (it is escaped here, so Host headers may go in as is). */
export function errorPage(status: ErrorStatus, detail: string, method = 'GET'): ErrorPage {
  const title = `${status} ${TITLES[status]}`;
  const html =
    '<!doctype html>\n<html lang="en">\n<head><meta charset="utf-8"><title>' + title + '</title>' +
    '<meta name="viewport" content="width=device-width, initial-scale=1"><style>' + STYLE + '</style></head>\n' +
    '<body><main><h1>' + title + '</h1><p>' + escapeHtml(detail) + '</p><p class="by">berth</p></main></body>\n</html>\n';
  return {
    status,
    headers: {
      'content-type': 'text/html; charset=utf-8',
      'content-length': String(Buffer.byteLength(html)),
      // An error from the proxy says nothing about the app's content; never let it be cached.
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
    },
    body: method === 'HEAD' ? '' : html,
  };
}

/**
 * Answers with the page (node:http2's compatibility response), or cuts the stream when the app's
 * headers already went out. Returns the body bytes sent.
 */
export function sendErrorPage(res: Http2ServerResponse, method: string, status: ErrorStatus, detail: string, requestId: string): number {
  if (res.headersSent) {
    res.destroy();
    return 0;
  }
  const page = errorPage(status, detail, method);
  res.writeHead(page.status, { ...page.headers, 'x-request-id': requestId });
  res.end(page.body);
  return Buffer.byteLength(page.body);
}

/**
 * The whole response (status line, headers, page) as one latin1-safe string, for the fast path
 * that writes to sockets itself. `keepAlive` false adds `connection: close`.
 */
export function errorResponse(status: ErrorStatus, detail: string, options: { method?: string; keepAlive?: boolean; requestId?: string } = {}): string {
  const page = errorPage(status, detail, options.method);
  let head = `HTTP/1.1 ${status} ${TITLES[status]}\r\n`;
  for (const [name, value] of Object.entries(page.headers)) head += `${name}: ${value}\r\n`;
  if (options.requestId) head += `x-request-id: ${options.requestId}\r\n`;
  if (!options.keepAlive) head += 'connection: close\r\n';
  // The page is ASCII apart from what escapeHtml passed through; encode it so the length holds.
  return head + '\r\n' + Buffer.from(page.body, 'utf8').toString('latin1');
}

/** A 308 to `location` as one latin1 string for the fast path; `location` is built by berth, never raw input. */
export function redirectResponse(location: string, options: { method?: string; keepAlive?: boolean; requestId?: string } = {}): string {
  const body = `Moved to ${location}\n`;
  let head = `HTTP/1.1 308 Permanent Redirect\r\nlocation: ${location}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\ncache-control: no-store\r\n`;
  if (options.requestId) head += `x-request-id: ${options.requestId}\r\n`;
  if (!options.keepAlive) head += 'connection: close\r\n';
  return head + '\r\n' + (options.method === 'HEAD' ? '' : Buffer.from(body, 'utf8').toString('latin1'));
}

/** A berth answer that is not an error (an ACME challenge's key authorization) as one latin1 string for the fast path. */
export function plainResponse(body: string, options: { method?: string; keepAlive?: boolean; requestId?: string } = {}): string {
  let head = `HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\ncache-control: no-store\r\n`;
  if (options.requestId) head += `x-request-id: ${options.requestId}\r\n`;
  if (!options.keepAlive) head += 'connection: close\r\n';
  return head + '\r\n' + (options.method === 'HEAD' ? '' : Buffer.from(body, 'utf8').toString('latin1'));
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c] ?? c);
}

const TITLES: Record<ErrorStatus, string> = {
  400: 'Bad Request',
  404: 'Not Found',
  408: 'Request Timeout',
  413: 'Content Too Large',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
  505: 'HTTP Version Not Supported',
};

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

const STYLE =
  'body{margin:0;font:16px/1.5 system-ui,sans-serif;color:#222;background:#f6f6f4}' +
  'main{max-width:36rem;margin:15vh auto;padding:0 1.5rem}h1{font-size:1.4rem;margin:0 0 .5rem}' +
  '.by{color:#888;font-size:.85rem}';
