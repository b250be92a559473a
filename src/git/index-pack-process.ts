// Runs berth's index-pack off the daemon's main thread: in a child process of the same
// executable (the hidden `__index-pack` sub-command), at a lower CPU priority than the daemon.
// Every push streams into the child while it arrives, so indexing overlaps receiving (as git's
// `index-pack --stdin` does) and neither the proxy nor SSH ever waits for it: a small pack too,
// since a crafted one of a few KiB can cost seconds of work.
//
// Why a child process and not a worker thread (measured on a 2-core machine, 100 MB pack of
// 10,000 objects): both start in about 60-80 ms and index in about 0.5 s, but a worker leaves the
// daemon's resident memory at its peak (about +100 MB that malloc keeps), while a child returns
// all of it when it exits, and a crash or runaway in it cannot take the daemon down.
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import sea from 'node:sea';
import type { Readable, Writable } from 'node:stream';
import { UserError } from '../errors.ts';
import { indexPack, indexPackStream, type IndexPhase, type IndexProgress, type IndexSummary } from './pack-index.ts';
import { pushLimits, type PushLimits } from '../push-limits.ts';

/** The hidden sub-command the daemon runs itself with; not listed in help. */
export const INDEX_PACK_COMMAND = '__index-pack';

/** Bytes the daemon may hold for a child that is behind, before it stops reading the client. */
const PIPE_AHEAD_BYTES = 4 << 20;

/** How much nicer than the daemon the children run: on a busy machine the proxy gets the CPU first. */
const CHILD_NICENESS = 10;

export interface OffThreadSummary extends IndexSummary {
  /** Where the indexing ran. */
  where: 'child';
  /** Peak resident memory of the child process, in bytes. */
  childMaxRssBytes: number;
  /** CPU time the child used, user and system, in milliseconds. */
  childCpuMs: number;
}

/**
 * Indexes the complete pack at `packPath` into `idxPath` in a child process. Rejects with the
 * indexer's UserError (`git_pack_invalid`, `git_push_limit`) for a bad pack, with a plain Error
 * when the child cannot run.
 */
export async function indexPackOffThread(
  packPath: string,
  idxPath: string,
  options: { onProgress?: IndexProgress; limits?: Partial<PushLimits> } = {},
): Promise<OffThreadSummary> {
  const child = new IndexerChild([limitsArg(options.limits), packPath, idxPath], options.onProgress);
  child.child.stdin.end();
  return child.finish();
}

/**
 * A pack being indexed by a child process while it arrives: its first `have` bytes are already
 * in `packPath`; `write` hands the child the rest as it comes. `complete` resolves once the
 * child has seen the pack's trailer (and it checks out); then `finish` for the summary.
 */
export class StreamingIndexer {
  private readonly child: IndexerChild;

  constructor(packPath: string, idxPath: string, have: number, limits?: Partial<PushLimits>) {
    this.child = new IndexerChild([limitsArg(limits), '--stdin', String(have), packPath, idxPath], undefined);
  }

  /** Resolves with the pack's size when its trailer has arrived; rejects when the pack is bad or the child fails. */
  get complete(): Promise<number> {
    return this.child.complete;
  }

  /**
   * Passes pack bytes on, waiting while the child is more than PIPE_AHEAD_BYTES behind. Rejects
   * when the child has failed. (A pipe holds 64 KiB: waiting for it at stream's usual 16 KiB mark
   * left both processes idle by turns.)
   */
  async write(chunk: Buffer): Promise<void> {
    const stdin = this.child.child.stdin;
    if (stdin.destroyed || stdin.writableEnded) return this.child.failure();
    stdin.write(chunk);
    if (stdin.writableLength <= PIPE_AHEAD_BYTES) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        stdin.off('drain', done);
        stdin.off('close', done);
        resolve();
      };
      stdin.on('drain', done);
      stdin.on('close', done);
    });
  }

  /** No more bytes will come. */
  endInput(): void {
    this.child.child.stdin.end();
  }

  /** Ends the input and waits for the index; progress of the rest (resolving deltas) goes to `onProgress`. */
  finish(onProgress?: IndexProgress): Promise<OffThreadSummary> {
    this.child.onProgress = onProgress;
    this.child.child.stdin.end();
    return this.child.finish();
  }

  /** Stops the child (the push failed); safe to call at any time. */
  kill(): void {
    this.child.kill();
  }
}

/** One `__index-pack` child: its messages, its end, and what it said went wrong. */
class IndexerChild {
  readonly child: ChildProcessByStdio<Writable, Readable, Readable>;
  onProgress: IndexProgress | undefined;
  readonly complete: Promise<number>;
  private readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private result: ChildMessage | undefined;
  private stderr = '';

