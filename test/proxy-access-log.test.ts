import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { AccessLog, formatRecord, type AccessRecord } from '../src/proxy/access-log.ts';
import { tempDir } from './helpers/temp.ts';

const record: AccessRecord = {
  id: 'req-1',
  client: '203.0.113.9',
  proto: 'http',
  host: 'shop.example.com',
  method: 'GET',
  path: '/cart',
  status: 200,
  bytes: 120,
  ms: 1.23456,
  app: 'shop',
  target: 'shop.web.1',
};

test('a record is one line of JSON, with client-supplied strings escaped', () => {
  const line = formatRecord({ ...record, host: 'a"b\\c', path: '/\u0001\n' });
  assert.ok(line.endsWith('}\n'));
  assert.equal(line.split('\n').length, 2);
  const parsed = JSON.parse(line);
  assert.equal(parsed.host, 'a"b\\c');
  assert.equal(parsed.path, '/\u0001\n');
  assert.equal(parsed.ms, 1.23);
  assert.equal(parsed.app, 'shop');
  assert.match(parsed.time, /^\d{4}-\d\d-\d\dT/);
  assert.equal(JSON.parse(formatRecord({ ...record, app: undefined, target: undefined })).app, null);
});

test('lines reach the file in order on flush, mode 0600, and a full file is rotated to .1', async () => {
  const dir = tempDir('access-log');
  const file = path.join(dir, 'logs', 'access.log');
  const accessLog = await AccessLog.open(file, { rotateBytes: 1000 });
  for (let i = 0; i < 3; i++) accessLog.write({ ...record, id: `req-${i}` });
  await accessLog.flush();
  assert.deepEqual(fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l).id), ['req-0', 'req-1', 'req-2']);
  assert.equal((fs.statSync(file).mode & 0o777).toString(8), '600');
  for (let i = 3; i < 10; i++) accessLog.write({ ...record, id: `req-${i}` });
  await accessLog.flush();
  assert.ok(fs.existsSync(`${file}.1`), 'rotated');
  accessLog.write({ ...record, id: 'after' });
  await accessLog.close();
  assert.deepEqual(fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l).id), ['after']);
  const old = fs.readFileSync(`${file}.1`, 'utf8').trim().split('\n');
  assert.equal(old.length, 10);
});

test('lines with characters beyond ASCII reach the file as UTF-8, between plain ones and when only a repeated host holds them', async () => {
  const dir = tempDir('access-log');
  const file = path.join(dir, 'access.log');
  const accessLog = await AccessLog.open(file);
  const hosts = ['shop.example.com', 'h\u00e9.example.com', 'h\u00e9.example.com', 'shop.example.com', '\u4e2d.example.com', 'a"b'];
  const written = hosts.map((host, i) => ({ ...record, host, path: i % 2 ? '/caf\u00e9' : '/', target: hosts[(i + 1) % hosts.length]!, at: performance.now() }));
  for (const r of written) accessLog.write(r);
  await accessLog.close();
  const lines = fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(lines.map((l) => [l.host, l.path, l.target]), written.map((r) => [r.host, r.path, r.target]));
  assert.ok(Math.abs(Date.parse(lines[0].time) - Date.now()) < 5_000, 'dated by the clock');
});
