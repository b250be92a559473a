// Keeps dead containers out of routing. Every publish of the orchestrator goes through it; when the
// engine reports a web container dead (die, stop, oom, unhealthy), its target leaves its app's
// route at once, without waiting for a deploy that may hold the app's lock, and no later publish
// brings it back until the engine reports it started again.
import { log } from '../log.ts';
import type { Target } from '../proxy/route-table.ts';
import type { DrainResult, RoutePublisher } from './deployment.ts';

export class RouteGuard implements RoutePublisher {
  readonly #inner: RoutePublisher;
  /** Container names (target ids) the engine reported down, and why. */
  readonly #down = new Map<string, string>();

  constructor(inner: RoutePublisher) {
    this.#inner = inner;
  }

  publish(app: string, hostnames: string[], targets: Target[], standby: Target[] = []): void {
    const up = (list: Target[]) => (this.#down.size === 0 ? list : list.filter((t) => !this.#down.has(t.id)));
    this.#inner.publish(app, hostnames, up(targets), up(standby));
  }

  unpublish(app: string): void {
    this.#inner.unpublish(app);
  }

  routed(app: string): readonly Target[] {
    return this.#inner.routed(app);
  }

  standby(app: string): readonly Target[] {
    return this.#inner.standby(app);
  }

  drain(targets: readonly Target[], options: { deadlineMs: number; reason: string }): Promise<DrainResult> {
    return this.#inner.drain(targets, options);
  }

  /**
   * The engine reported `container` down: it is routed no more. Returns whether it was routed
   * (and so was taken out now). `hostnames` are the app's, for the republish.
   */
  withdraw(app: string, hostnames: string[], container: string, reason: string): boolean {
    this.#down.set(container, reason);
    const routed = this.#inner.routed(app);
    const standby = this.#inner.standby(app);
    if (!routed.some((t) => t.id === container) && !standby.some((t) => t.id === container)) return false;
    this.#inner.publish(app, hostnames, routed.filter((t) => t.id !== container), standby.filter((t) => t.id !== container));
    return true;
  }

  /** The container runs again and may be routed. Returns whether it was down. */
  revive(container: string): boolean {
    return this.#down.delete(container);
  }

  /** The container is gone for good. */
  forget(container: string): void {
    if (this.#down.delete(container)) log.debug('route_guard_forgot', { container });
  }

  isDown(container: string): boolean {
    return this.#down.has(container);
  }

  /** Every container reported down and not yet revived or forgotten. */
  down(): string[] {
    return [...this.#down.keys()];
  }
}
