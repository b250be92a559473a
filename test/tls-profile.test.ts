// berth's TLS profile on the real HTTPS listener, seen by real TLS clients (Node's OpenSSL): what
// Mozilla's intermediate profile allows completes a handshake, HTTP/2 included, and what it leaves
// out (CBC, static RSA, finite-field DHE, TLS 1.1, secp521r1, X448) fails. Suites Node's own
// OpenSSL cannot offer as a client (ARIA, TLS 1.2 CCM) and client-initiated renegotiation are testssl.sh checks the same
// checked from outside by testssl.sh, which speaks them over raw sockets: test/e2e-edge.test.ts.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import tls, { type SecureContext, type TLSSocket } from 'node:tls';
import { setLogSink } from '../src/log.ts';
import { TlsListener } from '../src/proxy/tls/tls-listener.ts';
import { profileContext, TLS_GROUPS } from '../src/proxy/tls/tls-profile.ts';
import { issueCert, makeCa, type TestCa } from './helpers/certs.ts';
import { mustRun, tempDir } from './helpers/daemon.ts';

let ca: TestCa;
let listener: TlsListener;
/** What the listener serves, by SNI: an ECDSA certificate and an RSA one. */
const contexts = new Map<string, SecureContext>();
const RSA_NAME = 'rsa.example.test';
const EC_NAME = 'ec.example.test';
/** Served by a context made without the profile: the listener's settings must hold for it too. */
const BARE_NAME = 'bare.example.test';

before(async () => {
  setLogSink(() => {});
  ca = makeCa('profile test CA');
  const ec = issueCert(ca, [EC_NAME]);
  contexts.set(EC_NAME, profileContext(ec.certPem, ec.keyPem));
  const bare = issueCert(ca, [BARE_NAME]);
  contexts.set(BARE_NAME, tls.createSecureContext({ cert: bare.certPem, key: bare.keyPem }));
  const dir = tempDir('rsa-cert');
  mustRun('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem'), '-days', '2', '-subj', `/CN=${RSA_NAME}`, '-addext', `subjectAltName=DNS:${RSA_NAME}`]);
  contexts.set(RSA_NAME, profileContext(fs.readFileSync(path.join(dir, 'cert.pem'), 'utf8'), fs.readFileSync(path.join(dir, 'key.pem'), 'utf8')));
  listener = new TlsListener({
    port: 0,
    bindHost: '127.0.0.1',
    secureContext: (name) => contexts.get(name),
    handler: {
      serveConnection: (socket) => socket.end('HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n'),
      serveHttp2: (socket) => socket.destroy(),
      closeHttp2: () => undefined,
    },
  });
  await listener.start();
});

after(async () => {
  await listener?.stop();
  setLogSink((line) => process.stderr.write(line + '\n'));
});

interface Outcome {
  ok: boolean;
  protocol?: string | null;
  cipher?: string;
  group?: string;
  alpn?: string | false | null;
  error?: string;
}

