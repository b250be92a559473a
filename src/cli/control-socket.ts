// The local CLI's line to the running daemon: a unix socket in the data dir (mode 0600) that
// carries one command per connection as JSON lines — words and cwd in; output, requests for
// standard input and the exit status out.
import fs from 'node:fs/promises';
import net from 'node:net';
import { log } from '../log.ts';
import type { Services } from './command.ts';
import { StreamOutput } from './output.ts';
import { runCommand } from './registry.ts';

type ClientFrame = { run: { words: string[]; cwd: string } } | { stdin: string } | { stdinEnd: true };
type ServerFrame = { out: string } | { err: string } | { wantStdin: true } | { exit: number };

/** Longest line a frame may be; a command's standard input arrives in many frames. */
const MAX_FRAME = 4 * 1024 * 1024;

export class ControlServer {
  private readonly socketPath: string;
  private readonly services: Services;
  private server: net.Server | undefined;
  private readonly connections = new Set<net.Socket>();

  constructor(socketPath: string, services: Services) {
    this.socketPath = socketPath;
    this.services = services;
  }

  async start(): Promise<void> {
    await fs.rm(this.socketPath, { force: true });
    const server = net.createServer((socket) => this.serve(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
    await fs.chmod(this.socketPath, 0o600);
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const c of this.connections) c.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    await fs.rm(this.socketPath, { force: true });
  }

  private serve(socket: net.Socket): void {
    this.connections.add(socket);
    const abort = new AbortController();
    const send = (frame: ServerFrame) => {
      if (!socket.destroyed) socket.write(JSON.stringify(frame) + '\n');
    };
    let started = false;
    const stdin: Buffer[] = [];
    let stdinDone: (() => void) | undefined;
    let stdinEnded = false;
    const stdinPromise = new Promise<void>((resolve) => (stdinDone = resolve));
    let asked = false;

    readFrames<ClientFrame>(socket, (frame) => {
      if ('run' in frame && !started) {
        started = true;
        const { words, cwd } = frame.run;
        const out = new StreamOutput(
          (s) => send({ out: s.toString() }),
          (s) => send({ err: s.toString() }),
        );
        runCommand(words, {
          out,
          caller: { kind: 'local' },
          services: this.services,
          cwd,
          signal: abort.signal,
          readStdin: async () => {
            if (!asked) {
              asked = true;
              send({ wantStdin: true });
            }
            await stdinPromise;
            return Buffer.concat(stdin);
          },
        }).then((code) => {
          send({ exit: code });
          socket.end();
        });
      } else if ('stdin' in frame) {
        stdin.push(Buffer.from(frame.stdin, 'base64'));
      } else if ('stdinEnd' in frame && !stdinEnded) {
        stdinEnded = true;
        stdinDone?.();
      }
    }, (e) => {
      log.warn('control_bad_frame', { error: e });
      socket.destroy();
    });
    socket.on('close', () => {
      this.connections.delete(socket);
      abort.abort();
      stdinDone?.();
    });
    socket.on('error', () => {});
  }
}

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
      else if ('err' in frame) io.stderr.write(frame.err);
      else if ('exit' in frame) exit = frame.exit;
      else if ('wantStdin' in frame) {
        io.stdin.on('data', (chunk: Buffer) => send({ stdin: Buffer.from(chunk).toString('base64') }));
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

function readFrames<T>(socket: net.Socket, onFrame: (frame: T) => void, onError: (e: Error) => void): void {
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
