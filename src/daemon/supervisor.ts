// The supervisor's children: it starts the proxy and the control plane from the same binary,
// each with the listening sockets it serves as file descriptors and an IPC channel; relays the
// control plane's messages to the proxy and the proxy's answers back; restarts a child that dies,
// with backoff; and stops both on request. It holds no state of the platform.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import sea from 'node:sea';
import { log } from '../log.ts';
import { VERSION } from '../version.ts';
import type { HeldSocket, SocketName } from './listen-sockets.ts';
import { ownStatus, type ControlFacts, type FromChild, type ProcessStatus, type ToChild } from './messages.ts';

/** The hidden sub-commands the children run. */
export const ROLE_COMMANDS = { proxy: '__proxy', control: '__control' } as const;
type ChildRole = keyof typeof ROLE_COMMANDS;

/** How long a child may take to say it is ready before it is taken for broken. Default 120 s (adoption of many containers). */
export const READY_TIMEOUT_MS = 120_000;
/** A child that lived this long before it died is restarted at once; sooner, the wait doubles up to RESTART_MAX_MS. */
export const RESTART_RESET_MS = 30_000;
export const RESTART_FIRST_MS = 50;
export const RESTART_MAX_MS = 10_000;
/** How long a new proxy waits for the control plane's state before it accepts with what it has. */
export const SYNC_WAIT_MS = 1_000;
/** How long a child gets to stop after SIGTERM before SIGKILL. Above the proxy's drain timeout. */
export const STOP_TIMEOUT_MS = 20_000;

export interface SupervisorOptions {
  /** The program and leading arguments that run berth (the binary itself, or node and the entry). */
  command: readonly string[];
  /** serve's flags as the children get them (with the real ports). */
  argv: readonly string[];
  sockets: Record<SocketName, HeldSocket>;
}

/** A child that exited before it was ready at start-up: the daemon does not start. */
export class ChildFailed extends Error {
  readonly exitCode: number;
  constructor(role: ChildRole, exitCode: number) {
    super(`the ${role} process exited with ${exitCode} before it was ready`);
    this.exitCode = exitCode;
  }
}

export class Supervisor {
  readonly #options: SupervisorOptions;
  readonly #children: Partial<Record<ChildRole, RoleChild>> = {};
  readonly #failures: Record<ChildRole, number> = { proxy: 0, control: 0 };
  readonly #restartTimers = new Set<NodeJS.Timeout>();
  /** Roles that were ready once: one that dies is restarted; before that, the daemon fails to start. */
  readonly #everReady = new Set<ChildRole>();
  #stopping = false;
  #nextAsk = 1;
  readonly #asks = new Map<number, (status: ProcessStatus) => void>();
  /** The control plane's facts from its first start, for the banner. */
  facts: ControlFacts | undefined;

  constructor(options: SupervisorOptions) {
    this.#options = options;
  }

  /** Starts both children; resolves once both are ready, or throws ChildFailed when one exits first. */
  async start(): Promise<void> {
    const proxy = this.#spawn('proxy');
    const control = this.#spawn('control');
    await Promise.all([proxy.ready, control.ready]);
  }

  /** Every process of the daemon: this one, then its children. */
  async status(): Promise<ProcessStatus[]> {
    const lines: ProcessStatus[] = [ownStatus('supervisor', VERSION)];
    for (const role of ['proxy', 'control'] as const) {
      const child = this.#children[role];
      if (!child?.isReady) continue;
      const id = this.#nextAsk++;
      const answer = new Promise<ProcessStatus | undefined>((resolve) => {
        this.#asks.set(id, resolve);
        setTimeout(() => resolve(undefined), 2000).unref();
      });
      child.send({ t: 'status', id });
      const status = await answer;
      this.#asks.delete(id);
      if (status) lines.push(status);
    }
    return lines;
  }

