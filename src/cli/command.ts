// The shape of an admin command (Dokku's noun:verb), and what it may use while it runs. The
// same command objects serve the local CLI (over the daemon's unix socket) and SSH.
import type { KeyRecord } from '../git/key-store.ts';
import type { Platform } from '../platform/platform.ts';
import type { State } from '../platform/state.ts';
import type { Output } from '../ui/output.ts';
import type { Terminal } from '../ui/terminal.ts';
import { UserError } from '../errors.ts';
import { log } from '../log.ts';
import type { ArgumentSpec, FlagSpecs } from './args.ts';

/** Who runs the command: the local operator (over the unix socket, or in-process) or an SSH key. */
export type Caller = { kind: 'local' } | { kind: 'ssh'; key: KeyRecord; address: string };

/**
 * Refuses a scoped key something only admin keys may do (a command, or a command with an input
 * that reaches beyond the app, such as a path on the server); logged with the key's name. `what`
 * reads after "may not": `run resource:limit`, `name a buildpack folder on the server`.
 */
export function requireAdmin(ctx: Pick<CommandContext, 'caller'>, what: string, command: string): void {
  if (!isScoped(ctx) || ctx.caller.kind !== 'ssh') return;
  const key = ctx.caller.key;
  log.warn('command_refused', { key: key.name, command, reason: 'admin_only' });
  throw new UserError('forbidden', `key "${key.name}" may not ${what}: it is for admin keys; ask the server's admin`);
}

/** Who runs a command, for log lines: `ssh:KEYNAME` or `local`. */
export function callerName(ctx: CommandContext): string {
  return ctx.caller.kind === 'ssh' ? `ssh:${ctx.caller.key.name}` : 'local';
}

/** The caller is an SSH key limited to some apps; false for admin keys and the local operator (the admin). */
export function isScoped(ctx: Pick<CommandContext, 'caller'>): boolean {
  return ctx.caller.kind === 'ssh' && ctx.caller.key.apps !== undefined;
}

/** Who a release records as its maker: the SSH key's name, or `local`. */
export function byName(ctx: CommandContext): string {
  return ctx.caller.kind === 'ssh' ? ctx.caller.key.name : 'local';
}

export interface CommandContext {
  out: Output;
  caller: Caller;
  /** The state on disk, which commands that run without the daemon work on. */
  state: State;
  /**
   * The application layer of the running daemon: set by the daemon's surfaces (SSH, the control
   * socket), undefined when the CLI runs a command in-process because no daemon runs.
   */
  daemon: Platform | undefined;
  /** All of standard input; the local CLI sends it only when a command asks for it. */
  readStdin(): Promise<Buffer>;
  /** The caller's working directory, for relative file arguments of the local CLI. */
  cwd: string;
  /** Aborted when the client goes away. */
  signal: AbortSignal;
  /** Standard input as a stream, for commands that pass it on as it comes (run). */
  stdin?: () => NodeJS.ReadableStream;
  /** Raw bytes to standard error (run). */
  stderr?: (data: string | Buffer) => void | Promise<void>;
  /** The client's terminal, when it asked for one (`ssh -t`). */
  terminal?: Terminal;
}


/** A command as the registry keeps it: its declaration, and what it does with the parsed words. */
export interface Command extends ArgumentSpec {
  /** `noun:verb`, or a single word such as `help`. */
  name: string;
  summary: string;
  /** Longer help text, shown by `help COMMAND` and `COMMAND --help`. */
  help?: string;
  /**
   * Who may run it. `admin`: admin keys only. `app`: the first argument is the APP, and a key
   * scoped to apps may run it on those apps only. `any`: everyone (help, version, apps:list).
   */
  scope: 'admin' | 'app' | 'any';
  /** It works on containers: `run` gets `daemon()`, which returns the running daemon's application layer. */
  needsDaemon?: boolean;
  /** Written through defineCommand, which types `input` from the declaration. */
  run(ctx: CommandContext, input: ParsedInput): Promise<number | void>;
}

/** The input as the registry builds it, before the declaration narrows its types. */
export interface ParsedInput {
  args: Array<string | string[] | undefined>;
  flags: Record<string, string | boolean | undefined>;
  otherFlags: readonly string[];
  words: readonly string[];
  app?: string;
  daemon?: () => Platform;
}

/**
 * What `run` gets: the declared arguments after the APP (`args: ['APP', 'KEY', '[VALUE]']` gives
 * `app` and `args: [key, value]`), the flags (a switch is true or false, a flag with a value its
 * string or undefined), and `daemon()` when the command needs the daemon.
 */
export type CommandInput<A extends readonly string[], F extends FlagSpecs, D extends boolean> = {
  args: ArgumentValues<A extends readonly ['APP', ...infer Rest extends readonly string[]] ? Rest : A>;
  flags: { -readonly [K in keyof F]: F[K] extends 'boolean' ? boolean : string | undefined };
  /** Flags the command did not declare, as they came (with `looseFlags` only). */
  otherFlags: readonly string[];
  /** The words after the command's name, as they came. */
  words: readonly string[];
} & (A extends readonly ['APP', ...string[]] ? { app: string } : {}) &
  (D extends true
    ? {
        /**
         * The running daemon's application layer, or (no daemon) the UserError that says how to
         * start it: a command calls it where it needs the daemon, after checking its own input.
         */
        daemon: () => Platform;
      }
    : {});

type ArgumentValues<A extends readonly string[]> = { -readonly [K in keyof A]: ArgumentValue<A[K]> };
type ArgumentValue<S> = S extends `${string}...` | `${string}...]` ? string[] : S extends `[${string}]` ? string | undefined : string;

/** A command with its words' types inferred from its declaration (`args`, `flags`, `needsDaemon`). */
export function defineCommand<const A extends readonly string[] = [], const F extends FlagSpecs = {}, const D extends boolean = false>(
  spec: Omit<Command, 'args' | 'flags' | 'needsDaemon' | 'run'> & {
    args?: A;
    flags?: F;
    needsDaemon?: D;
    run(ctx: CommandContext, input: CommandInput<A, F, D>): Promise<number | void>;
  },
): Command {
  // Sound because the registry builds `input` from this same declaration (args, flags, needsDaemon).
  return spec as Command;
}

/** Returns the running daemon's application layer, or a UserError saying how to start it. */
export function requireDaemon(ctx: Pick<CommandContext, 'state' | 'daemon'>): Platform {
  if (ctx.daemon) return ctx.daemon;
  throw new UserError('daemon_not_running', `berth serve is not running for ${ctx.state.paths.root}`, {
    hint: `start it with \`berth serve --data-dir ${ctx.state.paths.root}\`, then run the command again`,
  });
}
