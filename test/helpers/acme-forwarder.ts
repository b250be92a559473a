// A real HTTPS forwarder in front of Pebble (which has no rate limits of its own): every request
// goes on to Pebble unchanged, Host header included, so Pebble's URLs and JWS checks name the
// forwarder; a test arms it to answer the next new-order request itself with HTTP 429 and the
// ACME rateLimited problem, as Let's Encrypt does when a limit is hit. Test-only behaviour,
// injected by the test.
import fs from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Pebble } from './pebble.ts';

export interface AcmeForwarder {
  /** The directory URL to give berth instead of Pebble's. */
  readonly directory: string;
  /** The next `count` new-order requests get a 429 rateLimited answer with this Retry-After (seconds). */
  rateLimitNextOrders(count: number, retryAfterSeconds: number): void;
  /** New-order requests seen so far, rate-limited ones included. */
  readonly newOrders: number;
  /** Rate-limited answers given so far. */
  readonly rateLimited: number;
  stop(): Promise<void>;
}

export async function startAcmeForwarder(pebble: Pebble): Promise<AcmeForwarder> {
  const upstream = new URL(pebble.directory);
  const ca = fs.readFileSync(pebble.caFile);
  let newOrderPath: string | undefined;
  let armed = 0;
  let retryAfter = 0;
  let newOrders = 0;
  let rateLimited = 0;
  const server = https.createServer({ cert: fs.readFileSync(pebble.listener.certFile), key: fs.readFileSync(pebble.listener.keyFile) }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (req.method === 'POST' && newOrderPath !== undefined && req.url === newOrderPath) {
        newOrders++;
        if (armed > 0) {
          armed--;
          rateLimited++;
          const problem = JSON.stringify({
            type: 'urn:ietf:params:acme:error:rateLimited',
            detail: 'too many new orders (test forwarder in front of Pebble)',
            status: 429,
          });
          res.writeHead(429, { 'content-type': 'application/problem+json', 'retry-after': String(retryAfter), 'content-length': Buffer.byteLength(problem) });
          res.end(problem);
          return;
        }
      }
      const forward = https.request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers, ca, agent: false }, (answer) => {
        const parts: Buffer[] = [];
        answer.on('data', (c: Buffer) => parts.push(c));
        answer.on('end', () => {
          const data = Buffer.concat(parts);
          if (req.url === upstream.pathname && answer.statusCode === 200) {
            const newOrder = (JSON.parse(data.toString('utf8')) as { newOrder?: string }).newOrder;
            if (newOrder) newOrderPath = new URL(newOrder).pathname;
          }
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          res.end(data);
        });
        answer.on('error', () => res.destroy());
      });
      forward.on('error', () => res.destroy());
      forward.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    directory: `https://127.0.0.1:${port}${upstream.pathname}`,
    rateLimitNextOrders: (count, seconds) => {
      armed = count;
      retryAfter = seconds;
    },
    get newOrders() {
      return newOrders;
    },
    get rateLimited() {
      return rateLimited;
    },
    stop: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}
