// One contract for every front end of the proxy, run with the same cases against plain HTTP/1.1,
// HTTP/1.1 over TLS and HTTP/2 over TLS (as Hono runs one suite against every runtime): the real
// EdgeServer and TlsListener with a test certificate, in front of real loopback upstreams. The
// request policy decides for all three; this checks that each front end applies it the same way.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import tls, { type SecureContext } from 'node:tls';
import { setLogSink } from '../src/log.ts';
import { EdgeServer } from '../src/proxy/edge-server.ts';
import { HTTP2_MAX_CONCURRENT_STREAMS } from '../src/proxy/http2-front-end.ts';
import { DEFAULT_APP_SETTINGS, type AppProxySettings } from '../src/state/proxy-settings.ts';
import { GENERATED_ID } from '../src/proxy/request-id.ts';
import { RouteTable, type Target } from '../src/proxy/route-table.ts';
import { AcmeChallenges } from '../src/proxy/tls/acme-challenges.ts';
import { createChallengeResponder, createHttpsRedirect } from '../src/proxy/tls/https-redirect.ts';
import { TlsListener } from '../src/proxy/tls/tls-listener.ts';
import { profileContext } from '../src/proxy/tls/tls-profile.ts';
import { issueCert, makeCa, type TestCa } from './helpers/certs.ts';
import { tempDir } from './helpers/daemon.ts';
import { freePort, startUpstream, type Upstream } from './helpers/loopback.ts';

/** Every name the test certificate covers; TLS clients always offer the first by SNI and name the others in Host. */
const NAMES = ['app.example.test', 'certified.example.test', 'nobody.example.test', 'limited.example.test', 'slow.example.test', 'pair.example.test', 'standby.example.test'];

let ca: TestCa;
let context: SecureContext;
const logLines: Array<Record<string, unknown>> = [];
before(() => {
  setLogSink((line) => logLines.push(JSON.parse(line) as Record<string, unknown>));
  ca = makeCa('contract test CA');
  const cert = issueCert(ca, NAMES);
  context = profileContext(cert.certPem, cert.keyPem);
});
after(() => {
  setLogSink((line) => process.stderr.write(line + '\n'));
  fs.rmSync(ca.dir, { recursive: true, force: true });
});

function logged(event: string, since: number): Array<Record<string, unknown>> {
  return logLines.slice(since).filter((l) => l.event === event);
}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

interface Send {
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  body?: Buffer;
  /** Send the body without a declared length (chunked on HTTP/1.1, no content-length on HTTP/2). */
  unsized?: boolean;
}

/** One way in: plain HTTP/1.1, HTTP/1.1 over TLS, or HTTP/2 over TLS. */
interface FrontEnd {
  readonly name: string;
  readonly proto: 'http' | 'https';
  /** Opens one connection (or session), sends the requests on it one after another, closes it. */
  send(stack: Stack, host: string, requests: Send[]): Promise<Reply[]>;
  /** Makes one request on a fresh connection and resolves when the server closes that connection. */
  untilServerCloses(stack: Stack, host: string): Promise<void>;
}

interface Stack {
  edge: EdgeServer;
  listener: TlsListener;
  challenges: AcmeChallenges;
  accessLog: string;
  app: Upstream;
  /** What the app saw, one entry per request. */
  seen: Array<{ method: string; url: string; headers: http.IncomingHttpHeaders; bytes: number }>;
}

