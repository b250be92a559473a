// Server-Sent Events from the API (deploy output, logs): named events with JSON data, reopened
// after a drop, and the 401 screen when the drop was the session ending.
import { getJson } from './api.ts';
import type { Scope } from './dom.ts';

export type Handlers = Record<string, (data: unknown) => void>;

/**
 * Follows `url` for as long as `scope` lives. `onState` hears 'open' (again after each reconnect:
 * the server then replays what a new client gets), 'retrying' (the browser reconnects by itself)
 * and 'closed' (the server refused; reopened after a pause unless the session has ended, which
 * the API's 401 handler shows). A handler named `error` hears the server's `event: error`.
 */
export function follow(scope: Scope, url: string, handlers: Handlers, onState: (state: 'open' | 'retrying' | 'closed') => void): void {
  let source: EventSource | undefined;
  const open = () => {
    if (scope.disposed) return;
    source = new EventSource(url);
    for (const [event, handle] of Object.entries(handlers)) {
      if (event === 'error') continue;
      source.addEventListener(event, (e) => {
        let data: unknown;
        try {
          data = JSON.parse((e as MessageEvent<string>).data);
        } catch {
          return;
        }
        handle(data);
      });
    }
    source.onopen = () => onState('open');
    source.onerror = (e) => {
      // A server's own `event: error` (a stream that cannot go on) arrives here too, with data.
      if (e instanceof MessageEvent && typeof e.data === 'string') {
        try {
          handlers.error?.(JSON.parse(e.data));
        } catch {
          // not JSON: nothing to show
        }
        return;
      }
      if (source?.readyState !== EventSource.CLOSED) return onState('retrying');
      onState('closed');
      // A refused stream is most often an ended session: asking shows the 401 screen if so.
      getJson('/api/session').then(() => scope.after(5000, open), () => scope.after(5000, open));
    };
  };
  open();
  scope.onDispose(() => source?.close());
}

/** A <pre> that takes lines, keeps the last `max`, and stays scrolled to the end while it was there. */
export function appendLine(pre: HTMLElement, line: string, max = 5000, stick = true): void {
  const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  pre.append(line + '\n');
  while (pre.childNodes.length > max) pre.firstChild!.remove();
  if (stick && atEnd) pre.scrollTop = pre.scrollHeight;
}
