// The supervisor's children: it starts the proxy and the control plane from the same binary,
// each with the listening sockets it serves as file descriptors and an IPC channel; relays the
// control plane's messages to the proxies and their answers back; restarts a child that dies,
// with backoff; upgrades both to a new binary (upgrade()); and stops them on request. It holds no
// state of the platform.
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import { UserError } from '../errors.ts';
import { log } from '../log.ts';
import { addProcessMetrics } from '../metrics/process-metrics.ts';
import { Registry, type MetricFamily } from '../metrics/registry.ts';
import { VERSION } from '../version.ts';
import type { HeldSocket, SocketName } from './listen-sockets.ts';
import { ownStatus, type ControlFacts, type FromChild, type ProcessStatus, type ToChild, type UpgradeRequest } from './messages.ts';
import { LogTail, readyWithin, ROLE_COMMANDS, RoleChild, roleEnv, type ChildRole } from './role-child.ts';

/** A child that lived this long before it died is restarted at once; sooner, the wait doubles up to RESTART_MAX_MS. */
export const RESTART_RESET_MS = 30_000;
export const RESTART_FIRST_MS = 50;
export const RESTART_MAX_MS = 10_000;
/** How long a new proxy waits for the control plane's state before it accepts with what it has. */
export const SYNC_WAIT_MS = 1_000;

/** What an upgrade may take; each has a default for `berth upgrade` and SIGUSR2. */
export interface UpgradeOptions {
  /** The new binary. Default: the file now at the path the supervisor was started from. */
  binary: string;
  /** How long each new process gets to be ready (state loaded, containers adopted, certificates in memory). Default 60 s. */
  readyWithinMs: number;
  /** After both are ready, how long they must stay up before the old proxy drains. Default 5 s. */
  probationMs: number;
  /** How long the old control plane's pushes and commands get to finish. Default 10 min. */
  drainMs: number;
}

export const UPGRADE_DEFAULTS: Omit<UpgradeOptions, 'binary'> = { readyWithinMs: 60_000, probationMs: 5_000, drainMs: 600_000 };

export interface UpgradeResult {
  ok: boolean;
  message: string;
  /** The new binary's last log lines, when it failed. */
  lastLines: string[];
}

export interface SupervisorOptions {
  /** The program and leading arguments that run berth (the binary itself, or node and the entry). */
  command: readonly string[];
  /** serve's flags as the children get them (with the real ports). */
  argv: readonly string[];
  sockets: Record<SocketName, HeldSocket>;
  /** An upgrade request completed with the defaults (the binary: the supervisor's start path). */
  upgradeOptions(request: UpgradeRequest): UpgradeOptions;
}
export class Supervisor {
  readonly #options: SupervisorOptions;
  /** The binary (with its leading arguments) children are started from; an upgrade changes it. */
  #command: readonly string[];
  /** The proxy and control plane that are restarted when they die. */
  readonly #current: Partial<Record<ChildRole, RoleChild>> = {};
  /** Every child alive: current, an upgrade's new ones, an old proxy draining. */
  readonly #alive = new Set<RoleChild>();
  readonly #failures: Record<ChildRole, number> = { proxy: 0, control: 0 };
  readonly #restartTimers = new Set<NodeJS.Timeout>();
  /** Roles that were ready once: one that dies is restarted; before that, the daemon fails to start. */
  readonly #everReady = new Set<ChildRole>();
  #stopping = false;
  #upgrading = false;
  readonly #stopSampling: () => void;
  #nextId = 1;
  readonly #asks = new Map<number, (status: ProcessStatus) => void>();
  readonly #metricAsks = new Map<number, (families: MetricFamily[]) => void>();
  /** The supervisor's own metrics (its memory and event loop). */
  readonly #registry = new Registry();
  /** Drains in flight: the control plane that asked, its id, and the proxies yet to answer. */
  readonly #drains = new Map<number, { control: RoleChild; id: number; waiting: Set<RoleChild>; report: { waitedMs: number; requestsLeft: number; tunnelsClosed: number } }>();
  /** The control plane's facts from its first start, for the banner. */
  facts: ControlFacts | undefined;

