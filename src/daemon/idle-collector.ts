// The proxy's memory after a burst of load: when the event loop goes quiet and V8's heap has
// grown since the last collection, one full GC that reduces the heap gives the memory back.
// Without it nothing did, for as long as the proxy stayed idle: V8's old space stayed grown (no
// major GC ran after the load, so its memory reducer never started), and so did the native memory
// of the closed connections' TLS and HTTP/2 sessions, owned by JavaScript objects only a major GC
// frees. bench:proxy-memory, 5 s after 60 s of h2load: 129 MB RSS with it, 228 MB without
// (docs/memory.md).
import v8 from 'node:v8';
import vm from 'node:vm';
import { performance } from 'node:perf_hooks';
import { log } from '../log.ts';

export interface IdleCollectorOptions {
  /** How often the event loop's busy share and the heap are read. Default 1 s. */
  intervalMs?: number;
  /** Share of a window the event loop may be busy and the window still count as quiet. Default 0.05. */
  quietBelow?: number;
  /** Growth of V8's committed heap since the last collection that makes one worth it. Default 8 MB. */
  growthBytes?: number;
  /**
   * Least time between two collections. Default 60 s: under light but steady traffic (a quiet
   * window may still serve a few hundred requests a second) the pause of one, about 80 ms, comes
   * at most once a minute.
   */
  minGapMs?: number;
  /** The clock for minGapMs, in ms. Default: `performance.now`. */
  now?: () => number;
  /** Runs a full GC. Default: V8's own, the function `--expose-gc` gives a new context. */
  collect?: () => void;
  /** V8's committed heap in bytes. Default: `v8.getHeapStatistics().total_heap_size`. */
  heapBytes?: () => number;
  /** Share of the time since the previous call the event loop was busy. Default: from `performance.eventLoopUtilization`. */
  busyShare?: () => number;
}

/** Collects garbage once when a busy proxy goes quiet. At most one major GC per minGapMs, and only while quiet. */
export class IdleCollector {
  readonly #intervalMs: number;
  readonly #quietBelow: number;
  readonly #growthBytes: number;
  readonly #collect: () => void;
  readonly #heapBytes: () => number;
  readonly #busyShare: () => number;
  readonly #minGapMs: number;
  readonly #now: () => number;
  #lastAt = -Infinity;
  #timer: NodeJS.Timeout | undefined;
  /** The smallest committed heap seen since the last collection: what the heap grew from. */
  #floor = Infinity;
  collections = 0;

  constructor(options: IdleCollectorOptions = {}) {
    this.#intervalMs = options.intervalMs ?? 1000;
    this.#quietBelow = options.quietBelow ?? 0.05;
    this.#growthBytes = options.growthBytes ?? 8 * 1024 * 1024;
    this.#collect = options.collect ?? fullGc();
    this.#heapBytes = options.heapBytes ?? (() => v8.getHeapStatistics().total_heap_size);
    this.#busyShare = options.busyShare ?? eventLoopBusyShare();
    this.#minGapMs = options.minGapMs ?? 60_000;
    this.#now = options.now ?? (() => performance.now());
  }

  start(): void {
    if (this.#timer) return;
    this.#floor = this.#heapBytes();
    this.#busyShare();
    this.#timer = setInterval(() => this.check(), this.#intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** One reading: collects if the last window was quiet and the heap has grown. */
  check(): void {
    const heap = this.#heapBytes();
    this.#floor = Math.min(this.#floor, heap);
    if (this.#busyShare() >= this.#quietBelow || heap - this.#floor < this.#growthBytes) return;
    if (this.#now() - this.#lastAt < this.#minGapMs) return;
    this.#lastAt = this.#now();
    const started = performance.now();
    this.#collect();
    this.collections++;
    this.#floor = this.#heapBytes();
    log.debug('idle_gc', { ms: Math.round(performance.now() - started), heapBefore: heap, heapAfter: this.#floor });
  }
}

/**
 * V8's GC without `--expose-gc` on the command line (a single executable's arguments are its
 * script's): the flag, set for a moment, gives `gc` to a context created meanwhile. Made on the
 * first collection, so an idle proxy never pays for the extra context. The `last-resort` flavour
 * is V8's collection that reduces its footprint (compacts, releases the freed pages at once); a
 * plain major GC (a fifth of the pause) left the memory to V8's memory reducer, about 10 s later.
 */
function fullGc(): () => void {
  let gc: ((options: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void) | undefined;
  return () => {
    if (!gc) {
      v8.setFlagsFromString('--expose-gc');
      try {
        gc = vm.runInNewContext('gc') as typeof gc;
      } finally {
        v8.setFlagsFromString('--no-expose-gc');
      }
    }
    gc!({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  };
}

function eventLoopBusyShare(): () => number {
  let last = performance.eventLoopUtilization();
  return () => {
    const now = performance.eventLoopUtilization();
    const share = performance.eventLoopUtilization(now, last).utilization;
    last = now;
    return share;
  };
}
