// One request and its answer on the fast path: ask the request policy, pick a target, send the head and
// stream the body to a pooled upstream connection, stream the answer back with hop-by-hop headers
// removed, then give the connection back to its pool. Retries on another target when nothing
// reached the app yet, or when a reused connection turned out closed and the request is safe to
// repeat. Timeouts are deadlines checked by the edge server's sweep, not timers per request; like
// every proxy deadline they are on the monotonic clock of performance.now(), read once per event
// where possible (a clock read costs about as much as parsing a short header line).
import { log } from '../log.ts';
import type { AppProxySettings } from '../state/proxy-settings.ts';
import { ChunkedBody } from './chunked-body.ts';
import type { ClientConnection } from './client-connection.ts';
import { errorResponse, plainResponse, redirectResponse, type ErrorStatus } from './error-pages.ts';
import {
  BODY_CHUNKED,
  BODY_LENGTH,
  BODY_NONE,
  BODY_UNTIL_CLOSE,
  findHeadEnd,
  HttpError,
  parseResponseHead,
  type RequestHead,
  type ResponseHead,
} from './http1-head.ts';
import {
  bodyTooLarge,
  decide,
  forwardedLines,
  hstsFor,
  INVALID_ANSWER,
  keepsConnection,
  logAccess,
  mayRepeat,
  TOO_SLOW,
  tooLargeDetail,
  UNKNOWN_LENGTH,
  UNREACHABLE,
} from './request-policy.ts';
import type { AppRoute } from './route-table.ts';
import type { TargetState } from './target-state.ts';
import { Tunnel } from './tunnel.ts';
import type { UpstreamConnection, UpstreamOwner } from './upstream-connection.ts';

/** Largest response head berth accepts from an app; 502 above it. */
export const MAX_RESPONSE_HEAD_BYTES = 64 * 1024;

/** Bodies up to this size that arrive with their head go out in the same write. */
const SMALL_BODY = 16 * 1024;

/**
 * The request's side of an exchange: 'holding' while its body arrives and no connection to the app
 * is ready (berth holds the bytes), 'streaming' while the body goes to the app, 'read' once the
 * whole request is read from the client (from the start for a request without a body); bytes
 * after that belong to the next request.
 */
type RequestPhase = 'holding' | 'streaming' | 'read';

/**
 * The answer's side: 'head' while nothing final went to the client (berth waits for the app's
 * head, or answers itself), 'body' while the app's body is relayed, 'done' once the exchange is
 * over and logged.
 */
type AnswerPhase = 'head' | 'body' | 'done';

/**
 * The one deadline that runs: connecting to the app, the client's next body bytes, the app's
 * response head (read-timeout), the client reading a queued answer; or none.
 */
type Deadline = 'none' | 'connect' | 'client-body' | 'response' | 'client-send';

export class Exchange implements UpstreamOwner {
  readonly conn: ClientConnection;
  readonly head: RequestHead;
  /** performance.now() when the head was complete; also the "now" of everything start() does. */
  readonly #started: number;
  #route: AppRoute | undefined;
  #settings: AppProxySettings | undefined;
  #requestId = '';
  #request: RequestPhase;
  #answer: AnswerPhase = 'head';
  target: TargetState | undefined;
  #upstream: UpstreamConnection | undefined;
  /** Targets that refused this request; a retry goes elsewhere. */
  #tried: TargetState[] | undefined;
  #staleRetried = false;
  #reqLeft: number;
  readonly #reqChunked: ChunkedBody | undefined;
  /** Body bytes read while no upstream connection was ready. */
  #held: Buffer | undefined;
  #resBuf: Buffer | undefined;
  #res: ResponseHead | undefined;
  #resLeft = 0;
  #resChunked: ChunkedBody | undefined;
  #decode = false;
  #keepClient = false;
  #bytesOut = 0;
  status = 0;
  #deadline = 0;
  #deadlineKind: Deadline = 'none';
  /** Receives decoded chunk data for an HTTP/1.0 client; made only for such an answer. */
  #decodeSink: ((buf: Buffer, start: number, end: number) => void) | undefined;

  constructor(conn: ClientConnection, head: RequestHead) {
    this.conn = conn;
    this.head = head;
    this.#started = performance.now();
    this.#request = head.bodyKind === BODY_NONE ? 'read' : 'holding';
    this.#reqLeft = head.contentLength;
    this.#reqChunked = head.bodyKind === BODY_CHUNKED ? new ChunkedBody() : undefined;
  }

