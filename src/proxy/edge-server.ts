// The HTTP listener at the edge, and the owner of both front ends: plain HTTP/1.x connections (and
// decrypted HTTP/1.1 ones from the TLS listener) take the fast path (ClientConnection and Exchange:
// berth's own strict HTTP/1.1 framing, pooled upstream connections), HTTP/2 sessions the
// Http2FrontEnd. Both ask the one request policy (request-policy.ts) what to do with each request;
// ACME HTTP-01 challenges are answered there too, from the tokens in memory.
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { listenError } from '../listen-error.ts';
import { log } from '../log.ts';
import { DEFAULT_APP_SETTINGS, type AppProxySettings } from '../state/proxy-settings.ts';
import { AccessLog } from './access-log.ts';
import { ClientConnection } from './client-connection.ts';
import { Http2FrontEnd } from './http2-front-end.ts';
import { LoadBalancer, TargetRegistry } from './load-balancer.ts';
import type { ProxyContext } from './proxy-context.ts';
import { DEFAULT_CLIENT_LIMITS, type ClientLimits } from './proxy-settings.ts';
import { RouteTable, type Target } from './route-table.ts';
import type { ProxyActivity, ProxyMetrics } from '../metrics/proxy-metrics.ts';
import { targetKey, type TargetState } from './target-state.ts';

/** stop(): how long requests in flight get to finish before their connections are cut. */
export const DRAIN_TIMEOUT_MS = 10_000;
/** How often deadlines (header, body, read, idle) are checked: the resolution of every proxy timeout. */
export const SWEEP_INTERVAL_MS = 250;
/**
 * stop() in a handover: how long idle keep-alive connections are left open, so that a client
 * that was about to send its next request gets it answered (with `Connection: close`) instead of
 * a close racing the request on the wire.
 */
export const HANDOVER_IDLE_GRACE_MS = 2_000;
/** For a host name with a certificate, the HTTPS port its plain HTTP requests are redirected to. */
export type HttpsRedirect = (hostname: string) => number | undefined;

/** For the token of an ACME HTTP-01 challenge request, the key authorization to answer with; undefined for a token berth is not solving. */
export type ChallengeResponder = (token: string) => string | undefined;

export interface EdgeServerOptions {
  /** 0 picks a free port (tests); `httpPort` then reports the bound one. */
  httpPort: number;
  /** Default '0.0.0.0'. */
  bindHost?: string;
  /** Default DRAIN_TIMEOUT_MS. */
  drainTimeoutMs?: number;
  /** Overrides of the global client limits (DEFAULT_CLIENT_LIMITS documents each). */
  limits?: Partial<ClientLimits>;
  /** Where the JSON-lines access log goes; none when absent. Opened by start(), closed by stop(). */
  accessLogFile?: string;
  /** Default SWEEP_INTERVAL_MS. */
  sweepIntervalMs?: number;
  /** Bind with SO_REUSEPORT, so several proxy loops (threads or processes) can share the port. Default false. */
  reusePort?: boolean;
  /** A listening socket handed over by the supervisor (its file descriptor): served instead of binding `httpPort`. */
  fd?: number;
  /** Where requests are counted (the proxy process's metrics); none when absent. */
  metrics?: ProxyMetrics;
}

/** What a drain found: see EdgeServer.drain(). */
export interface DrainReport {
  /** How long the drain waited for requests and tunnels to end on their own. */
  waitedMs: number;
  /** HTTP requests still in flight on the drained targets at the deadline (0 when all finished). */
  requestsLeft: number;
  /** Upgraded connections (WebSockets) closed at the deadline. */
  tunnelsClosed: number;
}

export class EdgeServer {
  readonly #port: number;
  readonly #bindHost: string;
  readonly #drainTimeoutMs: number;
  readonly #sweepIntervalMs: number;
  readonly #reusePort: boolean;
  readonly #fd: number | undefined;
  readonly #limits: ClientLimits;
  readonly #accessLogFile: string | undefined;
  #accessLog: AccessLog | undefined;
  #routes: RouteTable = RouteTable.empty();
  #settings: ReadonlyMap<string, AppProxySettings> = new Map();
  #challengeResponder: ChallengeResponder | undefined;
  #httpsRedirect: HttpsRedirect | undefined;
  readonly #targets = new TargetRegistry();
  readonly #balancer = new LoadBalancer(this.#targets);
  readonly #connections = new Set<ClientConnection>();
  readonly #context: ProxyContext;
  readonly #http2: Http2FrontEnd;
  #server: NetServer | undefined;
  #sweep: NodeJS.Timeout | undefined;
  #starting: Promise<void> | undefined;
  #boundPort: number | undefined;
  #draining = false;
  #onQuiet: (() => void) | undefined;
  #stopped: Promise<void> | undefined;

