// Moving one request, or one upgraded connection, between a client and the target chosen for it.
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { connect, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { Agent } from 'undici';
import { log } from '../log.ts';
import { sendErrorPage, sendRawErrorPage, type ErrorStatus } from './error-pages.ts';
import type { Target } from './route-table.ts';

/** Opening a TCP connection to a target: containers on the local bridge answer at once or not at all. */
export const CONNECT_TIMEOUT_MS = 5_000;
/**
 * Waiting for the response headers. It does not run out while the request body is still being
 * written, so slow uploads are not cut by it.
 */
export const HEADERS_TIMEOUT_MS = 60_000;
/** Longest silence inside a response body. 0: none, so event streams and long polls live as long as the client stays. */
export const BODY_TIMEOUT_MS = 0;
/**
 * How long an idle pooled connection to a target is kept; a `Keep-Alive: timeout=` hint from the
 * app lowers it. Below Node's 5 s server default, so berth rarely reuses a connection the app is
 * just closing; apps with shorter idle timeouts that send no hint (gunicorn: 2 s) are covered by
 * the one retry of bodiless idempotent requests (RETRYABLE_CODES).
 */
export const UPSTREAM_IDLE_MS = 4_000;

/** When a tunnel closes, how long the bytes still queued for the other side get to go out. */
export const TUNNEL_FLUSH_MS = 5_000;

export interface ForwardInfo {
  app: string;
  proto: 'http' | 'https';
  /** The Host header as the client sent it. */
  host: string;
  /** The port of the listener the request arrived on. */
  port: number;
}

/** The forwarding step, behind one small interface so the zero-downtime work can tune or replace it. */
export interface Forwarder {
  web(req: IncomingMessage, res: ServerResponse, target: Target, info: ForwardInfo): void;
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, target: Target, info: ForwardInfo): void;
  /** Releases pools and tunnels; whatever is still in flight is cut. */
  close(): Promise<void>;
}

export interface UndiciForwarderOptions {
  connectTimeoutMs?: number;
  headersTimeoutMs?: number;
  bodyTimeoutMs?: number;
  upstreamIdleMs?: number;
}

/**
 * HTTP through undici keep-alive pools (one per target origin), bodies streamed both ways;
 * upgrades (WebSocket or any other protocol) through a raw TCP splice.
 */
export class UndiciForwarder implements Forwarder {
  readonly #agent: Agent;
  readonly #connectTimeoutMs: number;
  readonly #tunnels = new Set<Socket>();