  get app(): string | undefined {
    return this.#route?.app;
  }

  start(): void {
    const head = this.head;
    const conn = this.conn;
    const d = conn.decision;
    const bodyLength = head.bodyKind === BODY_LENGTH ? head.contentLength : head.bodyKind === BODY_NONE ? 0 : UNKNOWN_LENGTH;
    const verdict = decide(conn.ctx, d, conn.proto, head.method, head.host, head.path, bodyLength, head.requestId);
    this.#requestId = d.requestId;
    this.#route = d.route;
    this.#settings = d.settings;
    if (verdict === 'forward') this.#connect();
    else if (verdict === 'refuse') this.#respond(d.status, d.text, d.status !== 413);
    else this.#answerItself(verdict === 'redirect' ? 308 : 200, d.text);
  }

  // --- client side -------------------------------------------------------------------------

  onClientData(chunk: Buffer): void {
    if (this.#answer === 'done') return;
    if (this.#request === 'read') this.conn.stash(chunk);
    else if (this.#request === 'holding') this.#held = this.#held ? Buffer.concat([this.#held, chunk]) : chunk;
    else this.#forwardBody(chunk);
  }

  /**
   * The client sent FIN in the middle of the exchange. Like nginx, berth takes that for the
   * client leaving (a half-closing client that still waits for its answer is rare, and a request
   * whose body stops short must never reach the app as whole): the app's connection is dropped.
   */
  onClientEnd(): void {
    if (this.#answer === 'done') return;
    this.#dropUpstream();
    if (this.#answer === 'head') this.status = 499;
    this.conn.destroy();
    this.#complete(false);
  }

  onClientClose(): void {
    if (this.#answer === 'done') return;
    this.#dropUpstream();
    if (this.#answer === 'head') this.status = 499;
    this.#complete(false);
  }

  onClientDrain(): void {
    this.#upstream?.socket.resume();
    if (this.#deadlineKind === 'client-send') this.#clearDeadline();
  }

  // --- upstream side -----------------------------------------------------------------------

  onUpstreamConnect(upstream: UpstreamConnection): void {
    if (upstream === this.#upstream) this.#send();
  }

  onUpstreamDrain(upstream: UpstreamConnection): void {
    if (upstream !== this.#upstream || this.#request !== 'streaming') return;
    this.conn.socket.resume();
    this.#setDeadline('client-body', this.conn.ctx.limits.bodyTimeout);
  }

  onUpstreamData(upstream: UpstreamConnection, chunk: Buffer): void {
    if (upstream !== this.#upstream) return;
    if (this.#answer === 'body') this.#relay(chunk, 0);
    else if (this.#answer === 'head') this.#readHead(chunk);
    else this.#dropUpstream();
  }

  onUpstreamEnd(upstream: UpstreamConnection): void {
    if (upstream !== this.#upstream) return;
    if (this.#answer === 'body' && this.#res?.bodyKind === BODY_UNTIL_CLOSE) this.#finish(true);
    // Otherwise 'close' follows at once and decides.
  }

  onUpstreamClose(upstream: UpstreamConnection, error: NodeJS.ErrnoException | undefined): void {
    if (upstream !== this.#upstream || this.#answer === 'done') return;
    this.#upstream = undefined;
    const code = error?.code ?? 'ECONNRESET';
    if (this.#answer === 'body') {
      if (this.#res?.bodyKind === BODY_UNTIL_CLOSE && !error) {
        this.#finish(true);
        return;
      }
      // The answer is cut short: the client must see a cut, never a clean end.
      this.#logUpstreamError('body', undefined, code, error?.message ?? 'the app closed the connection in the middle of the body');
      this.conn.destroy();
      this.#complete(false);
      return;
    }
    const ctx = this.conn.ctx;
    const target = upstream.target;
    if (!upstream.connected) {
      // Nothing reached the app: any request may go to another target.
      target.markDown(performance.now(), ctx.limits.targetDownFor);
      this.#logUpstreamError('connect', undefined, code, error?.message ?? 'connection closed');
      ctx.metrics?.connectError(this.app);
      this.#retryElsewhere(502, UNREACHABLE);
      return;
    }
    // Closed after the request went out and before any answer. On a fresh connection that is the
    // app resetting it (passive health takes the target out); on a reused one, usually the
    // keep-alive race: the app closed it just as berth reused it.
    const fresh = upstream.served <= 1;
    if (fresh) target.markDown(performance.now(), ctx.limits.targetDownFor);
    const safe = this.#resBuf === undefined && mayRepeat(this.head.method, this.head.bodyKind !== BODY_NONE);
    const route = this.#route!;
    // One retry; with standby targets (a release on probation that just died), one more per target.
    const again = this.#staleRetried;
    const untried = route.targets.length + route.standby.length - (this.#tried?.length ?? 0);
    if (safe && (!again || (route.standby.length > 0 && untried > 1))) {
      this.#staleRetried = true;
      log.debug('proxy_upstream_retry', { app: this.app, target: target.id, code, fresh });
      ctx.metrics?.retry(this.app);
      // Another target if there is one; the same one (on a new connection) otherwise.
      if ((fresh || again) && (route.targets.length > 1 || route.standby.length > 0) && !this.#tried?.includes(target)) (this.#tried ??= []).push(target);
      this.#release();
      this.#connect();
      return;
    }
    this.#logUpstreamError('response', 502, code, error?.message ?? 'the app closed the connection before answering');
    this.#respond(502, UNREACHABLE, false);
  }

  /** Called by the connection's sweep. */
  checkDeadline(now: number): void {
    if (this.#deadline === 0 || now < this.#deadline || this.#answer === 'done') return;
    const kind = this.#deadlineKind;
    this.#deadline = 0;
    this.#deadlineKind = 'none';
    if (kind === 'connect') {
      const target = this.target;
      this.#dropUpstream();
      target?.markDown(now, this.conn.ctx.limits.targetDownFor);
      this.#logUpstreamError('connect', 504, 'ETIMEDOUT', `no connection within ${this.conn.ctx.limits.connectTimeout} ms`);
      this.#retryElsewhere(504, TOO_SLOW);
    } else if (kind === 'client-body') {
      this.#dropUpstream();
      this.#respond(408, 'The request body was not sent in time.', false);
    } else if (kind === 'client-send') {
      // Headers went out long ago; all that is left is to cut both sides.
      this.#dropUpstream();
      this.conn.destroy();
      this.#complete(false);
    } else if (kind === 'response') {
      this.#dropUpstream();
      this.#logUpstreamError('response', 504, 'ETIMEDOUT', `no answer within ${this.#settings?.readTimeout} ms`);
      this.#respond(504, TOO_SLOW, false);
    }
  }

  // --- internals ---------------------------------------------------------------------------

  #connect(): void {
    const ctx = this.conn.ctx;
    // A first attempt runs in the tick the head arrived in; a retry reads the clock again.
    const now = this.#tried === undefined && !this.#staleRetried ? this.#started : performance.now();
    const route = this.#route!;
    // Every target failed this request: a standby one (the release before one on probation) takes it.
    const target = ctx.balancer.pick(route, now, this.#tried) ?? (this.#tried && route.standby.length > 0 ? ctx.balancer.pick({ ...route, targets: route.standby }, now, this.#tried) : undefined);
    if (!target) {
      this.#respond(502, UNREACHABLE, this.#request === 'read');
      return;
    }
    this.target = target;
    target.begin();
    const upstream = target.acquire();
    upstream.owner = this;
    this.#upstream = upstream;
    if (upstream.connected) {
      this.#send();
      return;
    }
    this.#setDeadlineAt('connect', ctx.limits.connectTimeout, now);
    if (this.#request !== 'read') this.conn.socket.pause();
  }

  /** The upstream connection is ready: the head goes out, with whatever body has arrived. */
  #send(): void {
    const upstream = this.#upstream!;
    const head = this.head;
    const conn = this.conn;
    upstream.served++;
    let out = head.method + ' ' + head.path + ' HTTP/1.1\r\n' + head.forwardLines;
    if (head.upgrade !== undefined) out += 'Connection: Upgrade\r\nUpgrade: ' + head.upgrade + '\r\n';
    out += forwardedLines(conn.forwarding, head.forwardedFor, head.host, this.#requestId);
    if (this.#request === 'read') {
      upstream.write(out);
      // Sent in the tick the head arrived in (a pooled connection), or later (a new one).
      this.#setDeadlineAt('response', this.#settings!.readTimeout, upstream.served === 1 || this.#tried !== undefined || this.#staleRetried ? performance.now() : this.#started);
      return;
    }
    let body = this.#held;
    this.#held = undefined;
    const buffered = conn.takeBuffered();
    if (buffered) body = body ? Buffer.concat([buffered, body]) : buffered;
    this.#request = 'streaming';
    upstream.socket.cork();
    upstream.write(out);
    if (body) this.#forwardBody(body);
    upstream.socket.uncork();
    if (this.#request === 'streaming') {
      this.#setDeadline('client-body', conn.ctx.limits.bodyTimeout);
      conn.socket.resume();
    }
  }

  #forwardBody(buf: Buffer): void {
    const upstream = this.#upstream;
    if (!upstream || this.#answer === 'done') return;
    let end = buf.length;
    if (this.#reqChunked) {
      let found: number;
      try {
        found = this.#reqChunked.feed(buf, 0);
      } catch (e) {
        if (!(e instanceof HttpError)) throw e;
        this.#dropUpstream();
        this.#respond(400, `The request body could not be read: ${e.message}.`, false);
        return;
      }
      if (bodyTooLarge(this.#settings!, this.#reqChunked.dataBytes)) {
        this.#dropUpstream();
        this.#respond(413, tooLargeDetail(this.#settings!), false);
        return;
      }
      if (found !== -1) {
        end = found;
        this.#request = 'read';
      }
    } else {
      if (this.#reqLeft < end) end = this.#reqLeft;
      this.#reqLeft -= end;
      if (this.#reqLeft === 0) this.#request = 'read';
    }
    const ok = upstream.write(end === buf.length ? buf : buf.subarray(0, end));
    if (end < buf.length) this.conn.stash(buf.subarray(end));
    if (this.#request === 'read') {
      if (this.#answer === 'head') this.#setDeadline('response', this.#settings!.readTimeout);
      else this.#clearDeadline();
    } else if (ok) {
      this.#setDeadline('client-body', this.conn.ctx.limits.bodyTimeout);
    } else {
      // The app reads slowly: berth stops reading the client, and the client's silence is not its fault.
      this.conn.socket.pause();
      this.#clearDeadline();
    }
  }

  #readHead(chunk: Buffer): void {
    const buf = this.#resBuf ? Buffer.concat([this.#resBuf, chunk]) : chunk;
    const end = findHeadEnd(buf, 0);
    if (end === -1) {
      if (buf.length > MAX_RESPONSE_HEAD_BYTES) this.#badResponse('the response head is too large');
      else this.#resBuf = buf;
      return;
    }
    this.#resBuf = undefined;
    let res: ResponseHead;
    try {
      res = parseResponseHead(buf.toString('latin1', 0, end), this.head.method, this.conn.ctx.limits);
    } catch (e) {
      if (!(e instanceof HttpError)) throw e;
      this.#badResponse(e.message);
      return;
    }
    const bodyStart = end + 4;
    if (res.status < 200) {
      if (res.status === 101) {
        if (this.head.upgrade === undefined) this.#badResponse('101 Switching Protocols to a request that asked for no upgrade');
        else this.#switchProtocols(res, buf.subarray(bodyStart));
        return;
      }
      // 100 Continue, 103 Early Hints: passed on to HTTP/1.1 clients; the final answer follows.
      if (this.head.minor === 1) this.#write(res.forwardHead + '\r\n');
      if (bodyStart < buf.length) this.#readHead(buf.subarray(bodyStart));
      return;
    }
    this.#res = res;
    this.status = res.status;
    this.#answer = 'body';
    const read = this.#request === 'read';
    if (read) this.#clearDeadline();
    const conn = this.conn;
    this.#decode = res.bodyKind === BODY_CHUNKED && this.head.minor === 0;
    this.#keepClient = keepsConnection(this.head.keepAlive, read, res.bodyKind !== BODY_UNTIL_CLOSE && !this.#decode, conn.closing, conn.ctx.draining);
    let out = this.#decode ? res.forwardHead.replace(/^transfer-encoding:[^\r]*\r\n/im, '') : res.forwardHead;
    const hsts = hstsFor(conn.proto, this.#settings!);
    if (hsts !== '') {
      // berth's replaces the app's, as over HTTP/2: one Strict-Transport-Security (RFC 6797 §6.1).
      out = out.replace(/^strict-transport-security:[^\r]*\r\n/gim, '');
      const afterStatus = out.indexOf('\r\n') + 2;
      out = out.slice(0, afterStatus) + 'Strict-Transport-Security: ' + hsts + '\r\n' + out.slice(afterStatus);
    }
    out += this.#keepClient ? (this.head.minor === 0 ? 'Connection: keep-alive\r\n\r\n' : '\r\n') : 'Connection: close\r\n\r\n';
    if (res.bodyKind === BODY_NONE) {
      this.#write(out);
      this.#finish(bodyStart === buf.length);
      return;
    }
    this.#resLeft = res.contentLength;
    if (res.bodyKind === BODY_CHUNKED) this.#resChunked = new ChunkedBody();
    if (bodyStart === buf.length) {
      this.#write(out);
      return;
    }
    // The usual small answer arrives whole with its head: one write of one string, not a writev.
    if (res.bodyKind === BODY_LENGTH && res.contentLength <= SMALL_BODY && buf.length - bodyStart >= res.contentLength) {
      const end = bodyStart + res.contentLength;
      this.#write(out + buf.toString('latin1', bodyStart, end));
      this.#resLeft = 0;
      this.#finish(end === buf.length);
      return;
    }
    conn.socket.cork();
    this.#write(out);
    this.#relay(buf, bodyStart);
    conn.socket.uncork();
  }

  #relay(buf: Buffer, start: number): void {
    const res = this.#res!;
    let ok: boolean;
    if (res.bodyKind === BODY_LENGTH) {
      const available = buf.length - start;
      const take = available < this.#resLeft ? available : this.#resLeft;
      ok = this.#write(start === 0 && take === buf.length ? buf : buf.subarray(start, start + take));
      this.#resLeft -= take;
      if (this.#resLeft === 0) {
        this.#finish(start + take === buf.length);
        return;
      }
    } else if (res.bodyKind === BODY_CHUNKED) {
      let end: number;
      try {
        end = this.#resChunked!.feed(buf, start, this.#decode ? (this.#decodeSink ??= (b, s, e) => this.#writeDecoded(b, s, e)) : undefined);
      } catch (e) {
        if (!(e instanceof HttpError)) throw e;
        this.#logUpstreamError('body', undefined, 'EPROTO', `malformed chunked body: ${e.message}`);
        this.#dropUpstream();
        this.conn.destroy();
        this.#complete(false);
        return;
      }
      const stop = end === -1 ? buf.length : end;
      ok = this.#decode ? true : this.#write(start === 0 && stop === buf.length ? buf : buf.subarray(start, stop));
      if (end !== -1) {
        this.#finish(end === buf.length);
        return;
      }
    } else {
      ok = this.#write(start === 0 ? buf : buf.subarray(start));
    }
    if (!ok) this.#clientBackpressure();
  }

  /** The client reads slower than the app writes: the app waits, and a client that stops reading for good is cut. */
  #clientBackpressure(): void {
    this.#upstream?.socket.pause();
    if (this.#request === 'read' && this.#deadlineKind === 'none') this.#setDeadline('client-send', this.conn.ctx.limits.bodyTimeout);
  }

  #writeDecoded(buf: Buffer, start: number, end: number): void {
    if (end > start && !this.#write(buf.subarray(start, end))) this.#clientBackpressure();
  }

  /** The answer is complete. `inStep`: the app sent nothing beyond it, so its connection may be reused. */
  #finish(inStep: boolean): void {
    const upstream = this.#upstream;
    this.#upstream = undefined;
    const now = performance.now();
    if (upstream) {
      const res = this.#res!;
      if (inStep && res.keepAlive && this.#request === 'read' && !upstream.socket.destroyed) {
        const limits = this.conn.ctx.limits;
        const hinted = res.keepAliveHint === undefined ? limits.upstreamIdle : Math.min(limits.upstreamIdle, res.keepAliveHint * 1000 - 500);
        if (hinted > 0) upstream.target.release(upstream, now + hinted);
        else this.#discard(upstream);
      } else this.#discard(upstream);
    }
    this.#complete(this.#keepClient, now);
  }

  /** 101: the client's and the app's sockets are spliced from here on. */
  #switchProtocols(res: ResponseHead, fromUpstream: Buffer): void {
    const upstream = this.#upstream!;
    const target = upstream.target;
    this.#upstream = undefined;
    this.status = 101;
    this.#write(res.forwardHead + '\r\n');
    const fromClient = this.conn.takeBuffered();
    const held = this.#held;
    this.#held = undefined;
    const client = this.conn.detach();
    new Tunnel({
      client,
      upstream: upstream.detach(),
      target,
      websocket: this.head.upgrade!.toLowerCase() === 'websocket',
      fromClient: held && fromClient ? Buffer.concat([fromClient, held]) : (fromClient ?? held),
      fromUpstream,
    });
    this.#complete(false);
  }

  #retryElsewhere(status: ErrorStatus, detail: string): void {
    if (this.target) (this.#tried ??= []).push(this.target);
    this.#release();
    const route = this.#route!;
    if (this.#tried!.length >= route.targets.length + route.standby.length) {
      this.#respond(status, detail, false);
      return;
    }
    this.conn.ctx.metrics?.retry(this.app);
    this.#connect();
  }

  /** Lets go of the current target without answering (before a retry). */
  #release(): void {
    this.#dropUpstream();
    if (this.target) this.target.end();
    this.target = undefined;
  }

  #dropUpstream(): void {
    const upstream = this.#upstream;
    this.#upstream = undefined;
    if (upstream) this.#discard(upstream);
  }

  #discard(upstream: UpstreamConnection): void {
    upstream.owner = undefined;
    upstream.destroy();
  }

  #badResponse(reason: string): void {
    this.#logUpstreamError('response', 502, 'EPROTO', `invalid response: ${reason}`);
    this.#dropUpstream();
    this.#respond(502, INVALID_ANSWER, false);
  }

  /**
   * berth answers itself without an error: the redirect to HTTPS (308 keeps the method and body of
   * the request; `text` is the Location) or an ACME challenge (200; `text` is the body).
   */
  #answerItself(status: 200 | 308, text: string): void {
    const keep = this.#keepsClient(true);
    const options = { method: this.head.method, keepAlive: keep, requestId: this.#requestId };
    this.status = status;
    this.#write(status === 308 ? redirectResponse(text, options) : plainResponse(text, options));
    this.#complete(keep);
  }

  /** berth answers itself (an error page). Keeps the connection when the request was read whole. */
  #respond(status: ErrorStatus, detail: string, keepAlive = true): void {
    if (this.#answer === 'done') return;
    if (this.#answer === 'body') {
      this.conn.destroy();
      this.#complete(false);
      return;
    }
    const keep = this.#keepsClient(keepAlive);
    this.status = status;
    this.#write(errorResponse(status, detail, { method: this.head.method, keepAlive: keep, requestId: this.#requestId }));
    this.#complete(keep);
  }

  /** For berth's own answers. A refused upgrade closes: the client asked to leave HTTP on this connection. */
  #keepsClient(keepAlive: boolean): boolean {
    const head = this.head;
    return keepsConnection(keepAlive && head.keepAlive && head.upgrade === undefined, this.#request === 'read', true, this.conn.closing, this.conn.ctx.draining);
  }

  /** `now`: performance.now(), when the caller has just read it. */
  #complete(keepClient: boolean, now = performance.now()): void {
    if (this.#answer === 'done') return;
    this.#answer = 'done';
    this.#clearDeadline();
    const target = this.target;
    if (target) target.end();
    const conn = this.conn;
    const head = this.head;
    if (conn.ctx.accessLog) {
      logAccess(conn.ctx.accessLog, conn.decision, conn.forwarding.clientIp, conn.proto, head.host, head.method, head.path, this.status, this.#bytesOut, this.#started, now, target?.id);
    }
    conn.ctx.metrics?.request(conn.decision.route?.app, this.status, 'http/1.1', now - this.#started);
    if (this.status !== 101) this.conn.finished(keepClient, this.#settings?.idleTimeout ?? 60_000, now);
  }

  #write(data: string | Buffer): boolean {
    this.#bytesOut += data.length;
    return this.conn.write(data);
  }

  #setDeadline(kind: Deadline, ms: number): void {
    this.#setDeadlineAt(kind, ms, performance.now());
  }

  #setDeadlineAt(kind: Deadline, ms: number, now: number): void {
    this.#deadlineKind = kind;
    this.#deadline = ms > 0 ? now + ms : 0;
  }

  #clearDeadline(): void {
    this.#deadline = 0;
    this.#deadlineKind = 'none';
  }

  #logUpstreamError(phase: 'connect' | 'response' | 'body', status: number | undefined, code: string, message: string): void {
    const target = this.target;
    log.warn('proxy_upstream_error', {
      app: this.app,
      host: this.head.host,
      method: this.head.method,
      target: target?.id,
      address: target ? `${target.host}:${target.port}` : undefined,
      phase,
      status,
      code,
      message,
      id: this.#requestId,
    });
  }
}