async function startStack(t: TestContext, settings: Record<string, Partial<AppProxySettings>> = {}): Promise<Stack> {
  const seen: Stack['seen'] = [];
  const app = await startUpstream(t, 'web-1', (req, res) => {
    let bytes = 0;
    req.on('data', (d: Buffer) => (bytes += d.length));
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, bytes });
      // The slow app never answers: the read-timeout has to.
      if (req.headers.host?.startsWith('slow.')) return;
      res.setHeader('content-type', 'text/plain');
      if (req.url === '/own-hsts') res.setHeader('strict-transport-security', 'max-age=1');
      res.end(`hello from ${req.headers.host}`);
    });
  });
  const dir = tempDir('contract');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const accessLog = path.join(dir, 'access.log');
  const edge = new EdgeServer({ httpPort: 0, bindHost: '127.0.0.1', drainTimeoutMs: 500, sweepIntervalMs: 50, accessLogFile: accessLog });
  await edge.start();
  t.after(() => edge.stop());
  const refused: Target = { id: 'web-gone', host: '127.0.0.1', port: await freePort() };
  edge.swap(
    RouteTable.empty()
      .withApp('web', ['app.example.test', 'certified.example.test'], [app.target])
      .withApp('limited', ['limited.example.test'], [app.target])
      .withApp('slow', ['slow.example.test'], [app.target])
      .withApp('pair', ['pair.example.test'], [refused, app.target])
      // A release on probation whose only container died: the one before it stands by.
      .withApp('standby', ['standby.example.test'], [refused], [app.target]),
  );
  edge.setAppSettings(new Map(Object.entries(settings).map(([name, s]) => [name, { ...DEFAULT_APP_SETTINGS, ...s }])));
  const challenges = new AcmeChallenges();
  const listener = new TlsListener({ port: 0, bindHost: '127.0.0.1', handler: edge, drainTimeoutMs: 500, secureContext: () => context });
  await listener.start();
  t.after(() => listener.stop());
  edge.setChallengeResponder(createChallengeResponder(challenges));
  edge.setHttpsRedirect(createHttpsRedirect({ hasCertificate: (h) => h === 'certified.example.test', httpsPort: () => listener.port }));
  return { edge, listener, challenges, accessLog, app, seen };
}

function readReplies(res: http.IncomingMessage): Promise<Reply> {
  return new Promise((resolve, reject) => {
    let body = '';
    res.setEncoding('latin1');
    res.on('data', (d: string) => (body += d));
    res.on('error', reject);
    res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
  });
}

