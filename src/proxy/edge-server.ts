// The HTTP listener at the edge. Plain HTTP/1.x connections take the fast path (ClientConnection
// and Exchange: berth's own strict HTTP/1.1 framing, pooled upstream connections, least-connections
// balancing, passive health); requests under /.well-known/acme-challenge/ are handed, with their
// connection, to a node:http server that asks the challenge responder and otherwise forwards
// through the Forwarder (the node:http-shaped path, also usable by other front ends).
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { UserError, wrapError } from '../errors.ts';
import { log } from '../log.ts';
import { AccessLog } from './access-log.ts';
import { ClientConnection } from './client-connection.ts';
import { sendErrorPage, sendRawErrorPage, type ErrorStatus } from './error-pages.ts';
import { stripPort } from './exchange.ts';
import { UndiciForwarder, type ForwardInfo, type Forwarder } from './forwarder.ts';
import type { RequestHead } from './http1-head.ts';
import { LoadBalancer, TargetRegistry } from './load-balancer.ts';
import type { ProxyContext } from './proxy-context.ts';
import { DEFAULT_APP_SETTINGS, DEFAULT_CLIENT_LIMITS, type AppProxySettings, type ClientLimits } from './proxy-settings.ts';
import { RouteTable, normaliseHostname, type Target } from './route-table.ts';
import { targetKey, type TargetState } from './target-state.ts';

/** stop(): how long requests in flight get to finish before their connections are cut. */
export const DRAIN_TIMEOUT_MS = 10_000;
/** How often deadlines (header, body, read, idle) are checked: the resolution of every proxy timeout. */
export const SWEEP_INTERVAL_MS = 250;
/** The path prefix handed to the challenge responder (ACME HTTP-01). */
export const CHALLENGE_PREFIX = '/.well-known/acme-challenge/';

/** The listener a request arrived on: the HTTP one, or another that hands its requests over (TLS). */
export interface Via {
  proto: ForwardInfo['proto'];
  port: number;
}

/** For a host name with a certificate, the HTTPS port its plain HTTP requests are redirected to. */
export type HttpsRedirect = (hostname: string) => number | undefined;

/** Given challenge requests (under CHALLENGE_PREFIX) first; returns true when it answered. */
export type ChallengeResponder = (req: IncomingMessage, res: ServerResponse) => boolean;

export interface EdgeServerOptions {
  /** 0 picks a free port (tests); `httpPort` then reports the bound one. */
  httpPort: number;
  /** Default '0.0.0.0'. */
  bindHost?: string;
  /** The node:http-shaped forwarding path. Default: a new UndiciForwarder with its documented defaults. Closed by stop(). */
  forwarder?: Forwarder;
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
  /** Made on first use: only the node:http path needs it. */
  #forwarder: Forwarder | undefined;
  readonly #drainTimeoutMs: number;
  readonly #sweepIntervalMs: number;
  readonly #reusePort: boolean;
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
  /** Upgraded connections of the node:http path, which stop() closes from here. */
  readonly #compatTunnels = new Set<Duplex>();
  readonly #context: ProxyContext;
  #server: NetServer | undefined;
  #fallback: HttpServer | undefined;
  #sweep: NodeJS.Timeout | undefined;
  #starting: Promise<void> | undefined;
  #boundPort: number | undefined;
  #draining = false;
  #onQuiet: (() => void) | undefined;
  #stopped: Promise<void> | undefined;

  constructor(options: EdgeServerOptions) {
    this.#port = options.httpPort;
    this.#bindHost = options.bindHost ?? '0.0.0.0';
    this.#forwarder = options.forwarder;
    this.#drainTimeoutMs = options.drainTimeoutMs ?? DRAIN_TIMEOUT_MS;
    this.#sweepIntervalMs = options.sweepIntervalMs ?? SWEEP_INTERVAL_MS;
    this.#reusePort = options.reusePort ?? false;
    this.#limits = Object.freeze({ ...DEFAULT_CLIENT_LIMITS, ...options.limits });
    this.#accessLogFile = options.accessLogFile;
    const edge = this;
    this.#context = {
      limits: this.#limits,
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
      takeOver: (conn, head, raw) => this.#takeOver(conn, head, raw),
      connectionClosed: (conn) => {
        this.#connections.delete(conn);
        if (this.#connections.size === 0) this.#onQuiet?.();
      },
    };
  }

