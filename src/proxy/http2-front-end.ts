// The HTTP/2 front end: decrypted h2 connections from the TLS listener become sessions of one
// node:http2 server. Each stream is decided by the request policy, like a request on the fast
// path (same routing, limits, request id, forwarded headers, access-log line, passive health),
// and a forwarded one goes to the app as HTTP/1.1 through undici keep-alive pools. Sessions have a
// cap on concurrent streams and close after the app's idle-timeout with no stream open. undici
// is loaded with the first forwarded stream: a proxy that serves no HTTP/2 does not pay for it
// (about 10 MB of memory, docs/memory.md).
import { createServer, type Http2Server, type Http2ServerRequest, type Http2ServerResponse, type ServerHttp2Session } from 'node:http2';
import type { Socket } from 'node:net';
import { Readable, Transform } from 'node:stream';
import type { Agent } from 'undici';
import { log } from '../log.ts';
import { sendErrorPage, type ErrorStatus } from './error-pages.ts';
import type { ProxyContext } from './proxy-context.ts';
import {
  acceptedRequestId,
  bodyTooLarge,
  clientAddress,
  decide,
  Decision,
  forwardedPairs,
  hstsFor,
  logAccess,
  mayRepeat,
  SET_BY_BERTH,
  TOO_SLOW,
  tooLargeDetail,
  UNKNOWN_LENGTH,
  UNREACHABLE,
} from './request-policy.ts';
import type { TargetState } from './target-state.ts';

/**
 * Streams one HTTP/2 session may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS). Default 128,
 * nginx's; RFC 9113 §6.5.2 asks for no fewer than 100.
 */
export const HTTP2_MAX_CONCURRENT_STREAMS = 128;

export class Http2FrontEnd {
  readonly #ctx: ProxyContext;
  readonly #server: Http2Server;
  /** The pools to the apps, once a stream has been forwarded. */
  #agent: Agent | undefined;
  #agentLoading: Promise<Agent> | undefined;
  /** The listener port (X-Forwarded-Port) of each connection handed over, until its session starts. */
  readonly #ports = new WeakMap<object, number>();
  readonly #sessions = new Map<ServerHttp2Session, SessionState>();
  readonly #onSessionClosed: () => void;

