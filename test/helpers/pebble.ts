// Test harness for ACME: a real Pebble (Debian's `pebble` package) with real HTTP-01 and
// TLS-ALPN-01 validation, and pebble-challtestsrv as its DNS server, answering 127.0.0.1 for
// every name (or another address for names a test sets). Pebble's listener certificate is made
// here with openssl, in the test setup; the daemon itself never runs openssl.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { freePort } from './loopback.ts';
import path from 'node:path';
import { mustRun, startDaemon, tempDir, type Daemon } from './daemon.ts';

export interface PebblePorts {
  /** Where Pebble's validator connects for HTTP-01: berth's HTTP port. */
  httpPort: number;
  /** Where it connects for TLS-ALPN-01: berth's HTTPS port. */
  tlsPort: number;
}

export interface PebbleOptions {
  /** Lifetime of issued certificates in seconds. Default: Pebble's own (5 years). */
  validitySeconds?: number;
}

/**
 * Pebble's directory URL and CA file are known before it runs (berth needs them to start), and
 * it runs once berth's ports are known: `preparePebble()`, start berth, then `start(ports)`.
 */
export interface Pebble {
  /** The ACME directory URL. */
  readonly directory: string;
  /** Starts challtestsrv and Pebble, validating on berth's ports. */
  start(ports: PebblePorts): Promise<void>;
  /** The CA of Pebble's own HTTPS listener: what berth's --acme-ca-file gets. */
  readonly caFile: string;
  /** Pebble's listener certificate (for 127.0.0.1, signed by caFile) and its key, for a test's own server in front of Pebble. */
  readonly listener: { certFile: string; keyFile: string };
  /** PEM of the root that issued certificates chain to (new for every Pebble start). */
  root(): Promise<string>;
  /** Makes challtestsrv answer `address` for `host` (Pebble then validates there). */
  setAddress(host: string, address: string): Promise<void>;
  /** Stops Pebble (challtestsrv keeps running). */
  stopCa(): Promise<void>;
  /** Starts Pebble again, optionally with other validation ports; it forgets every account and order. */
  startCa(ports?: Partial<PebblePorts>): Promise<void>;
  logs(): string;
  stop(): Promise<void>;
}

