// One TCP connection from berth to a container: its listeners are set once, for the connection's
// whole life, and hand events to whoever uses it right now (an exchange), or keep it idle in its
// target's pool. No listener is added or removed per request. It reads directly (direct-read.ts).
import type { Socket } from 'node:net';
import { connectDirect } from './direct-read.ts';
import type { TargetState } from './target-state.ts';

/** Whoever is using the connection: an exchange, between acquire and release. */
export interface UpstreamOwner {
  onUpstreamConnect(upstream: UpstreamConnection): void;
  onUpstreamData(upstream: UpstreamConnection, chunk: Buffer): void;
  onUpstreamEnd(upstream: UpstreamConnection): void;
  onUpstreamClose(upstream: UpstreamConnection, error: NodeJS.ErrnoException | undefined): void;
  onUpstreamDrain(upstream: UpstreamConnection): void;
}

export class UpstreamConnection {
  readonly socket: Socket;
  readonly target: TargetState;
  owner: UpstreamOwner | undefined;
  /** Requests this connection has carried; a reused connection may have been closed by the app meanwhile. */
  served = 0;
  connected = false;
  /** When an idle pooled connection is closed (performance.now() ms); 0 while in use. */
  idleUntil = 0;
  #error: NodeJS.ErrnoException | undefined;
  #detached = false;

  constructor(target: TargetState) {
    this.target = target;
    this.socket = connectDirect({ host: target.host, port: target.port, noDelay: true, keepAlive: true, keepAliveInitialDelay: 60_000 }, this.#onRead);
    this.socket.on('connect', this.#onConnect);
    this.socket.on('end', this.#onEnd);
    this.socket.on('error', this.#onError);
    this.socket.on('close', this.#onClose);
    this.socket.on('drain', this.#onDrain);
  }

  write(data: string | Buffer): boolean {
    return typeof data === 'string' ? this.socket.write(data, 'latin1') : this.socket.write(data);
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Hands the socket over (to a tunnel): this object stops listening and forgets it. */
  detach(): Socket {
    this.#detached = true;
    this.owner = undefined;
    this.socket.off('connect', this.#onConnect);
    this.socket.off('end', this.#onEnd);
    this.socket.off('close', this.#onClose);
    this.socket.off('drain', this.#onDrain);
    this.socket.off('error', this.#onError);
    this.target.forget(this);
    return this.socket;
  }

  readonly #onConnect = (): void => {
    this.connected = true;
    this.owner?.onUpstreamConnect(this);
  };

  /** A direct read: ours until the socket is handed to a tunnel, then the tunnel's, as a 'data' event. */
  readonly #onRead = (chunk: Buffer): void => {
    if (this.#detached) this.socket.emit('data', chunk);
    else if (this.owner) this.owner.onUpstreamData(this, chunk);
    else this.socket.destroy(); // bytes on an idle connection: the app is out of step; never reuse it
  };

  readonly #onEnd = (): void => {
    if (this.owner) this.owner.onUpstreamEnd(this);
  };

  readonly #onError = (error: NodeJS.ErrnoException): void => {
    this.#error = error;
  };

  readonly #onClose = (): void => {
    if (this.#detached) return;
    this.target.forget(this);
    const owner = this.owner;
    this.owner = undefined;
    owner?.onUpstreamClose(this, this.#error);
  };

  readonly #onDrain = (): void => {
    this.owner?.onUpstreamDrain(this);
  };
}