  constructor(options: UndiciForwarderOptions = {}) {
    this.#connectTimeoutMs = options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS;
    this.#agent = new Agent({
      connect: { timeout: this.#connectTimeoutMs },
      headersTimeout: options.headersTimeoutMs ?? HEADERS_TIMEOUT_MS,
      bodyTimeout: options.bodyTimeoutMs ?? BODY_TIMEOUT_MS,
      keepAliveTimeout: options.upstreamIdleMs ?? UPSTREAM_IDLE_MS,
    });
  }

  web(req: IncomingMessage, res: ServerResponse, target: Target, info: ForwardInfo): void {
    const path = originForm(req.url);
    if (path === undefined) {
      sendErrorPage(req, res, 400, 'The request target is not a path.');
      return;
    }
    const hasBody = requestHasBody(req);
    const abort = new AbortController();
    // The client hanging up must not leave the upstream request (or its pooled socket) running.
    res.on('close', () => {
      if (!res.writableFinished) abort.abort();
    });
    const attempt: Attempt = {
      req,
      res,
      target,
      info,
      path,
      headers: requestHeaders(req, info),
      body: hasBody ? req : null,
      signal: abort.signal,
      // Only a request with nothing to replay and no side effects may go twice; see RETRYABLE_CODES.
      retries: !hasBody && IDEMPOTENT_METHODS.has(req.method ?? '') ? 1 : 0,
    };
    this.#send(attempt);
  }

  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, target: Target, info: ForwardInfo): void {
    const path = originForm(req.url);
    if (path === undefined) {
      sendRawErrorPage(socket, 400, 'The request target is not a path.');
      return;
    }
    const upstream = connect({ host: target.host, port: target.port });
    this.#tunnels.add(upstream);
    let connected = false;
    upstream.setNoDelay(true);
    if (socket instanceof Socket) socket.setNoDelay(true);
    upstream.setTimeout(this.#connectTimeoutMs);
    upstream.on('timeout', () => {
      // Only armed until connected: a quiet WebSocket is normal, and its keep-alive is the app's business.
      upstream.destroy(Object.assign(new Error(`connect timeout after ${this.#connectTimeoutMs} ms`), { code: 'ETIMEDOUT' }));
    });
    upstream.once('connect', () => {
      connected = true;
      upstream.setTimeout(0);
      upstream.write(upgradeRequestHead(req, path, info));
      if (head.length > 0) upstream.write(head);
      upstream.pipe(socket);
      socket.pipe(upstream);
    });
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      if (connected) {
        log.debug('proxy_tunnel_closed', { app: info.app, target: target.id, code: err.code, message: err.message });
        socket.destroy();
        return;
      }
      const status = err.code === 'ETIMEDOUT' ? 504 : 502;
      logUpstreamError(req, target, info, 'connect', status, err);
      sendRawErrorPage(socket, status, status === 504 ? TIMEOUT_DETAIL : UNREACHABLE_DETAIL);
    });
    upstream.on('close', () => {
      this.#tunnels.delete(upstream);
      // Before the connect, the error handler is still writing the error page; it closes the socket itself.
      if (connected) flushThenDestroy(socket);
    });
    socket.on('error', () => upstream.destroy());
    socket.on('close', () => (connected ? flushThenDestroy(upstream) : upstream.destroy()));
  }

  async close(): Promise<void> {
    for (const tunnel of this.#tunnels) tunnel.destroy();
    this.#tunnels.clear();
    await this.#agent.destroy();
  }

  #send(attempt: Attempt): void {
    const { req, res, target, info } = attempt;
    let headersReceived = false;
    this.#agent.stream(
      {
        origin: `http://${hostPort(target)}`,
        path: attempt.path,
        method: req.method ?? 'GET',
        headers: attempt.headers,
        body: attempt.body,
        signal: attempt.signal,
      },
      ({ statusCode, headers }) => {
        headersReceived = true;
        res.writeHead(statusCode, responseHeaders(headers));
        return res;
      },
      (err) => {
        if (!err) return;
        if (attempt.signal.aborted) return; // the client left; nothing to report to anyone
        const code = errorCode(err);
        if (!headersReceived && attempt.retries > 0 && RETRYABLE_CODES.has(code)) {
          attempt.retries -= 1;
          log.debug('proxy_upstream_retry', { app: info.app, target: target.id, code });
          this.#send(attempt);
          return;
        }
        const status: ErrorStatus = TIMEOUT_CODES.has(code) ? 504 : 502;
        if (res.headersSent) {
          logUpstreamError(req, target, info, 'body', undefined, err);
          res.destroy();
          return;
        }
        logUpstreamError(req, target, info, 'response', status, err);
        sendErrorPage(req, res, status, status === 504 ? TIMEOUT_DETAIL : UNREACHABLE_DETAIL);
      },
    );
  }
}

interface Attempt {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly target: Target;
  readonly info: ForwardInfo;
  readonly path: string;
  readonly headers: string[];
  readonly body: IncomingMessage | null;
  readonly signal: AbortSignal;
  retries: number;
}

const UNREACHABLE_DETAIL = 'The app behind this address could not be reached. Try again in a moment.';
const TIMEOUT_DETAIL = 'The app behind this address took too long to answer.';

/**
 * When one side of a tunnel closes, the bytes it sent last may still be queued for the other
 * side (a WebSocket close frame, typically); they go out before that side is closed too.
 */
function flushThenDestroy(stream: Duplex): void {
  if (stream.destroyed) return;
  if (stream.writableLength === 0) {
    stream.destroy();
    return;
  }
  stream.end(() => stream.destroy());
  // A peer that stops reading must not hold the socket open forever.
  setTimeout(() => stream.destroy(), TUNNEL_FLUSH_MS).unref();
}

/** Headers that describe one connection, not the message, so they never cross the proxy (RFC 9110 §7.6.1). */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

/** Node's server already answered `Expect: 100-continue` itself, and undici refuses the header. */
const NOT_FORWARDED = new Set(['expect']);

/** berth is the edge: what a client claims about the hop before it is dropped, except the chain of addresses. */
const FORWARDED_BY_US = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port']);

const IDEMPOTENT_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * A pooled connection that the app closed just as berth reused it fails with these before any
 * response; a bodiless idempotent request is sent once more instead of turning into a 502.
 */
const RETRYABLE_CODES = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET']);

