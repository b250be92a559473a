// Runs berth's index-pack off the daemon's main thread: in a child process of the same
// executable (a hidden `__index-pack` sub-command), so a large push never stalls the proxy and
// the memory the indexer touches goes back to the system when it exits. Small packs are indexed
// in place, where starting a process would cost more than the work.
import { spawn } from 'node:child_process';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import sea from 'node:sea';
import { UserError } from '../errors.ts';
import { indexPack, type IndexPhase, type IndexProgress, type IndexSummary } from './pack-index.ts';

/** The hidden sub-command the daemon runs itself with; not listed in help. */
export const INDEX_PACK_COMMAND = '__index-pack';

/** Packs up to this size are indexed on the calling thread (a few milliseconds of work). */
export const IN_PROCESS_MAX_BYTES = 1 << 20;

export interface OffThreadSummary extends IndexSummary {
  /** Where the indexing ran. */
  where: 'in-process' | 'child';
  /** Peak resident memory of the child process, in bytes (0 in-process). */
  childMaxRssBytes: number;
}

export interface OffThreadOptions {
  onProgress?: IndexProgress;
  /** Kills the child when aborted. */
  signal?: AbortSignal;
  /** Packs up to this many bytes are indexed in-process. Default IN_PROCESS_MAX_BYTES. */
  inProcessMaxBytes?: number;
}

/**
 * Indexes `packPath` into `idxPath`, in a child process unless the pack is small. Rejects with
 * the indexer's UserError (`git_pack_invalid`) for a bad pack; with a plain Error when the child
 * cannot run.
 *
 * Why a child process and not a worker thread (measured on a 2-core machine, 100 MB pack of
 * 10,000 objects): both start in about 60-80 ms and index in about 0.5 s, but a worker leaves
 * the daemon's resident memory at its peak (about +100 MB that malloc keeps), while a child
 * returns all of it when it exits, and a crash or runaway in it cannot take the daemon down.
 */
export async function indexPackOffThread(packPath: string, idxPath: string, options: OffThreadOptions = {}): Promise<OffThreadSummary> {
  const { size } = await stat(packPath);
  if (size <= (options.inProcessMaxBytes ?? IN_PROCESS_MAX_BYTES)) {
    const summary = await indexPack(packPath, idxPath, options.onProgress ? { onProgress: options.onProgress } : {});
    return { ...summary, where: 'in-process', childMaxRssBytes: 0 };
  }
  const [command, ...prefix] = selfCommand();
  const child = spawn(command!, [...prefix, INDEX_PACK_COMMAND, packPath, idxPath], {
    stdio: ['ignore', 'pipe', 'pipe'],
    // A small young generation makes V8 collect the indexer's short-lived buffers often, which
    // keeps the child's peak memory near its working set.
    env: { ...process.env, NODE_OPTIONS: '--max-semi-space-size=1' },
    ...(options.signal ? { signal: options.signal } : {}),
  });
  let result: ChildMessage | undefined;
  let stderr = '';
  let pending = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    pending += chunk;
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      let message: ChildMessage;
      try {
        message = JSON.parse(line) as ChildMessage;
      } catch {
        stderr += line + '\n';
        continue;
      }
      if ('progress' in message) options.onProgress?.(...message.progress);
      else result = message;
    }
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    if (stderr.length < 10_000) stderr += chunk;
  });
  const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal }));
  }).catch((e: unknown) => {
    throw new Error(`index-pack child process: ${(e as Error).message}`, { cause: e });
  });
  if (result && 'error' in result) throw new UserError(result.error.code, result.error.message);
  if (result && 'summary' in result && exit.code === 0) return { ...result.summary, where: 'child', childMaxRssBytes: result.maxRssBytes };
  throw new Error(`index-pack child process exited with ${exit.signal ?? exit.code}: ${stderr.trim().slice(0, 500) || 'no output'}`);
}

/** The body of `berth __index-pack PACK IDX`: index, then report on stdout as JSON lines. */
export async function runIndexPackCommand(args: string[]): Promise<number> {
  const [packPath, idxPath] = args;
  if (!packPath || !idxPath || args.length !== 2) {
    process.stderr.write(`usage: berth ${INDEX_PACK_COMMAND} PACK IDX (used by berth itself)\n`);
    return 2;
  }
  const send = (message: ChildMessage) => process.stdout.write(JSON.stringify(message) + '\n');
  try {
    const summary = await indexPack(packPath, idxPath, { onProgress: (phase, done, total) => send({ progress: [phase, done, total] }) });
    send({ summary, maxRssBytes: process.resourceUsage().maxRSS * 1024 });
    return 0;
  } catch (e) {
    if (e instanceof UserError) {
      send({ error: { code: e.code, message: e.message } });
      return 1;
    }
    throw e;
  }
}

type ChildMessage =
  | { progress: [IndexPhase, number, number] }
  | { summary: IndexSummary; maxRssBytes: number }
  | { error: { code: string; message: string } };

/**
 * How to start this program again: the single executable is its own entry point; under Node
 * the entry is the bundle (process.argv[1]) or, when running from source, src/main.ts.
 */
function selfCommand(): string[] {
  if (sea.isSea()) return [process.execPath];
  const here = import.meta.filename as string | undefined;
  const entry = here ? path.join(path.dirname(here), '..', 'main.ts') : process.argv[1];
  if (!entry) throw new Error('cannot tell which script to run the index-pack child with');
  return [process.execPath, entry];
}
