// How a child of the supervisor (proxy, control) knows it is to stop: SIGTERM from the supervisor,
// or the supervisor gone (its IPC channel closed). SIGINT is the supervisor's to handle: a Ctrl-C
// in a terminal reaches the whole process group, and the supervisor stops its children in order.

export type StopReason = 'SIGTERM' | 'supervisor_gone';

export function untilStopped(): Promise<StopReason> {
  process.on('SIGINT', () => undefined);
  return new Promise((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('disconnect', () => resolve('supervisor_gone'));
  });
}

/** Once a role has stopped: the IPC channel goes, and handles left open (pooled sockets) do not keep it alive. */
export function exitSoon(): void {
  if (process.connected) process.disconnect();
  setTimeout(() => process.exit(process.exitCode ?? 0), 2000).unref();
}
