// What a client connection and its exchanges need from the edge server that accepted them.
import type { AppProxySettings } from '../state/proxy-settings.ts';
import type { ProxyMetrics } from '../metrics/proxy-metrics.ts';
import type { AccessLog } from './access-log.ts';
import type { ClientConnection } from './client-connection.ts';
import type { LoadBalancer, TargetRegistry } from './load-balancer.ts';
import type { ClientLimits } from './proxy-settings.ts';
import type { PolicySources } from './request-policy.ts';

export interface ProxyContext extends PolicySources {
  readonly limits: ClientLimits;
  readonly targets: TargetRegistry;
  readonly balancer: LoadBalancer;
  readonly accessLog: AccessLog | undefined;
  /** Counts requests, upstream errors and retries; none when absent. */
  readonly metrics?: ProxyMetrics | undefined;
  /** True while the server stops: answers say `Connection: close`, idle connections close. */
  readonly draining: boolean;
  connectionClosed(conn: ClientConnection): void;
}