function http1(name: string, proto: 'http' | 'https'): FrontEnd {
  const connect = (stack: Stack): net.Socket =>
    proto === 'http'
      ? net.connect(stack.edge.httpPort, '127.0.0.1')
      : tls.connect({ host: '127.0.0.1', port: stack.listener.port, servername: NAMES[0], ca: ca.pem, ALPNProtocols: ['http/1.1'] });
  return {
    name,
    proto,
    async send(stack, host, requests) {
      const agent = new (proto === 'http' ? http.Agent : https.Agent)({ keepAlive: true, maxSockets: 1 });
      agent.createConnection = () => connect(stack);
      try {
        const replies: Reply[] = [];
        for (const r of requests) {
          const headers: Record<string, string> = { host, ...r.headers };
          if (r.body && !r.unsized) headers['content-length'] = String(r.body.length);
          const req = (proto === 'http' ? http : https).request({ agent, method: r.method ?? 'GET', path: r.path ?? '/', headers });
          const reply = once(req, 'response').then(([res]) => readReplies(res as http.IncomingMessage));
          req.on('error', () => undefined);
          req.end(r.body);
          replies.push(await reply);
        }
        return replies;
      } finally {
        agent.destroy();
      }
    },
    async untilServerCloses(stack, host) {
      const socket = connect(stack);
      socket.on('error', () => undefined);
      socket.resume();
      const closed = once(socket, 'close');
      socket.write(`GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
      await closed;
    },
  };
}

const h2: FrontEnd = {
  name: 'HTTP/2 over TLS',
  proto: 'https',
  async send(stack, host, requests) {
    const session = connectH2(stack);
    try {
      const replies: Reply[] = [];
      for (const r of requests) {
        const headers: http2.OutgoingHttpHeaders = { ':method': r.method ?? 'GET', ':path': r.path ?? '/', ':authority': host, ...r.headers };
        if (r.body && !r.unsized) headers['content-length'] = String(r.body.length);
        const stream = session.request(headers, { endStream: r.body === undefined });
        replies.push(
          await new Promise<Reply>((resolve, reject) => {
            let status = 0;
            let got: Reply['headers'] = {};
            let body = '';
            stream.on('response', (h) => {
              status = Number(h[':status']);
              got = h as Reply['headers'];
            });
            stream.setEncoding('latin1');
            stream.on('data', (d: string) => (body += d));
            stream.on('end', () => resolve({ status, headers: got, body }));
            stream.on('error', reject);
            if (r.body) stream.end(r.body);
          }),
        );
      }
      return replies;
    } finally {
      session.close();
    }
  },
  async untilServerCloses(stack, host) {
    const session = connectH2(stack);
    session.on('error', () => undefined);
    const closed = once(session, 'close');
    const stream = session.request({ ':path': '/', ':authority': host });
    stream.on('error', () => undefined);
    stream.resume();
    await closed;
  },
};

function connectH2(stack: Stack): http2.ClientHttp2Session {
  const port = stack.listener.port;
  return http2.connect(`https://${NAMES[0]}:${port}`, { createConnection: () => tls.connect({ host: '127.0.0.1', port, servername: NAMES[0], ca: ca.pem, ALPNProtocols: ['h2'] }) });
}

async function accessLines(file: string, count: number): Promise<Array<Record<string, unknown>>> {
  for (let i = 0; i < 100; i++) {
    const lines = fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter((l) => l !== '') : [];
    if (lines.length >= count) return lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.fail(`fewer than ${count} access-log lines in ${file}`);
}

const CLIENT_ID = 'client-chosen-request-id-0001';

for (const frontEnd of [http1('HTTP/1.1', 'http'), http1('HTTP/1.1 over TLS', 'https'), h2]) {
  describe(`the proxy contract over ${frontEnd.name}`, () => {
    test('a request is routed by its host and reaches the app with the forwarded headers and a request id', async (t) => {
      const stack = await startStack(t);
      const [plain, chosen] = await frontEnd.send(stack, 'app.example.test', [{ path: '/a?b=1', headers: { 'x-forwarded-for': '203.0.113.9' } }, { headers: { 'x-request-id': CLIENT_ID } }]);
      assert.equal(plain!.status, 200);
      assert.equal(plain!.body, 'hello from app.example.test');
      const seen = stack.seen[0]!;
      assert.equal(seen.url, '/a?b=1');
      assert.equal(seen.headers['x-forwarded-for'], '203.0.113.9, 127.0.0.1');
      assert.equal(seen.headers['x-forwarded-proto'], frontEnd.proto);
      assert.equal(seen.headers['x-forwarded-host'], 'app.example.test');
      assert.equal(seen.headers['x-forwarded-port'], String(frontEnd.proto === 'http' ? stack.edge.httpPort : stack.listener.port));
      assert.match(String(seen.headers['x-request-id']), GENERATED_ID);
      assert.equal(chosen!.status, 200);
      assert.equal(stack.seen[1]!.headers['x-request-id'], CLIENT_ID, 'a client id of the accepted shape is passed on');
    });

    test("a client's Forwarded, X-Real-IP and X-Forwarded-Ssl never reach the app: berth's say what the connection was", async (t) => {
      const stack = await startStack(t);
      const forged = { forwarded: 'for=10.9.9.9;proto=https;host=admin.internal', 'x-real-ip': '10.9.9.9', 'x-forwarded-ssl': frontEnd.proto === 'http' ? 'on' : 'off', 'X-Forwarded-Port': '1', 'X-Forwarded-Host': 'admin.internal' };
      const [reply] = await frontEnd.send(stack, 'app.example.test', [{ headers: forged }]);
      assert.equal(reply!.status, 200);
      const seen = stack.seen[0]!.headers;
      assert.equal(seen['x-real-ip'], '127.0.0.1');
      assert.equal(seen['x-forwarded-ssl'], frontEnd.proto === 'https' ? 'on' : 'off');
      assert.equal(seen.forwarded, `for=127.0.0.1;proto=${frontEnd.proto};host=app.example.test`);
      assert.equal(seen['x-forwarded-host'], 'app.example.test');
      assert.equal(seen['x-forwarded-port'], String(frontEnd.proto === 'http' ? stack.edge.httpPort : stack.listener.port));
    });

    test("an app's HSTS setting replaces the app's own on its HTTPS answers, and never reaches plain HTTP ones", async (t) => {
      const stack = await startStack(t, { web: { hsts: 'max-age=600; includeSubDomains' } });
      const [own, plain] = await frontEnd.send(stack, 'app.example.test', [{ path: '/own-hsts' }, { path: '/' }]);
      const [other] = await frontEnd.send(stack, 'limited.example.test', [{}]);
      assert.equal(own!.status, 200);
      if (frontEnd.proto === 'https') {
        // One header, berth's (RFC 6797 §6.1; Node's HTTP/1.1 client would join two with ", ").
        assert.equal(own!.headers['strict-transport-security'], 'max-age=600; includeSubDomains');
        assert.equal(plain!.headers['strict-transport-security'], 'max-age=600; includeSubDomains');
      } else {
        assert.equal(own!.headers['strict-transport-security'], 'max-age=1', 'over plain HTTP only what the app sent');
        assert.equal(plain!.headers['strict-transport-security'], undefined);
      }
      assert.equal(other!.headers['strict-transport-security'], undefined, 'an app without the setting gets none');
    });

    test('a host no app serves gets the 404 page with the request id', async (t) => {
      const stack = await startStack(t);
      const [reply] = await frontEnd.send(stack, 'nobody.example.test', [{}]);
      assert.equal(reply!.status, 404);
      assert.match(reply!.body, /No app is served at nobody\.example\.test/);
      assert.match(String(reply!.headers['x-request-id']), GENERATED_ID);
      assert.equal(stack.seen.length, 0);
    });

    test('a host with a certificate is redirected to HTTPS on plain HTTP and served on HTTPS', async (t) => {
      const stack = await startStack(t);
      const [reply] = await frontEnd.send(stack, 'certified.example.test', [{ path: '/x?y=2' }]);
      if (frontEnd.proto === 'http') {
        assert.equal(reply!.status, 308);
        assert.equal(reply!.headers.location, `https://certified.example.test:${stack.listener.port}/x?y=2`);
        assert.equal(stack.seen.length, 0);
      } else {
        assert.equal(reply!.status, 200);
        assert.equal(stack.seen[0]!.url, '/x?y=2');
      }
    });

    test('a known ACME challenge token is answered by berth for any host; an unknown one goes to the app', async (t) => {
      const stack = await startStack(t);
      stack.challenges.setHttp('tok-1', 'tok-1.key-authorization');
      const [known, unknown] = await frontEnd.send(stack, 'certified.example.test', [{ path: '/.well-known/acme-challenge/tok-1' }, { path: '/.well-known/acme-challenge/other' }]);
      assert.equal(known!.status, 200);
      assert.equal(known!.body, 'tok-1.key-authorization');
      assert.equal(unknown!.status, 200, 'the challenge path is never redirected');
      assert.equal(stack.seen.length, 1);
      assert.equal(stack.seen[0]!.url, '/.well-known/acme-challenge/other');
    });

    test('a body over the app\'s max-body-size gets 413, declared or not', async (t) => {
      const stack = await startStack(t, { limited: { maxBodySize: 1000 } });
      const [declared] = await frontEnd.send(stack, 'limited.example.test', [{ method: 'POST', body: Buffer.alloc(2000, 1) }]);
      assert.equal(declared!.status, 413);
      assert.equal(stack.seen.length, 0, 'a declared length over the limit never reaches the app');
      const [streamed] = await frontEnd.send(stack, 'limited.example.test', [{ method: 'POST', body: Buffer.alloc(5000, 1), unsized: true }]);
      assert.equal(streamed!.status, 413);
      const [small] = await frontEnd.send(stack, 'limited.example.test', [{ method: 'POST', body: Buffer.alloc(500, 1) }]);
      assert.equal(small!.status, 200);
      assert.equal(stack.seen.at(-1)!.bytes, 500);
    });

    test('an app that does not answer within its read-timeout gets 504', async (t) => {
      const stack = await startStack(t, { slow: { readTimeout: 300 } });
      const since = logLines.length;
      const [reply] = await frontEnd.send(stack, 'slow.example.test', [{}]);
      assert.equal(reply!.status, 504);
      assert.equal(logged('proxy_upstream_error', since)[0]?.status, 504);
    });

    test('a target that refuses connections is marked down and its requests go to the other one', async (t) => {
      const stack = await startStack(t);
      const since = logLines.length;
      const replies = await frontEnd.send(stack, 'pair.example.test', [{}, {}, {}, {}]);
      assert.deepEqual(replies.map((r) => r.status), [200, 200, 200, 200]);
      const errors = logged('proxy_upstream_error', since);
      assert.ok(errors.length <= 1, `the refusing target is tried at most once, then left out (${errors.length} attempts)`);
      assert.ok(errors.every((e) => e.phase === 'connect' && e.target === 'web-gone'));
    });

    test('a request the only routed target refuses goes to a standby target', async (t) => {
      const stack = await startStack(t);
      const replies = await frontEnd.send(stack, 'standby.example.test', [{}, { path: '/again' }]);
      assert.deepEqual(replies.map((r) => [r.status, r.body]), [[200, 'hello from standby.example.test'], [200, 'hello from standby.example.test']]);
      assert.deepEqual(stack.seen.map((s) => s.url), ['/', '/again']);
    });

    test('each answer writes one access-log line with the same fields, its id the one the app saw', async (t) => {
      const stack = await startStack(t);
      await frontEnd.send(stack, 'app.example.test', [{ path: '/logged?secret=1' }, {}]);
      await frontEnd.send(stack, 'nobody.example.test', [{}]);
      const lines = await accessLines(stack.accessLog, 3);
      assert.deepEqual(Object.keys(lines[0]!).sort(), ['app', 'bytes', 'client', 'host', 'id', 'method', 'ms', 'path', 'proto', 'status', 'target', 'time'].sort());
      assert.deepEqual(
        { ...lines[0], time: undefined, ms: undefined, bytes: undefined },
        { time: undefined, ms: undefined, bytes: undefined, id: stack.seen[0]!.headers['x-request-id'], client: '127.0.0.1', proto: frontEnd.proto, host: 'app.example.test', method: 'GET', path: '/logged', status: 200, app: 'web', target: 'web-1' },
      );
      assert.ok(Number(lines[0]!.bytes) > 0);
      assert.equal(lines[2]!.status, 404);
      assert.deepEqual(Object.keys(lines[2]!), Object.keys(lines[0]!));
    });

    test('a connection left idle is closed after the app\'s idle-timeout', async (t) => {
      const stack = await startStack(t, { web: { idleTimeout: 200 } });
      const started = Date.now();
      await frontEnd.untilServerCloses(stack, 'app.example.test');
      assert.ok(Date.now() - started < 5_000, 'the idle connection was closed, not left open');
    });
  });
}

test('HTTP/2 sessions announce a cap on concurrent streams', async (t) => {
  const stack = await startStack(t);
  const session = connectH2(stack);
  t.after(() => session.close());
  await once(session, 'remoteSettings');
  assert.equal(session.remoteSettings.maxConcurrentStreams, HTTP2_MAX_CONCURRENT_STREAMS);
});

for (const proto of ['http', 'https'] as const) {
  test(`a challenge request pipelined before a POST on one ${proto} connection: the app sees the POST exactly once`, async (t) => {
    const stack = await startStack(t);
    stack.challenges.setHttp('tok-2', 'tok-2.key-authorization');
    const socket = proto === 'http'
      ? net.connect(stack.edge.httpPort, '127.0.0.1')
      : tls.connect({ host: '127.0.0.1', port: stack.listener.port, servername: NAMES[0], ca: ca.pem, ALPNProtocols: ['http/1.1'] });
    let received = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (received += d));
    socket.write(
      'GET /.well-known/acme-challenge/tok-2 HTTP/1.1\r\nHost: app.example.test\r\n\r\n' +
        'POST /submit HTTP/1.1\r\nHost: app.example.test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello',
    );
    await once(socket, 'close');
    const answers = received.split(/(?=HTTP\/1\.1 )/);
    assert.equal(answers.length, 2, received);
    assert.match(answers[0]!, /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\ntok-2\.key-authorization$/);
    assert.match(answers[1]!, /^HTTP\/1\.1 200 OK\r\n[\s\S]*hello from app\.example\.test$/);
    assert.deepEqual(stack.seen.map((s) => [s.method, s.url, s.bytes, s.headers['x-forwarded-proto']]), [['POST', '/submit', 5, proto]]);
  });
}
