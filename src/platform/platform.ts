// The application layer as the daemon's commands and SSH see it: one service per concern, built
// complete in the composition root around the one per-app lock.
import type { ProcessStatus, UpgradeRequest } from '../daemon/messages.ts';
import type { UpgradeResult } from '../daemon/supervisor.ts';
import type { KeyRecord } from '../git/key-store.ts';
import type { Orchestrator } from '../orchestrator/orchestrator.ts';
import type { Swarm } from '../orchestrator/swarm.ts';
import type { CertificateManager } from '../proxy/tls/certificate-manager.ts';
import type { AppLock } from './app-lock.ts';
import { AppService } from './app-service.ts';
import { DeployFeeds } from './deploy-feeds.ts';
import { NodeService, type NodeMover } from './node-service.ts';
import { ProcessService } from './process-service.ts';
import { ReleaseService } from './release-service.ts';
import { ServiceService } from './service-service.ts';
import type { State } from './state.ts';

export interface Platform {
  /** Create, rename, destroy. */
  apps: AppService;
  /** Pushes, image deploys, config changes, rollbacks, and their output. */
  releases: ReleaseService;
  /** Scale, restart, stop, start, limits and mounts; report, checks, logs, one-offs. */
  processes: ProcessService;
  /** The output of each app's running push or deploy, for watchers other than the pusher (the dashboard). */
  deploys: DeployFeeds;
  /** One-time login links to the dashboard; undefined when it is off (--dashboard-listen off). */
  dashboard: DashboardLogin | undefined;
  /** Backing services (postgres, redis): create, link, restart, destroy ... */
  services: ServiceService;
  /** HTTPS certificates: reports, automatic ones on or off, custom ones. */
  certificates: CertificateManager;
  /** The Swarm's machines (--scheduler swarm): list, join command, labels, drain, activate. */
  nodes: NodeService;
  /** berth's own processes (supervisor, proxy, control): `berth status`. */
  daemonStatus(): Promise<ProcessStatus[]>;
  /** `upgrade` over SSH: the supervisor replaces the proxy and this control plane by a new binary's. */
  upgrade(request: UpgradeRequest, progress: (line: string) => void): Promise<UpgradeResult>;
}

/** What the `dashboard` command asks of the dashboard (src/dashboard implements it). */
export interface DashboardLogin {
  /**
   * A one-time login link for `key` (undefined: the local operator, an admin): the URLs that
   * carry it (the public HTTPS one first, once berth.DOMAIN's certificate is served; `local`, or no
   * certificate, adds the admin listener's), when it expires, and notes to print first (why
   * there is no public link, the SSH tunnel that reaches the admin listener).
   */
  link(key: KeyRecord | undefined, options: { local: boolean }): { urls: string[]; expiresAt: Date; notes: string[] };
}

export function createPlatform(deps: {
  state: State;
  locks: AppLock;
  orchestrator: Orchestrator;
  certificates: CertificateManager;
  daemonStatus: () => Promise<ProcessStatus[]>;
  upgrade: Platform['upgrade'];
  dashboard?: DashboardLogin;
  /** The Swarm apps run on (--scheduler swarm); undefined on the docker scheduler. */
  swarm?: Swarm;
  /** Moves dynos off a node being drained (the deploy path on Swarm). */
  nodeMover?: NodeMover;
}): Platform {
  const deploys = new DeployFeeds();
  return {
    apps: new AppService(deps),
    releases: new ReleaseService({ ...deps, deploys }),
    deploys,
    dashboard: deps.dashboard,
    processes: new ProcessService({ ...deps, deploys }),
    services: new ServiceService(deps),
    certificates: deps.certificates,
    nodes: new NodeService({ swarm: deps.swarm, mover: deps.nodeMover, services: () => deps.state.services.list().map((r) => `${r.kind}/${r.name}`) }),
    daemonStatus: deps.daemonStatus,
    upgrade: deps.upgrade,
  };
}
