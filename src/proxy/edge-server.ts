// The HTTP listener at the edge: resolves each request's Host to an app, picks a target, hands it to the forwarder.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { UserError, wrapError } from '../errors.ts';
import { log } from '../log.ts';
import { sendErrorPage, sendRawErrorPage, type ErrorStatus } from './error-pages.ts';
import { UndiciForwarder, type ForwardInfo, type Forwarder } from './forwarder.ts';
import { RouteTable, normaliseHostname, type Target } from './route-table.ts';

/** A client gets this long to send its request headers: the slowloris guard. */
export const CLIENT_HEADERS_TIMEOUT_MS = 30_000;
/** No cap on a whole request, so long uploads and long downloads finish. */
export const CLIENT_REQUEST_TIMEOUT_MS = 0;
/** How long an idle keep-alive client connection stays open. */
export const CLIENT_KEEP_ALIVE_TIMEOUT_MS = 5_000;
/** stop(): how long requests in flight get to finish before their connections are cut. */
export const DRAIN_TIMEOUT_MS = 10_000;

/** Given every request on the HTTP listener first; returns true when it answered (ACME HTTP-01). */
export type ChallengeResponder = (req: IncomingMessage, res: ServerResponse) => boolean;

/** The listener a request arrived on: the HTTP one, or another that hands its requests over (TLS). */
export interface Via {
  proto: ForwardInfo['proto'];
  port: number;
}

export interface EdgeServerOptions {
  /** 0 picks a free port (tests); `httpPort` then reports the bound one. */
  httpPort: number;
  /** Default '0.0.0.0'. */
  bindHost?: string;
  /** Default: a new UndiciForwarder with its documented defaults. Closed by stop(). */
  forwarder?: Forwarder;
  /** Default DRAIN_TIMEOUT_MS. */
  drainTimeoutMs?: number;
}

export class EdgeServer {
  readonly #port: number;
  readonly #bindHost: string;
  readonly #forwarder: Forwarder;
  readonly #drainTimeoutMs: number;
  #routes: RouteTable = RouteTable.empty();
  #challengeResponder: ChallengeResponder | undefined;
  /** Per app, the index of the target the next request goes to. */
  readonly #nextTarget = new Map<string, number>();
  /** Upgraded connections have left the HTTP server's bookkeeping, so stop() closes them from here. */
  readonly #tunnels = new Set<Duplex>();
  #server: Server | undefined;
  #starting: Promise<void> | undefined;
  #boundPort: number | undefined;
  #draining = false;
  #stopped: Promise<void> | undefined;

  constructor(options: EdgeServerOptions) {
    this.#port = options.httpPort;
    this.#bindHost = options.bindHost ?? '0.0.0.0';
    this.#forwarder = options.forwarder ?? new UndiciForwarder();
    this.#drainTimeoutMs = options.drainTimeoutMs ?? DRAIN_TIMEOUT_MS;
  }

