import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { test, type TestContext } from 'node:test';
import { isUserError } from '../src/errors.ts';
import { defaultHealthChecks, parseHealthchecks, runHealthChecks, type CheckAttempt, type HealthCheck, type ProbeTarget } from '../src/orchestrator/health-check.ts';

const appJson = (web: unknown) => JSON.stringify({ healthchecks: { web } });

async function listen(t: TestContext, handler: http.RequestListener, port = 0): Promise<number> {
  const server = http.createServer(handler);
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  return (server.address() as net.AddressInfo).port;
}

function target(port: number, extra: Partial<ProbeTarget> = {}): ProbeTarget {
  return { host: '127.0.0.1', port, hostHeader: 'shop.example.com', ...extra };
}

function rejectsWith(text: string, field: RegExp): void {
  assert.throws(
    () => parseHealthchecks(text),
    (e: unknown) => isUserError(e) && e.code === 'invalid_app_json' && field.test(e.message),
    text,
  );
}

test("app.json's healthchecks.web become checks with Dokku's defaults, in milliseconds", () => {
  const checks = parseHealthchecks(
    appJson([
      { type: 'startup', name: 'ready', path: '/health', content: 'ok', attempts: 4, timeout: 2, wait: 1, initialDelay: 3, httpHeaders: [{ name: 'X-Probe', value: 'berth' }] },
      { path: '/' },
      { listening: true, port: 8080 },
      { uptime: 5 },
      { type: 'liveness', path: '/live' },
    ]),
  );
  assert.deepEqual(checks[0], { kind: 'http', name: 'ready', path: '/health', content: 'ok', headers: [['X-Probe', 'berth']], attempts: 4, timeoutMs: 2000, waitMs: 1000, initialDelayMs: 3000, port: undefined });
  assert.deepEqual(checks[1], { kind: 'http', name: 'GET /', path: '/', content: undefined, headers: [], attempts: 3, timeoutMs: 5000, waitMs: 5000, initialDelayMs: 0, port: undefined });
  assert.equal(checks[2]?.kind, 'listening');
  assert.equal(checks[2]?.port, 8080);
  assert.equal(checks[3]?.kind, 'uptime');
  assert.equal(checks.length, 4, 'liveness checks do not gate a deploy');
  assert.deepEqual(parseHealthchecks('{"name":"shop"}'), []);
  assert.deepEqual(parseHealthchecks(JSON.stringify({ healthchecks: { worker: [{ uptime: 3 }] } })), []);
});

test('a bad health check is refused with the field it is about', () => {
  rejectsWith('{"healthchecks":', /not valid JSON/);
  rejectsWith('[]', /must hold a JSON object/);
  rejectsWith(JSON.stringify({ healthchecks: [] }), /healthchecks must be an object/);
  rejectsWith(JSON.stringify({ healthchecks: { web: { path: '/' } } }), /healthchecks\.web must be a list/);
  rejectsWith(appJson(['/health']), /healthchecks\.web\[0\] must be an object/);
  rejectsWith(appJson([{ path: 'health' }]), /healthchecks\.web\[0\]\.path must be a path starting with "\/"/);
  rejectsWith(appJson([{ path: '/', attempts: 'three' }]), /healthchecks\.web\[0\]\.attempts must be a whole number/);
  rejectsWith(appJson([{ path: '/' }, { path: '/', attempts: 0 }]), /healthchecks\.web\[1\]\.attempts/);
  rejectsWith(appJson([{ path: '/', timeout: -1 }]), /\.timeout must be a number of seconds/);
  rejectsWith(appJson([{ path: '/', wait: '5' }]), /\.wait must be a number of seconds/);
  rejectsWith(appJson([{ path: '/', initialDelay: null }]), /\.initialDelay/);
  rejectsWith(appJson([{ path: '/', port: 70000 }]), /\.port must be a whole number from 1 to 65535/);
  rejectsWith(appJson([{ path: '/', content: 42 }]), /\.content must be a string/);
  rejectsWith(appJson([{ content: 'ok' }]), /\.content needs a path/);
  rejectsWith(appJson([{ path: '/', uptime: 5 }]), /only one of path, uptime and listening/);
  rejectsWith(appJson([{ command: ['/bin/check'] }]), /\.command: command checks are not supported/);
  rejectsWith(appJson([{ path: '/', scheme: 'https' }]), /\.scheme must be "http"/);
  rejectsWith(appJson([{ path: '/', type: 'sometimes' }]), /\.type must be "startup"/);
  rejectsWith(appJson([{ path: '/', httpHeaders: [{ name: 'Host', value: 'x' }] }]), /httpHeaders\[0\]: the Host header/);
});

test("an HTTP check sends the app's Host header and X-Forwarded-Proto: https, and passes on the expected content", async (t) => {
  let seen: http.IncomingHttpHeaders = {};
  const port = await listen(t, (req, res) => {
    seen = req.headers;
    res.end(req.url === '/health' ? 'status: ok' : 'nope');
  });
  const [check] = parseHealthchecks(appJson([{ path: '/health', content: 'ok', httpHeaders: [{ name: 'X-Probe', value: 'berth' }] }]));
  const attempts: CheckAttempt[] = [];
  await runHealthChecks([check!], target(port), { onAttempt: (a) => attempts.push(a) });
  assert.equal(seen.host, 'shop.example.com');
  assert.equal(seen['x-forwarded-proto'], 'https');
  assert.equal(seen['x-probe'], 'berth');
  assert.equal(attempts.length, 1);
  assert.match(attempts[0]!.detail, /^status 200 in \d+ ms$/);
});

