// The listening sockets the supervisor holds for its children: bound here (HTTP, HTTPS, SSH), or
// taken from systemd's socket activation (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES). The supervisor
// binds them but never accepts on them: a net.Server would accept in this process too, so they
// are bare TCP handles; the child that serves one calls listen() on it, and while no child does
// (one was killed and its successor is starting), connections wait in the kernel's backlog.
import { lookup } from 'node:dns/promises';
import { isIPv6 } from 'node:net';
import { getSystemErrorName } from 'node:util';
import { listenError } from '../listen-error.ts';

export type SocketName = 'http' | 'https' | 'ssh';

/** A bound (or inherited) TCP socket, as a libuv handle that child_process.spawn can hand on as an fd. */
export interface HeldSocket {
  readonly name: SocketName;
  /** The port it is bound to (the real one when 0 was asked for). */
  readonly port: number;
  /** Passed in spawn()'s stdio: the child sees the socket at that position. */
  readonly handle: object;
  close(): void;
}

interface TcpHandle {
  bind(address: string, port: number): number;
  bind6(address: string, port: number, flags: number): number;
  open(fd: number): number;
  getsockname(out: { port?: number }): number;
  close(): void;
}

interface TcpBinding {
  TCP: new (type: number) => TcpHandle;
  constants: { SERVER: number };
}

const WHAT: Record<SocketName, { what: string; flag: string }> = {
  http: { what: 'HTTP', flag: '--http-port' },
  https: { what: 'HTTPS', flag: '--https-port' },
  ssh: { what: 'SSH', flag: '--ssh-port' },
};

/** Binds the three sockets, or takes them from systemd when it passed them to this process. */
export async function holdSockets(ports: Record<SocketName, number>, bindHost: string, env: NodeJS.ProcessEnv = process.env): Promise<Record<SocketName, HeldSocket>> {
  const inherited = fromSystemd(env);
  const held: HeldSocket[] = [];
  try {
    for (const name of ['http', 'https', 'ssh'] as const) {
      const fd = inherited?.get(name);
      held.push(fd !== undefined ? adopt(name, fd) : await bind(name, ports[name], bindHost));
    }
  } catch (e) {
    for (const socket of held) socket.close();
    throw e;
  }
  const [http, https, ssh] = held as [HeldSocket, HeldSocket, HeldSocket];
  return { http, https, ssh };
}

function tcpBinding(): TcpBinding {
  // The one way in Node to bind a TCP socket without accepting on it (see the header).
  return (process as unknown as { binding(name: string): TcpBinding }).binding('tcp_wrap');
}

async function bind(name: SocketName, port: number, bindHost: string): Promise<HeldSocket> {
  const { TCP, constants } = tcpBinding();
  const site = { what: WHAT[name].what, address: `${bindHost}:${port}`, flag: WHAT[name].flag };
  let address: string;
  try {
    address = (await lookup(bindHost)).address;
  } catch (e) {
    throw listenError(e, site);
  }
  const handle = new TCP(constants.SERVER);
  const status = isIPv6(address) ? handle.bind6(address, port, 0) : handle.bind(address, port);
  const out: { port?: number } = {};
  // libuv reports EADDRINUSE only at listen(): a socket whose bind failed so has no port yet.
  const failed = status < 0 ? getSystemErrorName(status) : handle.getsockname(out) < 0 || !out.port ? 'EADDRINUSE' : undefined;
  if (failed) {
    handle.close();
    throw listenError(Object.assign(new Error(`${failed}: bind ${address}:${port}`), { code: failed }), site);
  }
  return { name, port: out.port!, handle, close: () => handle.close() };
}

function adopt(name: SocketName, fd: number): HeldSocket {
  const { TCP, constants } = tcpBinding();
  const handle = new TCP(constants.SERVER);
  const status = handle.open(fd);
  const out: { port?: number } = {};
  if (status < 0 || handle.getsockname(out) < 0 || !out.port) {
    handle.close();
    throw new Error(`systemd socket ${name} (fd ${fd}) is not a bound TCP socket`);
  }
  return { name, port: out.port, handle, close: () => handle.close() };
}

/**
 * systemd's sockets by name: LISTEN_FDNAMES names them (`http:https:ssh` in any order), or else
 * they come in that order from fd 3. Undefined when this process was not socket-activated.
 */
function fromSystemd(env: NodeJS.ProcessEnv): Map<SocketName, number> | undefined {
  if (env.LISTEN_PID !== String(process.pid)) return undefined;
  const count = Number(env.LISTEN_FDS);
  if (!Number.isInteger(count) || count < 1) return undefined;
  const names = env.LISTEN_FDNAMES ? env.LISTEN_FDNAMES.split(':') : ['http', 'https', 'ssh'];
  const found = new Map<SocketName, number>();
  for (let i = 0; i < count; i++) {
    const name = names[i];
    if (name === 'http' || name === 'https' || name === 'ssh') found.set(name, 3 + i);
  }
  // Not to be inherited further: the children get their sockets at fixed positions instead.
  for (const key of ['LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES']) delete env[key];
  return found;
}
