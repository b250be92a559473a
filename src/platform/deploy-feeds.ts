// The output of each app's running push or deploy, line by line, for watchers other than the
// pusher (the dashboard): what has been printed so far is replayed to one who comes late, and the
// feed ends with the result. One feed per app at a time: the app's lock runs one deploy at once.
import { describeForUser } from '../errors.ts';
import { StreamOutput, type Output } from '../ui/output.ts';
import { withoutEscapes } from '../ui/plain-text.ts';

export type DeployEvent =
  | { kind: 'start'; by: string; startedAt: string }
  | { kind: 'line'; text: string }
  | { kind: 'end'; ok: true; release: number | null }
  | { kind: 'end'; ok: false; error: string };

export type DeployWatcher = (event: DeployEvent) => void;

/** Lines kept for a late watcher; a longer deploy's first lines give way to its last ones. */
export const REPLAY_LINES = 5000;

export class DeployFeeds {
  readonly #running = new Map<string, DeployFeed>();
  readonly #watchers = new Map<string, Set<DeployWatcher>>();

  /** Whether a push or deploy of `app` runs now. */
  running(app: string): boolean {
    return this.#running.has(app);
  }

  /**
   * Starts the feed of a deploy of `app` by `by`; its `output(out)` prints to the user and to
   * the feed. A feed still open for the app (a caller that did not end it) is ended first.
   */
  begin(app: string, by: string): DeployFeed {
    this.#running.get(app)?.end({ ok: false, error: 'superseded by another deploy' });
    const feed = new DeployFeed({ kind: 'start', by, startedAt: new Date().toISOString() }, (event) => this.#emit(app, event), () => {
      if (this.#running.get(app) === feed) this.#running.delete(app);
    });
    this.#running.set(app, feed);
    this.#emit(app, feed.started);
    return feed;
  }

  /**
   * Runs `deploy` of `app` by `by` with its output (printed to `out`) also on the app's feed, which
   * ends with the result: the release `release` names, or the error. Every kind of deploy goes
   * through here (push, rollback, image deploy, config change with restart, restart, scale).
   */
  async run<T>(app: string, by: string, out: Output, deploy: (out: Output) => Promise<T>, release: (result: T) => number | null): Promise<T> {
    const feed = this.begin(app, by);
    try {
      const result = await deploy(feed.output(out));
      feed.end({ ok: true, release: release(result) });
      return result;
    } catch (e) {
      feed.end({ ok: false, error: describeForUser(e, `deploy of ${app}`).lines[0] ?? 'deploy failed' });
      throw e;
    }
  }

  /**
   * Watches `app`'s deploys: the running one's start and lines so far first (nothing when none
   * runs), then every event as it comes. Returns the function that stops watching.
   */
  watch(app: string, watcher: DeployWatcher): () => void {
    const running = this.#running.get(app);
    if (running) {
      watcher(running.started);
      for (const text of running.lines) watcher({ kind: 'line', text });
    }
    let set = this.#watchers.get(app);
    if (!set) this.#watchers.set(app, (set = new Set()));
    set.add(watcher);
    return () => {
      set.delete(watcher);
      if (set.size === 0 && this.#watchers.get(app) === set) this.#watchers.delete(app);
    };
  }

  #emit(app: string, event: DeployEvent): void {
    for (const watcher of this.#watchers.get(app) ?? []) watcher(event);
  }
}

export class DeployFeed {
  readonly started: Extract<DeployEvent, { kind: 'start' }>;
  readonly lines: string[] = [];
  readonly #emit: (event: DeployEvent) => void;
  readonly #closed: () => void;
  #partial = '';
  #ended = false;

  constructor(started: DeployFeed['started'], emit: (event: DeployEvent) => void, closed: () => void) {
    this.started = started;
    this.#emit = emit;
    this.#closed = closed;
  }

  /** An Output that prints to `user` and to this feed. */
  output(user: Output): Output {
    const feed = new StreamOutput((chunk) => this.write(chunk.toString()));
    const both =
      (method: keyof Output) =>
      (text: string | Buffer): void | Promise<void> => {
        if (!this.#ended) void (feed[method] as (t: string | Buffer) => void)(text);
        return (user[method] as (t: string | Buffer) => void | Promise<void>)(text);
      };
    return { step: both('step'), section: both('section'), detail: both('detail'), error: both('error'), line: both('line'), raw: both('raw') };
  }

  /** Printed text; complete lines go out, without terminal escapes. */
  write(text: string): void {
    if (this.#ended) return;
    const parts = (this.#partial + text).split(/\r?\n|\r/);
    this.#partial = parts.pop()!;
    for (const part of parts) this.#line(part);
  }

  end(result: { ok: true; release: number | null } | { ok: false; error: string }): void {
    if (this.#ended) return;
    if (this.#partial) this.#line(this.#partial);
    this.#ended = true;
    this.#closed();
    this.#emit({ kind: 'end', ...result } as DeployEvent);
  }

  #line(raw: string): void {
    const text = withoutEscapes(raw);
    this.lines.push(text);
    if (this.lines.length > REPLAY_LINES) this.lines.shift();
    this.#emit({ kind: 'line', text });
  }
}
