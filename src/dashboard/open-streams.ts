// The dashboard's open event streams (deploys, logs), each registered with its session and its
// app's id: a stream ends when its session ends (logout, idle expiry, the key removed or
// re-scoped so that it no longer sees the app) and when its app is destroyed or renamed, checked
// every half second while any is open, and at once when `sweep` is called.
import type http from 'node:http';
import { ApiError } from './answers.ts';
import type { Session } from './sessions.ts';

export interface OpenStream {
  readonly session: Session;
  /** The app's name and id when the stream opened. */
  readonly app: string;
  readonly appId: string;
}

export const SWEEP_MS = 500;
/** Streams one session may hold open at once (a page holds two). */
export const MAX_STREAMS_PER_SESSION = 8;
/** Streams open at once, every session together. */
export const MAX_STREAMS = 256;

export class OpenStreams {
  /** Whether a stream may go on (its session open, its key seeing its app, its app the same). */
  readonly #mayGoOn: (stream: OpenStream) => boolean;
  readonly #open = new Map<OpenStream, () => void>();
  #timer: NodeJS.Timeout | undefined;

  readonly #limits: { perSession: number; total: number };

  constructor(mayGoOn: (stream: OpenStream) => boolean, limits: { perSession: number; total: number } = { perSession: MAX_STREAMS_PER_SESSION, total: MAX_STREAMS }) {
    this.#mayGoOn = mayGoOn;
    this.#limits = limits;
  }

  get size(): number {
    return this.#open.size;
  }

  /**
   * Registers the stream answered on `res`; the signal aborts when it ends (the client went, or
   * `sweep` ended it). An ApiError 429 `too_many_streams` past the caps.
   */
  open(stream: OpenStream, res: http.ServerResponse): AbortSignal {
    let mine = 0;
    for (const other of this.#open.keys()) if (other.session === stream.session) mine++;
    if (mine >= this.#limits.perSession) throw new ApiError(429, 'too_many_streams', `this session has ${mine} event streams open, the most it may`, 'close another tab of the dashboard');
    if (this.#open.size >= this.#limits.total) throw new ApiError(429, 'too_many_streams', 'the dashboard has as many event streams open as it serves', 'try again in a while');
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
