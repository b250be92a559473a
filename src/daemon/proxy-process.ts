// The proxy process (`berth __proxy`, started by the supervisor): HTTP and HTTPS on the sockets
// the supervisor handed over, certificates and challenge answers in memory. It serves whatever
// the control plane last sent, and never waits on it: while the control plane is down, it keeps
// serving the last state it received. A new proxy accepts once it has the whole state (or the
// supervisor says there is none to wait for), so it never answers from an empty route table.
import { dataPaths, loadConfig } from '../config.ts';
import { log, setLogLevel } from '../log.ts';
import { addProcessMetrics } from '../metrics/process-metrics.ts';
import { ProxyMetrics } from '../metrics/proxy-metrics.ts';
import { EdgeServer } from '../proxy/edge-server.ts';
import { AcmeChallenges } from '../proxy/tls/acme-challenges.ts';
import { createChallengeResponder, createHttpsRedirect } from '../proxy/tls/https-redirect.ts';
import { handshakeContext, SniCache } from '../proxy/tls/sni-cache.ts';
import { TlsListener } from '../proxy/tls/tls-listener.ts';
import { VERSION } from '../version.ts';
import { IdleCollector } from './idle-collector.ts';
import { ownStatus, PROXY_FDS, type FromChild, type ToChild } from './messages.ts';
import { ProxyStateReceiver } from './proxy-state.ts';
import { exitSoon, untilStopped } from './role-lifecycle.ts';

export async function runProxy(argv: string[]): Promise<number> {
  process.title = 'berth proxy';
  const config = loadConfig(argv);
  setLogLevel(config.logLevel);
  const paths = dataPaths(config.dataDir);
  const send = (message: FromChild) => process.send?.(message);

  const certificates = new SniCache();
  const challenges = new AcmeChallenges();
  const metrics = new ProxyMetrics();
  const stopSampling = addProcessMetrics(metrics.registry, 'proxy');
  const edge = new EdgeServer({ httpPort: config.httpPort, bindHost: config.bindHost, accessLogFile: paths.accessLog, fd: PROXY_FDS.http, metrics });
  metrics.watch(() => edge.activity());
  const tls = new TlsListener({
    port: config.httpsPort,
    bindHost: config.bindHost,
    fd: PROXY_FDS.https,
    handler: edge,
    secureContext: (name, acmeTls) => handshakeContext(certificates, challenges, name, acmeTls),
  });
  edge.setChallengeResponder(createChallengeResponder(challenges));
  edge.setHttpsRedirect(createHttpsRedirect({ hasCertificate: (host) => certificates.lookup(host) !== undefined, httpsPort: () => tls.port }));

  let accept!: () => void;
  const accepting = new Promise<void>((resolve) => (accept = resolve));
  const receiver = new ProxyStateReceiver({
    edge,
    certificates,
    challenges,
    answer: (message) => send({ t: 'to-control', message }),
    synced: () => accept(),
  });
  let retire!: () => void;
  const retiring = new Promise<'retired'>((resolve) => (retire = () => resolve('retired')));
  process.on('message', (message: ToChild) => {
    try {
      if (message.t === 'drain-and-exit') retire();
      if (message.t === 'from-control') receiver.apply(message.message);
      else if (message.t === 'accept') accept();
      else if (message.t === 'status') send({ t: 'status', id: message.id, status: ownStatus('proxy', VERSION) });
      else if (message.t === 'metrics') send({ t: 'metrics', id: message.id, families: metrics.registry.families() });
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
  const collector = new IdleCollector();
  collector.start();
  log.info('proxy_started', { version: VERSION, pid: process.pid, httpPort: edge.httpPort, httpsPort: tls.port });
  const why = await Promise.race([stopped, retiring]);
  log.info('proxy_stopping', { why });
  collector.stop();
  stopSampling();
  // Together: the edge's drain (Connection: close, WebSockets) covers the TLS listener's HTTP/1.1 connections too.
  await Promise.all([tls.stop(), edge.stop({ handover: why === 'retired' })]);
  exitSoon();
  return 0;
}
