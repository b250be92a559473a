// The receiving side of `git push` (git's receive-pack, protocol v0): advertise refs, read the
// commands and the pack, run the pre-receive hook, move refs by compare-and-swap, report.
import type { Readable, Writable } from 'node:stream';
import { StreamOutput } from '../ui/output.ts';
import { describeForUser, isUserError, UserError } from '../errors.ts';
import { log } from '../log.ts';
import { PackReceiver, removePack, type StoredPack } from './pack-receiver.ts';
import type { DiskBudget } from './disk-budget.ts';
import { pushLimitError, pushLimits, type PushLimits } from '../push-limits.ts';
import { FLUSH, packetText, pkt, PktLineReader, sideband } from './pkt-line.ts';
import { checkRefName, type Repository, ZERO_OID } from './repository.ts';

export interface RefUpdate {
  ref: string;
  oldOid: string;
  newOid: string;
}

export interface ReceivePackHooks {
  /** Runs after the pack is stored and indexed and before any ref moves (git's pre-receive). `progress` writes lines the client shows as `remote: ...` (band 2) immediately, and returns a promise while the client has not read what came before (wait for it before producing more). Return a reason string per ref to reject it (that ref is then not updated), or nothing to accept. */
  preReceive?(updates: RefUpdate[], progress: Progress): Promise<Map<string, string> | void>;
  /** Runs after refs moved, with the updates that were applied. */
  postReceive?(applied: RefUpdate[], progress: Progress): Promise<void>;
}

/** Writes progress text to the client; a promise while the client has not caught up. */
export type Progress = (text: string) => void | Promise<void>;

export interface ReceivePackOptions {
  /** The caps on one push (pack bytes, objects, refs, object size, delta depth); see push-limits.ts. Default DEFAULT_PUSH_LIMITS. */
  limits?: Partial<PushLimits>;
  /** Give up when the client sends nothing for this long while berth waits for commands or pack bytes; 0 never. Default 10 minutes (berth serve sets --push-timeout). */
  idleTimeoutMs?: number;
  /** What the pack may take on disk; see disk-budget.ts. Default: no budget. */
  diskBudget?: DiskBudget;
}

/** What berth's receive-pack offers. `no-thin` makes git send self-contained packs. */
export const CAPABILITIES = 'report-status delete-refs side-band-64k quiet ofs-delta no-thin agent=berth object-format=sha1';

/**
 * Serves one `git-receive-pack` exchange over `io` (an SSH exec channel's streams): advertise,
 * receive, pre-receive, update refs, post-receive, report. Resolves when the report has been
 * written (or the client asked for nothing); never ends or destroys the streams.
 *
 * Rejects with a UserError when the exchange fails: `git_protocol_error` (garbage, lying
 * lengths), `git_pack_invalid` / `git_push_limit` (the pack, or a cap; refs are then left alone),
 * `git_client_disconnected`, `git_client_idle`. The client has already been told (a band-3 or
 * ERR packet, or an `unpack` status) when it could be; temp files are removed.
 *
 * Once the pack is in, a client that goes away does not stop the push: hooks and ref updates
 * run to the end and only the report is lost (as with git).
 */
export async function serveReceivePack(
  io: { input: Readable; output: Writable },
  repo: Repository,
  hooks: ReceivePackHooks,
  options: ReceivePackOptions = {},
): Promise<void> {
  const session = new Session(io, repo, hooks, options);
  try {
    await session.run();
  } finally {
    session.input.release();
  }
}

interface Command extends RefUpdate {
  /** Why the update is refused; undefined while it is still going ahead. */
  error?: string;
}

const DEFAULT_IDLE_TIMEOUT_MS = 10 * 60_000;

class Session {
  readonly input: InputReader;
  private readonly output: Writable;
  private readonly repo: Repository;
  private readonly hooks: ReceivePackHooks;
  private readonly options: ReceivePackOptions;
  private readonly limits: PushLimits;
  private readonly started = performance.now();
  private clientCaps = new Set<string>();
  private sideband = false;
  private reportDone = false;
  private outputBroken = false;
  private progressPhase = '';
  private progressTotal = 0;
  private indexMs = 0;
  private receiveMs = 0;
  private draining: Promise<void> | undefined;
  private readonly idleTimeoutMs: number;

