// The proxy's global protections against slow or greedy clients: they hold before berth knows
// which app a request is for. The per-app settings (`proxy:set`) are in state/proxy-settings.ts.
// Every default is documented where it is declared.

/** Protections that hold before berth knows which app a request is for; not per app. */
export interface ClientLimits {
  /** A client gets this long to send a whole request head (from its first byte, or from connecting): the slowloris guard. 408 after. Default 30 s. */
  headerTimeout: number;
  /**
   * Longest silence while a client sends a request body (408 after), and longest a client may
   * leave an answer unread while berth has more of it to send (the connection is cut after).
   * Default 60 s.
   */
  bodyTimeout: number;
  /** Largest request head (request line and headers). 431 above it. Default 32 KiB. */
  maxHeaderBytes: number;
  /** Most header lines in one head. 431 above it. Default 200. */
  maxHeaders: number;
  /** Opening a TCP connection to a container: the local bridge answers at once or not at all. 502 after. Default 5 s. */
  connectTimeout: number;
  /**
   * How long an idle pooled connection to a container is kept. A `Keep-Alive: timeout=N` hint from
   * the app lowers it. Below Node's 5 s server default, so berth rarely reuses a connection the app
   * is just closing; the rest is covered by one retry of bodiless idempotent requests. Default 4 s.
   */
  upstreamIdle: number;
  /** After a refused or reset connection, a target gets no new requests for this long (passive health). Default 5 s. */
  targetDownFor: number;
}

export const DEFAULT_CLIENT_LIMITS: Readonly<ClientLimits> = Object.freeze({
  headerTimeout: 30_000,
  bodyTimeout: 60_000,
  maxHeaderBytes: 32 * 1024,
  maxHeaders: 200,
  connectTimeout: 5_000,
  upstreamIdle: 4_000,
  targetDownFor: 5_000,
});