  constructor(ctx: ProxyContext, onSessionClosed: () => void) {
    this.#ctx = ctx;
    this.#onSessionClosed = onSessionClosed;
    const server = createServer({ settings: { maxConcurrentStreams: HTTP2_MAX_CONCURRENT_STREAMS } });
    server.on('session', (session: ServerHttp2Session) => this.#onSession(session));
    server.on('request', (req: Http2ServerRequest, res: Http2ServerResponse) => this.#onRequest(req, res));
    server.on('sessionError', (error: Error) => log.debug('proxy_http2_session_error', { message: error.message }));
    this.#server = server;
  }

  /** HTTP/2 sessions open now. */
  get sessionCount(): number {
    return this.#sessions.size;
  }

  /** Serves a decrypted connection whose client chose h2; `port`: the listener's. */
  serve(socket: Socket, port: number): void {
    this.#ports.set(socket, port);
    this.#server.emit('connection', socket);
  }

  /** Called by the edge server's sweep: closes sessions idle past their deadline. */
  checkDeadlines(now: number): void {
    for (const [session, state] of this.#sessions) {
      if (state.open === 0 && state.idleUntil !== 0 && now >= state.idleUntil) {
        state.idleUntil = 0;
        session.close();
      }
    }
  }

  /** GOAWAY to every session: streams in flight finish, no new ones start. */
  close(): void {
    for (const session of this.#sessions.keys()) session.close();
  }

  /** Cuts every session and closes the pools to the apps. */
  async destroy(): Promise<void> {
    for (const session of this.#sessions.keys()) session.destroy();
    const agent = this.#agent ?? (await this.#agentLoading?.catch(() => undefined));
    await agent?.destroy();
  }

  #onSession(session: ServerHttp2Session): void {
    const socket = session.socket;
    // A session that never sends a request gets as long as a client has for its first head.
    const state: SessionState = { open: 0, idleUntil: deadline(performance.now(), this.#ctx.limits.headerTimeout), port: this.#ports.get(socket) ?? socket.localPort ?? 0 };
    this.#sessions.set(session, state);
    if (this.#ctx.draining) session.close();
    session.on('error', () => undefined); // 'close' follows
    session.once('close', () => {
      this.#sessions.delete(session);
      this.#onSessionClosed();
    });
  }

  #onRequest(req: Http2ServerRequest, res: Http2ServerResponse): void {
    const started = performance.now();
    const session = req.stream.session as ServerHttp2Session | undefined;
    const state = session ? this.#sessions.get(session) : undefined;
    if (state) {
      state.open++;
      state.idleUntil = 0;
    }
    const h = req.headers;
    const authority = h[':authority'] ?? h.host;
    const length = h['content-length'];
    const declared = length === undefined ? NaN : Number(length);
    const bodyLength = Number.isSafeInteger(declared) && declared >= 0 ? declared : req.stream.endAfterHeaders ? 0 : UNKNOWN_LENGTH;
    const d = new Decision();
    const x: H2Exchange = {
      req,
      res,
      d,
      method: req.method,
      host: authority,
      path: h[':path'] ?? '',
      client: clientAddress(req.socket?.remoteAddress),
      port: state?.port ?? 0,
      hasBody: bodyLength !== 0,
      started,
      bytes: 0,
      target: undefined,
      tried: undefined,
      repeated: false,
      tooLarge: false,
      closed: false,
      abort: new AbortController(),
    };
    res.once('close', () => this.#closed(x, state));
    const requestId = typeof h['x-request-id'] === 'string' ? acceptedRequestId(h['x-request-id']) : undefined;
    const verdict = decide(this.#ctx, d, 'https', x.method, x.host, x.path, bodyLength, requestId);
    if (verdict === 'forward') {
      // CONNECT (no :path) and `OPTIONS *` have no form undici sends on.
      if (x.path.charCodeAt(0) === 47 /* / */) this.#forward(x);
      else this.#respond(x, 400, 'The request target is not a path.');
    } else if (verdict === 'refuse') this.#respond(x, d.status, d.text);
    else if (verdict === 'redirect') this.#answer(x, 308, `Moved to ${d.text}\n`, d.text);
    else this.#answer(x, 200, d.text);
  }

  #loadAgent(): Promise<Agent> {
    const limits = this.#ctx.limits;
    this.#agentLoading ??= import('undici').then(({ Agent }) => {
      this.#agent = new Agent({ connect: { timeout: limits.connectTimeout }, keepAliveTimeout: limits.upstreamIdle, bodyTimeout: 0 });
      return this.#agent;
    });
    return this.#agentLoading;
  }

  #forward(x: H2Exchange): void {
    if (x.closed) return;
    const agent = this.#agent;
    if (!agent) {
      this.#loadAgent().then(
        () => this.#forward(x),
        (e: Error) => {
          log.error('proxy_http2_client_failed', { error: e });
          this.#respond(x, 502, UNREACHABLE);
        },
      );
      return;
    }
    const ctx = this.#ctx;
    const route = x.d.route!;
    const now = performance.now();
    // Every target failed this request: a standby one (the release before one on probation) takes it.
    const target = ctx.balancer.pick(route, now, x.tried) ?? (x.tried && route.standby.length > 0 ? ctx.balancer.pick({ ...route, targets: route.standby }, now, x.tried) : undefined);
    if (!target) {
      this.#respond(x, 502, UNREACHABLE);
      return;
    }
    x.target = target;
    target.begin();
    let headersReceived = false;
    const settings = x.d.settings;
    agent.stream(
      {
        origin: `http://${hostPort(target)}`,
        path: x.path,
        method: x.method,
        headers: upstreamHeaders(x),
        body: x.hasBody ? Readable.from(limitedBody(x)) : null,
        signal: x.abort.signal,
        headersTimeout: settings.readTimeout,
        bodyTimeout: 0,
      },
      ({ statusCode, headers }) => {
        headersReceived = true;
        const out = responseHeaders(headers);
        const hsts = hstsFor('https', settings);
        if (hsts !== '') out['strict-transport-security'] = hsts;
        x.res.writeHead(statusCode, out);
        const counter = new Transform({
          transform(chunk: Buffer, _encoding, done) {
            x.bytes += chunk.length;
            done(null, chunk);
          },
        });
        counter.pipe(x.res);
        x.res.once('close', () => counter.destroy());
        return counter;
      },
      (err) => {
        if (!err || (x.abort.signal.aborted && !x.tooLarge)) return; // done, or the client left
        this.#failed(x, target, err, headersReceived);
      },
    );
  }

  #failed(x: H2Exchange, target: TargetState, err: Error, headersReceived: boolean): void {
    const ctx = this.#ctx;
    const code = errorCode(err);
    if (x.tooLarge) {
      this.#respond(x, 413, tooLargeDetail(x.d.settings));
      return;
    }
    if (headersReceived) {
      this.#logUpstreamError(x, target, 'body', undefined, code, err.message);
      x.res.destroy();
      return;
    }
    if (CONNECT_CODES.has(code)) {
      // Nothing reached the app: passive health takes the target out, and a request with no body
      // to replay goes to another target.
      target.markDown(performance.now(), ctx.limits.targetDownFor);
      const status: ErrorStatus = code === 'UND_ERR_CONNECT_TIMEOUT' ? 504 : 502;
      this.#logUpstreamError(x, target, 'connect', status, code, err.message);
      ctx.metrics?.connectError(x.d.route?.app);
      (x.tried ??= []).push(target);
      if (!x.hasBody && x.tried.length < x.d.route!.targets.length + x.d.route!.standby.length) {
        ctx.metrics?.retry(x.d.route?.app);
        this.#release(x);
        this.#forward(x);
      } else this.#respond(x, status, status === 504 ? TOO_SLOW : UNREACHABLE);
      return;
    }
    if (code === 'UND_ERR_HEADERS_TIMEOUT') {
      this.#logUpstreamError(x, target, 'response', 504, code, `no answer within ${x.d.settings.readTimeout} ms`);
      this.#respond(x, 504, TOO_SLOW);
      return;
    }
    // Closed before any answer: usually the keep-alive race on a reused connection. With standby
    // targets (a release on probation that just died) one more try per target, away from this one.
    const route = x.d.route!;
    const untried = route.targets.length + route.standby.length - (x.tried?.length ?? 0);
    if (RESET_CODES.has(code) && mayRepeat(x.method, x.hasBody) && (!x.repeated || (route.standby.length > 0 && untried > 1))) {
      if ((x.repeated || route.standby.length > 0) && !x.tried?.includes(target)) (x.tried ??= []).push(target);
      x.repeated = true;
      log.debug('proxy_upstream_retry', { app: x.d.route?.app, target: target.id, code });
      ctx.metrics?.retry(x.d.route?.app);
      this.#release(x);
      this.#forward(x);
      return;
    }
    this.#logUpstreamError(x, target, 'response', 502, code, err.message);
    this.#respond(x, 502, UNREACHABLE);
  }

  /** Lets go of the current target without answering (before a retry). */
  #release(x: H2Exchange): void {
    x.target?.end();
    x.target = undefined;
  }