  constructor(options: SupervisorOptions) {
    this.#options = options;
    this.#command = options.command;
    this.#stopSampling = addProcessMetrics(this.#registry, 'supervisor');
  }

  /**
   * The metrics of every process serving now, for a scrape: its own, then the proxy's and the
   * control plane's (an upgrade's new or retiring processes are left out until they are the
   * current ones). A child that does not answer within 2 s is left out; the others still come.
   */
  async metrics(): Promise<MetricFamily[]> {
    const families = this.#registry.families();
    const children = (['proxy', 'control'] as const).map((role) => this.#current[role]).filter((c): c is RoleChild => c !== undefined && c.isReady);
    const answers = await Promise.all(
      children.map((child) => {
        const id = this.#nextId++;
        return new Promise<MetricFamily[]>((resolve) => {
          const timer = setTimeout(() => resolve([]), 2000);
          this.#metricAsks.set(id, (answer) => {
            clearTimeout(timer);
            resolve(answer);
          });
          child.send({ t: 'metrics', id });
        }).finally(() => this.#metricAsks.delete(id));
      }),
    );
    return [...families, ...answers.flat()];
  }

  /** Starts both children; resolves once both are ready, or throws ChildFailed when one exits first. */
  async start(): Promise<void> {
    const proxy = this.#spawn('proxy', this.#command, true);
    const control = this.#spawn('control', this.#command, true);
    await Promise.all([proxy.ready, control.ready]);
  }

