// The dashboard's open event streams (deploys, logs), each registered with its session and its
// app's id: a stream ends when its session ends (logout, idle expiry, the key removed or
// re-scoped so that it no longer sees the app) and when its app is destroyed or renamed, checked
// every half second while any is open, and at once when `sweep` is called.
import type http from 'node:http';
import type { Session } from './sessions.ts';

export interface OpenStream {
  readonly session: Session;
  /** The app's name and id when the stream opened. */
  readonly app: string;
  readonly appId: string;
}

export const SWEEP_MS = 500;

export class OpenStreams {
  /** Whether a stream may go on (its session open, its key seeing its app, its app the same). */
  readonly #mayGoOn: (stream: OpenStream) => boolean;
  readonly #open = new Map<OpenStream, () => void>();
  #timer: NodeJS.Timeout | undefined;

  constructor(mayGoOn: (stream: OpenStream) => boolean) {
    this.#mayGoOn = mayGoOn;
  }

  get size(): number {
    return this.#open.size;
  }

  /** Registers the stream answered on `res`; the signal aborts when it ends (the client went, or `sweep` ended it). */
  open(stream: OpenStream, res: http.ServerResponse): AbortSignal {
    const abort = new AbortController();
    const end = () => {
      if (!this.#open.delete(stream)) return;
      abort.abort();
      if (this.#open.size === 0) this.#stopTimer();
      if (!res.writableEnded) res.end();
    };
    this.#open.set(stream, end);
    res.once('close', end);
    this.#timer ??= setInterval(() => this.sweep(), SWEEP_MS).unref();
    return abort.signal;
  }

  /** Ends every stream that may not go on. */
  sweep(): void {
    for (const [stream, end] of this.#open) if (!this.#mayGoOn(stream)) end();
  }

  /** Ends every stream (the server stops). */
  endAll(): void {
    for (const end of [...this.#open.values()]) end();
  }

  #stopTimer(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
