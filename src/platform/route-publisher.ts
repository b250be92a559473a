// Publishes an app's routes to the edge proxy: the host names come from the domain store when
// the routes are swapped, a renamed app's old routes give up its domains in the same swap, and
// certificates follow the host names. The edge is the EdgeServer itself when the proxy runs in
// this process (tests), or the link to the proxy process (daemon/proxy-link.ts).
import { OWN_ROUTE_PREFIX, type RouteTable, type Target } from '../proxy/route-table.ts';
import type { DrainReport } from '../proxy/edge-server.ts';
import type { CertificateManager } from '../proxy/tls/certificate-manager.ts';
import type { RoutePublisher } from '../orchestrator/deployment.ts';
import type { AppStore } from '../state/app-store.ts';
import type { DomainStore } from '../state/domain-store.ts';
import { log } from '../log.ts';

/** The route name of berth's own host (berth.DOMAIN), in a slot no app name can take. */
export const OWN_ROUTE = `${OWN_ROUTE_PREFIX}dashboard`;

/** What the publisher needs of the proxy: its live routes, the one swap, and drains of old targets. */
export interface RouteSink {
  readonly routes: RouteTable;
  swap(next: RouteTable): void;
  drain(targets: readonly Target[], options: { deadlineMs: number; reason?: string }): Promise<DrainReport>;
}

export class EdgeRoutePublisher implements RoutePublisher {
  readonly #edge: RouteSink;
  readonly #apps: AppStore;
  readonly #domains: DomainStore;
  readonly #certificates: CertificateManager;

  constructor(deps: { edge: RouteSink; apps: AppStore; domains: DomainStore; certificates: CertificateManager }) {
    this.#edge = deps.edge;
    this.#apps = deps.apps;
    this.#domains = deps.domains;
    this.#certificates = deps.certificates;
  }

  // Host names are read when the routes are swapped, so a domain change made while a deploy
  // runs is not undone by the deploy's earlier copy.
  publish(app: string, _hostnames: string[], targets: Target[], standby: Target[] = []): void {
    const hostnames = this.#domains.hostnames(app);
    // A renamed app's old routes hold its domains until the new name is ready: they go in the
    // same swap that brings the new routes.
    let routes = this.#edge.routes;
    for (const name of hostnames) {
      const holder = routes.lookup(name)?.app;
      if (holder !== undefined && holder !== app && !this.#apps.get(holder)) routes = routes.withoutApp(holder);
    }
    this.#edge.swap(routes.withApp(app, hostnames, targets, standby));
    void this.#certificates.sync();
  }

  unpublish(app: string): void {
    this.#edge.swap(this.#edge.routes.withoutApp(app));
  }

  /**
   * berth's own route: `hostname` (berth.DOMAIN) to its dashboard's listener, under OWN_ROUTE,
   * which no app name can be; without a target, the route goes.
   */
  publishOwn(hostname: string, target: Target | undefined): void {
    this.#edge.swap(target ? this.#edge.routes.withApp(OWN_ROUTE, [hostname], [target]) : this.#edge.routes.withoutApp(OWN_ROUTE));
  }

  routed(app: string): readonly Target[] {
    return this.#edge.routes.route(app)?.targets ?? [];
  }

  standby(app: string): readonly Target[] {
    return this.#edge.routes.route(app)?.standby ?? [];
  }

  drain(targets: readonly Target[], options: { deadlineMs: number; reason: string }): ReturnType<RoutePublisher['drain']> {
    return this.#edge.drain(targets, options);
  }

  /** After a change of an app's domains: its routes again with the new host names, and certificates for them. */
  domainsChanged(app: string, forgotten: boolean): void {
    const route = this.#edge.routes.route(app);
    if (route) {
      try {
        this.publish(app, this.#domains.hostnames(app), [...route.targets], [...route.standby]);
      } catch (e) {
        log.error('domains_republish_failed', { app, error: e });
      }
    }
    // A destroyed app's certificates are forgotten by its destroy, which syncs then.
    if (!forgotten) void this.#certificates.sync();
  }
}
