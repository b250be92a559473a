// The dashboard's HTTP server on a real socket, with the least of a state it needs: a retiring
// control plane's dashboard takes no new login or action (503 retiring), and answers over HTTPS
// carry Strict-Transport-Security.
import assert from 'node:assert/strict';
import http from 'node:http';
import { test } from 'node:test';
import { DashboardServer } from '../src/dashboard/dashboard-server.ts';
import { LoginLinks } from '../src/dashboard/login-links.ts';

function server(): DashboardServer {
  const state = { config: { domain: 'example.com', sshPort: 22 }, keys: { onChange: () => () => {} } };
  return new DashboardServer({ state, platform: {}, appUrl: () => '', history: {}, links: new LoginLinks() } as never, { host: '127.0.0.1', port: 0 });
}

function call(port: number, method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; json: any }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers: { host: `127.0.0.1:${port}`, ...headers }, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, json: text.startsWith('{') ? JSON.parse(text) : text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

test('a retiring dashboard answers every POST 503 retiring; reads go on', async (t) => {
  const dashboard = server();
  await dashboard.start();
  t.after(() => dashboard.stop());
  const login = () => call(dashboard.port, 'POST', '/api/login', { origin: `http://127.0.0.1:${dashboard.port}`, 'content-type': 'application/json' }, JSON.stringify({ token: 'x' }));
  assert.equal((await login()).json.error.code, 'login_refused');
  dashboard.stopAccepting();
  const refused = await login();
  assert.equal(refused.status, 503);
  assert.equal(refused.json.error.code, 'retiring');
  assert.equal((await call(dashboard.port, 'GET', '/login')).status, 200, 'the page is still served');
});

test('answers over HTTPS through the proxy carry Strict-Transport-Security; the admin listener\'s do not', async (t) => {
  const dashboard = server();
  await dashboard.start();
  t.after(() => dashboard.stop());
  for (const path of ['/login', '/api/session']) {
    const secure = await call(dashboard.port, 'GET', path, { 'x-forwarded-proto': 'https' });
    assert.equal(secure.headers['strict-transport-security'], 'max-age=31536000', path);
    assert.equal((await call(dashboard.port, 'GET', path)).headers['strict-transport-security'], undefined, path);
  }
});