  #respond(x: H2Exchange, status: ErrorStatus, detail: string): void {
    if (!x.closed) x.bytes += sendErrorPage(x.res, x.method, status, detail, x.d.requestId);
  }

  /** berth's own answer: an ACME challenge (200, `body` the key authorization) or a redirect. */
  #answer(x: H2Exchange, status: 200 | 308, body: string, location?: string): void {
    const headers: Record<string, string> = { 'content-type': status === 200 ? 'text/plain' : 'text/plain; charset=utf-8', 'content-length': String(Buffer.byteLength(body)), 'cache-control': 'no-store', 'x-request-id': x.d.requestId };
    if (location !== undefined) headers.location = location;
    x.res.writeHead(status, headers);
    if (x.method === 'HEAD') {
      x.res.end();
      return;
    }
    x.bytes += Buffer.byteLength(body);
    x.res.end(body);
  }

  #closed(x: H2Exchange, state: SessionState | undefined): void {
    x.closed = true;
    const now = performance.now();
    // The client hanging up must not leave the upstream request (or its pooled socket) running.
    if (!x.res.writableFinished) x.abort.abort();
    const target = x.target;
    x.target = undefined;
    target?.end();
    const accessLog = this.#ctx.accessLog;
    const status = x.res.headersSent ? x.res.statusCode : 499;
    if (accessLog) logAccess(accessLog, x.d, x.client, 'https', x.host, x.method, x.path, status, x.bytes, x.started, now, target?.id);
    this.#ctx.metrics?.request(x.d.route?.app, status, 'h2', now - x.started);
    if (state && --state.open === 0) state.idleUntil = deadline(now, x.d.settings.idleTimeout);
  }

  #logUpstreamError(x: H2Exchange, target: TargetState, phase: 'connect' | 'response' | 'body', status: ErrorStatus | undefined, code: string, message: string): void {
    log.warn('proxy_upstream_error', {
      app: x.d.route?.app,
      host: x.host,
      method: x.method,
      target: target.id,
      address: hostPort(target),
      phase,
      status,
      code,
      message,
      id: x.d.requestId,
    });
  }
}