  start(): Promise<void> {
    if (this.#starting) throw new Error('edge server: start() may be called only once');
    this.#starting = this.#start();
    return this.#starting;
  }

  /**
   * Stops accepting, lets requests in flight finish (up to the drain timeout), closes WebSockets
   * with a close frame, then cuts every connection and closes the pools. Safe after a failed or
   * partial start, and idempotent.
   */
  stop(): Promise<void> {
    this.#stopped ??= this.#stop();
    return this.#stopped;
  }

  /** The bound port once started (so port 0 works), the configured one before. */
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

  /** Routes and forwards a request from another front end (HTTP/2 on the TLS listener). */
  handleRequest(req: IncomingMessage, res: ServerResponse, via: Via): void {
    this.#onRequest(req, res, via);
  }

  /** Routes and forwards an upgrade from another front end. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, via: Via): void {
    this.#onUpgrade(req, socket, head, via);
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
        reject(listenError(e, this.#bindHost, this.#port));
      };
      const onListening = () => {
        server.off('error', onError);
        const address = server.address();
        this.#boundPort = address && typeof address === 'object' ? address.port : this.#port;
        resolve();
      };
      server.once('error', onError);
      server.once('listening', onListening);
      server.listen({ port: this.#port, host: this.#bindHost, reusePort: this.#reusePort });
    });
    server.on('error', (e) => log.error('proxy_listener_error', { port: this.httpPort, error: e }));
    this.#sweep = setInterval(() => this.#sweepDeadlines(), this.#sweepIntervalMs);
    this.#sweep.unref();
    log.info('proxy_listening', { host: this.#bindHost, port: this.httpPort });
  }

  async #stop(): Promise<void> {
    // A stop() that overtakes a pending start() waits for the listener, so it is not left open.
    await this.#starting?.catch(() => undefined);
    const server = this.#server;
    if (server?.listening) {
      this.#draining = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      const fallback = this.#fallback;
      fallback?.close();
      fallback?.closeIdleConnections();
      for (const conn of this.#connections) conn.closeIfIdle();
      // A WebSocket has no request to finish: it is closed cleanly now; its clients reconnect.
      const tunnels: Promise<void>[] = [];
      for (const state of this.#targets.all()) for (const tunnel of state.tunnels) tunnels.push(tunnel.close('the server is shutting down'));
      for (const socket of this.#compatTunnels) socket.destroy();
      const quiet = new Promise<void>((resolve) => {
        this.#onQuiet = resolve;
        if (this.#connections.size === 0) resolve();
      });
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.#drainTimeoutMs)));
      await Promise.race([Promise.all([quiet, Promise.all(tunnels)]), deadline]);
      clearTimeout(timer);
      for (const conn of this.#connections) conn.destroy();
      fallback?.closeAllConnections();
      for (const state of this.#targets.all()) state.expireIdle(Infinity);
      await closed;
      log.info('proxy_stopped', { port: this.httpPort });
    }
    if (this.#sweep) clearInterval(this.#sweep);
    await this.#accessLog?.close();
    await this.#forwarder?.close();
  }

  #sweepDeadlines(): void {
    // Every proxy deadline is on the monotonic clock of performance.now().
    const now = performance.now();
    for (const conn of this.#connections) conn.checkDeadline(now);
    this.#targets.expireIdle(now);
  }

  /** Challenge requests leave the fast path: their connection goes to a node:http server for good. */
  #takeOver(conn: ClientConnection, head: RequestHead, raw: Buffer): boolean {
    if (!this.#challengeResponder || !head.path.startsWith(CHALLENGE_PREFIX)) return false;
    const socket = conn.detach();
    socket.pause();
    const rest = conn.takeBuffered();
    socket.unshift(rest ? Buffer.concat([raw, rest]) : raw);
    this.#fallbackServer().emit('connection', socket);
    // node:http reads the socket's handle directly; what was unshifted still flows through 'data'.
    socket.resume();
    return true;
  }

  #fallbackServer(): HttpServer {
    if (this.#fallback) return this.#fallback;
    const server = createHttpServer({ headersTimeout: this.#limits.headerTimeout, requestTimeout: 0 });
    server.keepAliveTimeout = 5_000;
    server.on('request', (req: IncomingMessage, res: ServerResponse) => this.#onRequest(req, res));
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.#onUpgrade(req, socket, head));
    this.#fallback = server;
    return server;
  }

  // --- the node:http-shaped path --------------------------------------------------------------

  #compatForwarder(): Forwarder {
    this.#forwarder ??= new UndiciForwarder();
    return this.#forwarder;
  }

  #onRequest(req: IncomingMessage, res: ServerResponse, via: Via = { proto: 'http', port: this.httpPort }): void {
    // Tell a client that arrives while stopping not to reuse the connection (HTTP/2 has no such header).
    if (this.#draining && req.httpVersionMajor < 2) res.setHeader('connection', 'close');
    const responder = via.proto === 'http' ? this.#challengeResponder : undefined;
    if (responder) {
      try {
        if (responder(req, res)) return;
      } catch (e) {
        log.error('proxy_challenge_error', { host: req.headers.host, error: e });
        sendErrorPage(req, res, 500, 'The certificate challenge could not be answered.');
        return;
      }
    }
    // A connection handed over for a challenge stays here: its next requests are redirected too.
    if (via.proto === 'http' && this.#redirectToHttps(req, res)) return;
    const resolved = this.#resolve(req, via);
    if ('status' in resolved) {
      sendErrorPage(req, res, resolved.status, resolved.detail);
      return;
    }
    const target = resolved.state;
    target.begin();
    res.once('close', () => target.end());
    try {
      this.#compatForwarder().web(req, res, resolved.target, resolved.info);
    } catch (e) {
      log.error('proxy_forward_error', { app: resolved.info.app, target: resolved.target.id, error: e });
      sendErrorPage(req, res, 502, 'The app behind this address could not be reached.');
    }
  }

  #redirectToHttps(req: IncomingMessage, res: ServerResponse): boolean {
    const host = requestHost(req);
    if (!this.#httpsRedirect || host === undefined || req.url === undefined || isChallenge(req.url)) return false;
    const hostname = normaliseHostname(stripPort(host));
    const port = this.#httpsRedirect(hostname);
    if (port === undefined) return false;
    const path = req.url.startsWith('/') ? req.url : URL.canParse(req.url) ? new URL(req.url).pathname + new URL(req.url).search : undefined;
    if (path === undefined) return false;
    const location = `https://${hostname}${port === 443 ? '' : `:${port}`}${path}`;
    const body = `Moved to ${location}\n`;
    res.writeHead(308, { location, 'content-type': 'text/plain; charset=utf-8', 'content-length': String(Buffer.byteLength(body)), 'cache-control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : body);
    return true;
  }

  #onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, via: Via = { proto: 'http', port: this.httpPort }): void {
    // A socket without an error listener would take the whole process down with it.
    socket.on('error', () => socket.destroy());
    this.#compatTunnels.add(socket);
    socket.once('close', () => this.#compatTunnels.delete(socket));
    if (this.#draining) {
      sendRawErrorPage(socket, 503, 'This server is shutting down. Try again in a moment.');
      return;
    }
    const resolved = this.#resolve(req, via);
    if ('status' in resolved) {
      sendRawErrorPage(socket, resolved.status, resolved.detail);
      return;
    }
    try {
      this.#compatForwarder().upgrade(req, socket, head, resolved.target, resolved.info);
    } catch (e) {
      log.error('proxy_forward_error', { app: resolved.info.app, target: resolved.target.id, error: e });
      sendRawErrorPage(socket, 502, 'The app behind this address could not be reached.');
    }
  }

  #resolve(req: IncomingMessage, via: Via): Resolved | Refused {
    const host = requestHost(req);
    if (host === undefined) return { status: 404, detail: 'No app is served at this address (the request named no host).' };
    const hostname = normaliseHostname(stripPort(host));
    const route = this.#routes.lookup(hostname);
    if (!route) return { status: 404, detail: `No app is served at ${hostname}.` };
    const state = this.#balancer.pick(route, performance.now());
    if (!state) {
      log.warn('proxy_no_targets', { app: route.app, host: hostname });
      return { status: 503, detail: `The app at ${hostname} has no running web process. Try again in a moment.` };
    }
    const target = route.targets.find((t) => t.host === state.host && t.port === state.port)!;
    return { target, state, info: { app: route.app, proto: via.proto, host, port: via.port } };
  }
}

interface Resolved {
  target: Target;
  state: TargetState;
  info: ForwardInfo;
}

interface Refused {
  status: ErrorStatus;
  detail: string;
}

function isChallenge(url: string): boolean {
  return url.startsWith(CHALLENGE_PREFIX) || (/^https?:\/\//i.test(url) && URL.canParse(url) && new URL(url).pathname.startsWith(CHALLENGE_PREFIX));
}

/** Waits for `done`, or until the clock reaches `deadline` (ms since the epoch), whichever comes first. */
async function untilOrDeadline(done: Promise<unknown>, deadline: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(0, deadline - Date.now()))));
  await Promise.race([done, late]);
  clearTimeout(timer);
}

/** The Host header; for an absolute-form request line without one, the URL's host. */
function requestHost(req: IncomingMessage): string | undefined {
  const header = req.headers.host;
  if (header !== undefined && header !== '') return header;
  const url = req.url ?? '';
  if (!/^https?:\/\//i.test(url)) return undefined;
  try {
    return new URL(url).host || undefined;
  } catch {
    return undefined;
  }
}

function listenError(e: NodeJS.ErrnoException, host: string, port: number): Error {
  if (e.code === 'EADDRINUSE') {
    return new UserError('port_in_use', `cannot listen on ${host}:${port}: the port is already in use`, {
      hint: 'stop the other server on that port, or choose another with --http-port',
      cause: e,
    });
  }
  if (e.code === 'EACCES') {
    return new UserError('port_not_permitted', `cannot listen on ${host}:${port}: permission denied`, {
      hint: 'ports below 1024 need root or CAP_NET_BIND_SERVICE; or choose another with --http-port',
      cause: e,
    });
  }
  return wrapError(`edge server: listening on ${host}:${port}`, e);
}