const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT']);

function requestHeaders(req: IncomingMessage, info: ForwardInfo): string[] {
  const raw = req.rawHeaders;
  const named = connectionTokens(raw);
  const out: string[] = [];
  const priorFor: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    const lower = name.toLowerCase();
    if (lower === 'x-forwarded-for') priorFor.push(value);
    // Host stays as the client sent it, whatever the Connection header names.
    if (lower !== 'host' && (HOP_BY_HOP.has(lower) || NOT_FORWARDED.has(lower) || FORWARDED_BY_US.has(lower) || named.has(lower))) continue;
    out.push(name, value);
  }
  out.push(...forwardedHeaders(req, info, priorFor));
  return out;
}

/** The request line and headers of an upgrade, replayed as received apart from the X-Forwarded-* set. */
function upgradeRequestHead(req: IncomingMessage, path: string, info: ForwardInfo): string {
  const raw = req.rawHeaders;
  const priorFor: string[] = [];
  let head = `${req.method ?? 'GET'} ${path} HTTP/1.1\r\n`;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const lower = raw[i]!.toLowerCase();
    if (lower === 'x-forwarded-for') priorFor.push(raw[i + 1]!);
    if (FORWARDED_BY_US.has(lower)) continue;
    head += `${raw[i]}: ${raw[i + 1]}\r\n`;
  }
  const added = forwardedHeaders(req, info, priorFor);
  for (let i = 0; i + 1 < added.length; i += 2) head += `${added[i]}: ${added[i + 1]}\r\n`;
  return head + '\r\n';
}

function forwardedHeaders(req: IncomingMessage, info: ForwardInfo, priorFor: string[]): string[] {
  const client = clientAddress(req);
  const chain = [...priorFor.map((v) => v.trim()).filter((v) => v !== ''), ...(client ? [client] : [])].join(', ');
  const out: string[] = [];
  if (chain !== '') out.push('X-Forwarded-For', chain);
  out.push('X-Forwarded-Proto', info.proto, 'X-Forwarded-Host', info.host, 'X-Forwarded-Port', String(info.port));
  return out;
}

function responseHeaders(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const named = connectionTokens(headers.connection);
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || named.has(name)) continue;
    out[name] = value;
  }
  return out;
}

/** Header names listed in Connection headers; from raw headers ([name, value, ...]) or a parsed value. */
function connectionTokens(source: readonly string[] | string | undefined): Set<string> {
  const values: string[] = [];
  if (typeof source === 'string') values.push(source);
  else if (source) for (let i = 0; i + 1 < source.length; i += 2) if (source[i]!.toLowerCase() === 'connection') values.push(source[i + 1]!);
  const tokens = new Set<string>();
  for (const value of values) for (const token of value.split(',')) if (token.trim() !== '') tokens.add(token.trim().toLowerCase());
  return tokens;
}

/** HTTP/1.1 framing: without Transfer-Encoding or a non-zero Content-Length there is no body to stream. */
function requestHasBody(req: IncomingMessage): boolean {
  if (req.headers['transfer-encoding'] !== undefined) return true;
  const length = req.headers['content-length'];
  return length !== undefined && length !== '0';
}

/** `/path?q` as is; an absolute-form target (`http://host/path`) becomes its path; anything else is refused. */
function originForm(url: string | undefined): string | undefined {
  if (url === undefined) return undefined;
  if (url.startsWith('/')) return url;
  if (/^https?:\/\//i.test(url)) {
    try {
      const parsed = new URL(url);
      return parsed.pathname + parsed.search;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

function clientAddress(req: IncomingMessage): string | undefined {
  const address = req.socket.remoteAddress;
  // A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d; apps expect a.b.c.d.
  return address?.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

function hostPort(target: Target): string {
  return target.host.includes(':') ? `[${target.host}]:${target.port}` : `${target.host}:${target.port}`;
}

function errorCode(err: Error): string {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : 'unknown';
}

// One line per failed proxy attempt; the path is left out because query strings carry secrets.
function logUpstreamError(
  req: IncomingMessage,
  target: Target,
  info: ForwardInfo,
  phase: 'connect' | 'response' | 'body',
  status: ErrorStatus | undefined,
  err: Error,
): void {
  log.warn('proxy_upstream_error', {
    app: info.app,
    host: info.host,
    method: req.method,
    target: target.id,
    address: hostPort(target),
    phase,
    status,
    code: errorCode(err),
    message: err.message,
  });
}
