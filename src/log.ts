// The daemon's log: one JSON object per line (time, level, event name, fields). The only
// hidden singleton in berth; nothing else writes diagnostics to the console. No URL's
// credentials reach it, whichever field or error message carries the URL.
import { randomBytes } from 'node:crypto';
import { redactUrlsIn } from './redact.ts';

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export type LogFields = Record<string, unknown>;
export type LogSink = (line: string) => void;

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

let sink: LogSink = (line) => process.stderr.write(line + '\n');
/** Set by `berth serve --log-level` (BERTH_LOG_LEVEL). */
let threshold: LogLevel = 'info';

export const log = {
  debug: (event: string, fields?: LogFields) => write('debug', event, fields),
  info: (event: string, fields?: LogFields) => write('info', event, fields),
  warn: (event: string, fields?: LogFields) => write('warn', event, fields),
  error: (event: string, fields?: LogFields) => write('error', event, fields),
};

/** Redirects the log (tests capture it; the CLI sends it nowhere). */
export function setLogSink(next: LogSink): void {
  sink = next;
}

export function setLogLevel(level: LogLevel): void {
  threshold = level;
}

/** A short random id that ties a user-visible error line to its full log entry. */
/**
 * Milliseconds on a clock the daemon's processes share, for the `mono` field of log lines compared
 * across processes (a health pass or a swap in the control plane, the first request in the proxy):
 * the process's start on the wall clock plus its monotonic time since. performance.now() alone
 * counts from each process's own start.
 */
export function sharedClockMs(): number {
  return performance.timeOrigin + performance.now();
}

export function newErrorId(): string {
  return randomBytes(4).toString('hex');
}

/** Listeners to every event, whatever the level (the control plane's metrics count them). */
const taps: Array<(event: string, fields: LogFields) => void> = [];

/** Calls `listener` with every event logged from now on, before the level filter; returns its removal. */
export function tapLog(listener: (event: string, fields: LogFields) => void): () => void {
  taps.push(listener);
  return () => {
    const i = taps.indexOf(listener);
    if (i !== -1) taps.splice(i, 1);
  };
}

function write(level: LogLevel, event: string, fields?: LogFields): void {
  for (const tap of taps) tap(event, fields ?? {});
  if (ORDER[level] < ORDER[threshold]) return;
  const entry: LogFields = { time: new Date().toISOString(), level, event };
  if (fields) for (const [k, v] of Object.entries(fields)) entry[k] = serialise(v);
  sink(JSON.stringify(entry, (_key, value: unknown) => (typeof value === 'string' ? redactUrlsIn(value) : value)));
}

function serialise(value: unknown): unknown {
  if (value instanceof Error) {
    const out: LogFields = { message: value.message, stack: value.stack };
    if ('code' in value) out.code = (value as { code: unknown }).code;
    if (value.cause !== undefined) out.cause = serialise(value.cause);
    return out;
  }
  return value;
}