  /** SIGTERM to both children (they drain), SIGKILL to any still running after STOP_TIMEOUT_MS. */
  async stop(): Promise<void> {
    this.#stopping = true;
    for (const timer of this.#restartTimers) clearTimeout(timer);
    await Promise.all(Object.values(this.#children).map((child) => child.stop()));
  }

  #spawn(role: ChildRole): RoleChild {
    const { command, argv, sockets } = this.#options;
    const fds = role === 'proxy' ? [sockets.http.handle, sockets.https.handle] : [sockets.ssh.handle];
    const [program, ...prefix] = command;
    const child = new RoleChild(role, spawn(program!, [...prefix, ROLE_COMMANDS[role], ...argv], { stdio: ['ignore', 'inherit', 'inherit', ...fds, 'ipc'] as never }));
    this.#children[role] = child;
    child.onMessage = (message) => this.#onMessage(child, message);
    child.ready.then(
      () => {
        this.#everReady.add(role);
        log.info('process_ready', { role, pid: child.pid });
      },
      () => undefined,
    );
    void child.exited.then(({ code, signal, lived }) => this.#onExit(child, code, signal, lived));
    return child;
  }

  #onMessage(from: RoleChild, message: FromChild): void {
    switch (message.t) {
      case 'hello':
        from.greeted = true;
        if (from.role === 'proxy') this.#startAccepting(from);
        return;
      case 'ready':
        if (message.facts && !this.facts) this.facts = message.facts;
        return;
      case 'status':
        return this.#asks.get(message.id)?.(message.status);
      case 'status-all':
        void this.status().then((processes) => from.send({ t: 'status-all', id: message.id, processes }));
        return;
      case 'to-proxy': {
        const proxy = this.#children.proxy;
        if (proxy?.greeted && (proxy.isReady || message.message.t !== 'drain')) proxy.send({ t: 'from-control', message: message.message });
        // No proxy to drain: its connections went with it.
        else if (message.message.t === 'drain') from.send({ t: 'from-proxy', message: { t: 'drained', id: message.message.id, report: { waitedMs: 0, requestsLeft: 0, tunnelsClosed: 0 } } });
        return;
      }
      case 'to-control':
        this.#children.control?.send({ t: 'from-proxy', message: message.message });
        return;
    }
  }

  /** A new proxy accepts once the control plane sent it everything, or at once when there is no control plane to wait for. */
  #startAccepting(proxy: RoleChild): void {
    const control = this.#children.control;
    if (!control?.isReady) {
      proxy.send({ t: 'accept' });
      return;
    }
    control.send({ t: 'resync' });
    setTimeout(() => proxy.send({ t: 'accept' }), SYNC_WAIT_MS).unref();
  }

  #onExit(child: RoleChild, code: number | null, signal: string | null, livedMs: number): void {
    const role = child.role;
    if (this.#children[role] !== child) return;
    if (role === 'proxy') this.#children.control?.send({ t: 'proxy-gone' });
    // Stopping; or at start-up, when the daemon does not start (the child said why on stderr).
    if (this.#stopping || !this.#everReady.has(role)) return;
    this.#failures[role] = livedMs >= RESTART_RESET_MS ? 0 : this.#failures[role] + 1;
    const wait = this.#failures[role] === 0 ? 0 : Math.min(RESTART_MAX_MS, RESTART_FIRST_MS * 2 ** (this.#failures[role] - 1));
    log.error('process_died', { role, pid: child.pid, code, signal, restartInMs: wait });
    const timer = setTimeout(() => {
      this.#restartTimers.delete(timer);
      if (!this.#stopping) this.#spawn(role);
    }, wait);
    this.#restartTimers.add(timer);
  }

}

/** One running child: its IPC channel, readiness and end. */
class RoleChild {
  readonly role: ChildRole;
  readonly #process: ChildProcess;
  readonly ready: Promise<void>;
  readonly exited: Promise<{ code: number | null; signal: string | null; lived: number }>;
  onMessage: ((message: FromChild) => void) | undefined;
  isReady = false;
  /** It listens to its IPC channel. */
  greeted = false;

  constructor(role: ChildRole, child: ChildProcess) {
    this.role = role;
    this.#process = child;
    const started = Date.now();
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.isReady = false;
        resolve({ code, signal, lived: Date.now() - started });
      });
      child.once('error', (e) => {
        log.error('process_spawn_failed', { role, error: e });
        resolve({ code: 127, signal: null, lived: 0 });
      });
    });
    this.ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`the ${role} process was not ready within ${READY_TIMEOUT_MS / 1000} s`));
        child.kill('SIGKILL');
      }, READY_TIMEOUT_MS);
      child.on('message', (message: FromChild) => {
        if (message.t === 'ready') {
          clearTimeout(timer);
          this.isReady = true;
          resolve();
        }
        this.onMessage?.(message);
      });
      void this.exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new ChildFailed(role, code ?? (signal ? 1 : 0)));
      });
    });
    this.ready.catch(() => undefined);
  }

  get pid(): number | undefined {
    return this.#process.pid;
  }

  send(message: ToChild): void {
    if (this.#process.connected) this.#process.send(message, (e: Error | null) => e && log.debug('process_send_failed', { role: this.role, error: e.message }));
  }

  async stop(): Promise<void> {
    if (this.#process.exitCode !== null || this.#process.signalCode !== null) return;
    this.#process.kill('SIGTERM');
    const timer = setTimeout(() => this.#process.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await this.exited;
    clearTimeout(timer);
  }
}

/**
 * How to start this program again: the single executable is its own entry point; under Node the
 * entry is the bundle (process.argv[1]) or, when running from source, src/main.ts.
 */
export function selfCommand(): string[] {
  if (sea.isSea()) return [process.execPath];
  const here = import.meta.filename as string | undefined;
  const entry = here ? path.join(path.dirname(here), '..', 'main.ts') : process.argv[1];
  if (!entry) throw new Error('cannot tell which script runs berth');
  return [process.execPath, entry];
}
