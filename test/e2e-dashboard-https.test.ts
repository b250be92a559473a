// The dashboard at https://berth.DOMAIN on real parts: dist/berth serve gets the name's certificate
// from a real Pebble ACME server as it does an app's, the `dashboard` command's link then uses
// HTTPS, a login through the proxy's TLS listener sets the session cookie, and plain HTTP to the
// name is sent to HTTPS.
import assert from 'node:assert/strict';
import https from 'node:https';
import { after, before, test } from 'node:test';
import { httpsGet } from './helpers/certs.ts';
import { makeKey, request, tempDir, waitFor, type Daemon } from './helpers/daemon.ts';
import { startDaemonWithPebble, type Pebble } from './helpers/pebble.ts';

const work = tempDir('e2e-dashboard-https');
const HOST = 'berth.example.test';
let pebble: Pebble;
let daemon: Daemon;
let key: { privateKey: string; publicKey: string };
let root: string;

before(async () => {
  ({ daemon, pebble, root } = await startDaemonWithPebble());
  key = makeKey(work, 'admin');
  assert.equal(daemon.cli(['ssh-keys:add', 'admin', key.publicKey]).code, 0);
});

after(async () => {
  await daemon?.stop();
  await pebble?.stop();
});

function httpsCall(method: string, urlPath: string, headers: Record<string, string>, body?: string): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port: daemon.httpsPort, method, path: urlPath, servername: HOST, headers: { host: `${HOST}:${daemon.httpsPort}`, ...headers }, ca: root, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** The first Server-Sent Event of a stream through the proxy's TLS listener. */
function firstEvent(urlPath: string, cookie: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port: daemon.httpsPort, path: urlPath, servername: HOST, headers: { host: `${HOST}:${daemon.httpsPort}`, cookie }, ca: root, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        text += d;
        const end = text.indexOf('\n\n');
        if (end < 0) return;
        resolve(text.slice(0, end));
        req.destroy();
      });
      res.on('end', () => reject(new Error(`the stream ended before an event: ${text}`)));
    });
    req.setTimeout(20_000, () => req.destroy(new Error('no event within 20 s')));
    req.on('error', reject);
    req.end();
  });
}

test('berth.DOMAIN gets a certificate like an app hostname, its link is HTTPS, and a login through the proxy sets a Secure cookie', async () => {
  await waitFor(`an HTTPS answer from ${HOST} with a Pebble certificate`, async () => (await httpsGet(daemon.httpsPort, HOST, '/login', root)).status === 200, 60_000);
  const page = await httpsGet(daemon.httpsPort, HOST, '/login', root);
  assert.match(page.issuer ?? '', /^Pebble Intermediate CA/);
  assert.match(String(page.headers['content-type']), /^text\/html/);
  assert.equal(page.headers['x-content-type-options'], 'nosniff');
  assert.equal(page.headers['strict-transport-security'], 'max-age=31536000');

  const r = daemon.ssh(key.privateKey, 'dashboard');
  assert.equal(r.code, 0, r.stderr);
  const m = new RegExp(`^https://berth\\.example\\.test:${daemon.httpsPort}/login#([A-Za-z0-9_-]{43})$`, 'm').exec(r.stdout);
  assert.ok(m, `an HTTPS login link in:\n${r.stdout}`);

  const origin = `https://${HOST}:${daemon.httpsPort}`;
  const login = await httpsCall('POST', '/api/login', { origin, 'content-type': 'application/json' }, JSON.stringify({ token: m[1] }));
  assert.equal(login.status, 200, login.body);
  const cookie = String((login.headers['set-cookie'] as string[])[0]);
  assert.match(cookie, /; HttpOnly; Secure; SameSite=Strict; Path=\/$/);
  const session = await httpsCall('GET', '/api/session', { cookie: cookie.split(';')[0]! });
  assert.equal(session.status, 200);
  assert.equal(JSON.parse(session.body).key, 'admin');
  // The origin of the plain-HTTP listener is not the dashboard's once it is served over HTTPS.
  const plainOrigin = await httpsCall('POST', '/api/logout', { origin: `http://${HOST}:${daemon.httpsPort}`, 'content-type': 'application/json', cookie: cookie.split(';')[0]!, 'x-berth-csrf': JSON.parse(session.body).csrf });
  assert.equal(plainOrigin.status, 403);

  // An event stream through the proxy's TLS listener: its first event arrives (nothing buffers it).
  const idle = await httpsCall('GET', '/api/apps/no-such-app/deploys/live', { cookie: cookie.split(';')[0]! });
  assert.equal(idle.status, 404, 'streams are for apps the key may see');
  assert.equal(daemon.cli(['apps:create', 'shown']).code, 0);
  try {
    assert.equal(await firstEvent('/api/apps/shown/deploys/live', cookie.split(';')[0]!), 'event: idle\ndata: {}');
  } finally {
    daemon.cli(['apps:destroy', 'shown', '--force']);
  }

  const plain = await request(daemon.httpPort, HOST, '/login');
  assert.ok(plain.status >= 301 && plain.status <= 308, `HTTP answers ${plain.status}`);
  assert.equal(plain.headers.location, `https://${HOST}:${daemon.httpsPort}/login`);
});
