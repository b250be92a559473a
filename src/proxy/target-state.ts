// What the proxy knows about one container address while it routes to it: requests in flight
// (for least-connections and for draining), its tunnels, whether it recently refused a connection
// (passive health), and its pool of idle keep-alive connections.
import type { Target } from './route-table.ts';
import { UpstreamConnection } from './upstream-connection.ts';

/** Something long-lived on a target that a drain closes at its deadline: an upgraded connection. */
export interface Closable {
  /** Closes cleanly (a WebSocket gets a close frame); resolves once the sockets are gone. */
  close(reason: string): Promise<void>;
}

export class TargetState {
  readonly key: string;
  readonly host: string;
  readonly port: number;
  /** The container's name as the route table last gave it, for logs. */
  id: string;
  /** HTTP exchanges using this target right now. */
  inflight = 0;
  readonly tunnels = new Set<Closable>();
  /** Until when (performance.now() ms, like every proxy deadline) the balancer avoids this target; 0 when healthy. */
  downUntil = 0;
  /** Connections opened and not yet closed, idle or busy. */
  open = 0;
  /** Set once the first request routed here was logged. */
  announced = false;
  readonly #idle: UpstreamConnection[] = [];
  #quietWaiters: Array<() => void> = [];
  #requestWaiters: Array<() => void> = [];

  constructor(target: Target) {
    this.key = targetKey(target);
    this.host = target.host;
    this.port = target.port;
    this.id = target.id;
  }

  get idleCount(): number {
    return this.#idle.length;
  }

  /** True when nothing uses the target: no exchange and no tunnel. */
  get quiet(): boolean {
    return this.inflight === 0 && this.tunnels.size === 0;
  }

  /** An idle pooled connection (most recently used first), or a new one that is still connecting. */
  acquire(): UpstreamConnection {
    const pooled = this.#idle.pop();
    if (pooled) {
      pooled.idleUntil = 0;
      return pooled;
    }
    this.open++;
    return new UpstreamConnection(this);
  }

  /** Puts a connection back in the pool until `idleUntil`. */
  release(upstream: UpstreamConnection, idleUntil: number): void {
    upstream.owner = undefined;
    upstream.idleUntil = idleUntil;
    this.#idle.push(upstream);
  }

  /** Called by a connection that closed or was handed to a tunnel. */
  forget(upstream: UpstreamConnection): void {
    this.open--;
    const i = this.#idle.indexOf(upstream);
    if (i !== -1) this.#idle.splice(i, 1);
  }

  /** Closes pooled connections idle past their time (all of them with `now` = Infinity). */
  expireIdle(now: number): void {
    for (let i = this.#idle.length - 1; i >= 0; i--) {
      const upstream = this.#idle[i]!;
      if (upstream.idleUntil <= now) upstream.destroy();
    }
  }

  begin(): void {
    this.inflight++;
  }

  end(): void {
    this.inflight--;
    if (this.inflight === 0) this.#wake();
  }

  addTunnel(tunnel: Closable): void {
    this.tunnels.add(tunnel);
  }

  removeTunnel(tunnel: Closable): void {
    if (this.tunnels.delete(tunnel) && this.tunnels.size === 0) this.#wake();
  }

  markDown(now: number, forMs: number): void {
    this.downUntil = now + forMs;
  }

  isDown(now: number): boolean {
    return this.downUntil > now;
  }

  /** Resolves when the target is quiet (no exchange, no tunnel). */
  whenQuiet(): Promise<void> {
    if (this.quiet) return Promise.resolve();
    return new Promise((resolve) => this.#quietWaiters.push(resolve));
  }

  /** Resolves when no HTTP exchange is in flight (tunnels may stay). */
  whenRequestsDone(): Promise<void> {
    if (this.inflight === 0) return Promise.resolve();
    return new Promise((resolve) => this.#requestWaiters.push(resolve));
  }

  #wake(): void {
    if (this.inflight === 0 && this.#requestWaiters.length > 0) {
      const waiters = this.#requestWaiters;
      this.#requestWaiters = [];
      for (const wake of waiters) wake();
    }
    if (this.quiet && this.#quietWaiters.length > 0) {
      const waiters = this.#quietWaiters;
      this.#quietWaiters = [];
      for (const wake of waiters) wake();
    }
  }
}

export function targetKey(target: { host: string; port: number }): string {
  return `${target.host}:${target.port}`;
}
