// What a client connection and its exchanges need from the edge server that accepted them.
import type { AppProxySettings } from '../state/proxy-settings.ts';
import type { AccessLog } from './access-log.ts';
import type { ClientConnection } from './client-connection.ts';
import type { RequestHead } from './http1-head.ts';
import type { LoadBalancer, TargetRegistry } from './load-balancer.ts';
import type { ClientLimits } from './proxy-settings.ts';
import type { RouteTable } from './route-table.ts';

export interface ProxyContext {
  readonly limits: ClientLimits;
  readonly targets: TargetRegistry;
  readonly balancer: LoadBalancer;
  readonly accessLog: AccessLog | undefined;
  /** True while the server stops: answers say `Connection: close`, idle connections close. */
  readonly draining: boolean;
  /** The live route table; an exchange reads it once, when its request head is complete. */
  routes(): RouteTable;
  /** For a plain HTTP request to a host name with a certificate: the HTTPS port to redirect to. */
  httpsPortFor(hostname: string): number | undefined;
  settings(app: string): AppProxySettings;
  /**
   * Offers a parsed request to another handler (the ACME challenge responder) before routing.
   * Returns true when that handler took the connection; `raw` is every byte read so far.
   */
  takeOver(conn: ClientConnection, head: RequestHead, raw: Buffer): boolean;
  connectionClosed(conn: ClientConnection): void;
}
