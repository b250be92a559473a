// The request policy on its own, with a fixed route table and settings: the order of its
// decisions and the small rules it owns. test/proxy-contract.test.ts runs the same policy through
// every real front end.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setLogSink } from '../src/log.ts';
import { DEFAULT_APP_SETTINGS, type AppProxySettings } from '../src/state/proxy-settings.ts';
import { GENERATED_ID } from '../src/proxy/request-id.ts';
import {
  acceptedRequestId,
  connectionForwarding,
  decide,
  Decision,
  forwardedHost,
  forwardedLines,
  forwardedNode,
  forwardedPairs,
  hstsFor,
  keepsConnection,
  mayRepeat,
  originForm,
  stripPort,
  SET_BY_BERTH,
  UNKNOWN_LENGTH,
  type PolicySources,
} from '../src/proxy/request-policy.ts';
import { parseRequestHead } from '../src/proxy/http1-head.ts';
import { RouteTable } from '../src/proxy/route-table.ts';

before(() => setLogSink(() => {}));
after(() => setLogSink((line) => process.stderr.write(line + '\n')));

const routes = RouteTable.empty()
  .withApp('shop', ['shop.example.com', 'secure.example.com'], [{ id: 'shop-web-1', host: '10.0.0.2', port: 5000 }])
  .withApp('idle', ['idle.example.com'], []);

function sources(overrides: Partial<PolicySources> = {}, settings: Partial<AppProxySettings> = {}): PolicySources {
  return {
    routes: () => routes,
    httpsPortFor: (hostname) => (hostname === 'secure.example.com' ? 8443 : undefined),
    settings: () => ({ ...DEFAULT_APP_SETTINGS, ...settings }),
    challengeAnswer: (token) => (token === 'known' ? 'known.thumbprint' : undefined),
    ...overrides,
  };
}

test('a request for a routed host is forwarded with the app, its settings and a new request id', () => {
  const d = new Decision();
  assert.equal(decide(sources({}, { readTimeout: 5 }), d, 'http', 'GET', 'Shop.Example.com.:80', '/', 0, undefined), 'forward');
  assert.equal(d.route?.app, 'shop');
  assert.equal(d.hostname, 'shop.example.com');
  assert.equal(d.settings.readTimeout, 5);
  assert.match(d.requestId, GENERATED_ID);
  decide(sources(), d, 'http', 'GET', 'shop.example.com', '/', 0, 'the-clients-own-request-id');
  assert.equal(d.requestId, 'the-clients-own-request-id');
});

test('no host, an unknown host and an app without targets are refused with 404, 404 and 503', () => {
  const d = new Decision();
  assert.equal(decide(sources(), d, 'http', 'GET', undefined, '/', 0, undefined), 'refuse');
  assert.equal(d.status, 404);
  assert.equal(decide(sources(), d, 'https', 'GET', 'nobody.example.com', '/', 0, undefined), 'refuse');
  assert.deepEqual([d.status, d.text, d.route], [404, 'No app is served at nobody.example.com.', undefined]);
  assert.equal(decide(sources(), d, 'https', 'GET', 'idle.example.com', '/', 0, undefined), 'refuse');
  assert.equal(d.status, 503);
  assert.match(d.requestId, GENERATED_ID, 'refusals carry an id too');
});

test('plain HTTP for a host with a certificate is redirected, HTTPS is not, and a target that is not a path is refused', () => {
  const d = new Decision();
  assert.equal(decide(sources(), d, 'http', 'POST', 'secure.example.com', '/a?b=1', 10, undefined), 'redirect');
  assert.equal(d.text, 'https://secure.example.com:8443/a?b=1');
  assert.equal(decide(sources(), d, 'https', 'GET', 'secure.example.com', '/a', 0, undefined), 'forward');
  assert.equal(decide(sources(), d, 'http', 'OPTIONS', 'secure.example.com', '*', 0, undefined), 'refuse');
  assert.equal(d.status, 400);
});

test('a known challenge token is answered before any redirect, for any host; the challenge path is never redirected', () => {
  const d = new Decision();
  assert.equal(decide(sources(), d, 'http', 'GET', 'unrouted.example.com', '/.well-known/acme-challenge/known', 0, undefined), 'answer');
  assert.equal(d.text, 'known.thumbprint');
  assert.equal(decide(sources(), d, 'https', 'HEAD', 'secure.example.com', 'http://secure.example.com/.well-known/acme-challenge/known?x', 0, undefined), 'answer');
  assert.equal(decide(sources(), d, 'http', 'GET', 'secure.example.com', '/.well-known/acme-challenge/other', 0, undefined), 'forward', 'an unknown token goes to the app');
  assert.equal(decide(sources(), d, 'http', 'POST', 'secure.example.com', '/.well-known/acme-challenge/known', 3, undefined), 'forward', 'only GET and HEAD are answered');
  const throwing = sources({ challengeAnswer: () => { throw new Error('broken'); } });
  assert.equal(decide(throwing, d, 'http', 'GET', 'shop.example.com', '/.well-known/acme-challenge/known', 0, undefined), 'refuse');
  assert.equal(d.status, 500);
});

test('a declared body over max-body-size is refused with 413; an undeclared one is left to the front end to count', () => {
  const d = new Decision();
  const limited = sources({}, { maxBodySize: 100 });
  assert.equal(decide(limited, d, 'http', 'POST', 'shop.example.com', '/', 101, undefined), 'refuse');
  assert.equal(d.status, 413);
  assert.equal(decide(limited, d, 'http', 'POST', 'shop.example.com', '/', 100, undefined), 'forward');
  assert.equal(decide(limited, d, 'http', 'POST', 'shop.example.com', '/', UNKNOWN_LENGTH, undefined), 'forward');
  assert.equal(decide(sources({}, { maxBodySize: 0 }), d, 'http', 'POST', 'shop.example.com', '/', 1e12, undefined), 'forward', '0 is no limit');
});

