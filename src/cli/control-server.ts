// The daemon's side of the control socket: a unix socket in the data dir (mode 0600) where the
// local CLI runs one command per connection through the same registry as SSH.
import fs from 'node:fs/promises';
import net from 'node:net';
import { PassThrough } from 'node:stream';
import { channelSink } from '../git/channel-sink.ts';
import { listenError } from '../listen-error.ts';
import { log } from '../log.ts';
import type { CommandContext } from './command.ts';
import { StreamOutput } from '../ui/output.ts';
import { runCommand } from './registry.ts';
import { readFrames, type ClientFrame, type ServerFrame } from './control-frames.ts';

/** Runs one command line; the registry's runCommand, or another for a test of this module alone. */
export type CommandRunner = (words: readonly string[], ctx: CommandContext) => Promise<number>;

/** What every command of the socket works on: the state, and the daemon's application layer. */
export type CommandHost = Pick<CommandContext, 'state' | 'daemon'>;

/**
 * One command per connection. When the CLI goes away (Ctrl-C, a closed pipe) the command's
 * signal aborts, so a command that streams stops; what it still writes is dropped.
 */
export class ControlServer {
  private readonly socketPath: string;
  private readonly host: CommandHost;
  private readonly run: CommandRunner;
  private server: net.Server | undefined;
  private readonly connections = new Set<net.Socket>();

  constructor(socketPath: string, host: CommandHost, run: CommandRunner = runCommand) {
    this.socketPath = socketPath;
    this.host = host;
    this.run = run;
  }

  async start(): Promise<void> {
    const server = net.createServer((socket) => this.serve(socket));
    try {
      await listen(server, this.socketPath);
    } catch (e) {
      // A socket file left by a daemon that died answers nothing: it goes. One that answers is
      // another process's, and stays.
      if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE' || (await answers(this.socketPath))) {
        throw listenError(e, { what: 'control socket', address: this.socketPath, flag: '--data-dir' });
      }
      await fs.rm(this.socketPath, { force: true });
      await listen(server, this.socketPath).catch((e2: unknown) => {
        throw listenError(e2, { what: 'control socket', address: this.socketPath, flag: '--data-dir' });
      });
    }
    this.server = server;
    await fs.chmod(this.socketPath, 0o600);
  }

  /** Accepts no new command (the path goes; an upgrade's new control plane makes its own); those running go on. */
  async stopAccepting(): Promise<void> {
    const server = this.server;
    if (!server?.listening) return;
    // close() stops listening at once; its callback would wait for every connection to end.
    server.close();
    await fs.rm(this.socketPath, { force: true });
  }

  /** Resolves once no command runs. */
  async idle(): Promise<void> {
    while (this.connections.size > 0) await new Promise((resolve) => setTimeout(resolve, 100));
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const c of this.connections) c.destroy();
    if (!server) return; // never bound: the path is not ours to remove
    if (!server.listening) return; // stopAccepting() removed it already
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await fs.rm(this.socketPath, { force: true });
  }

  private serve(socket: net.Socket): void {
    this.connections.add(socket);
    const abort = new AbortController();
    // Returns a promise while the CLI has not read what came before: output producers wait for it.
    const toSocket = channelSink(socket);
    const send = (frame: ServerFrame) => {
      if (!socket.destroyed) return toSocket(JSON.stringify(frame) + '\n');
    };
    let started = false;
    const stdin: Buffer[] = [];
    let stdinDone: (() => void) | undefined;
    let stdinEnded = false;
    const stdinPromise = new Promise<void>((resolve) => (stdinDone = resolve));
    let asked = false;
    const ask = () => {
      if (!asked) {
        asked = true;
        send({ wantStdin: true });
      }
    };
    let stream: PassThrough | undefined;
    let finished = false;
    let command = '';

    readFrames<ClientFrame>(socket, (frame) => {
      if ('run' in frame && !started) {
        started = true;
        const { words, cwd } = frame.run;
        command = words[0] ?? '';
        const out = new StreamOutput(
          (s) => send(typeof s === 'string' ? { out: s } : { bytes: s.toString('base64') }),
          (s) => send({ err: s.toString() }),
        );
        this.run(words, {
          out,
          caller: { kind: 'local' },
          state: this.host.state,
          daemon: this.host.daemon,
          cwd,
          signal: abort.signal,
          readStdin: async () => {
            ask();
            await stdinPromise;
            return Buffer.concat(stdin);
          },
          stdin: () => {
            if (!stream) {
              stream = new PassThrough();
              for (const chunk of stdin) stream.write(chunk);
              if (stdinEnded) stream.end();
              ask();
            }
            return stream;
          },
          stderr: (d) => send({ err: d.toString() }),
        }).then((code) => {
          finished = true;
          send({ exit: code });
          socket.end();
        });
      } else if ('stdin' in frame) {
        const chunk = Buffer.from(frame.stdin, 'base64');
        // A command reading slower than the CLI sends (an import): the CLI waits.
        if (stream) {
          if (!stream.write(chunk)) {
            socket.pause();
            stream.once('drain', () => socket.resume());
          }
        } else stdin.push(chunk);
      } else if ('stdinEnd' in frame && !stdinEnded) {
        stdinEnded = true;
        stream?.end();
        stdinDone?.();
      }
    }, (e) => {
      log.warn('control_bad_frame', { error: e });
      socket.destroy();
    });
    socket.on('close', () => {
      this.connections.delete(socket);
      if (started && !finished) log.info('control_client_gone', { command, reason: 'the CLI disconnected; stopping the command' });
      abort.abort();
      stdinDone?.();
    });
    socket.on('error', () => {});
  }
}


function listen(server: net.Server, socketPath: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** Whether a process accepts connections on the socket path. */
function answers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.connect(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}
