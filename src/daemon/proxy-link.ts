// The control plane's side of the proxy process: it keeps what the proxy should serve (routes,
// per-app settings, certificates, challenge answers) and sends each part whole when it changes,
// everything when a proxy (re)starts; drains of old targets are a request and an answer. Sending
// never waits: a proxy that is down gets everything again when it is back. Nothing is sent before
// goLive() (once containers are adopted): until then the proxy keeps serving what the previous
// control plane sent it.
import type { DrainReport } from '../proxy/edge-server.ts';
import { RouteTable, type Target } from '../proxy/route-table.ts';
import type { AcmeChallenges } from '../proxy/tls/acme-challenges.ts';
import type { SniCache } from '../proxy/tls/sni-cache.ts';
import type { RouteSink } from '../platform/route-publisher.ts';
import type { AppProxySettings } from '../state/proxy-settings.ts';
import type { FromProxy, ToProxy } from './messages.ts';

export interface ProxyLinkSources {
  settings(): ReadonlyMap<string, AppProxySettings>;
  certificates: SniCache;
  challenges: AcmeChallenges;
}

export class ProxyLink implements RouteSink {
  readonly #send: (message: ToProxy) => void;
  #sources: ProxyLinkSources | undefined;
  #routes = RouteTable.empty();
  #live = false;
  #nextDrain = 1;
  readonly #drains = new Map<number, { resolve: (report: DrainReport) => void; started: number }>();

  constructor(send: (message: ToProxy) => void) {
    this.#send = send;
  }

  /** Where settings, certificates and challenges come from; each change of one is sent. */
  attach(sources: ProxyLinkSources): void {
    this.#sources = sources;
    sources.certificates.onReplace(() => this.#sendCertificates());
    sources.challenges.onChange(() => this.#sendChallenges());
  }

  get routes(): RouteTable {
    return this.#routes;
  }

  swap(next: RouteTable): void {
    this.#routes = next;
    if (this.#live) this.#sendRoutes();
  }

  settingsChanged(): void {
    const settings = this.#sources?.settings();
    if (settings && this.#live) this.#send({ t: 'settings', settings: [...settings] });
  }

  /** From now on the proxy gets this control plane's state: everything now, then every change. */
  goLive(): void {
    this.#live = true;
    this.sendAll();
  }

  drain(targets: readonly Target[], options: { deadlineMs: number; reason?: string }): Promise<DrainReport> {
    const id = this.#nextDrain++;
    return new Promise((resolve) => {
      this.#drains.set(id, { resolve, started: Date.now() });
      this.#send({ t: 'drain', id, targets: [...targets], deadlineMs: options.deadlineMs, reason: options.reason ?? 'the app is being redeployed' });
    });
  }

  /** Everything, for a proxy that has just started (once live; before, goLive() sends it). */
  sendAll(): void {
    if (!this.#live) return;
    this.#sendRoutes();
    this.settingsChanged();
    this.#sendCertificates();
    this.#sendChallenges();
    this.#send({ t: 'synced' });
  }

  /** An answer from the proxy. */
  receive(message: FromProxy): void {
    if (message.t !== 'drained') return;
    const drain = this.#drains.get(message.id);
    this.#drains.delete(message.id);
    drain?.resolve(message.report);
  }

  /** The proxy went away: the connections its drains waited for went with it. */
  proxyGone(): void {
    for (const [id, drain] of this.#drains) {
      this.#drains.delete(id);
      drain.resolve({ waitedMs: Date.now() - drain.started, requestsLeft: 0, tunnelsClosed: 0 });
    }
  }

  #sendRoutes(): void {
    this.#send({ t: 'routes', routes: [...this.#routes.apps()] });
  }

  #sendCertificates(): void {
    if (this.#sources && this.#live) this.#send({ t: 'certificates', certificates: this.#sources.certificates.servedPem() });
  }

  #sendChallenges(): void {
    if (this.#sources && this.#live) this.#send({ t: 'challenges', challenges: this.#sources.challenges.snapshot() });
  }
}