test('a failing HTTP check is retried after its wait and passes once the app answers', async (t) => {
  let calls = 0;
  const port = await listen(t, (_req, res) => {
    calls++;
    res.statusCode = calls < 3 ? 503 : 200;
    res.end();
  });
  const [check] = parseHealthchecks(appJson([{ path: '/', attempts: 3, wait: 0.05 }]));
  const attempts: CheckAttempt[] = [];
  await runHealthChecks([check!], target(port), { onAttempt: (a) => attempts.push(a) });
  assert.deepEqual(attempts.map((a) => a.ok), [false, false, true]);
  assert.match(attempts[0]!.detail, /^status 503/);
});

test('a check that runs out of attempts fails with its name and the last reason', async (t) => {
  const port = await listen(t, (_req, res) => res.end('starting'));
  const [check] = parseHealthchecks(appJson([{ name: 'ready', path: '/', content: 'ready', attempts: 2, wait: 0 }]));
  await assert.rejects(
    runHealthChecks([check!], target(port)),
    (e: unknown) => isUserError(e) && e.code === 'health_check_failed' && /"ready" failed after 2 attempts: status 200, but the body does not contain "ready"/.test(e.message),
  );
});

test('an HTTP check that gets no answer in time fails with the timeout', async (t) => {
  const port = await listen(t, () => undefined);
  const [check] = parseHealthchecks(appJson([{ path: '/', attempts: 1, timeout: 0.1 }]));
  await assert.rejects(runHealthChecks([check!], target(port)), /no answer within 0\.1 s/);
});

test('the initial delay passes before the first attempt', async (t) => {
  const port = await listen(t, (_req, res) => res.end());
  const [check] = parseHealthchecks(appJson([{ path: '/', initialDelay: 0.2 }]));
  const started = Date.now();
  await runHealthChecks([check!], target(port));
  assert.ok(Date.now() - started >= 195, `${Date.now() - started} ms`);
});

test("with no checks declared, berth waits for $PORT to accept connections, then asks GET / with the app's Host and X-Forwarded-Proto: https, and a 404 is an answer", async (t) => {
  const probe = net.createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const port = (probe.address() as net.AddressInfo).port;
  probe.close();
  await once(probe, 'close');
  let seen: http.IncomingHttpHeaders | undefined;
  // The app starts listening a moment after its container started.
  setTimeout(
    () =>
      void listen(
        t,
        (req, res) => {
          seen = req.headers;
          res.statusCode = 404;
          res.end();
        },
        port,
      ),
    300,
  );
  const attempts: CheckAttempt[] = [];
  const checks = defaultHealthChecks({ listening: true });
  assert.deepEqual(checks.map((c) => c.name), ['port listening', 'GET / answers']);
  await runHealthChecks(checks, target(port), { onAttempt: (a) => attempts.push(a) });
  assert.ok(attempts.filter((a) => a.check.kind === 'listening' && !a.ok).length >= 1, 'refused at first');
  assert.equal(attempts.at(-1)?.check.kind, 'answering');
  assert.match(attempts.at(-1)!.detail, /GET \/ answered 404 in \d+ ms/);
  assert.equal(seen?.host, 'shop.example.com');
  assert.equal(seen?.['x-forwarded-proto'], 'https');
  assert.deepEqual(defaultHealthChecks({ listening: false }), [], 'a process without a port has nothing to answer: probation watches it');
});

test('the default check refuses an app that answers 500 on /, and passes a port that speaks no HTTP on the TCP connection alone', async (t) => {
  const failing = await listen(t, (_req, res) => {
    res.statusCode = 500;
    res.end('database down');
  });
  const [listening, answering] = defaultHealthChecks({ listening: true });
  const quick = { ...answering!, attempts: 2, waitMs: 10 };
  await assert.rejects(
    runHealthChecks([listening!, quick], target(failing)),
    (e: unknown) => isUserError(e) && /"GET \/ answers" failed after 2 attempts: GET \/ answered 500/.test(e.message) && /below 500/.test(e.hint ?? ''),
  );
  // A line protocol that greets first (no HTTP in the reply), and one that waits for its client.
  for (const greet of [true, false]) {
    const server = net.createServer((socket) => {
      if (greet) socket.write('+OK ready\r\n');
      socket.on('error', () => socket.destroy());
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    t.after(() => server.close());
    const attempts: CheckAttempt[] = [];
    await runHealthChecks([listening!, answering!], target((server.address() as net.AddressInfo).port), { onAttempt: (a) => attempts.push(a) });
    assert.match(attempts.at(-1)!.detail, greet ? /speaks no HTTP/ : /no HTTP answer to GET \/ within 2 s/);
  }
});

test('a container that restarted during an uptime check fails the checks at once', async (t) => {
  const port = await listen(t, (_req, res) => res.end());
  const checks: HealthCheck[] = parseHealthchecks(appJson([{ uptime: 0.05 }]));
  await assert.rejects(
    runHealthChecks(checks, target(port, { state: async () => ({ running: true, restartCount: 2 }) })),
    (e: unknown) => isUserError(e) && /"uptime 0\.1 s" failed after 1 attempt: the container restarted 2 times/.test(e.message),
  );
});

test('an aborted run stops waiting', async (t) => {
  const port = await listen(t, (_req, res) => {
    res.statusCode = 500;
    res.end();
  });
  const [check] = parseHealthchecks(appJson([{ path: '/', attempts: 10, wait: 10 }]));
  const abort = new AbortController();
  setTimeout(() => abort.abort(new Error('deploy cancelled')), 100);
  const started = Date.now();
  await assert.rejects(runHealthChecks([check!], target(port), { signal: abort.signal }), /deploy cancelled/);
  assert.ok(Date.now() - started < 2000);
});