  constructor(io: { input: Readable; output: Writable }, repo: Repository, hooks: ReceivePackHooks, options: ReceivePackOptions) {
    this.idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    this.input = new InputReader(io.input, this.idleTimeoutMs);
    this.output = io.output;
    this.repo = repo;
    this.hooks = hooks;
    this.options = options;
    this.limits = pushLimits(options.limits);
    // Left in place on purpose: a write that fails after the client left must not crash berth.
    this.output.on('error', (e) => {
      if (!this.outputBroken) log.debug('git_receive_pack_output_error', { app: repo.app, error: e.message });
      this.outputBroken = true;
    });
  }

  async run(): Promise<void> {
    const reader = new PktLineReader();
    let commands: Command[] | undefined;
    try {
      await this.advertise();
      commands = await this.readCommands(reader);
    } catch (e) {
      throw this.fatal(e, 'reading the command list');
    }
    if (commands === undefined) return; // the client had nothing to push

    let stored: StoredPack | undefined;
    if (commands.some((c) => c.newOid !== ZERO_OID)) {
      const receiveStarted = performance.now();
      const receiver = new PackReceiver(this.repo.gitdir, { limits: this.limits, ...(this.options.diskBudget ? { budget: this.options.diskBudget } : {}) });
      try {
        await this.receivePack(receiver, reader.leftover());
      } catch (e) {
        await receiver.abort();
        throw this.fatal(e, `receiving the pack (${receiver.bytesReceived} bytes in)`);
      }
      this.receiveMs = Math.round(performance.now() - receiveStarted);
      const indexStarted = performance.now();
      try {
        stored = await receiver.store(this.caps('quiet') ? undefined : (phase, loaded, total) => this.indexProgress(phase, loaded, total));
        this.endIndexProgress();
        this.indexMs = Math.round(performance.now() - indexStarted);
      } catch (e) {
        await receiver.abort();
        this.endIndexProgress();
        // The whole pack is in, so the client is listening: tell it the git way.
        const message = e instanceof Error ? e.message : String(e);
        for (const c of commands) c.error = 'unpacker error';
        await this.report(commands, isUserError(e) ? message : 'internal error in berth while storing the pack');
        log.warn('git_receive_pack_failed', { app: this.repo.app, during: 'storing the pack', error: message });
        throw isUserError(e) ? e : new Error(`receive-pack storing the pack: ${message}`, { cause: e });
      }
    } else if (reader.buffered > 0) {
      throw this.fatal(new UserError('git_protocol_error', `${reader.buffered} unexpected bytes after a delete-only command list`), 'reading the command list');
    }

    let applied: RefUpdate[];
    try {
      await this.checkObjects(commands);
      await this.runPreReceive(commands);
      applied = await this.applyUpdates(commands);
      if (applied.length === 0 && stored?.created) await this.dropPack(stored);
      await this.runPostReceive(applied);
    } catch (e) {
      throw this.fatal(e, 'updating refs');
    }
    await this.report(commands, undefined);
    // After the report, so the client does not wait for it; before returning, so the app's lock still holds.
    const pruned = applied.length > 0 ? await this.prunePacks(applied, stored) : undefined;
    log.info('git_push_received', {
      app: this.repo.app,
      updated: applied.map((u) => u.ref),
      rejected: commands.filter((c) => c.error !== undefined).map((c) => `${c.ref}: ${c.error}`),
      packBytes: stored?.bytes ?? 0,
      objects: stored?.objects ?? 0,
      receiveMs: this.receiveMs,
      indexMs: this.indexMs,
      indexedIn: stored?.indexedIn ?? 'none',
      indexerMaxRssMb: stored ? Math.round(stored.indexerMaxRssBytes / 1e6) : 0,
      indexerCpuMs: stored?.indexerCpuMs ?? 0,
      ms: Math.round(performance.now() - this.started),
      ...(pruned ? { packsPruned: pruned } : {}),
    });
  }

