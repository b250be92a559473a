// One timer per domain, independent of every other: wakes a domain when it is due, runs its
// order, and never runs two orders for one domain at once. What "due" means is the caller's.
import { log } from '../../log.ts';

/** Timers wake at least this often to look again (clock jumps, and setTimeout's 24-day limit). */
const MAX_TIMER_MS = 60 * 60 * 1000;

export interface RenewalSchedulerOptions {
  /** The clock dueAt() answers in (epoch ms). Default: Date.now. */
  now?: () => number;
  /** When the next order for the domain should start (epoch ms). */
  dueAt(domain: string): number;
  /** Runs one order; its failures are the caller's to record (a rejection is only logged). */
  run(domain: string): Promise<void>;
  /** Called after each run, whatever its result. */
  settled(domain: string): void;
}

interface Task {
  timer: NodeJS.Timeout | undefined;
  running: Promise<void> | undefined;
}

export class RenewalScheduler {
  readonly #options: RenewalSchedulerOptions;
  readonly #tasks = new Map<string, Task>();
  #wanted = new Set<string>();
  #stopped = false;

  constructor(options: RenewalSchedulerOptions) {
    this.#options = options;
  }

  /** Makes `domains` the whole set looked after: timers of the others are dropped (a running order finishes). */
  retain(domains: Iterable<string>): void {
    this.#wanted = new Set(domains);
    for (const [domain, task] of this.#tasks) {
      if (this.#wanted.has(domain)) continue;
      clearTimeout(task.timer);
      task.timer = undefined;
      if (!task.running) this.#tasks.delete(domain);
    }
  }

  /** (Re)arms the domain's timer for its due time; a no-op while its order runs (it re-arms when done). */
  schedule(domain: string): void {
    if (this.#stopped || !this.#wanted.has(domain)) return;
    let task = this.#tasks.get(domain);
    if (!task) {
      task = { timer: undefined, running: undefined };
      this.#tasks.set(domain, task);
    }
    if (task.running) return;
    clearTimeout(task.timer);
    const now = this.#options.now ?? Date.now;
    const wait = Math.max(0, this.#options.dueAt(domain) - now());
    const armed = task;
    armed.timer = setTimeout(() => {
      armed.timer = undefined;
      if (this.#stopped || !this.#wanted.has(domain)) return;
      if (this.#options.dueAt(domain) <= now()) this.#run(domain, armed);
      else this.schedule(domain);
    }, Math.min(wait, MAX_TIMER_MS));
    armed.timer.unref();
  }

  /** Resolves once no order is running (orders that start meanwhile included). */
  async idle(): Promise<void> {
    for (;;) {
      const running = [...this.#tasks.values()].map((t) => t.running).filter((r) => r !== undefined);
      if (running.length === 0) return;
      await Promise.all(running);
    }
  }

  isRunning(domain: string): boolean {
    return this.#tasks.get(domain)?.running !== undefined;
  }

  /** Drops every timer; orders in flight finish on their own. */
  stop(): void {
    this.#stopped = true;
    for (const task of this.#tasks.values()) clearTimeout(task.timer);
  }

  #run(domain: string, task: Task): void {
    task.running = this.#options
      .run(domain)
      .catch((e) => log.error('certificate_order_crashed', { domain, error: e }))
      .finally(() => {
        task.running = undefined;
        if (!this.#wanted.has(domain)) this.#tasks.delete(domain);
        if (!this.#stopped) this.#options.settled(domain);
      });
  }
}
