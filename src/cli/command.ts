// The shape of an admin command (Dokku's noun:verb), and what it may use while it runs. The
// same command objects serve the local CLI (over the daemon's unix socket) and SSH.
import type { Config, DataPaths } from '../config.ts';
import type { KeyRecord, KeyStore } from '../git/key-store.ts';
import type { AppLock } from '../orchestrator/app-lock.ts';
import type { Orchestrator } from '../orchestrator/orchestrator.ts';
import type { CertificateManager } from '../proxy/tls/certificate-manager.ts';
import type { AppStore } from '../state/app-store.ts';
import type { DomainStore } from '../state/domain-store.ts';
import type { ProxySettingsStore } from '../state/proxy-settings-store.ts';
import type { Output } from './output.ts';
import { UserError } from '../errors.ts';
import type { ArgumentSpec, FlagSpecs } from './args.ts';

/** Who runs the command: the local operator (over the unix socket, or in-process) or an SSH key. */
export type Caller = { kind: 'local' } | { kind: 'ssh'; key: KeyRecord; address: string };

/** Who runs a command, for log lines: `ssh:KEYNAME` or `local`. */
export function callerName(ctx: CommandContext): string {
  return ctx.caller.kind === 'ssh' ? `ssh:${ctx.caller.key.name}` : 'local';
}

/** Who a release records as its maker: the SSH key's name, or `local`. */
export function byName(ctx: CommandContext): string {
  return ctx.caller.kind === 'ssh' ? ctx.caller.key.name : 'local';
}

export interface Services {
  config: Config;
  paths: DataPaths;
  keys: KeyStore;
  apps: AppStore;
  domains: DomainStore;
  /** Per-app proxy limits (state/proxy.json). */
  proxySettings: ProxySettingsStore;
  /** Per app, one push, rename or destroy at a time (deploys have their own lock inside the orchestrator). */
  locks: AppLock;
  /** Present only inside the running daemon; commands that touch containers need it. */
  orchestrator?: Orchestrator;
  /** Present only inside the running daemon: certificates and automatic HTTPS. */
  certificates?: CertificateManager;
}

export interface CommandContext {
  out: Output;
  caller: Caller;
  services: Services;
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

export interface Terminal {
  term: string;
  rows: number;
  cols: number;
  /** Called with the new size when the client's window changes. */
  onResize(listener: (rows: number, cols: number) => void): void;
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
  /** It works on containers: `run` gets `daemon()`, which returns the running daemon's orchestrator. */
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
  daemon?: () => Orchestrator;
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
         * The running daemon's orchestrator, or (no daemon) the UserError that says how to start
         * it: a command calls it where it needs the daemon, after checking its own input.
         */
        daemon: () => Orchestrator;
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

/** Returns the running daemon's orchestrator, or a UserError saying how to start it. */
export function requireDaemon(services: Services): Orchestrator {
  if (services.orchestrator) return services.orchestrator;
  throw new UserError('daemon_not_running', `berth serve is not running for ${services.paths.root}`, {
    hint: `start it with \`berth serve --data-dir ${services.paths.root}\`, then run the command again`,
  });
}
