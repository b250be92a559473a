// End to end on the real binary: per-app proxy limits set with proxy:set reach the running proxy,
// proxy:report shows them, and every answer carries a request id that the access log records.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { gitRepo, makeKey, nodeApp, request, run, startDaemon, tempDir, waitFor, type Daemon } from './helpers/daemon.ts';

let daemon: Daemon;
const work = tempDir('e2e-proxy');
const APP = 'limits';

function post(port: number, host: string, size: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/', headers: { host, 'content-length': size }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(Buffer.alloc(size, 'x'));
  });
}

before(async () => {
  daemon = await startDaemon();
  const key = makeKey(work, 'admin');
  assert.equal(daemon.cli(['ssh-keys:add', 'admin', key.publicKey]).code, 0);
  const repo = path.join(work, APP);
  gitRepo(repo, nodeApp('limits v1'));
  const push = run('git', ['push', daemon.remote(APP), 'main'], { cwd: repo, env: daemon.gitEnv(key.privateKey) });
  assert.equal(push.code, 0, push.stderr);
});

after(async () => {
  daemon.cli(['apps:destroy', APP, '--force']);
  await daemon.stop();
});

test('proxy:set max-body-size reaches the running proxy at once, proxy:report shows it, and no value resets it', async () => {
  const host = `${APP}.${daemon.domain}`;
  assert.equal(await post(daemon.httpPort, host, 4096), 200);

  const set = daemon.cli(['proxy:set', APP, 'max-body-size', '2K']);
  assert.equal(set.code, 0, set.stderr);
  assert.match(set.stdout, /-----> Set max-body-size of limits to 2k/);
  assert.equal(await post(daemon.httpPort, host, 4096), 413);
  assert.equal(await post(daemon.httpPort, host, 1024), 200);

  const report = daemon.cli(['proxy:report', APP]);
  assert.equal(report.code, 0, report.stderr);
  assert.match(report.stdout, /=====> limits proxy settings/);
  assert.match(report.stdout, /max-body-size\s+2k\s+set for the app/);
  assert.match(report.stdout, /read-timeout\s+60s\s+default/);
  const stored = JSON.parse(fs.readFileSync(path.join(daemon.dataDir, 'state', 'proxy.json'), 'utf8'));
  assert.deepEqual(stored.apps, { limits: { 'max-body-size': '2k' } });

  const reset = daemon.cli(['proxy:set', APP, 'max-body-size']);
  assert.equal(reset.code, 0, reset.stderr);
  assert.match(reset.stdout, /Reset max-body-size of limits to the default \(100m\)/);
  assert.equal(await post(daemon.httpPort, host, 4096), 200);
});

test('proxy:set refuses unknown keys, bad values and unknown apps, and changes nothing', () => {
  const unknownKey = daemon.cli(['proxy:set', APP, 'body-size', '1m']);
  assert.equal(unknownKey.code, 1);
  assert.match(unknownKey.stderr, /unknown proxy setting "body-size"/);
  assert.match(unknownKey.stderr, /max-body-size, read-timeout, idle-timeout/);
  const badValue = daemon.cli(['proxy:set', APP, 'read-timeout', 'soon']);
  assert.equal(badValue.code, 1);
  assert.match(badValue.stderr, /read-timeout: "soon" is not a duration/);
  const unknownApp = daemon.cli(['proxy:set', 'nosuchapp', 'read-timeout', '5s']);
  assert.notEqual(unknownApp.code, 0);
  assert.match(daemon.cli(['proxy:report', APP]).stdout, /read-timeout\s+60s\s+default/);
});

test('the app sees an X-Request-Id, and the access log in the data dir records the request under it', async () => {
  const host = `${APP}.${daemon.domain}`;
  const headers = JSON.parse((await request(daemon.httpPort, host, '/headers')).body) as Record<string, string>;
  const id = headers['x-request-id']!;
  assert.match(id, /^[0-9a-f]{16}-[0-9a-f]{8}$/);
  const file = path.join(daemon.dataDir, 'logs', 'access.log');
  let line: Record<string, unknown> | undefined;
  await waitFor('the access log line', () => {
    if (!fs.existsSync(file)) return false;
    line = fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.id === id);
    return line !== undefined;
  }, 5000);
  assert.equal(line!.app, APP);
  assert.equal(line!.status, 200);
  assert.equal(line!.path, '/headers');
  assert.equal(line!.host, host);
});
