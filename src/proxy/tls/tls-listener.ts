// The HTTPS listener: TLS with the certificate picked by SNI from memory, HTTP/2 or HTTP/1.1 by
// ALPN, TLS-ALPN-01 answers to clients that offer only `acme-tls/1`. Decrypted connections go to
// the edge server: HTTP/1.1 to its fast path, HTTP/2 to its HTTP/2 front end; both forward with
// X-Forwarded-Proto: https.
import { createServer as createTlsServer, type SecureContext, type Server as TlsServer, type TLSSocket } from 'node:tls';
import { listenError } from '../../listen-error.ts';
import { log } from '../../log.ts';
import { DRAIN_TIMEOUT_MS } from '../edge-server.ts';
import { ACME_TLS_PROTOCOL } from './acme-challenges.ts';
import { TLS_PROFILE } from './tls-profile.ts';

/** A client gets this long to finish its TLS handshake. */
export const HANDSHAKE_TIMEOUT_MS = 10_000;

export interface RequestHandler {
  /** HTTP/1.x connections, once decrypted: the edge server's fast path. */
  serveConnection(socket: TLSSocket, proto: 'https', port: number): void;
  /** Connections whose client chose HTTP/2, once decrypted. */
  serveHttp2(socket: TLSSocket, port: number): void;
  /** GOAWAY to every HTTP/2 session (when the listener stops). */
  closeHttp2(): void;
}

export interface TlsListenerOptions {
  /** 0 picks a free port (tests); `port` then reports the bound one. */
  port: number;
  /** Default '0.0.0.0'. */
  bindHost?: string;
  /** The certificate for a handshake, from memory; `acmeTls` when the client offered only acme-tls/1. */
  secureContext(servername: string, acmeTls: boolean): SecureContext | undefined;
  /** Where requests go once decrypted: the edge server. */
  handler: RequestHandler;
  /** Offer HTTP/2 by ALPN. Default true. */
  http2?: boolean;
  /** Default DRAIN_TIMEOUT_MS. */
  drainTimeoutMs?: number;
  /** A listening socket handed over by the supervisor (its file descriptor): served instead of binding `port`. */
  fd?: number;
}

/** Set on a socket whose client asked for acme-tls/1 (ALPN is decided before the certificate in TLS 1.3). */
const ACME_TLS = Symbol('berth.acmeTls');

export class TlsListener {
  readonly #options: TlsListenerOptions;
  readonly #sockets = new Set<TLSSocket>();
  #server: TlsServer | undefined;
  #boundPort: number | undefined;
  #starting: Promise<void> | undefined;
  #stopped: Promise<void> | undefined;

  constructor(options: TlsListenerOptions) {
    this.#options = options;
  }

  /** The bound port once started (so port 0 works), the configured one before. */
  get port(): number {
    return this.#boundPort ?? this.#options.port;
  }

  start(): Promise<void> {
    if (this.#starting) throw new Error('TLS listener: start() may be called only once');
    this.#starting = this.#start();
    return this.#starting;
  }

  /** Stops accepting, lets requests in flight finish (up to the drain timeout), then cuts what is left. Safe after a failed start. */
  stop(): Promise<void> {
    this.#stopped ??= this.#stop();
    return this.#stopped;
  }

  async #start(): Promise<void> {
    const { secureContext, handler } = this.#options;
    const offerH2 = this.#options.http2 ?? true;
    const server = createTlsServer({
      // Its suites and groups hold for every handshake, also after SNI picks a certificate's context.
      ...TLS_PROFILE,
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
      // ALPN comes before the certificate in TLS 1.3, so the certificate can follow the protocol.
      ALPNCallback: function (this: TLSSocket, { protocols }: { servername: string; protocols: string[] }) {
        if (protocols.length === 1 && protocols[0] === ACME_TLS_PROTOCOL) {
          (this as TLSSocket & { [ACME_TLS]?: boolean })[ACME_TLS] = true;
          return ACME_TLS_PROTOCOL;
        }
        if (offerH2 && protocols.includes('h2')) return 'h2';
        if (protocols.includes('http/1.1')) return 'http/1.1';
        return undefined; // nothing we speak: the handshake ends with no_application_protocol
      } as (arg: { servername: string; protocols: string[] }) => string | undefined,
      SNICallback: function (this: TLSSocket, servername: string, done: (err: Error | null, ctx?: SecureContext) => void) {
        const acmeTls = (this as TLSSocket & { [ACME_TLS]?: boolean })[ACME_TLS] === true;
        const context = secureContext(servername, acmeTls);
        if (context) done(null, context);
        else done(new Error(`no certificate for ${JSON.stringify(servername.slice(0, 253))}${acmeTls ? ' (acme-tls/1)' : ''}`));
      },
    } as Parameters<typeof createTlsServer>[0]);
    server.on('secureConnection', (socket: TLSSocket) => {
      // A validation connection has nothing more to say once the handshake showed the certificate.
      if ((socket as TLSSocket & { [ACME_TLS]?: boolean })[ACME_TLS]) {
        socket.destroy();
        return;
      }
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
      // HTTP/1.1 (or no ALPN) takes the same fast path as the HTTP listener.
      if (socket.alpnProtocol === 'h2') handler.serveHttp2(socket, this.port);
      else handler.serveConnection(socket, 'https', this.port);
    });
    server.on('tlsClientError', (error: Error & { code?: string }, socket: TLSSocket) => {
      log.debug('tls_handshake_failed', { code: error.code, message: error.message, servername: (socket as TLSSocket & { servername?: string }).servername });
    });
    this.#server = server;
    const { port } = this.#options;
    const host = this.#options.bindHost ?? '0.0.0.0';
    await new Promise<void>((resolve, reject) => {
      const onError = (e: NodeJS.ErrnoException) => {
        server.off('listening', onListening);
        reject(listenError(e, { what: 'HTTPS', address: `${host}:${port}`, flag: '--https-port' }));
      };
      const onListening = () => {
        server.off('error', onError);
        const address = server.address();
        this.#boundPort = address && typeof address === 'object' ? address.port : port;
        resolve();
      };
      server.once('error', onError);
      server.once('listening', onListening);
      if (this.#options.fd !== undefined) server.listen({ fd: this.#options.fd });
      else server.listen(port, host);
    });
    server.on('error', (e) => log.error('tls_listener_error', { port: this.port, error: e }));
    log.info('tls_listening', { host, port: this.port, http2: offerH2 });
  }

  async #stop(): Promise<void> {
    await this.#starting?.catch(() => undefined);
    const server = this.#server;
    if (!server?.listening) return;
    // HTTP/2 clients get GOAWAY; HTTP/1.1 connections are drained by the edge server's stop().
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    this.#options.handler.closeHttp2();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.#options.drainTimeoutMs ?? DRAIN_TIMEOUT_MS);
    });
    await Promise.race([closed, deadline]);
    clearTimeout(timer);
    for (const socket of this.#sockets) socket.destroy();
    await closed;
    log.info('tls_stopped', { port: this.port });
  }
}
