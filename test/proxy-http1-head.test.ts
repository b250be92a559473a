import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ChunkedBody } from '../src/proxy/chunked-body.ts';
import { BODY_CHUNKED, BODY_LENGTH, BODY_NONE, BODY_UNTIL_CLOSE, findHeadEnd, HttpError, parseRequestHead, parseResponseHead } from '../src/proxy/http1-head.ts';

const LIMITS = { maxHeaders: 50 };

function head(lines: string[]): string {
  return lines.join('\r\n');
}

function refused(text: string, status: number, message: RegExp): void {
  assert.throws(
    () => parseRequestHead(text, LIMITS),
    (e: unknown) => e instanceof HttpError && e.status === status && message.test(e.message),
  );
}

test('a plain GET is parsed into its method, path, host and keep-alive, with hop-by-hop headers dropped', () => {
  const h = parseRequestHead(
    head(['GET /a?b=1 HTTP/1.1', 'Host: shop.example.com', 'Connection: keep-alive', 'Keep-Alive: timeout=5', 'Accept: */*', 'X-Forwarded-Proto: https', 'TE: trailers']),
    LIMITS,
  );
  assert.equal(h.method, 'GET');
  assert.equal(h.path, '/a?b=1');
  assert.equal(h.host, 'shop.example.com');
  assert.equal(h.minor, 1);
  assert.equal(h.keepAlive, true);
  assert.equal(h.bodyKind, BODY_NONE);
  assert.equal(h.forwardLines, 'Host: shop.example.com\r\nAccept: */*\r\n');
});

test('Content-Length and chunked requests get their framing; a zero length means no body', () => {
  const length = parseRequestHead(head(['POST / HTTP/1.1', 'Host: a', 'Content-Length: 42']), LIMITS);
  assert.equal(length.bodyKind, BODY_LENGTH);
  assert.equal(length.contentLength, 42);
  const chunked = parseRequestHead(head(['POST / HTTP/1.1', 'Host: a', 'Transfer-Encoding: Chunked']), LIMITS);
  assert.equal(chunked.bodyKind, BODY_CHUNKED);
  assert.match(chunked.forwardLines, /^Transfer-Encoding: chunked\r\n/m);
  assert.equal(parseRequestHead(head(['POST / HTTP/1.1', 'Host: a', 'Content-Length: 0']), LIMITS).bodyKind, BODY_NONE);
});

test('messages that could be read two ways are refused (smuggling guards)', () => {
  refused(head(['POST / HTTP/1.1', 'Host: a', 'Content-Length: 5', 'Transfer-Encoding: chunked']), 400, /both/);
  refused(head(['POST / HTTP/1.1', 'Host: a', 'Content-Length: 5', 'Content-Length: 6']), 400, /conflicting/);
  refused(head(['POST / HTTP/1.1', 'Host: a', 'Content-Length: 5, 5']), 400, /Content-Length/);
  refused(head(['POST / HTTP/1.1', 'Host: a', 'Content-Length: +5']), 400, /Content-Length/);
  refused(head(['POST / HTTP/1.1', 'Host: a', 'Transfer-Encoding: gzip, chunked']), 501, /Transfer-Encoding/);
  refused(head(['POST / HTTP/1.1', 'Host: a', 'Transfer-Encoding: chunked', 'Transfer-Encoding: chunked']), 501, /Transfer-Encoding/);
  refused(head(['POST / HTTP/1.0', 'Host: a', 'Transfer-Encoding: chunked']), 400, /HTTP\/1\.0/);
  refused(head(['GET / HTTP/1.1', 'Host: a', ' folded: value']), 400, /folding/);
  refused(head(['GET / HTTP/1.1', 'Host: a', 'Bad Name: x']), 400, /invalid characters|colon/);
  refused(head(['GET / HTTP/1.1', 'Host: a', 'X: a\nb']), 400, /invalid characters/);
  refused(head(['GET / HTTP/1.1', 'Host: a', 'X: a\0b']), 400, /invalid characters/);
  refused(head(['GET / HTTP/1.1', 'Host: a', 'Host: b']), 400, /more than one Host/);
  refused(head(['GET / HTTP/1.1', 'Accept: */*']), 400, /needs a Host/);
  refused(head(['GET /a b HTTP/1.1', 'Host: a']), 400, /request line/);
  refused(head(['GET / HTTP/2.0', 'Host: a']), 505, /request line/);
  refused(head(['CONNECT a:443 HTTP/1.1', 'Host: a']), 501, /CONNECT/);
});

