// The control socket's wire format: one JSON object per line each way. The CLI sends the
// command's words and cwd, then standard input when asked; the daemon sends output, a request for
// standard input, and finally the exit status.
import type net from 'node:net';

export type ClientFrame = { run: { words: string[]; cwd: string } } | { stdin: string } | { stdinEnd: true };
/** `bytes`: output that is not text (an export's dump), base64, written as it is. */
export type ServerFrame = { out: string } | { bytes: string } | { err: string } | { wantStdin: true } | { exit: number };

/** Longest line a frame may be; a command's standard input arrives in many frames. */
export const MAX_FRAME = 4 * 1024 * 1024;

export function readFrames<T>(socket: net.Socket, onFrame: (frame: T) => void, onError: (e: Error) => void): void {
  let buffered = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (!line) continue;
      try {
        onFrame(JSON.parse(line) as T);
      } catch (e) {
        onError(e as Error);
        return;
      }
    }
    if (buffered.length > MAX_FRAME) onError(new Error('control frame too long'));
  });
}
