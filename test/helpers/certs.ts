// Test certificates made with the real openssl in the test setup (the daemon never runs it): a
// private CA, and leaf certificates it signs for given names and validity dates.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import tls from 'node:tls';
import { mustRun, tempDir } from './daemon.ts';

export interface TestCa {
  readonly dir: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly pem: string;
}

export interface TestCert {
  readonly certFile: string;
  readonly keyFile: string;
  readonly certPem: string;
  readonly keyPem: string;
}

export function makeCa(cn: string): TestCa {
  const dir = tempDir('ca');
  const certFile = path.join(dir, 'ca.pem');
  const keyFile = path.join(dir, 'ca.key');
  mustRun('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '3', '-subj', `/CN=${cn}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  fs.writeFileSync(path.join(dir, 'index.txt'), '');
  fs.writeFileSync(path.join(dir, 'serial'), randomBytes(8).toString('hex') + '\n');
  fs.writeFileSync(path.join(dir, 'ca.cnf'), [
    '[ca]', 'default_ca = test', '[test]', `database = ${path.join(dir, 'index.txt')}`, `new_certs_dir = ${dir}`, `serial = ${path.join(dir, 'serial')}`,
    'default_md = sha256', 'policy = any', 'unique_subject = no', 'copy_extensions = none', '[any]', 'commonName = supplied', '',
  ].join('\n'));
  return { dir, certFile, keyFile, pem: fs.readFileSync(certFile, 'utf8') };
}

/** A leaf certificate for `names` signed by `ca`; dates as openssl's YYYYMMDDHHMMSSZ, default: from an hour ago for 2 days. */
export function issueCert(ca: TestCa, names: string[], options: { startDate?: string; endDate?: string } = {}): TestCert {
  const dir = fs.mkdtempSync(path.join(ca.dir, 'leaf-'));
  const at = (f: string) => path.join(dir, f);
  mustRun('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', at('key.pem'), '-out', at('leaf.csr'), '-subj', `/CN=${names[0]}`]);
  fs.writeFileSync(at('ext.cnf'), `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`);
  const start = options.startDate ?? opensslDate(Date.now() - 3_600_000);
  const end = options.endDate ?? opensslDate(Date.now() + 2 * 86_400_000);
  mustRun('openssl', ['ca', '-batch', '-notext', '-config', path.join(ca.dir, 'ca.cnf'), '-cert', ca.certFile, '-keyfile', ca.keyFile, '-in', at('leaf.csr'), '-out', at('cert.pem'),
    '-startdate', start, '-enddate', end, '-extfile', at('ext.cnf')]);
  return { certFile: at('cert.pem'), keyFile: at('key.pem'), certPem: fs.readFileSync(at('cert.pem'), 'utf8'), keyPem: fs.readFileSync(at('key.pem'), 'utf8') };
}

export function opensslDate(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:T]/g, '').replace(/\.\d+Z$/, 'Z');
}

export interface Handshake {
  authorized: boolean;
  authorizationError: string | undefined;
  alpn: string | false;
  issuer: string | undefined;
  serial: string | undefined;
  names: string | undefined;
}

/** A TLS handshake with `servername` on 127.0.0.1:port, verifying against `ca` when given. */
export function handshake(port: number, servername: string, options: { ca?: string | string[]; alpn?: string[] } = {}): Promise<Handshake> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      servername,
      ...(options.ca ? { ca: options.ca } : {}),
      rejectUnauthorized: false,
      ALPNProtocols: options.alpn ?? ['http/1.1'],
      session: undefined,
    });
    socket.setTimeout(10_000, () => socket.destroy(new Error('handshake timed out')));
    socket.once('secureConnect', () => {
      const cert = socket.getPeerCertificate();
      const error = socket.authorizationError;
      resolve({
        authorized: socket.authorized,
        authorizationError: error === null || error === undefined ? undefined : String(error),
        alpn: socket.alpnProtocol ?? false,
        issuer: typeof cert.issuer?.CN === 'string' ? cert.issuer.CN : undefined,
        serial: cert.serialNumber?.toLowerCase(),
        names: cert.subjectaltname,
      });
      socket.destroy();
    });
    socket.once('error', reject);
  });
}

/** An HTTPS GET to 127.0.0.1:port with SNI and Host `host`, verified against `ca` (rejects if it does not verify). */
export function httpsGet(port: number, host: string, urlPath: string, ca: string | string[]): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined>; serial: string | undefined; issuer: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, path: urlPath, servername: host, headers: { host }, ca, agent: false }, (res) => {
      const cert = (res.socket as tls.TLSSocket).getPeerCertificate();
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers, serial: cert.serialNumber?.toLowerCase(), issuer: typeof cert.issuer?.CN === 'string' ? cert.issuer.CN : undefined }));
    });
    req.on('error', reject);
    req.setTimeout(15_000, () => req.destroy(new Error('request timed out')));
    req.end();
  });
}
