// Fixtures for proxy tests on real loopback sockets: upstream servers, a proxy, a plain client.
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import type { TestContext } from 'node:test';
import { EdgeServer, type EdgeServerOptions } from '../../src/proxy/edge-server.ts';
import type { RouteTable, Target } from '../../src/proxy/route-table.ts';

export interface Upstream {
  target: Target;
  server: http.Server;
  /** TCP connections the upstream accepted so far. */
  connections(): number;
}

export async function startUpstream(t: TestContext, id: string, handler: http.RequestListener): Promise<Upstream> {
  const server = http.createServer(handler);
  server.keepAliveTimeout = 30_000;
  let connections = 0;
  server.on('connection', () => connections++);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  return { server, connections: () => connections, target: { id, host: '127.0.0.1', port: (server.address() as net.AddressInfo).port } };
}

/** An upstream that answers every request with its id as the body. */
export function startNamedUpstream(t: TestContext, id: string): Promise<Upstream> {
  return startUpstream(t, id, (req, res) => {
    req.resume();
    res.end(id);
  });
}

export async function startProxy(t: TestContext, table: RouteTable, options: Partial<EdgeServerOptions> = {}): Promise<EdgeServer> {
  const proxy = new EdgeServer({ httpPort: 0, bindHost: '127.0.0.1', ...options });
  await proxy.start();
  t.after(() => proxy.stop());
  proxy.swap(table);
  return proxy;
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export interface Call {
  host?: string;
  method?: string;
  path?: string;
  headers?: http.OutgoingHttpHeaders;
  body?: Buffer | Buffer[];
  agent?: http.Agent | false;
}

export function call(port: number, c: Call = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method: c.method ?? 'GET', path: c.path ?? '/', agent: c.agent ?? false, headers: { ...(c.host ? { host: c.host } : {}), ...c.headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('error', reject);
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      },
    );
    req.on('error', reject);
    for (const chunk of c.body === undefined ? [] : Array.isArray(c.body) ? c.body : [c.body]) req.write(chunk);
    req.end();
  });
}

/** A raw client: writes `text`, resolves with everything received until the server closes. */
export async function rawExchange(port: number, text: string | Buffer, options: { timeoutMs?: number } = {}): Promise<string> {
  const socket = net.connect(port, '127.0.0.1');
  let received = '';
  socket.on('data', (d: Buffer) => (received += d.toString('latin1')));
  socket.write(text);
  const timer = setTimeout(() => socket.destroy(), options.timeoutMs ?? 10_000);
  await once(socket, 'close');
  clearTimeout(timer);
  return received;
}

export function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/**
 * A port free a moment ago, for a server another process binds later. It is taken below the
 * kernel's ephemeral range (32768-60999 by default), where port 0 servers and outgoing connections
 * of every other test process running meanwhile get theirs: between this check and the bind, only
 * another pick of the same random port could take it.
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const server = net.createServer();
    const bound = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (!bound) continue;
    server.close();
    await once(server, 'close');
    return port;
  }
}
