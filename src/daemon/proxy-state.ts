// The proxy's side of the link to the control plane: applies what it sends (routes, per-app
// settings, certificates, challenge answers, each replaced whole) to the edge server and the
// in-memory certificate stores, and answers drains. The proxy process feeds it from its IPC
// channel; a test can wire a ProxyLink to it directly, in one process.
import { log } from '../log.ts';
import type { EdgeServer } from '../proxy/edge-server.ts';
import { RouteTable } from '../proxy/route-table.ts';
import type { AcmeChallenges } from '../proxy/tls/acme-challenges.ts';
import { parseCertificateBundle, type CertificateBundle } from '../proxy/tls/certificate.ts';
import type { CertificateSource, ServedPem, SniCache } from '../proxy/tls/sni-cache.ts';
import type { FromProxy, ToProxy } from './messages.ts';

export interface ProxyStateReceiverDeps {
  edge: EdgeServer;
  certificates: SniCache;
  challenges: AcmeChallenges;
  /** Sends an answer (a drain's report) back to the control plane. */
  answer(message: FromProxy): void;
  /** Called when the control plane has sent its whole state. */
  synced(): void;
}

export class ProxyStateReceiver {
  readonly #deps: ProxyStateReceiverDeps;
  /** Certificates parsed once each: a resend of the same PEM reuses them (and their TLS contexts). */
  #parsed = new Map<string, CertificateBundle>();

  constructor(deps: ProxyStateReceiverDeps) {
    this.#deps = deps;
  }

  apply(message: ToProxy): void {
    const { edge, challenges } = this.#deps;
    switch (message.t) {
      case 'routes': {
        let table = RouteTable.empty();
        for (const route of message.routes) table = table.withApp(route.app, route.hostnames, route.targets, route.standby ?? []);
        edge.swap(table);
        return;
      }
      case 'settings':
        edge.setAppSettings(new Map(message.settings));
        return;
      case 'certificates':
        this.#replaceCertificates(message.certificates);
        return;
      case 'challenges':
        challenges.replace(message.challenges);
        return;
      case 'synced':
        this.#deps.synced();
        return;
      case 'drain':
        void edge.drain(message.targets, { deadlineMs: message.deadlineMs, reason: message.reason }).then((report) => {
          this.#deps.answer({ t: 'drained', id: message.id, report });
        });
        return;
    }
  }

  #replaceCertificates(list: readonly ServedPem[]): void {
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
    this.#deps.certificates.replace(entries);
  }
}
