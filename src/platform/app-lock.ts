// The one per-app lock of berth, owned by the application layer: one push, deploy, config
// change, rename or destroy of an app at a time; a later caller waits its turn (and is told so);
// different apps proceed in parallel. The orchestrator borrows it (as AppLocks) for the work it
// starts itself: adopting running apps at start, re-routing a container that came back.
export class AppLock {
  private readonly tails = new Map<string, Promise<void>>();

  /** Runs `fn` once every earlier holder of `app` is done; `onWait` is called if it has to wait. */
  async run<T>(app: string, fn: () => Promise<T>, onWait?: () => void): Promise<T> {
    const previous = this.tails.get(app);
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = (previous ?? Promise.resolve()).then(() => mine);
    this.tails.set(app, tail);
    if (previous) {
      onWait?.();
      await previous;
    }
    try {
      return await fn();
    } finally {
      release();
      if (this.tails.get(app) === tail) this.tails.delete(app);
    }
  }

  /** `run` for a change someone watches: a caller that has to wait is told so on `out`. */
  exclusive<T>(app: string, out: { step(text: string): void }, fn: () => Promise<T>): Promise<T> {
    return this.run(app, fn, () => out.step(`Another deploy of ${app} is running; waiting for it to finish`));
  }

  isBusy(app: string): boolean {
    return this.tails.has(app);
  }
}
