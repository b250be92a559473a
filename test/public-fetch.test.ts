// Requests the daemon makes for a tenant go only to public addresses: a loopback HTTP server
// stands in for cloud metadata, reached directly, by a name that resolves to it, and through a
// redirect from a host the admin allows (127.0.0.2); it never sees a request. The fetcher built on
// this never quotes an answer's body.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { UserError } from '../src/errors.ts';
import { BuildpackFetcher } from '../src/orchestrator/buildpack-fetcher.ts';
import { FetchRefused, PUBLIC_ONLY, notPublic, publicRequest } from '../src/orchestrator/public-fetch.ts';
import { tempDir } from './helpers/temp.ts';

const METADATA_BODY = `ami-id instance-identity SECRET-${process.pid}`;
let metadata: http.Server;
let metadataHits = 0;
let metadataUrl: string;
let redirector: http.Server;
let redirectorUrl: string;
let echo: http.Server;
let echoUrl: string;

function listen(server: http.Server, host: string): Promise<string> {
  return new Promise((resolve) => server.listen(0, host, () => resolve(`http://${host}:${(server.address() as AddressInfo).port}`)));
}

before(async () => {
  metadata = http.createServer((_req, res) => {
    metadataHits++;
    res.end(METADATA_BODY);
  });
  metadataUrl = await listen(metadata, '127.0.0.1');
  // On another loopback address, which the tests allow: it redirects to the metadata server, and
  // answers a non-git body of its own.
  redirector = http.createServer((req, res) => {
    if (req.url!.startsWith('/to-metadata')) return void res.writeHead(302, { location: `${metadataUrl}/latest/meta-data/` }).end();
    if (req.url!.startsWith('/to-echo')) return void res.writeHead(301, { location: `${echoUrl}/` }).end();
    if (req.url!.startsWith('/to-localhost')) return void res.writeHead(307, { location: `http://localhost:${new URL(metadataUrl).port}/` }).end();
    res.writeHead(200, 'OK ' + METADATA_BODY, { 'content-type': 'text/plain' }).end(METADATA_BODY);
  });
  redirectorUrl = await listen(redirector, '127.0.0.2');
  echo = http.createServer((req, res) => res.end(JSON.stringify(req.headers)));
  echoUrl = await listen(echo, '127.0.0.3');
});

after(() => {
  metadata.close();
  redirector.close();
  echo.close();
});

const ALLOW_REDIRECTOR = { allowHosts: ['127.0.0.2'] };

