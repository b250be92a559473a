// The dashboard's login links, sessions and cross-site checks, with an injected clock: a link is
// good once and for five minutes and is kept only as its hash; a session ends after 12 idle hours
// or when its key goes; a POST needs JSON, the dashboard's own Origin and the session's token.
import assert from 'node:assert/strict';
import type http from 'node:http';
import { test } from 'node:test';
import { ownOrigin, plainThroughProxy, sameSitePost } from '../src/dashboard/csrf.ts';
import { actionFields } from '../src/dashboard/actions.ts';
import { hostAllowed } from '../src/dashboard/dashboard-server.ts';
import { LogThrottle, THROTTLE_MS } from '../src/dashboard/log-throttle.ts';
import { publicOrigin } from '../src/public-origin.ts';
import { DashboardLinks, hash, LOGIN_LINK_TTL_MS, LoginLinks, MAX_OPEN_LINKS, MAX_OPEN_LINKS_PER_IDENTITY } from '../src/dashboard/login-links.ts';
import { clearCookie, MAX_SESSIONS_PER_IDENTITY, sessionCookie, Sessions, SESSION_IDLE_MS, setCookie } from '../src/dashboard/sessions.ts';

const alice = { kind: 'key', name: 'alice', fingerprint: 'SHA256:alice' } as const;