  constructor(args: string[], onProgress: IndexProgress | undefined) {
    this.onProgress = onProgress;
    const [command, ...prefix] = selfCommand();
    this.child = spawn(command!, [...prefix, INDEX_PACK_COMMAND, ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
      // A small young generation makes V8 collect the indexer's short-lived buffers often, which
      // keeps the child's peak memory near its working set.
      env: { ...process.env, NODE_OPTIONS: '--max-semi-space-size=1' },
    });
    lowerPriority(this.child.pid);
    let onComplete!: (bytes: number) => void;
    let onIncomplete!: (e: Error) => void;
    this.complete = new Promise<number>((resolve, reject) => {
      onComplete = resolve;
      onIncomplete = reject;
    });
    // Nobody may be waiting for completion (a whole pack given at once): never an unhandled rejection.
    this.complete.catch(() => undefined);
    this.exited = new Promise((resolve) => {
      this.child.once('error', (e) => {
        this.stderr += `cannot start: ${e.message}\n`;
        resolve({ code: null, signal: null });
      });
      this.child.once('close', (code, signal) => resolve({ code, signal }));
    });
    void this.exited.then(() => onIncomplete(this.error()));
    this.child.stdin.on('error', () => undefined); // EPIPE once the child has given up; its own message says why
    let pending = '';
    this.child.stdout.setEncoding('utf8');
    this.child.stdout.on('data', (chunk: string) => {
      pending += chunk;
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        let message: ChildMessage;
        try {
          message = JSON.parse(line) as ChildMessage;
        } catch {
          this.stderr += line + '\n';
          continue;
        }
        if ('progress' in message) this.onProgress?.(...message.progress);
        else if ('complete' in message) onComplete(message.complete);
        else {
          this.result = message;
          if ('error' in message) onIncomplete(this.error());
        }
      }
    });
    this.child.stderr.setEncoding('utf8');
    this.child.stderr.on('data', (chunk: string) => {
      if (this.stderr.length < 10_000) this.stderr += chunk;
    });
  }

  async finish(): Promise<OffThreadSummary> {
    const exit = await this.exited;
    const result = this.result;
    if (result && 'summary' in result && exit.code === 0) return { ...result.summary, where: 'child', childMaxRssBytes: result.maxRssBytes, childCpuMs: result.cpuMs };
    throw this.error(exit);
  }

  /** Rejects with why the child stopped, once it has. */
  async failure(): Promise<never> {
    throw this.error(await this.exited);
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }

  private error(exit?: { code: number | null; signal: NodeJS.Signals | null }): Error {
    const result = this.result;
    if (result && 'error' in result) return new UserError(result.error.code, result.error.message);
    const how = exit ? `exited with ${exit.signal ?? exit.code}` : 'stopped';
    return new Error(`index-pack child process ${how}: ${this.stderr.trim().slice(0, 500) || 'no output'}`);
  }
}

/**
 * The body of `berth __index-pack [--stdin HAVE] PACK IDX`: index a pack file, or one arriving
 * on standard input after its first HAVE bytes, and report on stdout as JSON lines.
 */
export async function runIndexPackCommand(argv: string[]): Promise<number> {
  let limits: Partial<PushLimits> = {};
  let args = argv;
  if (args[0]?.startsWith('--limits=')) {
    limits = parseLimits(args[0].slice('--limits='.length));
    args = args.slice(1);
  }
  const streaming = args[0] === '--stdin';
  const [packPath, idxPath, extra] = streaming ? args.slice(2) : args;
  const have = streaming ? Number(args[1]) : 0;
  if (!packPath || !idxPath || extra !== undefined || !Number.isSafeInteger(have) || have < 0) {
    process.stderr.write(`usage: berth ${INDEX_PACK_COMMAND} [--limits=JSON] [--stdin HAVE] PACK IDX (used by berth itself)\n`);
    return 2;
  }
  const send = (message: ChildMessage) => process.stdout.write(JSON.stringify(message) + '\n');
  const onProgress: IndexProgress = (phase, done, total) => send({ progress: [phase, done, total] });
  try {
    const summary = streaming
      ? await indexPackStream(packPath, idxPath, have, process.stdin, { onProgress, limits, onComplete: (bytes) => send({ complete: bytes }) })
      : await indexPack(packPath, idxPath, { onProgress, limits });
    const usage = process.resourceUsage();
    send({ summary, maxRssBytes: usage.maxRSS * 1024, cpuMs: Math.round((usage.userCPUTime + usage.systemCPUTime) / 1000) });
    return 0;
  } catch (e) {
    if (e instanceof UserError) {
      send({ error: { code: e.code, message: e.message } });
      return 1;
    }
    throw e;
  } finally {
    process.stdin.destroy();
  }
}

type ChildMessage =
  | { progress: [IndexPhase, number, number] }
  | { complete: number }
  | { summary: IndexSummary; maxRssBytes: number; cpuMs: number }
  | { error: { code: string; message: string } };

/** The caps as the child's first argument. */
function limitsArg(limits: Partial<PushLimits> | undefined): string {
  return `--limits=${JSON.stringify(pushLimits(limits))}`;
}

function parseLimits(text: string): Partial<PushLimits> {
  const parsed = JSON.parse(text) as Record<string, unknown>;
  const out: Partial<PushLimits> = {};
  for (const key of Object.keys(pushLimits()) as (keyof PushLimits)[]) {
    const v = parsed[key];
    if (typeof v === 'number' && Number.isSafeInteger(v) && v > 0) out[key] = v;
  }
  return out;
}

/**
 * Runs a child of the daemon at CHILD_NICENESS. Best effort: where the system refuses, the
 * child keeps the daemon's priority and only its memory and time caps bound it.
 */
export function lowerPriority(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    os.setPriority(pid, Math.min(19, os.getPriority(process.pid) + CHILD_NICENESS));
  } catch {
    // not permitted here (some containers): the caps still hold
  }
}

/**
 * How to start this program again: the single executable is its own entry point; under Node
 * the entry is the bundle (process.argv[1]) or, when running from source, src/main.ts.
 */
export function selfCommand(): string[] {
  // On Linux, /proc/self/exe is the very file this process runs, even if an upgrade has since
  // replaced or deleted it at its path: the child always speaks the parent's protocol.
  if (sea.isSea()) return [process.platform === 'linux' ? '/proc/self/exe' : process.execPath];
  const here = import.meta.filename as string | undefined;
  const entry = here ? path.join(path.dirname(here), '..', 'main.ts') : process.argv[1];
  if (!entry) throw new Error('cannot tell which script to run the index-pack child with');
  return [process.execPath, entry];
}
