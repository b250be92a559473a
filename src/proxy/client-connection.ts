// One client connection on the fast path (HTTP/1.1 over TCP, or over TLS once decrypted): finds
// each request head, hands it to an Exchange, and keeps the connection's own timeouts (header,
// keep-alive idle, lingering close: deadlines on performance.now()'s monotonic clock). Its listeners
// are set once, for the connection's life, and so are the forwarded headers that describe it and
// the request policy's Decision its exchanges reuse.
import type { Socket } from 'node:net';
import { adoptDirect } from './direct-read.ts';
import { errorResponse, type ErrorStatus } from './error-pages.ts';
import { Exchange } from './exchange.ts';
import { findHeadEnd, HttpError, parseRequestHead } from './http1-head.ts';
import type { ProxyContext } from './proxy-context.ts';
import { connectionForwarding, Decision, keepsConnection, type ConnectionForwarding } from './request-policy.ts';

/** After berth closes its side, how long it keeps reading (and dropping) what the client still sends, so its answer is not lost to a reset. */
export const LINGER_MS = 2_000;

/** The connection's own deadline between exchanges: the whole next head, keep-alive idle, lingering close; or none. */
type Deadline = 'none' | 'header' | 'idle' | 'linger';

export class ClientConnection {
  readonly socket: Socket;
  readonly ctx: ProxyContext;
  readonly proto: 'http' | 'https';
  /** The port of the listener the connection arrived on (X-Forwarded-Port). */
  readonly port: number;
  /** The client's address and the forwarded-header parts that never change on this connection. */
  readonly forwarding: ConnectionForwarding;
  /** The request policy's answer for the current exchange; one per connection, reused by each. */
  readonly decision = new Decision();
  exchange: Exchange | undefined;
  /** Bytes read and not yet consumed: the start of the next request (pipelined or partial). */
  #buffered: Buffer | undefined;
  #scanFrom = 0;
  #deadline = 0;
  #deadlineKind: Deadline = 'none';
  /** The client sent FIN: answer what is in flight, then close. */
  #ended = false;
  #closing = false;
  #gone = false;
  #detached = false;

