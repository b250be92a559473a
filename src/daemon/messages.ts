// What berth's processes say to each other over their IPC channels (Node's, to and from the
// supervisor): the supervisor relays the control plane's messages to the proxy and the proxy's
// answers back, and asks each process how it is. Plain data only: every message is JSON.
import type { MetricFamily } from '../metrics/registry.ts';
import type { AppProxySettings } from '../state/proxy-settings.ts';
import type { DrainReport } from '../proxy/edge-server.ts';
import type { AppRoute, Target } from '../proxy/route-table.ts';
import type { ChallengeSnapshot } from '../proxy/tls/acme-challenges.ts';
import type { ServedPem } from '../proxy/tls/sni-cache.ts';
import type { UpgradeOptions, UpgradeResult } from './supervisor.ts';

/** What an upgrade request may set; the supervisor fills in the rest. */
export type UpgradeRequest = Partial<UpgradeOptions>;

export type Role = 'supervisor' | 'proxy' | 'control';

/** The file descriptors the supervisor hands its children: the listening sockets, then the IPC channel. */
export const PROXY_FDS = { http: 3, https: 4 } as const;
export const CONTROL_FDS = { ssh: 3 } as const;

/** One line of `berth status`. */
export interface ProcessStatus {
  role: Role;
  pid: number;
  version: string;
  /** Seconds since the process started. */
  uptimeS: number;
  rssBytes: number;
  /** Set by the supervisor for an old process an upgrade is replacing: it finishes its work, then exits. */
  retiring?: boolean;
}

/** What the proxy serves; each message replaces that part whole. */
export type ProxyState =
  | { t: 'routes'; routes: AppRoute[] }
  | { t: 'settings'; settings: Array<[app: string, AppProxySettings]> }
  | { t: 'certificates'; certificates: ServedPem[] }
  | { t: 'challenges'; challenges: ChallengeSnapshot };

/** The control plane to the proxy, relayed by the supervisor. `synced`: the whole state was just sent. */
export type ToProxy = ProxyState | { t: 'synced' } | { t: 'drain'; id: number; targets: Target[]; deadlineMs: number; reason: string };

/** The proxy to the control plane, relayed by the supervisor. */
export type FromProxy = { t: 'drained'; id: number; report: DrainReport };

/** What the control plane tells the supervisor once it serves: the facts of the start-up banner. */
export interface ControlFacts {
  hostKeyFingerprint: string;
  acme: { enabled: boolean; directory: string; email: string };
  noKeys: boolean;
}

/** A child to the supervisor. */
export type FromChild =
  /**
   * The child listens to its IPC channel: messages sent before this could be lost. A control
   * plane's also asks whether it may take over (it listens for SSH already).
   */
  | { t: 'hello' }
  | { t: 'ready'; facts?: ControlFacts }
  | { t: 'status'; id: number; status: ProcessStatus }
  /** Its metrics, asked for a scrape. */
  | { t: 'metrics'; id: number; families: MetricFamily[] }
  | { t: 'status-all'; id: number }
  /** From control: the metrics of every process serving now, as a scrape gets them (the dashboard's charts). */
  | { t: 'metrics-all'; id: number }
  | { t: 'to-proxy'; message: ToProxy }
  | { t: 'to-control'; message: FromProxy }
  /** From control: an admin's `upgrade` over SSH. */
  | { t: 'upgrade'; id: number; request: UpgradeRequest }
  /** From a retiring control: its work is done (it may still relay an upgrade's output to its caller). */
  | { t: 'retired' };

/** The supervisor to a child. */
export type ToChild =
  | { t: 'status'; id: number }
  /** A scrape of the admin listener: answer with this process's metric families. */
  | { t: 'metrics'; id: number }
  | { t: 'status-all'; id: number; processes: ProcessStatus[] }
  | { t: 'metrics-all'; id: number; families: MetricFamily[] }
  /** To control: a proxy (re)started and has nothing; send it everything. */
  | { t: 'resync' }
  /** To control: the proxy went away; its drains are over (the new one has no connections to those targets). */
  | { t: 'proxy-gone' }
  | { t: 'from-control'; message: ToProxy }
  /** To an old proxy, in an upgrade: stop accepting and drain; WebSockets stay until the drain deadline. */
  | { t: 'drain-and-exit' }
  /** To control, in an upgrade: stop accepting, let running pushes and commands finish (up to the deadline), then exit. */
  | { t: 'retire'; deadlineMs: number }
  /** To control, answering its hello: an upgrade's old control plane finishes its work; hold pushes and commands until take-over. */
  | { t: 'hold' }
  /** To control: no other control plane runs; load the state, adopt the containers, then run pushes and commands. */
  | { t: 'take-over' }
  /** To a new proxy: start accepting now, with whatever state it has (the control plane is not there to send it). */
  | { t: 'accept' }
  | { t: 'from-proxy'; message: FromProxy }
  | { t: 'upgrade-step'; id: number; line: string }
  | { t: 'upgrade-result'; id: number; result?: UpgradeResult; error?: { code: string; message: string; hint?: string } };

/** This process's line of `berth status`. */
export function ownStatus(role: Role, version: string): ProcessStatus {
  return { role, pid: process.pid, version, uptimeS: Math.round(process.uptime()), rssBytes: process.memoryUsage.rss() };
}