  /**
   * Removes the packs no ref needs any more, in a child process (see ObjectReader.prune); a
   * failure is logged and leaves every pack in place.
   */
  private async prunePacks(applied: RefUpdate[], stored: StoredPack | undefined): Promise<number | undefined> {
    try {
      const tips = (await this.repo.listRefs()).map((r) => r.oid);
      const result = await this.repo.contents(this.limits).prune({ tips, applied: applied.map((u) => ({ oldOid: u.oldOid, newOid: u.newOid })), pack: stored?.name ?? '' });
      return result?.removed.length;
    } catch (e) {
      log.warn('git_pack_prune_failed', { app: this.repo.app, error: (e as Error).message });
      return undefined;
    }
  }

  private async advertise(): Promise<void> {
    const refs = await this.repo.listRefs();
    const lines = refs.length === 0 ? [{ ref: 'capabilities^{}', oid: ZERO_OID }] : refs;
    const out = lines.map((r, i) => pkt(i === 0 ? `${r.oid} ${r.ref}\0${CAPABILITIES}\n` : `${r.oid} ${r.ref}\n`));
    out.push(FLUSH);
    this.send(Buffer.concat(out));
  }

  /** The commands up to the flush, or undefined when the client sent none (nothing to push). */
  private async readCommands(reader: PktLineReader): Promise<Command[] | undefined> {
    const commands: Command[] = [];
    const seen = new Set<string>();
    for (;;) {
      const packet = reader.next();
      if (packet === undefined) {
        const chunk = await this.input.read();
        if (chunk === null) {
          if (commands.length === 0 && reader.buffered === 0) return undefined;
          throw new UserError('git_client_disconnected', 'the client closed the connection in the middle of the command list');
        }
        reader.push(chunk);
        continue;
      }
      if (packet.type === 'flush') {
        if (commands.length > 0) return commands;
        // An empty list ends the exchange; anything already sent after it is not git.
        if (reader.buffered > 0) throw new UserError('git_protocol_error', `${reader.buffered} unexpected bytes after the flush that ended an empty command list`);
        return undefined;
      }

      let data = packet.data;
      if (commands.length === 0) {
        const nul = data.indexOf(0);
        if (nul >= 0) {
          this.clientCaps = new Set(packetText(data.subarray(nul + 1)).split(' ').filter((c) => c !== ''));
          this.sideband = this.clientCaps.has('side-band-64k');
          data = data.subarray(0, nul);
        }
      }
      const line = packetText(data);
      if (line.startsWith('shallow ')) {
        throw new UserError('git_shallow_push', 'pushing from a shallow clone is not supported', {
          hint: 'run `git fetch --unshallow` and push again',
        });
      }
      const match = /^([0-9a-f]{40}) ([0-9a-f]{40}) ([^\0]+)$/.exec(line);
      if (!match || match[1] === undefined || match[2] === undefined || match[3] === undefined) {
        throw new UserError('git_protocol_error', `invalid command line ${JSON.stringify(line.slice(0, 200))}`);
      }
      if (commands.length >= this.limits.refs) throw pushLimitError('refs', `the push updates more than ${this.limits.refs} refs`, this.limits);
      const command: Command = { oldOid: match[1], newOid: match[2], ref: match[3] };
      const problem = checkRefName(command.ref);
      if (problem !== undefined) command.error = problem.startsWith('only ') ? problem : `invalid ref name: ${problem}`;
      else if (seen.has(command.ref)) command.error = 'duplicate update of this ref';
      seen.add(command.ref);
      commands.push(command);
    }
  }