function clock(start = 1_000_000): { now: () => number; advance(ms: number): void } {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

test('a login link logs in its identity once; a second use is refused', () => {
  const links = new LoginLinks();
  const { token } = links.issue(alice);
  assert.match(token, /^[A-Za-z0-9_-]{43}$/);
  assert.deepEqual(links.redeem(token), alice);
  assert.equal(links.redeem(token), undefined);
});

test('a login link expires after five minutes', () => {
  const time = clock();
  const links = new LoginLinks({ now: time.now });
  const early = links.issue(alice);
  const late = links.issue({ kind: 'local' });
  assert.equal(early.expiresAt.getTime(), time.now() + LOGIN_LINK_TTL_MS);
  time.advance(LOGIN_LINK_TTL_MS - 1);
  assert.deepEqual(links.redeem(early.token), alice);
  time.advance(1);
  assert.equal(links.redeem(late.token), undefined);
});

test('a login link is kept only as its hash, and unknown or malformed tokens log nobody in', () => {
  const links = new LoginLinks();
  const { token } = links.issue(alice);
  assert.notEqual(hash(token), token);
  assert.equal(links.redeem(hash(token)), undefined, 'the stored hash is not a token');
  for (const bad of [undefined, 42, '', 'x'.repeat(500), token.slice(1)]) assert.equal(links.redeem(bad), undefined);
  assert.deepEqual(links.redeem(token), alice);
});

test('a session lasts while it is used, and ends after 12 idle hours or on logout', () => {
  const time = clock();
  const sessions = new Sessions({ now: time.now });
  const { cookie, session } = sessions.create(alice);
  assert.match(cookie, /^[A-Za-z0-9_-]{43}$/);
  assert.ok(session.csrf.length >= 32);
  time.advance(SESSION_IDLE_MS - 1);
  assert.equal(sessions.use(cookie), session, 'used just before it expires');
  time.advance(SESSION_IDLE_MS - 1);
  assert.equal(sessions.use(cookie), session, 'each use pushes the expiry back');
  time.advance(SESSION_IDLE_MS);
  assert.equal(sessions.use(cookie), undefined, 'idle for 12 hours');

  const other = sessions.create(alice);
  sessions.end(other.cookie);
  assert.equal(sessions.use(other.cookie), undefined);
  assert.equal(sessions.use(undefined), undefined);
  assert.equal(sessions.use('made-up'), undefined);
});

test("a key's sessions end when endWhere says its key is gone; others stay", () => {
  const sessions = new Sessions();
  const a = sessions.create(alice);
  const local = sessions.create({ kind: 'local' });
  sessions.endWhere((identity) => identity.kind === 'key' && identity.name === 'alice');
  assert.equal(sessions.use(a.cookie), undefined);
  assert.ok(sessions.use(local.cookie));
});

test('the session cookie is __Host- (no Domain), HttpOnly, Secure, SameSite=Strict on /, and is read back from a Cookie header', () => {
  assert.equal(setCookie('abc'), '__Host-berth_session=abc; HttpOnly; Secure; SameSite=Strict; Path=/');
  assert.match(clearCookie(), /^__Host-berth_session=; .*Max-Age=0$/);
  assert.equal(sessionCookie('theme=dark; __Host-berth_session=abc; other=1'), 'abc');
  assert.equal(sessionCookie('berth_session=abc'), undefined, 'the old name, which a same-site app could plant');
  assert.equal(sessionCookie('__Host-berth_session=abc; __Host-berth_session=planted'), undefined, 'two of its name are no session');
  assert.equal(sessionCookie('theme=dark'), undefined);
  assert.equal(sessionCookie(undefined), undefined);
});

function post(headers: Record<string, string>): http.IncomingMessage {
  return { headers } as unknown as http.IncomingMessage;
}

test("a POST needs a JSON body and the dashboard's own Origin; with a session, its CSRF token too", () => {
  const session = new Sessions().create(alice).session;
  const good = { host: 'berth.example.com', 'x-forwarded-proto': 'https', origin: 'https://berth.example.com', 'content-type': 'application/json', 'x-berth-csrf': session.csrf };
  assert.equal(ownOrigin(post(good)), 'https://berth.example.com');
  assert.equal(sameSitePost(post(good), session), true);
  assert.equal(sameSitePost(post({ ...good, 'content-type': 'application/json; charset=utf-8' }), session), true);
  const { 'x-berth-csrf': _, ...noToken } = good;
  assert.equal(sameSitePost(post(noToken)), true, 'the login has no session yet: Origin and JSON only');
  assert.equal(sameSitePost(post(noToken), session), false);
  assert.equal(sameSitePost(post({ ...good, 'x-berth-csrf': 'x'.repeat(session.csrf.length) }), session), false);
  assert.equal(sameSitePost(post({ ...good, origin: 'https://evil.example' }), session), false);
  assert.equal(sameSitePost(post({ ...good, origin: 'http://berth.example.com' }), session), false, 'the plain-HTTP origin is another origin');
  const { origin: __, ...noOrigin } = good;
  assert.equal(sameSitePost(post(noOrigin), session), false);
  for (const type of ['application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'text/plain']) assert.equal(sameSitePost(post({ ...good, 'content-type': type }), session), false, type);
  // The admin listener: plain HTTP, no proxy in front.
  assert.equal(sameSitePost(post({ host: '127.0.0.1:9181', origin: 'http://127.0.0.1:9181', 'content-type': 'application/json' })), true);
});

test('the dashboard answers berth.DOMAIN, localhost and IP addresses only: a name that merely resolves to it (DNS rebinding) is refused', () => {
  const config = { domain: 'example.com' };
  for (const host of ['berth.example.com', 'BERTH.example.com:8443', '127.0.0.1:9181', '[::1]:9181', 'localhost:9181', '10.0.0.5']) assert.equal(hostAllowed(host, config), true, host);
  for (const host of [undefined, '', 'evil.example:9181', 'app.example.com', 'example.com', 'berth.example.com.evil.test']) assert.equal(hostAllowed(host, config), false, String(host));
});

test('a request the proxy carried over plain HTTP is told apart from HTTPS and from the admin listener', () => {
  assert.equal(plainThroughProxy(post({ host: 'berth.example.com', 'x-forwarded-proto': 'http' })), true);
  assert.equal(plainThroughProxy(post({ host: 'berth.example.com', 'x-forwarded-proto': 'https' })), false);
  assert.equal(plainThroughProxy(post({ host: '127.0.0.1:9181' })), false, 'the admin listener, directly');
});

test('the dashboard command offers the public link only over HTTPS; without a certificate, the SSH tunnel to the admin listener', () => {
  const config = { domain: 'example.com', httpPort: 80, httpsPort: 443 };
  let certificate = false;
  const links = new DashboardLinks({ store: new LoginLinks(), config, hasCertificate: (host) => certificate && host === 'berth.example.com', localOrigin: () => 'http://127.0.0.1:9181' });
  const key = { name: 'alice', fingerprint: 'SHA256:alice' } as never;
  const remote = links.link(key, { local: false });
  assert.equal(remote.urls.length, 1);
  assert.match(remote.urls[0]!, /^http:\/\/127\.0\.0\.1:9181\/login#[A-Za-z0-9_-]{43}$/);
  assert.match(remote.notes.join('\n'), /berth\.example\.com has no HTTPS certificate yet/);
  assert.match(remote.notes.join('\n'), /ssh -L 9181:127\.0\.0\.1:9181 YOU@example\.com/);
  assert.ok(!remote.urls.some((u) => u.startsWith('http://berth.')), 'no plain-HTTP public link');
  certificate = true;
  const served = links.link(key, { local: false });
  assert.deepEqual(served.notes, []);
  assert.match(served.urls[0]!, /^https:\/\/berth\.example\.com\/login#/);
  assert.equal(served.urls.length, 1);
  const local = links.link(undefined, { local: true });
  assert.deepEqual(local.urls.map((u) => u.replace(/#.*/, '')), ['https://berth.example.com/login', 'http://127.0.0.1:9181/login']);
});

test("a key that asks for many links forgets only its own oldest ones; past the global ceiling, no new link", () => {
  const links = new LoginLinks();
  const bob = { kind: 'key', name: 'bob', fingerprint: 'SHA256:bob' } as const;
  const bobs = links.issue(bob);
  const alices = Array.from({ length: MAX_OPEN_LINKS_PER_IDENTITY + 5 }, () => links.issue(alice).token);
  assert.deepEqual(links.redeem(bobs.token), bob, "another key's link is kept");
  assert.equal(links.redeem(alices[0]), undefined, "alice's oldest went");
  assert.deepEqual(links.redeem(alices.at(-1)), alice);
  const full = new LoginLinks();
  for (let i = 0; i < MAX_OPEN_LINKS; i++) full.issue({ kind: 'key', name: `k${i}`, fingerprint: `SHA256:${i}` });
  assert.throws(() => full.issue(alice), /1000 dashboard login links are waiting to be used/);
});

test("a key that logs in many times ends only its own sessions idle longest", () => {
  const sessions = new Sessions();
  const bob = sessions.create({ kind: 'key', name: 'bob', fingerprint: 'SHA256:bob' });
  const alices = Array.from({ length: MAX_SESSIONS_PER_IDENTITY + 3 }, () => sessions.create(alice).cookie);
  assert.ok(sessions.use(bob.cookie), "another key's session stays");
  assert.equal(sessions.use(alices[0]), undefined, "alice's session idle longest ended");
  assert.ok(sessions.use(alices.at(-1)));
});

test("an action's log line names the command and its app, never its other words", () => {
  assert.deepEqual(actionFields(['buildpacks:set', 'shop', 'https://user:secret@example.com/bp.git']), { command: 'buildpacks:set', app: 'shop' });
  assert.deepEqual(actionFields(['config:set', 'shop', 'TOKEN=secret']), { command: 'config:set', app: 'shop' });
  assert.deepEqual(actionFields(['apps:list']), { command: 'apps:list' });
  assert.deepEqual(actionFields(['no-such-command', 'secret']), { command: '(unknown command)' });
});

test('refused logins are logged at most once a minute per client address, with how many were left out', () => {
  const time = clock();
  const lines: Array<Record<string, unknown>> = [];
  const throttle = new LogThrottle('dashboard_login_refused', { now: time.now, write: (_e, fields) => lines.push(fields) });
  for (let i = 0; i < 50; i++) throttle.note('203.0.113.5');
  throttle.note('198.51.100.7');
  assert.deepEqual(lines, [{ address: '203.0.113.5' }, { address: '198.51.100.7' }]);
  time.advance(THROTTLE_MS);
  throttle.note('203.0.113.5');
  assert.deepEqual(lines.at(-1), { address: '203.0.113.5', leftOut: 49 });
});

test('while an app holds berth.DOMAIN (a state from before berth kept the name), the dashboard command gives no public link and says why', () => {
  const links = new DashboardLinks({ store: new LoginLinks(), config: { domain: 'example.com', httpPort: 80, httpsPort: 443 }, hasCertificate: () => true, localOrigin: () => 'http://127.0.0.1:9181', holder: () => 'berth' });
  const { urls, notes } = links.link(undefined, { local: true });
  assert.deepEqual(urls.map((u) => u.replace(/#.*/, '')), ['http://127.0.0.1:9181/login']);
  assert.match(notes.join('\n'), /berth\.example\.com is app berth's host name/);
});

test("publicOrigin, for an app's URL and the dashboard's link: HTTPS once the certificate is served, the port only when not the default", () => {
  const ports = { httpPort: 80, httpsPort: 443 };
  assert.equal(publicOrigin('shop.example.com', ports, true), 'https://shop.example.com');
  assert.equal(publicOrigin('shop.example.com', ports, false), 'http://shop.example.com');
  assert.equal(publicOrigin('shop.example.com', { httpPort: 8080, httpsPort: 8443 }, true), 'https://shop.example.com:8443');
  assert.equal(publicOrigin('shop.example.com', { httpPort: 8080, httpsPort: 8443 }, false), 'http://shop.example.com:8080');
});