test('too many header lines are refused with 431', () => {
  const lines = ['GET / HTTP/1.1', 'Host: a', ...Array.from({ length: 60 }, (_, i) => `X-${i}: y`)];
  refused(head(lines), 431, /header lines/);
});

test('a Connection header can drop other headers but never Host or the framing ones', () => {
  const h = parseRequestHead(
    head(['POST / HTTP/1.1', 'Host: a', 'Content-Length: 3', 'Connection: x-secret, host, content-length', 'X-Secret: s', 'X-Kept: k']),
    LIMITS,
  );
  assert.equal(h.forwardLines, 'Host: a\r\nContent-Length: 3\r\nX-Kept: k\r\n');
  assert.equal(h.contentLength, 3);
});

test('an upgrade is recognised only when Connection names it', () => {
  assert.equal(parseRequestHead(head(['GET / HTTP/1.1', 'Host: a', 'Connection: Upgrade', 'Upgrade: websocket']), LIMITS).upgrade, 'websocket');
  const plain = parseRequestHead(head(['GET / HTTP/1.1', 'Host: a', 'Upgrade: h2c']), LIMITS);
  assert.equal(plain.upgrade, undefined);
  assert.doesNotMatch(plain.forwardLines, /Upgrade/i);
});

test('HTTP/1.0 keeps the connection only when asked, HTTP/1.1 unless told to close', () => {
  assert.equal(parseRequestHead(head(['GET / HTTP/1.0']), LIMITS).keepAlive, false);
  assert.equal(parseRequestHead(head(['GET / HTTP/1.0', 'Connection: keep-alive']), LIMITS).keepAlive, true);
  assert.equal(parseRequestHead(head(['GET / HTTP/1.1', 'Host: a', 'Connection: close']), LIMITS).keepAlive, false);
});

test('an absolute-form target becomes a path, and its authority the Host', () => {
  const h = parseRequestHead(head(['GET http://Shop.example.com:8080/cart?x=1 HTTP/1.1', 'Host: other.example.com']), LIMITS);
  assert.equal(h.path, '/cart?x=1');
  assert.equal(h.host, 'Shop.example.com:8080');
  assert.equal(h.forwardLines, 'Host: Shop.example.com:8080\r\n');
  assert.equal(parseRequestHead(head(['GET http://a.example.com HTTP/1.1', 'Host: a.example.com']), LIMITS).path, '/');
  assert.equal(parseRequestHead(head(['OPTIONS * HTTP/1.1', 'Host: a']), LIMITS).path, '*');
});

test('X-Forwarded-For values are collected and a well-formed X-Request-Id is kept', () => {
  const h = parseRequestHead(
    head(['GET / HTTP/1.1', 'Host: a', 'X-Forwarded-For: 203.0.113.1', 'X-Forwarded-For: 198.51.100.2', 'X-Request-Id: 0123456789abcdef0123456789']),
    LIMITS,
  );
  assert.equal(h.forwardedFor, '203.0.113.1, 198.51.100.2');
  assert.equal(h.requestId, '0123456789abcdef0123456789');
  assert.doesNotMatch(h.forwardLines, /X-Forwarded-For|X-Request-Id/i);
  assert.equal(parseRequestHead(head(['GET / HTTP/1.1', 'Host: a', 'X-Request-Id: short']), LIMITS).requestId, undefined);
  assert.equal(parseRequestHead(head(['GET / HTTP/1.1', 'Host: a', `X-Request-Id: ${'a'.repeat(20)}<script>`]), LIMITS).requestId, undefined);
});