  private async receivePack(receiver: PackReceiver, first: Buffer): Promise<void> {
    let chunk: Buffer | null = first;
    while (!(await receiver.write(chunk))) {
      // A large pack's end is found by the child indexing it, which may say so between chunks.
      const next = await this.input.read(receiver.completion).catch(async (e: unknown): Promise<typeof STOPPED> => {
        // A client that sent its whole pack waits for the report in silence: when the child,
        // still working through the last bytes, finds the pack complete, berth was the one behind.
        if (isUserError(e) && e.code === 'git_client_idle' && (await settlesWithin(receiver.completion, this.idleTimeoutMs))) return STOPPED;
        throw e;
      });
      if (next === STOPPED) {
        await receiver.completion;
        return;
      }
      chunk = next;
      if (chunk === null) {
        // The client sent everything it had; the child may still be working through it.
        if (await receiver.endOfInput()) return;
        throw new UserError(
          'git_pack_invalid',
          receiver.bytesReceived === 0
            ? 'the client closed the connection before sending the pack'
            : `the pack ended early or its checksum is wrong: the client closed the connection after ${receiver.bytesReceived} bytes`,
        );
      }
    }
  }

  /**
   * Removes the pack this push stored when none of its commands went through: nothing refers to
   * its objects. The app's lock holds the whole push, so no other push can have come to need them.
   */
  private async dropPack(stored: StoredPack): Promise<void> {
    try {
      await removePack(this.repo.gitdir, stored.name);
      log.info('git_pack_dropped', { app: this.repo.app, pack: stored.name, reason: 'every command was refused' });
    } catch (e) {
      log.warn('git_pack_drop_failed', { app: this.repo.app, pack: stored.name, error: (e as Error).message });
    }
  }

  private async checkObjects(commands: Command[]): Promise<void> {
    const store = this.repo.objects();
    try {
      for (const c of commands) {
        if (c.error !== undefined || c.newOid === ZERO_OID) continue;
        const type = await this.repo.objectType(c.newOid, store);
        if (type === undefined) c.error = 'missing necessary objects';
        else if (c.ref.startsWith('refs/heads/') && type !== 'commit') c.error = `a branch must point to a commit, not a ${type}`;
      }
    } finally {
      await store.close();
    }
  }

  private async runPreReceive(commands: Command[]): Promise<void> {
    const pending = commands.filter((c) => c.error === undefined);
    if (!this.hooks.preReceive || pending.length === 0) return;
    try {
      const verdicts = await this.hooks.preReceive(pending.map(toUpdate), (text) => this.progress(text));
      if (verdicts) {
        for (const c of pending) {
          const reason = verdicts.get(c.ref);
          if (reason !== undefined) c.error = oneLine(reason) || 'rejected';
        }
      }
    } catch (e) {
      const reason = oneLine(describeForUser(e, `pre-receive of ${this.repo.app}`).lines[0] ?? 'pre-receive failed');
      for (const c of pending) c.error = reason;
    }
  }

  private async applyUpdates(commands: Command[]): Promise<RefUpdate[]> {
    const applied: RefUpdate[] = [];
    for (const c of commands) {
      if (c.error !== undefined) continue;
      try {
        await this.repo.updateRef(c.ref, c.oldOid, c.newOid);
        applied.push(toUpdate(c));
      } catch (e) {
        if (isUserError(e)) c.error = e.code === 'git_ref_stale' ? 'stale info' : oneLine(e.message);
        else c.error = oneLine(describeForUser(e, `updating ${c.ref} of ${this.repo.app}`).lines[0] ?? 'failed to update ref');
      }
    }
    return applied;
  }

  private async runPostReceive(applied: RefUpdate[]): Promise<void> {
    if (!this.hooks.postReceive || applied.length === 0) return;
    try {
      await this.hooks.postReceive(applied, (text) => this.progress(text));
    } catch (e) {
      const out = new StreamOutput((s) => this.progress(s.toString()));
      for (const line of describeForUser(e, `post-receive of ${this.repo.app}`).lines) out.error(line);
    }
  }

  /** report-status (when asked for), then the final flush. */
  private async report(commands: Command[], unpackError: string | undefined): Promise<void> {
    const parts: Buffer[] = [];
    if (this.caps('report-status')) {
      const lines = [unpackError === undefined ? 'unpack ok' : `unpack ${oneLine(unpackError)}`];
      for (const c of commands) lines.push(c.error === undefined ? `ok ${c.ref}` : `ng ${c.ref} ${oneLine(c.error)}`);
      const status = Buffer.concat([...lines.map((l) => pkt(`${l}\n`)), FLUSH]);
      if (this.sideband) parts.push(...sideband(1, status));
      else parts.push(status);
    }
    if (this.sideband) parts.push(FLUSH);
    this.reportDone = true;
    if (parts.length > 0) await this.sendAndWait(Buffer.concat(parts));
  }