/** One handshake with client options; resolves with what was agreed, or the error. */
function connect(servername: string, options: tls.ConnectionOptions): Promise<Outcome> {
  return new Promise((resolve) => {
    const socket: TLSSocket = tls.connect({ host: '127.0.0.1', port: listener.port, servername, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'], ...options });
    socket.setTimeout(5000, () => socket.destroy(new Error('handshake timed out')));
    socket.once('secureConnect', () => {
      const key = socket.getEphemeralKeyInfo() as { name?: string };
      resolve({ ok: true, protocol: socket.getProtocol(), cipher: socket.getCipher().standardName, group: key.name, alpn: socket.alpnProtocol });
      socket.destroy();
    });
    socket.once('error', (e) => resolve({ ok: false, error: e.message }));
  });
}

test('TLS 1.3 and TLS 1.2 with ECDHE and AEAD suites complete, over ECDSA and RSA certificates', async () => {
  const v13 = await connect(EC_NAME, { ALPNProtocols: ['h2', 'http/1.1'] });
  assert.deepEqual([v13.ok, v13.protocol, v13.alpn], [true, 'TLSv1.3', 'h2'], 'HTTP/2 is still chosen by ALPN');
  for (const [name, ciphers] of [
    [EC_NAME, ['ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305']],
    [RSA_NAME, ['ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES256-GCM-SHA384', 'ECDHE-RSA-CHACHA20-POLY1305']],
  ] as const) {
    for (const cipher of ciphers) {
      const outcome = await connect(name, { maxVersion: 'TLSv1.2', ciphers: cipher });
      assert.deepEqual([outcome.ok, outcome.protocol], [true, 'TLSv1.2'], `${cipher}: ${outcome.error}`);
    }
  }
});

test('CBC, static-RSA and finite-field DHE suites are refused on TLS 1.2, TLS 1.3 CCM is refused, and TLS 1.1 is not spoken', async () => {
  const clientHas = new Set(tls.getCiphers());
  for (const [name, cipher] of [
    [EC_NAME, 'ECDHE-ECDSA-AES128-SHA'],
    [EC_NAME, 'ECDHE-ECDSA-AES256-SHA384'],
    [RSA_NAME, 'ECDHE-RSA-AES128-SHA256'],
    [RSA_NAME, 'ECDHE-RSA-AES256-SHA'],
    [RSA_NAME, 'AES128-GCM-SHA256'],
    [RSA_NAME, 'AES256-SHA'],
    [RSA_NAME, 'DHE-RSA-AES128-GCM-SHA256'],
  ] as const) {
    assert.ok(clientHas.has(cipher.toLowerCase()), `Node's client can offer ${cipher}`);
    const outcome = await connect(name, { maxVersion: 'TLSv1.2', ciphers: `${cipher}:@SECLEVEL=0` });
    assert.equal(outcome.ok, false, `${cipher} was accepted (${outcome.cipher})`);
  }
  for (const suite of ['TLS_AES_128_CCM_SHA256', 'TLS_AES_128_CCM_8_SHA256']) {
    assert.ok(clientHas.has(suite.toLowerCase()), `Node's client can offer ${suite}`);
    const outcome = await connect(EC_NAME, { minVersion: 'TLSv1.3', ciphers: suite });
    assert.equal(outcome.ok, false, `${suite} was accepted`);
  }
  const old = await connect(EC_NAME, { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0' });
  assert.equal(old.ok, false, `TLS 1.1 was accepted (${old.protocol})`);
});

test("the listener's profile holds whichever context SNI picks, one made with OpenSSL's defaults too", async () => {
  const fine = await connect(BARE_NAME, { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256' });
  assert.equal(fine.ok, true, fine.error);
  for (const options of [{ maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0' }, { ecdhCurve: 'P-521' }, { ecdhCurve: 'X448' }] as const) {
    const outcome = await connect(BARE_NAME, options);
    assert.equal(outcome.ok, false, `${JSON.stringify(options)} was accepted`);
  }
});

test('the key exchange uses X25519MLKEM768, X25519, P-256 or P-384 only; secp521r1 and X448 are refused', async () => {
  assert.equal(TLS_GROUPS, 'X25519MLKEM768:X25519:P-256:P-384');
  // Over TLS 1.2 the client's group list also bounds the curve of an ECDSA certificate
  // (RFC 8422 §5.1.1), so groups are tried there with the RSA certificate.
  const serverFor = (maxVersion: string) => (maxVersion === 'TLSv1.2' ? RSA_NAME : EC_NAME);
  for (const [curve, group] of [['X25519', 'X25519'], ['P-256', 'prime256v1'], ['P-384', 'secp384r1']] as const) {
    for (const maxVersion of ['TLSv1.2', 'TLSv1.3'] as const) {
      const outcome = await connect(serverFor(maxVersion), { ecdhCurve: curve, maxVersion });
      assert.deepEqual([outcome.ok, outcome.protocol, outcome.group], [true, maxVersion, group], `${curve} over ${maxVersion}: ${outcome.error}`);
    }
  }
  const mlkem = await connect(EC_NAME, { ecdhCurve: 'X25519MLKEM768' });
  assert.deepEqual([mlkem.ok, mlkem.group], [true, 'X25519MLKEM768'], `the hybrid post-quantum group: ${mlkem.error}`);
  for (const curve of ['P-521', 'X448']) {
    for (const maxVersion of ['TLSv1.2', 'TLSv1.3'] as const) {
      const outcome = await connect(serverFor(maxVersion), { ecdhCurve: curve, maxVersion });
      assert.equal(outcome.ok, false, `${curve} over ${maxVersion} was accepted`);
    }
  }
});
