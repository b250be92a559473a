// The proxy's metrics: every answered request (by app, status class and protocol, with its
// duration), upstream connect errors and retries, connections and WebSockets open. The request
// path only adds to numbers; the text is made when the supervisor asks (a scrape).
import { Registry, type HistogramSeries } from './registry.ts';

/** What the proxy has open now: read on each scrape. */
export interface ProxyActivity {
  /** Client connections: HTTP/1.1 connections and HTTP/2 sessions (not those upgraded to WebSockets). */
  connections: number;
  /** Upgraded connections (WebSockets) relayed to apps. */
  websockets: number;
}

const CODE_CLASSES = ['0xx', '1xx', '2xx', '3xx', '4xx', '5xx'];

export class ProxyMetrics {
  readonly registry: Registry;
  readonly #requests;
  readonly #duration;
  readonly #connectErrors;
  readonly #retries;
  /** Each app's series, so that a request costs one map look-up and no label string. */
  readonly #byApp = new Map<string, { requests: Array<{ n: number } | undefined>; duration: HistogramSeries }>();

  constructor(registry = new Registry()) {
    this.registry = registry;
    this.#requests = registry.counter('berth_http_requests_total', 'HTTP requests the proxy answered, by app (empty: no app has the host), status class and protocol (http/1.1 or h2).', ['app', 'code_class', 'protocol']);
    this.#duration = registry.histogram('berth_http_request_duration_seconds', "From a request's whole head read to the last byte of its answer sent, by app.", ['app']);
    this.#connectErrors = registry.counter('berth_upstream_connect_errors_total', "Connections to an app's container that failed before the request went out, by app.", ['app']);
    this.#retries = registry.counter('berth_upstream_retries_total', 'Requests sent again (to another container, or on a new connection) after the first try failed, by app.', ['app']);
  }

  /** Reads what is open on each scrape. */
  watch(activity: () => ProxyActivity): void {
    const connections = this.registry.gauge('berth_http_connections', 'Client connections open: HTTP/1.1 connections and HTTP/2 sessions, not those upgraded to WebSockets.');
    const websockets = this.registry.gauge('berth_websockets', 'Upgraded connections (WebSockets) open between clients and apps.');
    this.registry.onCollect(() => {
      const now = activity();
      connections.set([], now.connections);
      websockets.set([], now.websockets);
    });
  }

  /** One answered request; `ms` from its head read to its answer's end; status 499: the client left first. */
  request(app: string | undefined, status: number, protocol: 'http/1.1' | 'h2', ms: number): void {
    const a = app ?? '';
    let series = this.#byApp.get(a);
    if (series === undefined) {
      series = { requests: new Array(CODE_CLASSES.length * 2), duration: this.#duration.child([a]) };
      this.#byApp.set(a, series);
    }
    const cls = status >= 100 && status < 600 ? Math.floor(status / 100) : 5;
    const slot = cls * 2 + (protocol === 'h2' ? 1 : 0);
    (series.requests[slot] ??= this.#requests.child([a, CODE_CLASSES[cls]!, protocol])).n++;
    this.#duration.observeIn(series.duration, ms / 1000);
  }

  connectError(app: string | undefined): void {
    this.#connectErrors.inc([app ?? '']);
  }

  retry(app: string | undefined): void {
    this.#retries.inc([app ?? '']);
  }
}