test('loopback, link-local, private, shared, unspecified, multicast and IPv4-in-IPv6 addresses are not public; public ones are', () => {
  const cases: Array<[string, string]> = [
    ['127.0.0.1', 'loopback'],
    ['169.254.169.254', 'link-local'],
    ['10.1.2.3', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['192.168.1.1', 'private'],
    ['100.64.0.1', 'shared (CGNAT)'],
    ['0.0.0.0', 'unspecified'],
    ['224.0.0.1', 'multicast'],
    ['::1', 'loopback'],
    ['::', 'unspecified'],
    ['fe80::1', 'link-local'],
    ['fc00::1', 'private'],
    ['fd12:3456::1', 'private'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:a9fe:a9fe', 'link-local'],
    ['64:ff9b::10.0.0.1', 'private'],
  ];
  for (const [address, why] of cases) assert.equal(notPublic(address), why, address);
  for (const address of ['8.8.8.8', '1.1.1.1', '172.32.0.1', '2606:4700:4700::1111']) assert.equal(notPublic(address), undefined, address);
});

test("the server's own addresses are refused, even a public one", () => {
  const own = Object.values(os.networkInterfaces()).flat().map((a) => a!.address);
  assert.ok(own.length > 0);
  for (const address of own) assert.ok(notPublic(address.replace(/%.*$/, '')), address);
});

test('a request to the loopback metadata server, by address or by a name that resolves to it, is refused before it is sent', async () => {
  for (const url of [`${metadataUrl}/latest/meta-data/`, `http://localhost:${new URL(metadataUrl).port}/`, `http://[::1]:${new URL(metadataUrl).port}/`]) {
    await assert.rejects(publicRequest(url, { policy: PUBLIC_ONLY }), (e: Error) => {
      assert.ok(e instanceof FetchRefused, String(e));
      assert.match(e.message, /a loopback address: berth fetches only from public addresses \(an admin may allow the host with --fetch-allow-host\)/);
      return true;
    });
  }
  assert.equal(metadataHits, 0);
});

test('a redirect from an allowed host to the metadata server (directly or by name) is refused, and the metadata server sees no request', async () => {
  for (const hop of ['/to-metadata', '/to-localhost']) {
    await assert.rejects(publicRequest(`${redirectorUrl}${hop}`, { policy: ALLOW_REDIRECTOR }), (e: Error) => {
      assert.ok(e instanceof FetchRefused, String(e));
      assert.match(e.message, /(127\.0\.0\.1|localhost) is (at 127\.0\.0\.1, )?a loopback address/);
      return true;
    });
  }
  assert.equal(metadataHits, 0);
  const allowed = await publicRequest(`${redirectorUrl}/plain`, { policy: ALLOW_REDIRECTOR });
  assert.equal(allowed.statusCode, 200);
  allowed.body.resume();
});

test('DNS rebinding: the connection goes to the address that was checked, never to a second answer naming the metadata server', async () => {
  const port = new URL(metadataUrl).port;
  const asked: string[] = [];
  // The first answer is public (a documentation address nothing answers on); any later one is loopback.
  const resolve = async (host: string) => {
    asked.push(host);
    return [{ address: asked.length === 1 ? '192.0.2.10' : '127.0.0.1', family: 4 }];
  };
  // It tries the checked address (no answer there: the timeout ends it, or the network refuses that address).
  await assert.rejects(publicRequest(`http://rebind.example.test:${port}/latest/meta-data/`, { policy: { allowHosts: [], resolve }, signal: AbortSignal.timeout(1500) }), (e: Error & { address?: string }) => {
    assert.ok(e.name === 'AbortError' || e.address === '192.0.2.10', String(e));
    return true;
  });
  assert.deepEqual(asked, ['rebind.example.test'], 'resolved once');
  assert.equal(metadataHits, 0);
});

test('credentials go only to the origin they were given for: a redirect to another host drops them', async () => {
  const res = await publicRequest(`${redirectorUrl}/to-echo`, { policy: { allowHosts: ['127.0.0.2', '127.0.0.3'] }, headers: { authorization: 'Basic c2VjcmV0', 'user-agent': 'git/isomorphic-git' } });
  const chunks: Buffer[] = [];
  for await (const c of res.body) chunks.push(c as Buffer);
  const seen = JSON.parse(Buffer.concat(chunks).toString()) as Record<string, string>;
  assert.equal(seen.authorization, undefined);
  assert.equal(seen['user-agent'], 'git/isomorphic-git');
});

test("a buildpack fetch never quotes the answer: a non-git answer, a tarball that is none, a refused redirect", async () => {
  const fetcher = new BuildpackFetcher(path.join(tempDir('public-fetch'), 'fetched'), { policy: ALLOW_REDIRECTOR });
  const expectations: Array<[string, RegExp]> = [
    [`${redirectorUrl}/plain.git`, /could not fetch buildpack \S+: the answer is not a git repository \(no smart HTTP answer\)$/],
    [`${redirectorUrl}/plain.tgz`, /could not fetch buildpack \S+: the answer is not a gzipped tarball$/],
    [`${redirectorUrl}/to-metadata/x.git`, /could not fetch buildpack \S+: 127\.0\.0\.1 is a loopback address: berth fetches only from public addresses/],
    [`${metadataUrl}/bp.tgz`, /could not fetch buildpack \S+: 127\.0\.0\.1 is a loopback address/],
  ];
  for (const [url, message] of expectations) {
    await assert.rejects(fetcher.fetch(url), (e: Error) => {
      assert.ok(e instanceof UserError, String(e));
      assert.match(e.message, message);
      assert.ok(!e.message.includes('SECRET') && !(e.hint ?? '').includes('SECRET'), e.message);
      return true;
    });
  }
  assert.equal(metadataHits, 0);
});
