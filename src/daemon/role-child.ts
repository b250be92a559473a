// One child of the supervisor (the proxy or the control plane): its IPC channel, when it is
// ready, how it ends (stopped, retired in an upgrade, killed with its process group), and the
// last lines a new binary wrote; and how this program starts itself again.
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import sea from 'node:sea';
import { log } from '../log.ts';
import type { FromChild, ToChild } from './messages.ts';

/** The hidden sub-commands the children run. */
export const ROLE_COMMANDS = { proxy: '__proxy', control: '__control' } as const;
export type ChildRole = keyof typeof ROLE_COMMANDS;

/** How long a child may take to say it is ready before it is taken for broken. Default 120 s (adoption of many containers). */
export const READY_TIMEOUT_MS = 120_000;
/** How long a child gets to stop after SIGTERM before SIGKILL. Above the proxy's drain timeout. */
export const STOP_TIMEOUT_MS = 20_000;

/**
 * V8 options for each role, put before any NODE_OPTIONS of the operator's (a later one wins).
 * The proxy's young generation is capped at 8 MB semi-spaces instead of 16: under HTTP/2 load
 * (many streams in flight, so objects survive a scavenge and are promoted) its heap grows, and
 * stays grown, by about 15 MB less. 4 MB saved 10 MB more but served HTTP/2 a little slower in
 * every run (docs/memory.md).
 */
export const ROLE_NODE_OPTIONS: Record<ChildRole, string> = { proxy: '--max-semi-space-size=8', control: '' };

/** The environment a child of `role` starts with: the supervisor's, with the role's V8 options. */
export function roleEnv(role: ChildRole, env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const own = ROLE_NODE_OPTIONS[role];
  if (!own) return env;
  return { ...env, NODE_OPTIONS: env.NODE_OPTIONS ? `${own} ${env.NODE_OPTIONS}` : own };
}

/** A child that exited before it was ready at start-up: the daemon does not start. */
export class ChildFailed extends Error {
  readonly exitCode: number;
  constructor(role: ChildRole, exitCode: number) {
    super(`the ${role} process exited with ${exitCode} before it was ready`);
    this.exitCode = exitCode;
  }
}