test('a response is framed by chunked, then Content-Length, then the connection closing', () => {
  const chunked = parseResponseHead(head(['HTTP/1.1 200 OK', 'Transfer-Encoding: chunked', 'Content-Length: 10']), 'GET', LIMITS);
  assert.equal(chunked.bodyKind, BODY_CHUNKED);
  assert.doesNotMatch(chunked.forwardHead, /Content-Length/i);
  const length = parseResponseHead(head(['HTTP/1.1 200 OK', 'Content-Length: 10']), 'GET', LIMITS);
  assert.equal(length.bodyKind, BODY_LENGTH);
  assert.equal(length.keepAlive, true);
  const close = parseResponseHead(head(['HTTP/1.1 200 OK', 'Content-Type: text/plain']), 'GET', LIMITS);
  assert.equal(close.bodyKind, BODY_UNTIL_CLOSE);
  assert.equal(close.keepAlive, false);
  assert.equal(parseResponseHead(head(['HTTP/1.1 200 OK', 'Content-Length: 10']), 'HEAD', LIMITS).bodyKind, BODY_NONE);
  assert.equal(parseResponseHead(head(['HTTP/1.1 304 Not Modified', 'Content-Length: 10']), 'GET', LIMITS).bodyKind, BODY_NONE);
  assert.equal(parseResponseHead(head(['HTTP/1.1 204 No Content']), 'GET', LIMITS).bodyKind, BODY_NONE);
});

test('a response loses its hop-by-hop headers, keeps the rest in order, and reports the keep-alive hint', () => {
  const res = parseResponseHead(
    head(['HTTP/1.1 200 OK', 'Set-Cookie: a=1', 'Connection: keep-alive, X-Internal', 'Keep-Alive: timeout=5', 'X-Internal: i', 'Set-Cookie: b=2', 'Content-Length: 2']),
    'GET',
    LIMITS,
  );
  assert.equal(res.forwardHead, 'HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 2\r\n');
  assert.equal(res.keepAliveHint, 5);
  assert.equal(parseResponseHead(head(['HTTP/1.1 200 OK', 'Connection: close', 'Content-Length: 2']), 'GET', LIMITS).keepAlive, false);
});

test('a 101 answer keeps its Connection and Upgrade headers', () => {
  const res = parseResponseHead(head(['HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket', 'Connection: Upgrade', 'Sec-WebSocket-Accept: x']), 'GET', LIMITS);
  assert.equal(res.status, 101);
  assert.equal(res.forwardHead, 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n');
});

test('malformed responses are refused', () => {
  for (const text of ['HTTP/1.1 20 OK', 'HTTP/2 200 OK', 'HTTP/1.1 200 OK\r\nContent-Length: x', 'HTTP/1.1 200 OK\r\nBad Header']) {
    assert.throws(() => parseResponseHead(text, 'GET', LIMITS), HttpError, text);
  }
});

test('a chunked body is found across any split, with extensions and trailers, and decoded on request', () => {
  const body = Buffer.from('4;ext=1\r\nWiki\r\n6\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-Sum: 1\r\n\r\nNEXT');
  const end = body.length - 4;
  for (let split = 1; split < body.length; split++) {
    const scanner = new ChunkedBody();
    const decoded: Buffer[] = [];
    const onData = (b: Buffer, s: number, e: number) => decoded.push(Buffer.from(b.subarray(s, e)));
    const first = scanner.feed(body.subarray(0, split), 0, onData);
    if (first !== -1) {
      assert.equal(first, end, `split ${split}`);
      continue;
    }
    const second = scanner.feed(body.subarray(split), 0, onData);
    assert.equal(second + split, end, `split ${split}`);
    assert.equal(Buffer.concat(decoded).toString(), 'Wikipedia in \r\n\r\nchunks.');
    assert.equal(scanner.dataBytes, 24);
  }
});

test('broken chunked framing is refused', () => {
  for (const text of ['x\r\n', '4 \r\nWiki\r\n', '4\nWiki\r\n', '4\r\nWikiXX', '4;a\0b\r\n', '11111111111111111\r\n', '0\r\n\r\r']) {
    assert.throws(() => new ChunkedBody().feed(Buffer.from(text), 0), HttpError, JSON.stringify(text));
  }
});

test('the end of a head is found where Buffer.indexOf finds CR LF CR LF, short or long, from any start', () => {
  const pieces = ['\r', '\n', '\r\n', 'a', 'GET / HTTP/1.1', '\r\n\r\n', 'x'.repeat(300)];
  let seed = 7;
  const next = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff);
  for (let n = 0; n < 3000; n++) {
    let text = '';
    const count = next() % 12;
    for (let i = 0; i < count; i++) text += pieces[next() % pieces.length];
    const buf = Buffer.from(text, 'latin1');
    const from = buf.length === 0 ? 0 : next() % buf.length;
    assert.equal(findHeadEnd(buf, from), buf.indexOf('\r\n\r\n', from), JSON.stringify({ text, from }));
  }
});