interface SessionState {
  /** Streams open now. */
  open: number;
  /** When the session closes for being idle (performance.now() ms); 0 while streams are open, or for no limit. */
  idleUntil: number;
  /** The port of the listener the connection arrived on. */
  port: number;
}

/** One stream's request and answer. */
interface H2Exchange {
  readonly req: Http2ServerRequest;
  readonly res: Http2ServerResponse;
  readonly d: Decision;
  readonly method: string;
  readonly host: string | undefined;
  readonly path: string;
  readonly client: string;
  readonly port: number;
  readonly hasBody: boolean;
  readonly started: number;
  /** Body bytes sent to the client (HTTP/2 heads are compressed per session, so not counted). */
  bytes: number;
  target: TargetState | undefined;
  /** Targets that refused this request; a retry goes elsewhere. */
  tried: TargetState[] | undefined;
  repeated: boolean;
  /** The body passed the app's max-body-size while it streamed. */
  tooLarge: boolean;
  closed: boolean;
  readonly abort: AbortController;
}

/** Headers that describe one connection, not the message, so they never cross the proxy (RFC 9110 §7.6.1). */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

/** Set by berth: what the client claims about them is dropped (its X-Forwarded-For chain is kept and appended to). */
const SET_BY_US = new Set(SET_BY_BERTH);

/** Failures before anything reached the app. */
const CONNECT_CODES = new Set(['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL']);

/** The app closed the connection before answering. */
const RESET_CODES = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET']);

/**
 * The request's headers for HTTP/1.1: no pseudo-headers, Host from :authority, cookie fields
 * joined into one (RFC 9113 §8.2.3), hop-by-hop headers and `expect` (node:http2 answered it)
 * dropped, then the forwarded headers of the request policy.
 */
function upstreamHeaders(x: H2Exchange): string[] {
  const raw = x.req.rawHeaders;
  const out: string[] = [];
  const cookies: string[] = [];
  let priorFor = '';
  let hasHost = false;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    const value = raw[i + 1]!;
    if (name.charCodeAt(0) === 58 /* : */) continue;
    if (name === 'cookie') cookies.push(value);
    else if (name === 'x-forwarded-for') {
      const v = value.trim();
      if (v !== '') priorFor = priorFor === '' ? v : `${priorFor}, ${v}`;
    } else if (!HOP_BY_HOP.has(name) && !SET_BY_US.has(name) && name !== 'expect') {
      if (name === 'host') hasHost = true;
      out.push(name, value);
    }
  }
  if (!hasHost && x.host !== undefined) out.push('host', x.host);
  if (cookies.length > 0) out.push('cookie', cookies.join('; '));
  out.push(...forwardedPairs(x.client, 'https', x.port, priorFor, x.host ?? '', x.d.requestId));
  return out;
}

/** The request body as it streams, stopped once it passes the app's max-body-size. */
async function* limitedBody(x: H2Exchange): AsyncGenerator<Buffer> {
  let bytes = 0;
  for await (const chunk of x.req as AsyncIterable<Buffer>) {
    bytes += chunk.length;
    if (bodyTooLarge(x.d.settings, bytes)) {
      x.tooLarge = true;
      x.abort.abort();
      return;
    }
    yield chunk;
  }
}

function responseHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const named = new Set<string>();
  const connection = headers.connection;
  for (const value of Array.isArray(connection) ? connection : connection === undefined ? [] : [connection]) {
    for (const token of value.split(',')) if (token.trim() !== '') named.add(token.trim().toLowerCase());
  }
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || named.has(name)) continue;
    out[name] = value;
  }
  return out;
}

function deadline(now: number, ms: number): number {
  return ms > 0 ? now + ms : 0;
}

function hostPort(target: TargetState): string {
  return target.host.includes(':') ? `[${target.host}]:${target.port}` : `${target.host}:${target.port}`;
}

function errorCode(err: Error): string {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : 'unknown';
}
