// The proxy process (`berth __proxy`, started by the supervisor): HTTP and HTTPS on the sockets
// the supervisor handed over, certificates and challenge answers in memory. It serves whatever
// the control plane last sent, and never waits on it: while the control plane is down, it keeps
// serving the last state it received. A new proxy accepts once it has the whole state (or the
// supervisor says there is none to wait for), so it never answers from an empty route table.
import { dataPaths, loadConfig } from '../config.ts';
import { log, setLogLevel } from '../log.ts';
import { EdgeServer } from '../proxy/edge-server.ts';
import { RouteTable } from '../proxy/route-table.ts';
import { AcmeChallenges } from '../proxy/tls/acme-challenges.ts';
import { parseCertificateBundle, type CertificateBundle } from '../proxy/tls/certificate.ts';
import { createChallengeResponder, createHttpsRedirect } from '../proxy/tls/https-redirect.ts';
import { handshakeContext, SniCache, type CertificateSource, type ServedPem } from '../proxy/tls/sni-cache.ts';
import { TlsListener } from '../proxy/tls/tls-listener.ts';
import { VERSION } from '../version.ts';
import { ownStatus, PROXY_FDS, type FromChild, type ToChild, type ToProxy } from './messages.ts';
import { exitSoon, untilStopped } from './role-lifecycle.ts';

export async function runProxy(argv: string[]): Promise<number> {
  process.title = 'berth proxy';
  const config = loadConfig(argv);
  setLogLevel(config.logLevel);
  const paths = dataPaths(config.dataDir);
  const send = (message: FromChild) => process.send?.(message);

  const certificates = new SniCache();
  const challenges = new AcmeChallenges();
  const edge = new EdgeServer({ httpPort: config.httpPort, bindHost: config.bindHost, accessLogFile: paths.accessLog, fd: PROXY_FDS.http });
  const tls = new TlsListener({
    port: config.httpsPort,
    bindHost: config.bindHost,
    fd: PROXY_FDS.https,
    handler: edge,
    secureContext: (name, acmeTls) => handshakeContext(certificates, challenges, name, acmeTls),
  });
  edge.setChallengeResponder(createChallengeResponder(challenges));
  edge.setHttpsRedirect(createHttpsRedirect({ hasCertificate: (host) => certificates.lookup(host) !== undefined, httpsPort: () => tls.port }));
  const served = new ServedCertificates(certificates);

  let accept!: () => void;
  const accepting = new Promise<void>((resolve) => (accept = resolve));
  const apply = (message: ToProxy) => {
    switch (message.t) {
      case 'synced':
        accept();
        return;
      case 'routes': {
        let table = RouteTable.empty();
        for (const route of message.routes) table = table.withApp(route.app, route.hostnames, route.targets);
        edge.swap(table);
        return;
      }
      case 'settings':
        edge.setAppSettings(new Map(message.settings));
        return;
      case 'certificates':
        served.replace(message.certificates);
        return;
      case 'challenges':
        challenges.replace(message.challenges);
        return;
      case 'drain':
        void edge.drain(message.targets, { deadlineMs: message.deadlineMs, reason: message.reason }).then((report) => {
          send({ t: 'to-control', message: { t: 'drained', id: message.id, report } });
        });
        return;
    }
  };
  let retire!: () => void;
  const retiring = new Promise<'retired'>((resolve) => (retire = () => resolve('retired')));
  process.on('message', (message: ToChild) => {
    try {
      if (message.t === 'drain-and-exit') retire();
      if (message.t === 'from-control') apply(message.message);
      else if (message.t === 'accept') accept();
      else if (message.t === 'status') send({ t: 'status', id: message.id, status: ownStatus('proxy', VERSION) });
    } catch (e) {
      log.error('proxy_message_failed', { message: message.t, error: e });
    }
  });

  const stopped = untilStopped();
  send({ t: 'hello' });
  const early = await Promise.race([accepting.then(() => undefined), stopped]);
  if (early !== undefined) {
    exitSoon();
    return 0;
  }
  try {
    await edge.start();
    await tls.start();
  } catch (e) {
    await tls.stop();
    await edge.stop();
    exitSoon();
    throw e;
  }
  send({ t: 'ready' });
  log.info('proxy_started', { version: VERSION, pid: process.pid, httpPort: edge.httpPort, httpsPort: tls.port });
  const why = await Promise.race([stopped, retiring]);
  log.info('proxy_stopping', { why });
  // Together: the edge's drain (Connection: close, WebSockets) covers the TLS listener's HTTP/1.1 connections too.
  await Promise.all([tls.stop(), edge.stop({ handover: why === 'retired' })]);
  exitSoon();
  return 0;
}

/** The certificates the control plane sends, parsed once each: a resend of the same PEM reuses them. */
class ServedCertificates {
  readonly #cache: SniCache;
  #parsed = new Map<string, CertificateBundle>();

  constructor(cache: SniCache) {
    this.#cache = cache;
  }

  replace(list: readonly ServedPem[]): void {
    const parsed = new Map<string, CertificateBundle>();
    const entries = new Map<string, { bundle: CertificateBundle; source: CertificateSource }>();
    for (const { name, certPem, keyPem, source } of list) {
      const key = certPem + keyPem;
      let bundle = parsed.get(key) ?? this.#parsed.get(key);
      if (!bundle) {
        try {
          bundle = parseCertificateBundle(certPem, keyPem);
        } catch (e) {
          log.error('proxy_certificate_unusable', { name, error: e });
          continue;
        }
      }
      parsed.set(key, bundle);
      entries.set(name, { bundle, source });
    }
    this.#parsed = parsed;
    this.#cache.replace(entries);
  }
}