  constructor(options: EdgeServerOptions) {
    this.#port = options.httpPort;
    this.#bindHost = options.bindHost ?? '0.0.0.0';
    this.#drainTimeoutMs = options.drainTimeoutMs ?? DRAIN_TIMEOUT_MS;
    this.#sweepIntervalMs = options.sweepIntervalMs ?? SWEEP_INTERVAL_MS;
    this.#reusePort = options.reusePort ?? false;
    this.#fd = options.fd;
    this.#limits = Object.freeze({ ...DEFAULT_CLIENT_LIMITS, ...options.limits });
    this.#accessLogFile = options.accessLogFile;
    const edge = this;
    this.#context = {
      limits: this.#limits,
      metrics: options.metrics,
      targets: this.#targets,
      balancer: this.#balancer,
      get accessLog() {
        return edge.#accessLog;
      },
      get draining() {
        return edge.#draining;
      },
      routes: () => this.#routes,
      httpsPortFor: (hostname) => this.#httpsRedirect?.(hostname),
      settings: (app) => this.#settings.get(app) ?? DEFAULT_APP_SETTINGS,
      challengeAnswer: (token) => this.#challengeResponder?.(token),
      connectionClosed: (conn) => {
        this.#connections.delete(conn);
        this.#checkQuiet();
      },
    };
    this.#http2 = new Http2FrontEnd(this.#context, () => this.#checkQuiet());
  }

  start(): Promise<void> {
    if (this.#starting) throw new Error('edge server: start() may be called only once');
    this.#starting = this.#start();
    return this.#starting;
  }

  /**
   * Stops accepting, lets requests in flight finish (up to the drain timeout), closes WebSockets
   * with a close frame, then cuts every connection and closes the pools. Safe after a failed or
   * partial start, and idempotent. `handover` (an upgrade, where a new proxy serves beside this
   * one): each keep-alive connection closes after its next response, those still idle after
   * HANDOVER_IDLE_GRACE_MS are closed then, and WebSockets stay open until the drain deadline,
   * then get their close frame.
   */
  stop(options: { handover?: boolean } = {}): Promise<void> {
    this.#stopped ??= this.#stop(options.handover ?? false);
    return this.#stopped;
  }

  /** The bound port once started (so port 0 works), the configured one before. */
  /** What is open now, for the metrics. */
  activity(): ProxyActivity {
    let websockets = 0;
    for (const state of this.#targets.all()) websockets += state.tunnels.size;
    return { connections: this.#connections.size + this.#http2.sessionCount, websockets };
  }

  get httpPort(): number {
    return this.#boundPort ?? this.#port;
  }

  get routes(): RouteTable {
    return this.#routes;
  }

  /**
   * The only way live routing changes: one synchronous assignment, so every request sees one
   * whole table. Requests already in flight finish on the targets they were sent to; see drain().
   */
  swap(next: RouteTable): void {
    this.#routes = next;
    const live = new Set<string>();
    for (const route of next.apps()) for (const target of [...route.targets, ...route.standby]) live.add(targetKey(target));
    this.#targets.prune(live);
  }

  /** Per-app limits (from state/proxy.json), swapped whole; apps not in the map get the defaults. */
  setAppSettings(settings: ReadonlyMap<string, AppProxySettings>): void {
    this.#settings = settings;
  }

  setChallengeResponder(responder: ChallengeResponder | undefined): void {
    this.#challengeResponder = responder;
  }

  /** Plain HTTP requests for a host name this answers for are sent to HTTPS with a 308. */
  setHttpsRedirect(redirect: HttpsRedirect | undefined): void {
    this.#httpsRedirect = redirect;
  }

  /** Serves a decrypted connection whose client chose HTTP/2 (the TLS listener's ALPN). `port` is that listener's port. */
  serveHttp2(socket: Socket, port: number): void {
    if (this.#draining) {
      socket.destroy();
      return;
    }
    this.#http2.serve(socket, port);
  }

  /** Sends GOAWAY to every HTTP/2 session: streams in flight finish, no new ones start. */
  closeHttp2(): void {
    this.#http2.close();
  }

  /**
   * Serves one more client connection on the fast path: how another listener (TLS, once the
   * handshake is done) hands over its decrypted HTTP/1.x sockets. `port` is that listener's port.
   */
  serveConnection(socket: Socket, proto: 'http' | 'https', port: number): void {
    this.#serve(socket, proto, port, false);
  }

  /**
   * Waits until the requests in flight on `targets` have finished, up to `deadlineMs`; then closes
   * their WebSockets (a close frame to each side, "going away") and their pooled connections.
   * Meant for targets already swapped out of the route table, so nothing new starts on them.
   */
  async drain(targets: readonly Target[], options: { deadlineMs: number; reason?: string }): Promise<DrainReport> {
    const states: TargetState[] = [];
    for (const target of targets) {
      const state = this.#targets.find(target);
      if (state) states.push(state);
    }
    const started = Date.now();
    const deadline = started + options.deadlineMs;
    await untilOrDeadline(Promise.all(states.map((s) => s.whenRequestsDone())), deadline);
    // WebSockets have no end of their own: they keep their grace until the deadline.
    if (states.some((s) => s.tunnels.size > 0)) await untilOrDeadline(Promise.all(states.map((s) => s.whenQuiet())), deadline);
    const waitedMs = Date.now() - started;
    let requestsLeft = 0;
    const closing: Promise<void>[] = [];
    for (const state of states) {
      requestsLeft += state.inflight;
      for (const tunnel of state.tunnels) closing.push(tunnel.close(options.reason ?? 'the app is being redeployed'));
    }
    await Promise.all(closing);
    for (const state of states) state.expireIdle(Infinity);
    this.swap(this.#routes);
    log.info('proxy_drained', { targets: states.map((s) => s.id), waitedMs, requestsLeft, tunnelsClosed: closing.length });
    return { waitedMs, requestsLeft, tunnelsClosed: closing.length };
  }

  #serve(socket: Socket, proto: 'http' | 'https', port: number, direct: boolean): void {
    if (this.#draining) {
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    this.#connections.add(new ClientConnection(socket, this.#context, proto, port, direct));
  }

  async #start(): Promise<void> {
    if (this.#accessLogFile) this.#accessLog = await AccessLog.open(this.#accessLogFile);
    // Accepted paused, so the connection can be taken over to read directly (direct-read.ts).
    const server = createNetServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true });
    server.on('connection', (socket: Socket) => this.#serve(socket, 'http', this.httpPort, true));
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      const onError = (e: NodeJS.ErrnoException) => {
        server.off('listening', onListening);
        reject(listenError(e, { what: 'HTTP', address: `${this.#bindHost}:${this.#port}`, flag: '--http-port' }));
      };
      const onListening = () => {
        server.off('error', onError);
        const address = server.address();
        this.#boundPort = address && typeof address === 'object' ? address.port : this.#port;
        resolve();
      };
      server.once('error', onError);
      server.once('listening', onListening);
      if (this.#fd !== undefined) server.listen({ fd: this.#fd });
      else server.listen({ port: this.#port, host: this.#bindHost, reusePort: this.#reusePort });
    });
    server.on('error', (e) => log.error('proxy_listener_error', { port: this.httpPort, error: e }));
    this.#sweep = setInterval(() => this.#sweepDeadlines(), this.#sweepIntervalMs);
    this.#sweep.unref();
    log.info('proxy_listening', { host: this.#bindHost, port: this.httpPort });
  }

  async #stop(handover: boolean): Promise<void> {
    // A stop() that overtakes a pending start() waits for the listener, so it is not left open.
    await this.#starting?.catch(() => undefined);
    const server = this.#server;
    if (server?.listening) {
      this.#draining = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      this.#http2.close();
      let grace: NodeJS.Timeout | undefined;
      if (handover) grace = setTimeout(() => this.#closeIdle(), HANDOVER_IDLE_GRACE_MS);
      else this.#closeIdle();
      // A WebSocket has no request to finish: it is closed cleanly now; its clients reconnect.
      const tunnels: Promise<void>[] = [];
      if (!handover) for (const state of this.#targets.all()) for (const tunnel of state.tunnels) tunnels.push(tunnel.close('the server is shutting down'));
      const quiet = new Promise<void>((resolve) => {
        this.#onQuiet = resolve;
        this.#checkQuiet();
      });
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.#drainTimeoutMs)));
      await Promise.race([Promise.all([quiet, Promise.all(tunnels)]), deadline]);
      clearTimeout(timer);
      clearTimeout(grace);
      if (handover) {
        const closing: Promise<void>[] = [];
        for (const state of this.#targets.all()) for (const tunnel of state.tunnels) closing.push(tunnel.close('the server is being upgraded'));
        await Promise.all(closing);
      }
      for (const conn of this.#connections) conn.destroy();
      for (const state of this.#targets.all()) state.expireIdle(Infinity);
      await closed;
      log.info('proxy_stopped', { port: this.httpPort });
    }
    if (this.#sweep) clearInterval(this.#sweep);
    await this.#http2.destroy();
    await this.#accessLog?.close();
  }

  #closeIdle(): void {
    for (const conn of this.#connections) conn.closeIfIdle();
  }

  #checkQuiet(): void {
    if (this.#connections.size === 0 && this.#http2.sessionCount === 0) this.#onQuiet?.();
  }

  #sweepDeadlines(): void {
    // Every proxy deadline is on the monotonic clock of performance.now().
    const now = performance.now();
    for (const conn of this.#connections) conn.checkDeadline(now);
    this.#http2.checkDeadlines(now);
    this.#targets.expireIdle(now);
  }
}

/** Waits for `done`, or until the clock reaches `deadline` (ms since the epoch), whichever comes first. */
async function untilOrDeadline(done: Promise<unknown>, deadline: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(0, deadline - Date.now()))));
  await Promise.race([done, late]);
  clearTimeout(timer);
}