  /**
   * `direct`: the socket was just accepted by a net.Server made with `pauseOnConnect` and is taken
   * over to read directly (see direct-read.ts); otherwise (a decrypted TLS socket) it is read
   * through 'data' events.
   */
  constructor(socket: Socket, ctx: ProxyContext, proto: 'http' | 'https', port: number, direct = false) {
    const adopted = direct ? adoptDirect(socket, this.#onRead) : undefined;
    if (adopted) socket = adopted;
    else {
      socket.on('data', this.#onData);
      if (direct) socket.resume();
    }
    this.socket = socket;
    this.ctx = ctx;
    this.proto = proto;
    this.port = port;
    this.forwarding = connectionForwarding(socket.remoteAddress, proto, port);
    socket.on('end', this.#onEnd);
    socket.on('error', this.#onError);
    socket.on('close', this.#onClose);
    socket.on('drain', this.#onDrain);
    this.#setDeadline('header', ctx.limits.headerTimeout, performance.now());
  }

  get closing(): boolean {
    return this.#closing || this.#ended;
  }

  get gone(): boolean {
    return this.#gone;
  }

  write(data: string | Buffer): boolean {
    if (this.#gone) return true;
    return typeof data === 'string' ? this.socket.write(data, 'latin1') : this.socket.write(data);
  }

  /** Bytes that arrived beyond the current request: kept for the next one (paused if they pile up). */
  stash(chunk: Buffer): void {
    this.#buffered = this.#buffered ? Buffer.concat([this.#buffered, chunk]) : chunk;
    if (this.#buffered.length > this.ctx.limits.maxHeaderBytes) this.socket.pause();
  }

  /** Takes the bytes read beyond the request head: the start of the body. */
  takeBuffered(): Buffer | undefined {
    const buffered = this.#buffered;
    this.#buffered = undefined;
    return buffered;
  }

  /** The exchange is over: close, or wait for (or start on) the next request. `now`: performance.now(). */
  finished(keepAlive: boolean, idleTimeout: number, now: number): void {
    this.exchange = undefined;
    if (this.#gone || this.#detached) return;
    if (!keepsConnection(keepAlive, true, true, this.closing, this.ctx.draining)) {
      this.close();
      return;
    }
    this.#setDeadline('idle', idleTimeout, now);
    if (this.socket.isPaused()) this.socket.resume();
    if (this.#buffered) this.#next();
  }

  /** Answers a request berth refuses before any exchange, then closes. */
  refuse(status: ErrorStatus, detail: string, method?: string): void {
    this.write(errorResponse(status, detail, method === undefined ? {} : { method }));
    this.close();
  }

  /** Closes gracefully: whatever is queued goes out, then FIN; the client's leftovers are read and dropped for a moment. */
  close(): void {
    if (this.#closing || this.#gone) return;
    this.#closing = true;
    this.#buffered = undefined;
    this.socket.end();
    this.#setDeadline('linger', LINGER_MS, performance.now());
    if (this.socket.isPaused()) this.socket.resume();
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Hands the socket to a tunnel: this object lets go of it. */
  detach(): Socket {
    this.#detached = true;
    this.socket.off('data', this.#onData);
    this.socket.off('end', this.#onEnd);
    this.socket.off('error', this.#onError);
    this.socket.off('close', this.#onClose);
    this.socket.off('drain', this.#onDrain);
    this.ctx.connectionClosed(this);
    return this.socket;
  }

  /** Called by the edge server's sweep: enforces this connection's and its exchange's deadlines. */
  checkDeadline(now: number): void {
    if (this.exchange) {
      this.exchange.checkDeadline(now);
      return;
    }
    if (this.#deadline === 0 || now < this.#deadline) return;
    const kind = this.#deadlineKind;
    this.#deadline = 0;
    if (kind === 'header' && this.#buffered && this.#buffered.length > 0) this.refuse(408, 'The request was not sent in time.');
    else this.destroy();
  }

  /** Called while stopping: an idle connection closes now, a busy one after its answer. */
  closeIfIdle(): void {
    if (!this.exchange && !this.#detached) this.close();
  }

  /** A direct read: ours until the socket is handed on, then its new owner's, as a 'data' event. */
  readonly #onRead = (chunk: Buffer): void => {
    if (this.#detached) this.socket.emit('data', chunk);
    else this.#onData(chunk);
  };

  readonly #onData = (chunk: Buffer): void => {
    if (this.exchange) {
      this.exchange.onClientData(chunk);
      return;
    }
    if (this.#closing) return; // lingering: dropped
    this.#buffered = this.#buffered ? Buffer.concat([this.#buffered, chunk]) : chunk;
    this.#next();
  };

  /** Starts the next request if its whole head is buffered. */
  #next(): void {
    let buf = this.#buffered;
    if (!buf) return;
    // RFC 9112 §2.2: empty lines before a request line are ignored.
    let skip = 0;
    while (skip + 1 < buf.length && buf[skip] === 13 && buf[skip + 1] === 10) skip += 2;
    if (skip > 0) {
      buf = skip < buf.length ? buf.subarray(skip) : undefined;
      this.#buffered = buf;
      if (!buf) return;
    }
    const end = findHeadEnd(buf, this.#scanFrom > 3 ? this.#scanFrom - 3 : 0);
    const max = this.ctx.limits.maxHeaderBytes;
    if (end === -1) {
      // The head is incomplete: its time runs from the first byte (a whole head needs no deadline).
      if (this.#deadlineKind !== 'header') this.#setDeadline('header', this.ctx.limits.headerTimeout, performance.now());
      if (buf.length > max) this.refuse(431, 'The request head is too large.');
      else this.#scanFrom = buf.length;
      return;
    }
    if (end > max) {
      this.refuse(431, 'The request head is too large.');
      return;
    }
    this.#scanFrom = 0;
    const bodyStart = end + 4;
    this.#buffered = bodyStart < buf.length ? buf.subarray(bodyStart) : undefined;
    let head;
    try {
      head = parseRequestHead(buf.toString('latin1', 0, end), this.ctx.limits);
    } catch (e) {
      if (!(e instanceof HttpError)) throw e;
      this.refuse(e.status, `The request could not be read: ${e.message}.`);
      return;
    }
    this.#deadline = 0;
    this.#deadlineKind = 'none';
    const exchange = new Exchange(this, head);
    this.exchange = exchange;
    exchange.start();
  }

  #setDeadline(kind: Deadline, ms: number, now: number): void {
    this.#deadlineKind = kind;
    this.#deadline = ms > 0 ? now + ms : 0;
  }

  readonly #onEnd = (): void => {
    this.#ended = true;
    if (this.exchange) this.exchange.onClientEnd();
    else this.close();
  };

  readonly #onError = (): void => {
    // 'close' follows; the exchange learns of it there.
  };

  readonly #onClose = (): void => {
    this.#gone = true;
    const exchange = this.exchange;
    this.exchange = undefined;
    exchange?.onClientClose();
    this.ctx.connectionClosed(this);
  };

  readonly #onDrain = (): void => {
    this.exchange?.onClientDrain();
  };
}
