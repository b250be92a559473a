// The local CLI's side of the control socket: sends one command to the running daemon and
// relays its output, its requests for standard input, and its exit status. Kept apart from the
// server side so that a CLI command loads nothing else.
import net from 'node:net';
import { readFrames, type ClientFrame, type ServerFrame } from './control-frames.ts';

/**
 * Runs a command in the daemon behind `socketPath`, wiring this process's stdio to it. Returns
 * the exit status, or undefined when no daemon listens there.
 */
export async function runRemote(socketPath: string, words: string[], io: { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream; stdin: NodeJS.ReadableStream }): Promise<number | undefined> {
  let socket: net.Socket;
  try {
    socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect(socketPath);
      s.once('connect', () => resolve(s));
      s.once('error', reject);
    });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ECONNREFUSED') return undefined;
    throw e;
  }
  const send = (frame: ClientFrame) => socket.write(JSON.stringify(frame) + '\n');
  send({ run: { words, cwd: process.cwd() } });
  return new Promise<number>((resolve, reject) => {
    let exit: number | undefined;
    readFrames(socket, (frame: ServerFrame) => {
      if ('out' in frame) io.stdout.write(frame.out);
      else if ('bytes' in frame) {
        // A dump on a slow pipe: the daemon's output waits until stdout takes more.
        if (!io.stdout.write(Buffer.from(frame.bytes, 'base64'))) {
          socket.pause();
          io.stdout.once('drain', () => socket.resume());
        }
      }
      else if ('err' in frame) io.stderr.write(frame.err);
      else if ('exit' in frame) exit = frame.exit;
      else if ('wantStdin' in frame) {
        io.stdin.on('data', (chunk: Buffer) => {
          if (!send({ stdin: Buffer.from(chunk).toString('base64') })) {
            io.stdin.pause();
            socket.once('drain', () => io.stdin.resume());
          }
        });
        io.stdin.on('end', () => send({ stdinEnd: true }));
        io.stdin.on('error', () => send({ stdinEnd: true }));
      }
    }, reject);
    socket.on('error', reject);
    socket.on('close', () => {
      if (exit === undefined) reject(new Error('the daemon closed the connection before the command finished (see its log)'));
      else resolve(exit);
      io.stdin.pause();
      (io.stdin as { unref?: () => void }).unref?.();
    });
  });
}

