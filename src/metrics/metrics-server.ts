// The admin listener (--metrics-listen): GET /metrics answers the Prometheus text format, with the
// families the supervisor gathers from every process at the time of the scrape. Anything else is
// a 404; it serves no app and takes no request body.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { UserError } from '../errors.ts';
import { listenError } from '../listen-error.ts';
import { log } from '../log.ts';
import { render, type MetricFamily } from './registry.ts';
import { closeServer } from '../close-server.ts';

/** Content type of the text format, version 0.0.4. */
export const EXPOSITION_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export class MetricsServer {
  readonly #host: string;
  readonly #port: number;
  readonly #gather: () => Promise<MetricFamily[]>;
  #server: http.Server | undefined;

  constructor(options: { host: string; port: number; gather: () => Promise<MetricFamily[]> }) {
    this.#host = options.host;
    this.#port = options.port;
    this.#gather = options.gather;
  }

  /** The port it listens on (the real one when 0 was asked). */
  get port(): number {
    return (this.#server?.address() as AddressInfo | null)?.port ?? this.#port;
  }

  async start(): Promise<void> {
    const server = http.createServer((req, res) => this.#handle(req, res));
    server.requestTimeout = 10_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e) => reject(listenError(e, { what: 'metrics', address: `${this.#host.includes(':') ? `[${this.#host}]` : this.#host}:${this.#port}`, flag: '--metrics-listen (or off)' })));
      server.listen(this.#port, this.#host, () => resolve());
    });
    this.#server = server;
  }

  async stop(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    await closeServer(server);
  }

  #handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found: metrics are at /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('only GET\n');
      return;
    }
    this.#gather().then(
      (families) => {
        const body = render(families);
        res.writeHead(200, { 'content-type': EXPOSITION_TYPE, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : body);
      },
      (e: unknown) => {
        log.error('metrics_scrape_failed', { error: e });
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end('the metrics could not be gathered\n');
      },
    );
  }
}
