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

/** Who runs the command: the local operator (over the unix socket, or in-process) or an SSH key. */
export type Caller = { kind: 'local' } | { kind: 'ssh'; key: KeyRecord; address: string };

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
  stderr?: (data: string | Buffer) => void;
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

export interface Command {
  /** `noun:verb`, or a single word such as `help`. */
  name: string;
  /** Positional arguments and flags, as shown in help: `NAME [KEYFILE|-]`. */
  usage: string;
  summary: string;
  /** Longer help text, shown by `help COMMAND` and `COMMAND --help`. */
  help?: string;
  /**
   * Who may run it. `admin`: admin keys only. `app`: the first positional is an APP, and a key
   * scoped to apps may run it on those apps only. `any`: everyone (help, version, apps:list).
   */
  scope: 'admin' | 'app' | 'any';
  /** The words after the APP are a command of their own (run): `--help` among them is not berth's. */
  passThrough?: boolean;
  run(ctx: CommandContext, args: string[]): Promise<number | void>;
}

/** Returns the running daemon's orchestrator, or a UserError saying how to start it. */
export function requireDaemon(services: Services): Orchestrator {
  if (services.orchestrator) return services.orchestrator;
  throw new UserError('daemon_not_running', `berth serve is not running for ${services.paths.root}`, {
    hint: `start it with \`berth serve --data-dir ${services.paths.root}\`, then run the command again`,
  });
}