  /** Band-2 text for the client, one or more lines; dropped when there is no side band or no client. */
  private progress(text: string): void | Promise<void> {
    if (!this.sideband || this.reportDone || text === '') return;
    this.endIndexProgress();
    const line = text.endsWith('\n') || text.endsWith('\r') ? text : `${text}\n`;
    return this.send(Buffer.concat(sideband(2, line)));
  }

  private indexProgress(phase: string, loaded: number, total: number): void {
    if (!this.sideband || total === 0) return;
    const name = phase === 'Receiving objects' ? 'Indexing objects' : phase;
    if (this.progressPhase !== '' && this.progressPhase !== name) this.endIndexProgress();
    this.progressPhase = name;
    const percent = Math.floor((loaded * 100) / total);
    this.send(Buffer.concat(sideband(2, `${name}: ${String(percent).padStart(3)}% (${loaded}/${total})\r`)));
    this.progressTotal = total;
  }

  private endIndexProgress(): void {
    if (this.progressPhase === '') return;
    const name = this.progressPhase;
    this.progressPhase = '';
    this.send(Buffer.concat(sideband(2, `${name}: 100% (${this.progressTotal}/${this.progressTotal}), done.\n`)));
  }

  /**
   * Tells the client about a failure that ends the exchange (band 3, or an ERR packet before
   * side-band was agreed), logs one line, and returns the error to throw.
   */
  private fatal(e: unknown, during: string): Error {
    const message = e instanceof Error ? e.message : String(e);
    // Said even when the client closed its side: it may still be listening for the answer (and
    // when it is gone, the write is dropped). A bug's details go to the log (the caller reports
    // it with an id), not to the client.
    const shown = oneLine(isUserError(e) ? message : `internal error in berth while ${during}`);
    if (this.sideband) this.send(Buffer.concat(sideband(3, `${shown}\n`)));
    else this.send(pkt(`ERR ${shown}`));
    log.warn('git_receive_pack_failed', { app: this.repo.app, during, error: message });
    return isUserError(e) ? e : new Error(`receive-pack ${during}: ${message}`, { cause: e });
  }

  private caps(name: string): boolean {
    return this.clientCaps.has(name);
  }

  private writable(): boolean {
    return !this.outputBroken && !this.output.destroyed && !this.output.writableEnded;
  }

  /**
   * Writes to the client; returns a promise, settled once the output drains, when it is full.
   * A client that reads nothing for the idle timeout is given up on: its output is dropped from
   * then on, so the deploy and the push end (and the app is released) without it.
   */
  private send(data: Buffer): void | Promise<void> {
    if (!this.writable() || this.output.write(data)) return;
    this.draining ??= this.untilWritten('drain').then(() => (this.draining = undefined));
    return this.draining;
  }

  private sendAndWait(data: Buffer): Promise<void> {
    if (!this.writable()) return Promise.resolve();
    let written!: () => void;
    const callback = new Promise<void>((resolve) => (written = resolve));
    this.output.write(data, () => written());
    return this.untilWritten(callback);
  }

  /** Settles once the output drains (or `written` settles), closes, or the client has read nothing for the idle timeout. */
  private untilWritten(what: 'drain' | Promise<void>): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer =
        this.idleTimeoutMs > 0
          ? setTimeout(() => {
              if (!this.outputBroken) log.warn('git_client_not_reading', { app: this.repo.app, idleS: this.idleTimeoutMs / 1000 });
              this.outputBroken = true;
              done();
            }, this.idleTimeoutMs)
          : undefined;
      const done = () => {
        clearTimeout(timer);
        this.output.off('drain', done);
        this.output.off('close', done);
        resolve();
      };
      if (what === 'drain') this.output.on('drain', done);
      else void what.then(done);
      this.output.on('close', done);
    });
  }
}