  /** Every process of the daemon: this one, then its children. */
  async status(): Promise<ProcessStatus[]> {
    const lines: ProcessStatus[] = [ownStatus('supervisor', VERSION)];
    // The proxy, then the control plane; processes an upgrade is replacing after those serving.
    const rank = (c: RoleChild) => (c.retiring ? 2 : 0) + (c.role === 'proxy' ? 0 : 1);
    const children = [...this.#alive].filter((c) => c.isReady).sort((a, b) => rank(a) - rank(b));
    for (const child of children) {
      const id = this.#nextId++;
      const answer = new Promise<ProcessStatus | undefined>((resolve) => {
        this.#asks.set(id, resolve);
        setTimeout(() => resolve(undefined), 2000).unref();
      });
      child.send({ t: 'status', id });
      const status = await answer;
      this.#asks.delete(id);
      if (status) lines.push(child.retiring ? { ...status, retiring: true } : status);
    }
    return lines;
  }

  /**
   * Replaces both children by processes of a new binary, with no request refused: the new proxy
   * loads the whole state before it accepts, on the same sockets as the old one; the old control
   * plane stops taking SSH connections and commands and finishes those it runs, then the new one
   * adopts the containers and takes over; both new ones must stay up through the probation before
   * the old proxy stops accepting and drains. When the new binary fails at any step, the old
   * processes go on (a control plane of the old binary is started again) and the result says why.
   */
  async upgrade(options: UpgradeOptions, progress: (line: string) => void = () => undefined): Promise<UpgradeResult> {
    if (this.#stopping) throw new UserError('stopping', 'berth is stopping');
    if (this.#upgrading) throw new UserError('upgrade_running', 'an upgrade is already running', { hint: 'wait for it to finish, then run berth status' });
    try {
      await fs.access(options.binary, fs.constants.X_OK);
    } catch {
      throw new UserError('binary_not_executable', `${options.binary} is not an executable file`, { hint: 'give the new berth binary with --binary PATH' });
    }
    this.#upgrading = true;
    const tail = new LogTail(30);
    const next = [options.binary];
    const old = this.#command;
    const failed = (message: string): UpgradeResult => {
      log.error('upgrade_failed', { binary: options.binary, reason: message });
      return { ok: false, message, lastLines: tail.lines() };
    };
    log.info('upgrade_started', { binary: options.binary });
    try {
      progress(`Starting the proxy of ${options.binary}`);
      const proxy = this.#spawn('proxy', next, false, tail);
      const proxyUp = await readyWithin(proxy, options.readyWithinMs);
      if (proxyUp !== true) {
        await proxy.kill();
        return failed(`the new proxy ${proxyUp}; nothing changed`);
      }
      progress('The new proxy serves beside the old one');

      const oldControl = this.#current.control;
      progress('The old control plane takes no new SSH connection or command, and finishes those it runs');
      if (oldControl) delete this.#current.control;
      const retired = oldControl?.retire(options.drainMs);
      // The new control plane takes the SSH connections from now on, and holds what they ask
      // (saying why) until the old one has finished: two control planes never deploy at once.
      const control = this.#spawn('control', next, false, tail, oldControl !== undefined);
      progress(`The control plane of ${options.binary} takes new SSH connections; their pushes and commands wait for the old one's to finish`);
      await retired;
      progress(`The control plane of ${options.binary} takes over: it adopts the containers before it runs anything`);
      control.takeOver();
      const controlUp = await readyWithin(control, options.readyWithinMs);
      if (controlUp !== true) {
        await Promise.all([control.kill(), proxy.kill()]);
        if (!this.#stopping) this.#spawn('control', old, true);
        return failed(`the new control plane ${controlUp}; the old binary's control plane was started again`);
      }

      progress(`Probation: the new processes must stay up for ${Math.round(options.probationMs / 1000)} s`);
      const died = await Promise.race([
        proxy.exited.then(() => 'proxy'),
        control.exited.then(() => 'control plane'),
        new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), options.probationMs)),
      ]);
      if (died !== undefined) {
        await Promise.all([control.kill(), proxy.kill()]);
        if (!this.#stopping) this.#spawn('control', old, true);
        return failed(`the new ${died} died within the probation; the old binary's control plane was started again`);
      }

      // Committed: the new processes are the ones restarted from now on; the old proxy drains.
      this.#command = next;
      const oldProxy = this.#current.proxy;
      this.#current.proxy = proxy;
      this.#current.control = control;
      proxy.restartable = control.restartable = true;
      this.#failures.proxy = this.#failures.control = 0;
      progress('The new processes serve; the old proxy finishes its requests and stops');
      if (oldProxy) await oldProxy.drainAndExit();
      log.info('upgrade_done', { binary: options.binary, proxy: proxy.pid, control: control.pid });
      return { ok: true, message: `upgraded to ${options.binary}`, lastLines: [] };
    } finally {
      this.#upgrading = false;
    }
  }

  /** SIGTERM to every child (they drain), SIGKILL to any still running after STOP_TIMEOUT_MS. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#stopSampling();
    for (const timer of this.#restartTimers) clearTimeout(timer);
    await Promise.all([...this.#alive].map((child) => child.stop()));
  }

  /** A child of `command`; `restartable` ones are the current ones, restarted when they die. */
  #spawn(role: ChildRole, command: readonly string[], restartable: boolean, tail?: LogTail, holding = false): RoleChild {
    const { argv, sockets } = this.#options;
    const fds = role === 'proxy' ? [sockets.http.handle, sockets.https.handle] : [sockets.ssh.handle];
    const [program, ...prefix] = command;
    const output = tail ? 'pipe' : 'inherit';
    // Each child leads a process group of its own, so that kill() also ends what a stand-in
    // binary (a wrapper script) started; a Ctrl-C reaches the supervisor, which stops them in order.
    const process_ = spawn(program!, [...prefix, ROLE_COMMANDS[role], ...argv], { stdio: ['ignore', output, output, ...fds, 'ipc'] as never, detached: true, env: roleEnv(role) });
    if (tail) {
      // A new binary's output goes to the log as usual, and its last lines to a failed upgrade's report.
      for (const stream of [process_.stdout!, process_.stderr!]) {
        stream.on('data', (chunk: Buffer) => {
          process.stderr.write(chunk);
          tail.add(chunk);
        });
      }
    }
    const child = new RoleChild(role, process_, restartable, holding);
    this.#alive.add(child);
    if (restartable) this.#current[role] = child;
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
        from.greet();
        if (from.role === 'proxy') this.#startAccepting(from);
        return;
      case 'ready':
        if (message.facts && !this.facts) this.facts = message.facts;
        return;
      case 'status':
        return this.#asks.get(message.id)?.(message.status);
      case 'metrics':
        return this.#metricAsks.get(message.id)?.(message.families);
      case 'status-all':
        void this.status().then((processes) => from.send({ t: 'status-all', id: message.id, processes }));
        return;
      case 'metrics-all':
        void this.metrics().then((families) => from.send({ t: 'metrics-all', id: message.id, families }));
        return;
      case 'upgrade': {
        const id = message.id;
        void Promise.resolve()
          .then(() => this.upgrade(this.#options.upgradeOptions(message.request), (line) => from.send({ t: 'upgrade-step', id, line })))
          .then(
            (result) => from.send({ t: 'upgrade-result', id, result }),
            (e: unknown) => {
              if (!(e instanceof UserError)) log.error('upgrade_crashed', { error: e });
              from.send({ t: 'upgrade-result', id, error: e instanceof UserError ? { code: e.code, message: e.message, ...(e.hint ? { hint: e.hint } : {}) } : { code: 'internal', message: `the upgrade failed: ${(e as Error).message}` } });
            },
          );
        return;
      }
      case 'retired':
        return;
      case 'to-proxy': {
        const m = message.message;
        const proxies = [...this.#alive].filter((c) => c.role === 'proxy' && c.greeted);
        if (m.t !== 'drain') {
          for (const proxy of proxies) proxy.send({ t: 'from-control', message: m });
          return;
        }
        // Every proxy that serves drains the targets; the answers are summed.
        const serving = new Set(proxies.filter((p) => p.isReady));
        const id = this.#nextId++;
        this.#drains.set(id, { control: from, id: m.id, waiting: serving, report: { waitedMs: 0, requestsLeft: 0, tunnelsClosed: 0 } });
        for (const proxy of serving) proxy.send({ t: 'from-control', message: { ...m, id } });
        this.#settleDrain(id);
        return;
      }
      case 'to-control': {
        const m = message.message;
        const drain = this.#drains.get(m.id);
        if (!drain) return;
        drain.waiting.delete(from);
        drain.report.waitedMs = Math.max(drain.report.waitedMs, m.report.waitedMs);
        drain.report.requestsLeft += m.report.requestsLeft;
        drain.report.tunnelsClosed += m.report.tunnelsClosed;
        this.#settleDrain(m.id);
        return;
      }
    }
  }

  /** Answers a drain once no proxy that was asked is left to answer (a proxy that died took its connections along). */
  #settleDrain(id: number): void {
    const drain = this.#drains.get(id);
    if (!drain || drain.waiting.size > 0) return;
    this.#drains.delete(id);
    drain.control.send({ t: 'from-proxy', message: { t: 'drained', id: drain.id, report: drain.report } });
  }

  /** A new proxy accepts once the control plane sent it everything, or at once when there is no control plane to wait for. */
  #startAccepting(proxy: RoleChild): void {
    const controls = [...this.#alive].filter((c) => c.role === 'control' && c.isReady && !c.retiring);
    if (controls.length === 0) {
      proxy.send({ t: 'accept' });
      return;
    }
    for (const control of controls) control.send({ t: 'resync' });
    setTimeout(() => proxy.send({ t: 'accept' }), SYNC_WAIT_MS).unref();
  }

  #onExit(child: RoleChild, code: number | null, signal: string | null, livedMs: number): void {
    const role = child.role;
    this.#alive.delete(child);
    if (role === 'proxy') {
      for (const [id, drain] of this.#drains) if (drain.waiting.delete(child)) this.#settleDrain(id);
    }
    if (this.#current[role] !== child) return;
    // Stopping; or at start-up, when the daemon does not start (the child said why on stderr).
    if (this.#stopping || !child.restartable || !this.#everReady.has(role)) return;
    delete this.#current[role];
    this.#failures[role] = livedMs >= RESTART_RESET_MS ? 0 : this.#failures[role] + 1;
    const wait = this.#failures[role] === 0 ? 0 : Math.min(RESTART_MAX_MS, RESTART_FIRST_MS * 2 ** (this.#failures[role] - 1));
    log.error('process_died', { role, pid: child.pid, code, signal, restartInMs: wait });
    const timer = setTimeout(() => {
      this.#restartTimers.delete(timer);
      if (!this.#stopping && !this.#current[role]) this.#spawn(role, this.#command, true);
    }, wait);
    this.#restartTimers.add(timer);
  }
}
