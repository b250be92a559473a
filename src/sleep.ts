// The one way berth waits for a while: a timer that an AbortSignal cuts short.

/**
 * Resolves after `ms`. An abort rejects at once with the signal's reason (also when the signal
 * has already aborted), as node:timers/promises does, so a waiting loop ends where it waits.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
