// The embedded SSH server: public-key auth against the key store only, failed logins limited
// per source address, exec requests only (no shell, no subsystems, no forwarding of any kind,
// each refusal logged with the key's name), each exec handed to one handler with the key as it
// is now (looked up by fingerprint: a multiplexed connection outlives changes to its key), and
// a removed key's connections closed. A client may ask for a terminal (ssh -t) for its exec;
// its size and changes are passed on. Before authentication a connection has a grace time, and
// such connections are capped per address and in all; the transport offers only the algorithms
// of ssh-algorithms.ts.
import { createHash } from 'node:crypto';
import net, { type AddressInfo } from 'node:net';
import ssh2 from 'ssh2';
import type { Connection, ServerChannel } from 'ssh2';
import { describeForUser, UserError } from '../errors.ts';
import { listenError } from '../listen-error.ts';
import { log } from '../log.ts';
import { VERSION } from '../version.ts';
import { AuthLimiter, type AuthLimits } from './auth-limiter.ts';
import { SSH_ALGORITHMS } from './ssh-algorithms.ts';
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
  /** A listening socket handed over by the supervisor (its file descriptor): served instead of binding `port`. */
  fd?: number;
  /** Failed-login limits per source address, login grace time, caps on logins in progress; see auth-limiter.ts for the defaults. */
  authLimits?: Partial<AuthLimits>;
}

export class SshServer {
  private readonly options: SshServerOptions;
  private listener: net.Server | undefined;
  private readonly clients = new Set<Connection>();
  /** Connections past authentication, with the key they authenticated with. */
  private readonly authenticated = new Map<Connection, { fingerprint: string; name: string; address: string }>();
  private stopWatchingKeys: (() => void) | undefined;
  private readonly limiter: AuthLimiter;
  /** Addresses whose turned-away connections were logged in the current block, to keep the log short. */
  private readonly loggedBlocks = new Set<string>();
  /** Logins in progress by `address port`: each ends its accounting once, on authentication or close. */
  private readonly loginsInProgress = new Map<string, { end: () => void; socket: net.Socket }>();
  /** Caps that turned a connection away since the last one was let in, to log each once. */
  private readonly loggedStartupCaps = new Set<string>();

  constructor(options: SshServerOptions) {
    this.options = options;
    this.limiter = new AuthLimiter(options.authLimits);
  }

  get port(): number {
    return (this.listener?.address() as AddressInfo | null)?.port ?? 0;
  }

  async start(): Promise<void> {
    this.stopWatchingKeys = this.options.keys.onChange(() => this.closeRemovedKeys());
    const ssh = new ssh2.Server({ hostKeys: [this.options.hostKey], ident: `berth_${VERSION}`, algorithms: SSH_ALGORITHMS }, (client, info) => {
      this.trackLogin(client, info.ip, info.port);
      this.accept(client, info.ip);
    });
    // ssh2 would listen with Nagle's algorithm on: each of the seven round trips before an exec
    // runs then waits for the client's delayed ACK, about 40 ms each here. berth listens itself
    // with TCP_NODELAY, as OpenSSH's sshd does, and hands each connection to ssh2.
    const listener = net.createServer({ noDelay: true }, (socket) => {
      if (this.admit(socket)) ssh.injectSocket(socket);
    });
    this.listener = listener;
    await new Promise<void>((resolve, reject) => {
      const onError = (e: Error) => reject(listenError(e, { what: 'SSH', address: `${this.options.bindHost}:${this.options.port}`, flag: '--ssh-port' }));
      listener.once('error', onError);
      const done = () => {
        listener.off('error', onError);
        resolve();
      };
      if (this.options.fd !== undefined) listener.listen({ fd: this.options.fd }, done);
      else listener.listen(this.options.port, this.options.bindHost, done);
    });
    listener.on('error', (e: Error) => log.error('ssh_server_error', { error: e }));
  }

  /** Accepts no new connection (an upgrade's new control plane takes them); those open go on. */
  stopAccepting(): void {
    // close() stops listening at once; its callback would wait for every connection to end.
    if (this.listener?.listening) this.listener.close();
  }

  /** Resolves once at most `leave` clients are connected (after stopAccepting(): once the pushes and commands have ended). */
  async idle(leave = 0): Promise<void> {
    while (this.clients.size > leave) await new Promise((resolve) => setTimeout(resolve, 100));
  }

