// The application layer as the daemon's commands and SSH see it: one service per concern, built
// complete in the composition root around the one per-app lock.
import type { ProcessStatus, UpgradeRequest } from '../daemon/messages.ts';
import type { UpgradeResult } from '../daemon/supervisor.ts';
import type { Orchestrator } from '../orchestrator/orchestrator.ts';
import type { CertificateManager } from '../proxy/tls/certificate-manager.ts';
import type { AppLock } from './app-lock.ts';
import { AppService } from './app-service.ts';
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
  /** Backing services (postgres, redis): create, link, restart, destroy ... */
  services: ServiceService;
  /** HTTPS certificates: reports, automatic ones on or off, custom ones. */
  certificates: CertificateManager;
  /** berth's own processes (supervisor, proxy, control): `berth status`. */
  daemonStatus(): Promise<ProcessStatus[]>;
  /** `upgrade` over SSH: the supervisor replaces the proxy and this control plane by a new binary's. */
  upgrade(request: UpgradeRequest, progress: (line: string) => void): Promise<UpgradeResult>;
}

export function createPlatform(deps: { state: State; locks: AppLock; orchestrator: Orchestrator; certificates: CertificateManager; daemonStatus: () => Promise<ProcessStatus[]>; upgrade: Platform['upgrade'] }): Platform {
  return {
    apps: new AppService(deps),
    releases: new ReleaseService(deps),
    processes: new ProcessService(deps),
    services: new ServiceService(deps),
    certificates: deps.certificates,
    daemonStatus: deps.daemonStatus,
    upgrade: deps.upgrade,
  };
}