  start(): Promise<void> {
    if (this.#starting) throw new Error('edge server: start() may be called only once');
    this.#starting = this.#start();
    return this.#starting;
  }

  /**
   * Stops accepting, lets requests in flight finish (up to the drain timeout), then cuts every
   * connection and closes the forwarder. Safe after a failed or partial start, and idempotent.
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

  /** The only way live routing changes: one synchronous assignment, so every request sees one whole table. */
  swap(next: RouteTable): void {
    this.#routes = next;
  }

  setChallengeResponder(responder: ChallengeResponder | undefined): void {
    this.#challengeResponder = responder;
  }

  /** Routes and forwards a request from another listener (the TLS one) as the HTTP listener does its own. */
  handleRequest(req: IncomingMessage, res: ServerResponse, via: Via): void {
    this.#onRequest(req, res, via);
  }

  /** Routes and forwards an upgrade (WebSocket) from another listener. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, via: Via): void {
    this.#onUpgrade(req, socket, head, via);
  }

  async #start(): Promise<void> {
    const server = createServer({
      headersTimeout: CLIENT_HEADERS_TIMEOUT_MS,
      requestTimeout: CLIENT_REQUEST_TIMEOUT_MS,
    });
    server.keepAliveTimeout = CLIENT_KEEP_ALIVE_TIMEOUT_MS;
    server.on('request', (req: IncomingMessage, res: ServerResponse) => this.#onRequest(req, res));
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.#onUpgrade(req, socket, head));
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
      server.listen(this.#port, this.#bindHost);
    });
    server.on('error', (e) => log.error('proxy_listener_error', { port: this.httpPort, error: e }));
    log.info('proxy_listening', { host: this.#bindHost, port: this.httpPort });
  }

  async #stop(): Promise<void> {
    // A stop() that overtakes a pending start() waits for the listener, so it is not left open.
    await this.#starting?.catch(() => undefined);
    const server = this.#server;
    if (server?.listening) {
      this.#draining = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      // A WebSocket has no request to finish, so waiting would only hold shutdown for the whole
      // drain timeout; its clients reconnect. (The listener counts these sockets until they close.)
      for (const socket of this.#tunnels) socket.destroy();
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.#drainTimeoutMs);
      });
      await Promise.race([closed, deadline]);
      clearTimeout(timer);
      server.closeAllConnections();
      for (const socket of this.#tunnels) socket.destroy();
      await closed;
      log.info('proxy_stopped', { port: this.httpPort });
    }
    await this.#forwarder.close();
  }

  #onRequest(req: IncomingMessage, res: ServerResponse, via: Via = { proto: 'http', port: this.httpPort }): void {
    // Tell a client that arrives while stopping not to reuse the connection (HTTP/2 has no such header).
    if (this.#draining && req.httpVersionMajor < 2) res.setHeader('connection', 'close');
    res.once('finish', () => this.#closeIdleWhileDraining());
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
    const resolved = this.#resolve(req, via);
    if ('status' in resolved) {
      sendErrorPage(req, res, resolved.status, resolved.detail);
      return;
    }
    try {
      this.#forwarder.web(req, res, resolved.target, resolved.info);
    } catch (e) {
      log.error('proxy_forward_error', { app: resolved.info.app, target: resolved.target.id, error: e });
      sendErrorPage(req, res, 502, 'The app behind this address could not be reached.');
    }
  }

  #onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, via: Via = { proto: 'http', port: this.httpPort }): void {
    // A socket without an error listener would take the whole process down with it.
    socket.on('error', () => socket.destroy());
    this.#tunnels.add(socket);
    socket.once('close', () => this.#tunnels.delete(socket));
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
      this.#forwarder.upgrade(req, socket, head, resolved.target, resolved.info);
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
    if (route.targets.length === 0) {
      log.warn('proxy_no_targets', { app: route.app, host: hostname });
      return { status: 503, detail: `The app at ${hostname} has no running web process. Try again in a moment.` };
    }
    const index = (this.#nextTarget.get(route.app) ?? 0) % route.targets.length;
    this.#nextTarget.set(route.app, (index + 1) % route.targets.length);
    return { target: route.targets[index]!, info: { app: route.app, proto: via.proto, host, port: via.port } };
  }

  /** Keep-alive connections that finish their last response while stopping would otherwise idle until their timeout. */
  #closeIdleWhileDraining(): void {
    if (this.#draining) setImmediate(() => this.#server?.closeIdleConnections());
  }
}

interface Resolved {
  target: Target;
  info: ForwardInfo;
}

interface Refused {
  status: ErrorStatus;
  detail: string;
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

/** `example.com:8080` → `example.com`; `[::1]:8080` → `[::1]`. */
function stripPort(host: string): string {
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    return end === -1 ? host : host.slice(0, end + 1);
  }
  const colon = host.indexOf(':');
  return colon === -1 ? host : host.slice(0, colon);
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
