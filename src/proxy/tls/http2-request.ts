// Makes an HTTP/2 request (node:http2's compatibility object) look like the HTTP/1.1 request the
// forwarder reads: a Host header from :authority, no pseudo-headers, cookies joined into one
// header (RFC 9113 §8.2.3), and a body marked as such even when the client sent no length.
import type { IncomingMessage } from 'node:http';
import type { Http2ServerRequest } from 'node:http2';

/**
 * Adjusts the request in place and returns it typed as the forwarder's IncomingMessage. The
 * forwarder uses method, url, headers, rawHeaders, socket.remoteAddress and the body stream,
 * which the compatibility object has; only the header shapes differ.
 */
export function adaptHttp2Request(req: Http2ServerRequest): IncomingMessage {
  const authority = req.headers[':authority'] ?? req.headers.host;
  const raw = req.rawHeaders;
  const kept: string[] = [];
  const cookies: string[] = [];
  let hasHost = false;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.startsWith(':')) continue;
    const lower = name.toLowerCase();
    if (lower === 'cookie') {
      cookies.push(raw[i + 1]!);
      continue;
    }
    if (lower === 'host') hasHost = true;
    kept.push(name, raw[i + 1]!);
  }
  if (!hasHost && typeof authority === 'string' && authority !== '') kept.unshift('host', authority);
  if (cookies.length > 0) kept.push('cookie', cookies.join('; '));
  raw.length = 0;
  raw.push(...kept);
  if (req.headers.host === undefined && typeof authority === 'string') req.headers.host = authority;
  if (cookies.length > 1) req.headers.cookie = cookies.join('; ');
  // HTTP/2 frames the body itself: a request that did not end with its headers has one, with or
  // without content-length. The forwarder looks for either header to decide it streams a body;
  // this marker is not forwarded (only rawHeaders are), so the upstream request is chunked.
  if (!req.stream.endAfterHeaders && req.headers['content-length'] === undefined) req.headers['transfer-encoding'] = 'chunked';
  return req as unknown as IncomingMessage;
}
