// Which of an app's web targets gets the next request: the one with the fewest requests in flight
// (least-connections), taking turns among equals (round-robin), skipping targets that recently
// refused a connection (passive health) unless every target did.
import { log, sharedClockMs } from '../log.ts';
import type { AppRoute, Target } from './route-table.ts';
import { TargetState, targetKey } from './target-state.ts';

/** The per-target state of every address the proxy routes to; the same address keeps its state across route swaps. */
export class TargetRegistry {
  readonly #byKey = new Map<string, TargetState>();
  #byObject = new WeakMap<Target, TargetState>();
  /** The addresses the route table holds, as of the last prune. */
  #live: ReadonlySet<string> = new Set();

  /** The state of a target, made on first use. */
  state(target: Target): TargetState {
    let state = this.#byObject.get(target);
    if (state && this.#byKey.get(state.key) === state) return state;
    const key = targetKey(target);
    state = this.#byKey.get(key);
    if (state) state.id = target.id;
    else {
      state = new TargetState(target);
      this.#byKey.set(key, state);
    }
    this.#byObject.set(target, state);
    return state;
  }

  /** The state of a target if the proxy has one, without making one. */
  find(target: { host: string; port: number }): TargetState | undefined {
    return this.#byKey.get(targetKey(target));
  }

  all(): IterableIterator<TargetState> {
    return this.#byKey.values();
  }

  /** Closes pooled connections idle past their time, and forgets unrouted targets whose last connection closed. */
  expireIdle(now: number): void {
    for (const [key, state] of this.#byKey) {
      if (state.idleCount > 0) state.expireIdle(now);
      if (state.open === 0 && state.quiet && !this.#live.has(key)) this.#byKey.delete(key);
    }
  }

  /** Forgets targets no longer routed to (`live` holds the keys still in the table) once nothing uses them. */
  prune(live: ReadonlySet<string>): void {
    this.#live = live;
    for (const [key, state] of this.#byKey) {
      if (live.has(key) || !state.quiet) continue;
      state.expireIdle(Infinity);
      if (state.open === 0) this.#byKey.delete(key);
    }
    this.#byObject = new WeakMap();
  }
}

export class LoadBalancer {
  readonly #registry: TargetRegistry;
  /** Per app, where the next tie-break starts. */
  readonly #turn = new Map<string, number>();

  constructor(registry: TargetRegistry) {
    this.#registry = registry;
  }

  /**
   * The target for the next request of `route`, or undefined when it has none left to try.
   * `tried` holds targets that already failed this request; they are skipped.
   */
  pick(route: AppRoute, now: number, tried?: readonly TargetState[]): TargetState | undefined {
    const targets = route.targets;
    const count = targets.length;
    if (count === 0) return undefined;
    if (count === 1) {
      const only = this.#registry.state(targets[0]!);
      if (tried?.includes(only)) return undefined;
      if (!only.announced) announce(only);
      return only;
    }
    const start = this.#turn.get(route.app) ?? 0;
    let best: TargetState | undefined;
    let bestIndex = 0;
    let fallback: TargetState | undefined;
    for (let k = 0; k < count; k++) {
      const index = (start + k) % count;
      const state = this.#registry.state(targets[index]!);
      if (tried?.includes(state)) continue;
      if (state.isDown(now)) {
        // Every target down: the one that comes back first is still better than no answer.
        if (!fallback || state.downUntil < fallback.downUntil) fallback = state;
        continue;
      }
      if (!best || state.inflight < best.inflight) {
        best = state;
        bestIndex = index;
      }
    }
    if (best) {
      this.#turn.set(route.app, (bestIndex + 1) % count);
      if (!best.announced) announce(best);
      return best;
    }
    if (fallback && !fallback.announced) announce(fallback);
    return fallback;
  }
}

// The first request routed to an address, on the clock the daemon's processes share: what a deploy's swap is measured
// against (the deploy logs its health pass and swap on the same clock).
function announce(state: TargetState): void {
  state.announced = true;
  log.info('proxy_target_first_request', { target: state.id, address: state.key, mono: sharedClockMs() });
}