test('a connection stays open only when the client wants it, the request was read, the answer is delimited, and nothing is closing', () => {
  assert.equal(keepsConnection(true, true, true, false, false), true);
  const closes: Array<[boolean, boolean, boolean, boolean, boolean]> = [
    [false, true, true, false, false],
    [true, false, true, false, false],
    [true, true, false, false, false],
    [true, true, true, true, false],
    [true, true, true, false, true],
  ];
  for (const [wants, read, delimited, closing, draining] of closes) {
    assert.equal(keepsConnection(wants, read, delimited, closing, draining), false, JSON.stringify([wants, read, delimited, closing, draining]));
  }
});

test('only bodiless idempotent requests may be sent twice', () => {
  for (const method of ['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']) assert.equal(mayRepeat(method, false), true, method);
  assert.equal(mayRepeat('GET', true), false);
  assert.equal(mayRepeat('POST', false), false);
  assert.equal(mayRepeat('PATCH', false), false);
});

test('both forms of the forwarded headers say the same, in the same order', () => {
  const lines = forwardedLines(connectionForwarding('::ffff:192.0.2.7', 'https', 443), '203.0.113.1', 'shop.example.com', 'id-1');
  const pairs = forwardedPairs('192.0.2.7', 'https', 443, '203.0.113.1', 'shop.example.com', 'id-1');
  const fromPairs: string[] = [];
  for (let i = 0; i < pairs.length; i += 2) fromPairs.push(`${pairs[i]}: ${pairs[i + 1]}`);
  assert.equal(lines, fromPairs.join('\r\n') + '\r\n\r\n');
  assert.match(forwardedLines(connectionForwarding('192.0.2.7', 'http', 80), '', 'h', 'id'), /^X-Forwarded-For: 192\.0\.2\.7\r\nX-Forwarded-Proto: http\r\n/);
});

test('berth says who the client is in X-Real-IP, X-Forwarded-Ssl and Forwarded, from the connection alone', () => {
  const https = forwardedLines(connectionForwarding('::ffff:192.0.2.7', 'https', 443), '203.0.113.1', 'shop.example.com', 'id-1');
  assert.match(https, /\r\nX-Forwarded-Ssl: on\r\nX-Real-IP: 192\.0\.2\.7\r\nForwarded: for=192\.0\.2\.7;proto=https;host=shop\.example\.com\r\n/);
  const http = forwardedLines(connectionForwarding('2001:db8::5', 'http', 8080), '', 'shop.example.com:8080', 'id-2');
  assert.match(http, /\r\nX-Forwarded-Ssl: off\r\nX-Real-IP: 2001:db8::5\r\nForwarded: for="\[2001:db8::5\]";proto=http;host="shop\.example\.com:8080"\r\n/);
  // RFC 7239 §4: a node or host that is not a token is a quoted-string; quotes in it are escaped.
  assert.equal(forwardedNode(''), 'unknown');
  assert.equal(forwardedHost('[::1]:8443'), '"[::1]:8443"');
  assert.equal(forwardedHost('a.example:1"x\\'), '"a.example:1\\"x\\\\"');
});

test('every header berth sets is dropped from what an HTTP/1.1 client sends, in any case, and the X-Forwarded-For chain is kept', () => {
  const forged = SET_BY_BERTH.map((name) => `${name.toUpperCase()}: forged`);
  const head = parseRequestHead(['GET / HTTP/1.1', 'Host: shop.example.com', ...forged, 'Forwarded: for=10.0.0.1;proto=https', 'x-real-ip: 10.0.0.1', 'X-Forwarded-Ssl: on', 'Accept: */*'].join('\r\n'), { maxHeaders: 50 });
  assert.equal(head.forwardLines, 'Host: shop.example.com\r\nAccept: */*\r\n');
  assert.equal(head.forwardedFor, 'forged');
  assert.deepEqual([...SET_BY_BERTH].sort(), ['forwarded', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-port', 'x-forwarded-proto', 'x-forwarded-ssl', 'x-real-ip', 'x-request-id']);
  // Names that only look alike go on.
  const near = parseRequestHead(['GET / HTTP/1.1', 'Host: a', 'Forwarded-For: x', 'X-Real-IPs: y', 'X-Forwarded-Sst: z'].join('\r\n'), { maxHeaders: 50 });
  assert.equal(near.forwardLines, 'Host: a\r\nForwarded-For: x\r\nX-Real-IPs: y\r\nX-Forwarded-Sst: z\r\n');
});

test("an app's HSTS setting is sent over HTTPS only, and nothing when it has none", () => {
  const settings = { ...DEFAULT_APP_SETTINGS, hsts: 'max-age=600; includeSubDomains' };
  assert.equal(hstsFor('https', settings), 'max-age=600; includeSubDomains');
  assert.equal(hstsFor('http', settings), '');
  assert.equal(hstsFor('https', DEFAULT_APP_SETTINGS), '');
});

test('request targets, hosts and client request ids are read the same way everywhere', () => {
  assert.equal(originForm('/a?b'), '/a?b');
  assert.equal(originForm('HTTP://h.example/a?b'), '/a?b');
  assert.equal(originForm('*'), undefined);
  assert.equal(originForm('h.example:80'), undefined);
  assert.equal(stripPort('[::1]:8080'), '[::1]');
  assert.equal(stripPort('h.example:8080'), 'h.example');
  assert.equal(acceptedRequestId('short'), undefined);
  assert.equal(acceptedRequestId('a-request-id-of-20-chars'), 'a-request-id-of-20-chars');
  assert.equal(acceptedRequestId(undefined), undefined);
});
