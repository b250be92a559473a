// A buildpack download past the fetch timeout is ended, not left running: the server sees its
// connection closed, the push's error names the timeout, and no half-unpacked folder is left.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { BuildpackFetcher } from '../src/orchestrator/buildpack-fetcher.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-fetch-timeout-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('a tarball trickling past the fetch timeout is aborted: the connection closes and nothing is left behind', async () => {
  let closed!: () => void;
  const connectionClosed = new Promise<void>((resolve) => (closed = resolve));
  const trickle = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/gzip' });
    // A gzip header and the start of a stored deflate block of 65535 bytes, then one byte at a time.
    res.write(Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0x03, 0x00, 0xff, 0xff, 0x00, 0x00]));
    const timer = setInterval(() => res.write('a'), 100);
    req.socket.on('close', () => {
      clearInterval(timer);
      closed();
    });
  });
  await new Promise<void>((resolve) => trickle.listen(0, '127.0.0.1', resolve));
  try {
    const port = (trickle.address() as import('node:net').AddressInfo).port;
    const cache = path.join(dir, 'cache');
    const fetcher = new BuildpackFetcher(cache, { timeoutMs: 500, policy: { allowHosts: ['127.0.0.1'] } });
    await assert.rejects(fetcher.fetch(`http://127.0.0.1:${port}/bp.tgz`), /took longer than 0.5 s/);
    await Promise.race([connectionClosed, new Promise((_, reject) => setTimeout(() => reject(new Error('the download was not aborted: its connection stays open')), 2000))]);
    const left = fs.existsSync(cache) ? fs.readdirSync(cache).filter((f) => f.endsWith('.tmp')) : [];
    assert.deepEqual(left, [], 'no half-unpacked folder is left in the cache');
  } finally {
    trickle.closeAllConnections();
    await new Promise((resolve) => trickle.close(resolve));
  }
});