/** Whether `child` is ready within `ms`: true, or what went wrong. */
export async function readyWithin(child: RoleChild, ms: number): Promise<true | string> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      child.ready.then(
        () => true as const,
        (e: Error) => (e instanceof ChildFailed ? `exited with ${e.exitCode} before it was ready` : e.message),
      ),
      new Promise<string>((resolve) => (timer = setTimeout(() => resolve(`was not ready within ${Math.round(ms / 1000)} s`), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
/** One running child: its IPC channel, readiness and end. */
export class RoleChild {
  readonly role: ChildRole;
  readonly #process: ChildProcess;
  readonly ready: Promise<void>;
  readonly exited: Promise<{ code: number | null; signal: string | null; lived: number }>;
  onMessage: ((message: FromChild) => void) | undefined;
  isReady = false;
  /** It listens to its IPC channel. */
  greeted = false;
  /** Restarted when it dies (not an upgrade's new process on probation). */
  restartable: boolean;
  /** An old control plane finishing its work in an upgrade. */
  retiring = false;

  readonly #retired: Promise<void>;
  /** A control plane that waits for another to finish before it takes over (an upgrade's new one). */
  #holding: boolean;
  /** Started at spawn; stopped while a control plane holds, started again when it takes over. */
  #readyTimer: NodeJS.Timeout | undefined;
  readonly #armReadyTimer: () => void;

  constructor(role: ChildRole, child: ChildProcess, restartable: boolean, holding = false) {
    this.role = role;
    this.#holding = holding;
    let retired!: () => void;
    this.#retired = new Promise((resolve) => (retired = resolve));
    child.on('message', (message: FromChild) => {
      if (message.t === 'retired') retired();
    });
    this.#process = child;
    this.restartable = restartable;
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
    let notReady!: (e: Error) => void;
    this.#armReadyTimer = () => {
      clearTimeout(this.#readyTimer);
      this.#readyTimer = setTimeout(() => {
        notReady(new Error(`was not ready within ${READY_TIMEOUT_MS / 1000} s`));
        child.kill('SIGKILL');
      }, READY_TIMEOUT_MS);
    };
    this.ready = new Promise<void>((resolve, reject) => {
      notReady = reject;
      this.#armReadyTimer();
      child.on('message', (message: FromChild) => {
        if (message.t === 'ready') {
          clearTimeout(this.#readyTimer);
          this.isReady = true;
          resolve();
        }
        this.onMessage?.(message);
      });
      void this.exited.then(({ code, signal }) => {
        clearTimeout(this.#readyTimer);
        reject(new ChildFailed(role, code ?? (signal ? 1 : 0)));
      });
    });
    this.ready.catch(() => undefined);
  }

  /** Its hello: a control plane is told to take over, or to hold until takeOver(). */
  greet(): void {
    this.greeted = true;
    if (this.role !== 'control') return;
    if (this.#holding) {
      // Its readiness is timed from the take-over: the old control plane's drain may take long.
      clearTimeout(this.#readyTimer);
      this.send({ t: 'hold' });
    } else this.send({ t: 'take-over' });
  }

  /** A holding control plane takes over now (at once, if it has not said hello yet). */
  takeOver(): void {
    if (!this.#holding) return;
    this.#holding = false;
    if (!this.greeted) return;
    if (!this.isReady && this.running) this.#armReadyTimer();
    this.send({ t: 'take-over' });
  }

  get pid(): number | undefined {
    return this.#process.pid;
  }

  send(message: ToChild): void {
    if (this.#process.connected) this.#process.send(message, (e: Error | null) => e && log.debug('process_send_failed', { role: this.role, error: e.message }));
  }

  get running(): boolean {
    return this.#process.exitCode === null && this.#process.signalCode === null;
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.#process.kill('SIGTERM');
    const timer = setTimeout(() => this.#process.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await this.exited;
    clearTimeout(timer);
  }

  /** An old proxy in an upgrade: stops accepting, drains (WebSockets until the deadline), exits. */
  async drainAndExit(): Promise<void> {
    if (!this.running) return;
    this.retiring = true;
    this.send({ t: 'drain-and-exit' });
    const timer = setTimeout(() => this.#process.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await this.exited;
    clearTimeout(timer);
  }

  /**
   * A control plane in an upgrade: stops accepting, finishes what it runs (up to `deadlineMs`),
   * stops its work and says so, or exits. One that runs the upgrade's own command (over SSH)
   * stays until that command has printed the outcome.
   */
  async retire(deadlineMs: number): Promise<void> {
    if (!this.running) return;
    this.retiring = true;
    this.send({ t: 'retire', deadlineMs });
    const timer = setTimeout(() => this.#process.kill('SIGKILL'), deadlineMs + STOP_TIMEOUT_MS);
    await Promise.race([this.exited, this.#retired]);
    clearTimeout(timer);
  }

  /** SIGKILL to the child's whole process group; its IPC channel closes, so anything left of it stops too. */
  async kill(): Promise<void> {
    if (this.running) {
      try {
        process.kill(-this.#process.pid!, 'SIGKILL');
      } catch {
        this.#process.kill('SIGKILL');
      }
      await this.exited;
    }
    if (this.#process.connected) this.#process.disconnect();
  }
}

/** The last lines a process wrote. */
export class LogTail {
  readonly #max: number;
  #lines: string[] = [];
  #partial = '';

  constructor(max: number) {
    this.#max = max;
  }

  add(chunk: Buffer): void {
    const parts = (this.#partial + chunk.toString()).split('\n');
    this.#partial = parts.pop() ?? '';
    this.#lines.push(...parts.filter((l) => l.trim() !== ''));
    if (this.#lines.length > this.#max) this.#lines = this.#lines.slice(-this.#max);
  }

  lines(): string[] {
    return this.#partial ? [...this.#lines, this.#partial].slice(-this.#max) : [...this.#lines];
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