/** Bytes of client input held before the stream is paused. */
const QUEUE_HIGH = 1 << 20;

/** What InputReader.read returns when told to stop waiting. */
const STOPPED = Symbol('stopped');

/**
 * Takes the client's chunks as they come, one by one as the stream delivered them (no copying
 * into larger buffers), pausing the stream while more than QUEUE_HIGH bytes wait, so a slow
 * consumer holds the client back. `read` resolves null at the end of the stream. The stream is
 * never destroyed by us.
 */
class InputReader {
  private readonly input: Readable;
  private readonly idleTimeoutMs: number;
  private readonly queue: Buffer[] = [];
  private queued = 0;
  private ended = false;
  private failure: Error | undefined;
  private wake: (() => void) | undefined;
  private readonly onChange = () => this.wake?.();
  private readonly onData = (chunk: Buffer | string) => {
    const data = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    this.queue.push(data);
    this.queued += data.length;
    if (this.queued > QUEUE_HIGH) this.input.pause();
    this.onChange();
  };
  private readonly onEnd = () => {
    this.ended = true;
    this.onChange();
  };
  private readonly onError = (e: Error) => {
    this.failure ??= new UserError('git_client_disconnected', `the client connection failed: ${e.message}`, { cause: e });
    this.onChange();
  };

  constructor(input: Readable, idleTimeoutMs: number) {
    this.input = input;
    this.idleTimeoutMs = idleTimeoutMs;
    this.ended = input.readableEnded || input.destroyed;
    input.on('data', this.onData);
    input.on('end', this.onEnd);
    input.on('close', this.onEnd);
    input.on('error', this.onError);
  }

  /** The next chunk, null at the end of the stream, or STOPPED once `until` has settled. */
  read(): Promise<Buffer | null>;
  read(until: Promise<unknown>): Promise<Buffer | null | typeof STOPPED>;
  async read(until?: Promise<unknown>): Promise<Buffer | null | typeof STOPPED> {
    let stopped = false;
    const stop = () => {
      stopped = true;
      this.onChange();
    };
    until?.then(stop, stop);
    for (;;) {
      if (this.failure) throw this.failure;
      if (stopped) return STOPPED;
      const chunk = this.queue.shift();
      if (chunk !== undefined) {
        this.queued -= chunk.length;
        if (this.queued <= QUEUE_HIGH && this.input.isPaused() && !this.ended) this.input.resume();
        return chunk;
      }
      if (this.ended) return null;
      await this.waitForChange();
    }
  }

  /** Stops taking data; the error listener stays so a late failure cannot crash berth. */
  release(): void {
    this.input.off('data', this.onData);
    this.input.pause();
    this.input.off('end', this.onEnd);
    this.input.off('close', this.onEnd);
    this.input.off('error', this.onError);
    this.input.on('error', () => undefined);
  }

  private waitForChange(): Promise<void> {
    return new Promise((resolve) => {
      const timer =
        this.idleTimeoutMs > 0
          ? setTimeout(() => {
              this.failure ??= new UserError('git_client_idle', `push refused: the client sent nothing for ${+(this.idleTimeoutMs / 1000).toFixed(1)} s (berth serve --push-timeout); nothing was changed`);
              this.onChange();
            }, this.idleTimeoutMs)
          : undefined;
      this.wake = () => {
        if (timer) clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
    });
  }
}

/** Whether `promise` resolves within `ms` (false when it rejects or takes longer). */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([promise.then(() => true, () => false), late]);
  } finally {
    clearTimeout(timer);
  }
}

function toUpdate(c: Command): RefUpdate {
  return { ref: c.ref, oldOid: c.oldOid, newOid: c.newOid };
}

/** A reason as git shows it: one line of printable text, not too long. */
function oneLine(text: string): string {
  // eslint-disable-next-line no-control-regex
  const flat = text.replace(/[\x00-\x1f\x7f]+/g, ' ').trim();
  return flat.length > 500 ? `${flat.slice(0, 500)}…` : flat;
}

