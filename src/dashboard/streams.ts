// The dashboard's Server-Sent Events: an app's deploy output (the running one replayed, then live,
// then every next one) and its logs as `logs APP -t` prints them. Both stay open, with a comment
// every 15 s so that idle connections are not cut by the proxy or the browser.
import type http from 'node:http';
import type { DeployEvent } from '../platform/deploy-feeds.ts';
import type { Platform } from '../platform/platform.ts';
import { withoutEscapes } from '../ui/plain-text.ts';
import { startEvents } from './answers.ts';

export const PING_MS = 15_000;
/** Lines of history a log stream may ask for first. */
export const MAX_LOG_TAIL = 1000;

/** Streams `app`'s deploys until the client goes (`signal`). */
export function deployStream(res: http.ServerResponse, platform: Platform, app: string, signal: AbortSignal): void {
  const events = startEvents(res);
  let idle = true;
  const send = (event: DeployEvent) => {
    idle = false;
    if (event.kind === 'start') events.event('start', { by: event.by, startedAt: event.startedAt });
    else if (event.kind === 'line') void events.event('line', event.text); // published as they come: past the buffer cap, the stream is cut
    else events.event('end', event.ok ? { ok: true, release: event.release } : { ok: false, error: event.error });
  };
  const stop = platform.deploys.watch(app, send);
  if (idle) events.event('idle', {});
  keepOpen(res, events.comment, signal, stop);
}

/** Streams `app`'s logs, the last `tail` lines first, until the client goes. */
export function logStream(res: http.ServerResponse, platform: Platform, app: string, tail: number, signal: AbortSignal): void {
  const events = startEvents(res);
  keepOpen(res, events.comment, signal, () => {});
  // A slow client holds the logs back (writeAppLogs waits for the promise); one that stops reading is cut.
  platform.processes.logs(app, { follow: true, lines: tail, quiet: false }, (line) => events.event('line', withoutEscapes(line)), signal).then(
    () => res.end(),
    (e: Error) => {
      // As `logs` prints it over SSH: a line (the contract's log events are lines only).
      if (!res.writableEnded) void events.event('line', `(logs stopped: ${withoutEscapes(e.message)})`);
      res.end();
    },
  );
}

function keepOpen(res: http.ServerResponse, comment: (text: string) => void, signal: AbortSignal, stop: () => void): void {
  const ping = setInterval(() => comment('ping'), PING_MS);
  const end = () => {
    clearInterval(ping);
    stop();
  };
  if (signal.aborted) end();
  else signal.addEventListener('abort', end, { once: true });
  res.once('close', end);
}
