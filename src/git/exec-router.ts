// Routes each SSH exec: a git push (git-receive-pack 'APP') or an admin command line. What a
// push or a command does is the caller's (the application layer wires both); here the exec is
// parsed, a fetch is refused, and an error is shown to the client once.
import { describeForUser, UserError } from '../errors.ts';
import { log } from '../log.ts';
import { StreamOutput, type Output } from '../ui/output.ts';
import { commandNameOf, parseExecCommand } from './exec-command.ts';
import { channelSink } from './channel-sink.ts';
import type { KeyRecord } from './key-store.ts';
import type { ExecHandler, RequestedTerminal } from './ssh-server.ts';
import type { ServerChannel } from 'ssh2';

/** One exec as its handler sees it: who asked, the client's streams, and an Output to them. */
export interface ExecSession {
  key: KeyRecord;
  address: string;
  channel: ServerChannel;
  /** Decorated output to the client (`-----> `, ` !     `). */
  out: Output;
  /** Raw bytes to the client's standard error. */
  stderr(data: string | Buffer): void | Promise<void>;
  /** Present when the client asked for a terminal (ssh -t). */
  terminal?: RequestedTerminal;
  /** Aborted when the client goes away. */
  signal: AbortSignal;
}

export interface ExecRoutes {
  /** An admin command, already split into words; resolves to its exit status and never throws. */
  command(words: string[], session: ExecSession): Promise<number>;
  /** A git push to `app`: receive-pack, then the deploy of the deploy branch. */
  push(app: string, session: ExecSession): Promise<void>;
  /** Whether a word is the name of a command: only then does the log name it. */
  isCommand(name: string): boolean;
}

export function createExecHandler(routes: ExecRoutes): ExecHandler {
  return async (request) => {
    const { channel } = request;
    const abort = new AbortController();
    channel.on('close', () => abort.abort());
    // A terminal (ssh -t) does not turn \n into \r\n for us.
    const crlf = (s: string | Buffer) => (request.terminal ? Buffer.from(s.toString('latin1').replace(/(?<!\r)\n/g, '\r\n'), 'latin1') : s);
    // Output waits for the client: a write the channel cannot take returns a promise to its producer.
    const stderr = channelSink(channel.stderr, crlf);
    const out = new StreamOutput(channelSink(channel, crlf), stderr);
    const session: ExecSession = { key: request.key, address: request.address, channel, out, stderr, signal: abort.signal, ...(request.terminal ? { terminal: request.terminal } : {}) };
    let parsed;
    try {
      parsed = parseExecCommand(request.command);
    } catch (e) {
      const { lines, exitCode } = describeForUser(e, 'ssh exec');
      for (const line of lines) out.error(line);
      // The name and the reason's code only: the line itself may carry a config value or a password.
      log.warn('ssh_exec_refused', { key: request.key.name, address: request.address, command: commandNameOf(request.command, routes.isCommand), error: e instanceof UserError ? e.code : 'internal' });
      return exitCode;
    }
    if (parsed.kind === 'command') {
      log.info('ssh_command', { key: request.key.name, address: request.address, command: commandNameOf(parsed.words[0] ?? '', routes.isCommand) });
      const code = await routes.command(parsed.words, session);
      if (code !== 0) log.warn('ssh_command_failed', { key: request.key.name, address: request.address, command: commandNameOf(parsed.words[0] ?? '', routes.isCommand), code });
      return code;
    }
    try {
      if (parsed.kind === 'upload-pack') {
        log.warn('fetch_refused', { key: request.key.name, address: request.address, app: parsed.app });
        throw new UserError('fetch_not_served', `berth does not serve clones or fetches of ${parsed.app}; it receives pushes only`, {
          hint: 'keep your own clone as the source of truth; berth stores what you push',
        });
      }
      await routes.push(parsed.app, session);
      return 0;
    } catch (e) {
      // receive-pack has already told the client about protocol and pack errors in git's own terms.
      if (e instanceof UserError && e.code.startsWith('git_')) return 1;
      const { lines, exitCode } = describeForUser(e, `push to ${parsed.app}`);
      for (const line of lines) out.error(line);
      return exitCode;
    }
  };
}
