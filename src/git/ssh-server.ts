// The embedded SSH server: public-key auth against the key store only, exec requests only (no
// shell, no subsystems, no forwarding of any kind), each exec handed to one handler. A client
// may ask for a terminal (ssh -t) for its exec; its size and changes are passed on.
import type { AddressInfo } from 'node:net';
import ssh2 from 'ssh2';
import type { Connection, ServerChannel } from 'ssh2';
import { log } from '../log.ts';
import { VERSION } from '../version.ts';
import type { KeyRecord, KeyStore } from './key-store.ts';

export interface ExecRequest {
  command: string;
  key: KeyRecord;
  address: string;
  channel: ServerChannel;
  /** Present when the client asked for a terminal before the exec. */
  terminal?: RequestedTerminal;
}

export interface RequestedTerminal {
  term: string;
  rows: number;
  cols: number;
  onResize(listener: (rows: number, cols: number) => void): void;
}

/** Handles one exec; resolves to the exit status to send. The handler owns the channel's data. */
export type ExecHandler = (request: ExecRequest) => Promise<number>;

export interface SshServerOptions {
  port: number;
  bindHost: string;
  hostKey: string;
  keys: KeyStore;
  onExec: ExecHandler;
}

export class SshServer {
  private readonly options: SshServerOptions;
  private server: ssh2.Server | undefined;
  private readonly clients = new Set<Connection>();

  constructor(options: SshServerOptions) {
    this.options = options;
  }

  get port(): number {
    return (this.server?.address() as AddressInfo | null)?.port ?? 0;
  }

  async start(): Promise<void> {
    const server = new ssh2.Server({ hostKeys: [this.options.hostKey], ident: `berth_${VERSION}` }, (client, info) => this.accept(client, info.ip));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.options.port, this.options.bindHost, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (e: Error) => log.error('ssh_server_error', { error: e }));
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const c of this.clients) c.end();
    if (server?.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private accept(client: Connection, address: string): void {
    this.clients.add(client);
    let key: KeyRecord | undefined;
    client.on('authentication', (ctx) => {
      if (ctx.method !== 'publickey') return ctx.reject(['publickey']);
      const match = this.options.keys.match(ctx.key.algo, ctx.key.data);
      if (!match) {
        log.warn('ssh_auth_refused', { address, reason: 'unknown_key', algo: ctx.key.algo });
        return ctx.reject(['publickey']);
      }
      // Without a signature the client only asks whether this key would do.
      if (!ctx.signature || !ctx.blob) return ctx.accept();
      if (match.key.verify(ctx.blob, ctx.signature, ctx.hashAlgo) !== true) {
        log.warn('ssh_auth_refused', { address, reason: 'bad_signature', key: match.record.name });
        return ctx.reject(['publickey']);
      }
      key = match.record;
      ctx.accept();
    });
    client.on('ready', () => {
      log.info('ssh_connected', { address, key: key?.name });
      client.on('session', (acceptSession) => {
        const session = acceptSession();
        let terminal: RequestedTerminal | undefined;
        const resizeListeners: ((rows: number, cols: number) => void)[] = [];
        session.on('pty', (acceptPty, _reject, info) => {
          terminal = { term: info.term, rows: info.rows, cols: info.cols, onResize: (l) => void resizeListeners.push(l) };
          acceptPty?.();
        });
        session.on('window-change', (acceptChange, _reject, info) => {
          if (terminal) Object.assign(terminal, { rows: info.rows, cols: info.cols });
          for (const l of resizeListeners) l(info.rows, info.cols);
          acceptChange?.();
        });
        session.on('exec', (acceptExec, _reject, info) => {
          const channel = acceptExec();
          this.exec({ command: info.command, key: key!, address, channel, ...(terminal ? { terminal } : {}) });
        });
        session.on('shell', (acceptShell) => {
          const channel = acceptShell();
          channel.stderr.write(`berth has no interactive shell. Push with git, or run a command: ssh -p PORT berth@HOST help\r\n`);
          channel.exit(1);
          channel.end();
        });
      });
    });
    client.on('error', (e: Error) => log.debug('ssh_client_error', { address, error: e.message }));
    client.on('close', () => this.clients.delete(client));
  }

  private exec(request: ExecRequest): void {
    const { channel } = request;
    channel.on('error', (e: Error) => log.debug('ssh_channel_error', { address: request.address, error: e.message }));
    this.options
      .onExec(request)
      .catch((e) => {
        log.error('ssh_exec_failed', { address: request.address, key: request.key.name, command: request.command.slice(0, 200), error: e });
        if (!channel.destroyed) channel.stderr.write(` !     internal error: ${(e as Error).message}\n`);
        return 1;
      })
      .then((code) => {
        if (channel.destroyed) return;
        channel.exit(code);
        channel.end();
      });
  }
}