export async function preparePebble(options: PebbleOptions = {}): Promise<Pebble> {
  const dir = tempDir('pebble');
  makeListenerCertificate(dir);
  const caFile = path.join(dir, 'ca.pem');
  const [acmePort, managementPort, dnsPort, challPort] = await freePorts(4);
  let output = '';
  const capture = (child: ChildProcess) => {
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  };
  let challtestsrv: ChildProcess | undefined;
  const startDns = () => spawn('pebble-challtestsrv', ['-defaultIPv4', '127.0.0.1', '-defaultIPv6', '', '-dns01', `127.0.0.1:${dnsPort}`, '-http01', '', '-https01', '', '-tlsalpn01', '', '-management', `127.0.0.1:${challPort}`], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let pebble: ChildProcess | undefined;
  let ports: PebblePorts = { httpPort: 0, tlsPort: 0 };
  const directory = `https://127.0.0.1:${acmePort}/dir`;
  const ca = fs.readFileSync(caFile);

  const startCa = async (next: Partial<PebblePorts> = {}) => {
    ports = { ...ports, ...next };
    const config = {
      pebble: {
        listenAddress: `127.0.0.1:${acmePort}`,
        managementListenAddress: `127.0.0.1:${managementPort}`,
        certificate: path.join(dir, 'cert.pem'),
        privateKey: path.join(dir, 'key.pem'),
        httpPort: ports.httpPort,
        tlsPort: ports.tlsPort,
        ocspResponderURL: '',
        externalAccountBindingRequired: false,
        ...(options.validitySeconds ? { certificateValidityPeriod: options.validitySeconds } : {}),
      },
    };
    fs.writeFileSync(path.join(dir, 'pebble-config.json'), JSON.stringify(config));
    // PEBBLE_VA_NOSLEEP: no random wait before each validation.
    pebble = spawn('pebble', ['-config', path.join(dir, 'pebble-config.json'), '-dnsserver', `127.0.0.1:${dnsPort}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, PEBBLE_VA_NOSLEEP: '1' },
    });
    capture(pebble);
    await waitUntil('pebble answers', async () => (await get(`${directory}`, ca)).status === 200, pebble);
  };
  const stopCa = async () => {
    const child = pebble;
    pebble = undefined;
    if (child) await stopChild(child);
  };
  const stopAll = async () => {
    await stopCa();
    if (challtestsrv) await stopChild(challtestsrv);
  };
  return {
    directory,
    caFile,
    listener: { certFile: path.join(dir, 'cert.pem'), keyFile: path.join(dir, 'key.pem') },
    start: async (first) => {
      try {
        challtestsrv = startDns();
        capture(challtestsrv);
        const dns = challtestsrv;
        await waitUntil('pebble-challtestsrv answers', async () => (await post(`http://127.0.0.1:${challPort}/add-a`, { host: 'ready.test.', addresses: ['127.0.0.1'] })) === 200, dns);
        await startCa(first);
      } catch (e) {
        await stopAll();
        throw new Error(`${(e as Error).message}\n${output}`, { cause: e });
      }
    },
    root: async () => (await get(`https://127.0.0.1:${managementPort}/roots/0`, ca)).body,
    setAddress: async (host, address) => {
      const status = await post(`http://127.0.0.1:${challPort}/add-a`, { host: host.endsWith('.') ? host : host + '.', addresses: [address] });
      if (status !== 200) throw new Error(`challtestsrv add-a answered ${status}`);
    },
    stopCa,
    startCa,
    logs: () => output,
    stop: stopAll,
  };
}

/** A CA and a certificate for 127.0.0.1/localhost signed by it, for Pebble's own HTTPS listener. */
function makeListenerCertificate(dir: string): void {
  const at = (f: string) => path.join(dir, f);
  mustRun('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', at('ca.key'), '-out', at('ca.pem'), '-days', '2', '-subj', '/CN=berth test pebble listener CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  mustRun('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', at('key.pem'), '-out', at('leaf.csr'), '-subj', '/CN=localhost']);
  fs.writeFileSync(at('ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n');
  mustRun('openssl', ['x509', '-req', '-in', at('leaf.csr'), '-CA', at('ca.pem'), '-CAkey', at('ca.key'), '-CAcreateserial', '-out', at('cert.pem'), '-days', '2', '-extfile', at('ext.cnf')]);
}

/** `n` different ports that were free a moment ago, below the ephemeral range (freePort). */
export async function freePorts(n: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < n) ports.add(await freePort());
  return [...ports];
}

function get(url: string, ca: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ca, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
  });
}

function post(url: string, body: unknown): Promise<number> {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = (url.startsWith('https') ? https : http).request(url, { method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(data);
  });
}

async function waitUntil(what: string, check: () => Promise<boolean>, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${what}: the process exited with ${child.exitCode}`);
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${what}: not within 20 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGKILL');
    await exited;
  }
}

/**
 * dist/berth serve on `domain` with ACME from a fresh Pebble, both started, and Pebble's root.
 * Either one that started is stopped again when the other fails.
 */
export async function startDaemonWithPebble(domain = 'example.test'): Promise<{ daemon: Daemon; pebble: Pebble; root: string }> {
  const pebble = await preparePebble();
  let daemon: Daemon | undefined;
  try {
    // Pebble first, validating on the ports the daemon will listen on: the daemon's first orders
    // find the CA up, instead of failing and waiting a retry delay (30-60 s) for the next.
    const [httpPort, httpsPort] = await freePorts(2);
    await pebble.start({ httpPort: httpPort!, tlsPort: httpsPort! });
    daemon = await startDaemon({ domain, args: ['--acme-directory', pebble.directory, '--acme-ca-file', pebble.caFile, '--acme-email', `ops@${domain}`, '--http-port', String(httpPort), '--https-port', String(httpsPort)] });
    return { daemon, pebble, root: await pebble.root() };
  } catch (e) {
    await daemon?.stop();
    await pebble.stop();
    throw e;
  }
}