  async stop(): Promise<void> {
    this.stopWatchingKeys?.();
    const listener = this.listener;
    this.listener = undefined;
    for (const c of this.clients) c.end();
    // Logins in progress have nothing to finish; those that never spoke SSH are no client yet.
    for (const { socket } of this.loginsInProgress.values()) socket.destroy();
    if (listener?.listening) await new Promise<void>((resolve) => listener.close(() => resolve()));
  }

  /**
   * Counts a new TCP connection as a login in progress, or closes it at once when its address or
   * the server has too many (as OpenSSH's MaxStartups: nothing is sent, not even the banner).
   * A login that takes longer than the grace time is closed and counted as a failed one.
   */
  private admit(socket: net.Socket): boolean {
    const address = socket.remoteAddress ?? '';
    const limits = this.limiter.limits;
    const full = this.limiter.startLogin(address);
    if (full !== undefined) {
      const logKey = full === 'total' ? 'total' : `address ${address}`;
      if (!this.loggedStartupCaps.has(logKey)) {
        this.loggedStartupCaps.add(logKey);
        log.warn('ssh_connection_refused', {
          address,
          reason: full === 'total' ? 'too_many_unauthenticated' : 'too_many_unauthenticated_from_address',
          limit: full === 'total' ? limits.maxStartups : limits.maxStartupsPerAddress,
        });
      }
      socket.destroy();
      return false;
    }
    this.loggedStartupCaps.delete('total');
    this.loggedStartupCaps.delete(`address ${address}`);
    const id = `${address} ${socket.remotePort}`;
    const timer =
      limits.loginGraceMs > 0
        ? setTimeout(() => {
            log.warn('ssh_login_timeout', { address, graceS: limits.loginGraceMs / 1000 });
            if (this.limiter.recordFailure(address)) {
              log.warn('ssh_address_blocked', { address, failures: limits.maxFailures, windowS: limits.windowMs / 1000, blockedForS: limits.blockMs / 1000 });
            }
            socket.destroy();
          }, limits.loginGraceMs)
        : undefined;
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      clearTimeout(timer);
      this.limiter.loginEnded(address);
      if (this.loginsInProgress.get(id)?.end === end) this.loginsInProgress.delete(id);
    };
    this.loginsInProgress.set(id, { end, socket });
    socket.once('close', end);
    return true;
  }

  /** Ends the login's accounting (and its grace timer) once the client has authenticated. */
  private trackLogin(client: Connection, address: string, port: number): void {
    client.once('ready', () => this.loginsInProgress.get(`${address} ${port}`)?.end());
  }

  private accept(client: Connection, address: string): void {
    client.on('error', (e: Error) => log.debug('ssh_client_error', { address, error: e.message }));
    const blocked = this.limiter.blockedFor(address);
    if (blocked > 0) {
      if (!this.loggedBlocks.has(address)) {
        this.loggedBlocks.add(address);
        log.warn('ssh_connection_refused', { address, reason: 'too_many_failed_logins', blockedForS: Math.ceil(blocked / 1000) });
      }
      client.end();
      return;
    }
    this.loggedBlocks.delete(address);
    this.clients.add(client);
    let key: KeyRecord | undefined;
    let failed = 0;
    client.on('authentication', (ctx) => {
      const refuse = (fields: Record<string, unknown>) => {
        failed++;
        log.warn('ssh_auth_refused', { address, ...fields });
        if (failed >= this.limiter.limits.maxAttemptsPerConnection) {
          log.warn('ssh_auth_refused', { address, reason: 'too_many_attempts', attempts: failed });
          ctx.reject();
          client.end();
          return;
        }
        ctx.reject(['publickey']);
      };
      // 'none' is how every client opens, asking which methods exist: not an attempt.
      if (ctx.method === 'none') return ctx.reject(['publickey']);
      if (ctx.method !== 'publickey') return refuse({ reason: 'method_not_allowed', method: ctx.method, user: ctx.username });
      const match = this.options.keys.match(ctx.key.algo, ctx.key.data);
      if (!match) return refuse({ reason: 'unknown_key', algo: ctx.key.algo, fingerprint: keyFingerprint(ctx.key.data) });
      // Without a signature the client only asks whether this key would do.
      if (!ctx.signature || !ctx.blob) return ctx.accept();
      if (match.key.verify(ctx.blob, ctx.signature, ctx.hashAlgo) !== true) return refuse({ reason: 'bad_signature', key: match.record.name });
      key = match.record;
      this.authenticated.set(client, { fingerprint: match.record.fingerprint, name: match.record.name, address });
      ctx.accept();
    });
    client.on('ready', () => {
      this.limiter.recordSuccess(address);
      log.info('ssh_connected', { address, key: key?.name });
      const refuse = (what: string, reject: (() => void) | undefined, detail: Record<string, unknown> = {}) => {
        log.warn('ssh_request_refused', { address, key: key?.name, request: what, ...detail });
        reject?.();
      };
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
          // The key as it is now: removed or re-scoped since this connection authenticated, that counts.
          const current = this.options.keys.byFingerprint(key!.fingerprint);
          if (!current) {
            log.warn('ssh_request_refused', { address, key: key!.name, request: 'exec', reason: 'key_removed' });
            channel.stderr.write(` !     the key "${key!.name}" was removed; this connection is closed\n`);
            channel.exit(1);
            channel.end();
            client.end();
            return;
          }
          this.exec({ command: info.command, key: current, address, channel, ...(terminal ? { terminal } : {}) });
        });
        session.on('shell', (acceptShell) => {
          log.warn('ssh_request_refused', { address, key: key?.name, request: 'shell' });
          const channel = acceptShell();
          channel.stderr.write(`berth has no interactive shell. Push with git, or run a command: ssh -p PORT berth@HOST help\r\n`);
          channel.exit(1);
          channel.end();
        });
        session.on('subsystem', (_accept, reject, info) => refuse('subsystem', reject, { name: info.name }));
        session.on('sftp', (_accept, reject) => refuse('subsystem', reject, { name: 'sftp' }));
        session.on('auth-agent', (_accept, reject) => refuse('agent forwarding', reject));
        session.on('x11', (_accept, reject) => refuse('X11 forwarding', reject));
      });
      client.on('tcpip', (_accept, reject, info) => refuse('port forwarding', reject, { to: `${info.destIP}:${info.destPort}` }));
      client.on('openssh.streamlocal', (_accept, reject, info) => refuse('socket forwarding', reject, { to: info.socketPath }));
      client.on('request', (_accept, reject, name) => refuse(name === 'tcpip-forward' ? 'remote port forwarding' : name, reject));
    });
    client.on('close', () => {
      this.clients.delete(client);
      this.authenticated.delete(client);
      if (key === undefined && failed > 0 && this.limiter.recordFailure(address)) {
        log.warn('ssh_address_blocked', { address, failures: this.limiter.limits.maxFailures, windowS: this.limiter.limits.windowMs / 1000, blockedForS: this.limiter.limits.blockMs / 1000 });
      }
    });
  }

  /** Closes the connections whose key is no longer in the store (an `ssh-keys:remove`). */
  private closeRemovedKeys(): void {
    for (const [client, { fingerprint, name, address }] of this.authenticated) {
      if (this.options.keys.byFingerprint(fingerprint)) continue;
      this.authenticated.delete(client);
      log.info('ssh_connection_closed', { address, key: name, reason: 'key_removed' });
      // After the current turn, so a command that removed its own key still prints its outcome.
      setImmediate(() => client.end());
    }
  }

  private exec(request: ExecRequest): void {
    const { channel } = request;
    channel.on('error', (e: Error) => log.debug('ssh_channel_error', { address: request.address, error: e.message }));
    this.options
      .onExec(request)
      .catch((e) => {
        // Not the command line: it may carry a config value or a password.
        log.warn('ssh_exec_failed', { address: request.address, key: request.key.name, error: e instanceof UserError ? e.code : 'internal' });
        const { lines, exitCode } = describeForUser(e, 'ssh exec');
        if (!channel.destroyed) channel.stderr.write(lines.map((l) => ` !     ${l}\n`).join(''));
        return exitCode;
      })
      .then((code) => {
        if (channel.destroyed) return;
        channel.exit(code);
        channel.end();
      });
  }
}

function keyFingerprint(blob: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(blob).digest('base64').replace(/=+$/, '');
}
