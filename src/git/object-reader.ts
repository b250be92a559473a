// Reads a pushed commit's files and its tree as a tar off the daemon's main thread: in a child
// process of the same executable (the hidden `__git-read` sub-command), at a lower CPU priority,
// under the push caps. Inflating and resolving objects costs what the pusher made them cost, so
// it never runs where the proxy and SSH do.
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { isUserError, UserError } from '../errors.ts';
import { lowerPriority, selfCommand } from './index-pack-process.ts';
import { ObjectNotFoundError, ObjectStore, parseCommit, parseTag, parseTree } from './object-store.ts';
import { onlyFastForwards, pruneUnreachablePacks, type PruneResult } from './pack-prune.ts';
import { pushLimits, type PushLimits } from '../push-limits.ts';
import { treeArchive } from './tree-archive.ts';

/** The hidden sub-command the daemon runs itself with; not listed in help. */
export const GIT_READ_COMMAND = '__git-read';

/** A reader child with nothing to do for this long exits; the next read starts another. */
const IDLE_MS = 2000;

/**
 * The objects of one repository, read by a child process. File reads share one child, started
 * on the first and stopped once idle; each archive has its own child, whose output is the tar.
 */
export class ObjectReader {
  private readonly gitdir: string;
  private readonly limits: PushLimits;
  private child: ReaderChild | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private idleTimer: NodeJS.Timeout | undefined;

  constructor(gitdir: string, limits?: Partial<PushLimits>) {
    this.gitdir = gitdir;
    this.limits = pushLimits(limits);
  }

  /**
   * The content of the file at `filePath` (slash-separated) in the commit (or annotated tag)
   * `commitOid`, or undefined when there is none. Rejects with ObjectNotFoundError when the
   * commit is missing, with a UserError (`git_push_limit`) for an object beyond the caps.
   */
  readFile(commitOid: string, filePath: string): Promise<Buffer | undefined> {
    const next = this.queue.then(() => this.readNow(commitOid, filePath));
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** The commit's tree as a tar stream (see tree-archive.ts); a failure in the child destroys it with the child's message. */
  archive(commitOid: string): Readable {
    const out = new PassThrough();
    const child = spawnReader(['archive', this.gitdir, commitOid], this.limits);
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      if (stderr.length < 10_000) stderr += d;
    });
    child.stdin.end();
    child.stdout.pipe(out, { end: false });
    child.once('error', (e) => out.destroy(new Error(`archive of commit ${commitOid}: cannot start the reader: ${e.message}`, { cause: e })));
    child.once('close', (code, signal) => {
      if (code === 0) out.end();
      else out.destroy(new Error(stderr.trim().split('\n').pop() || `archive of commit ${commitOid}: the reader exited with ${signal ?? code}`));
    });
    // The consumer went away: the child has nothing left to do.
    out.once('close', () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    return out;
  }

  /**
   * After a push (under the app's lock): removes the packs no ref needs, unless the push can
   * only have added objects (nothing deleted, every move a fast-forward through the pack it
   * stored), which spares the walk of the whole history on an ordinary push. Resolves with
   * what was removed, or undefined when no walk was needed.
   */
  async prune(request: PruneRequest): Promise<PruneResult | undefined> {
    const child = spawnReader(['prune', this.gitdir], this.limits);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      if (stderr.length < 10_000) stderr += d;
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(JSON.stringify(request));
    const code = await new Promise<number | null>((resolve) => {
      child.once('error', () => resolve(null));
      child.once('close', (c) => resolve(c));
    });
    if (code !== 0) throw new Error(`pruning packs: ${stderr.trim().split('\n').pop() || `the reader exited with ${code}`}`);
    return (JSON.parse(stdout) as { result: PruneResult | null }).result ?? undefined;
  }

  /** Stops the file reader child, if one runs. */
  close(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    this.child?.kill();
    this.child = undefined;
  }

  private async readNow(commitOid: string, filePath: string): Promise<Buffer | undefined> {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    if (!this.child?.alive) this.child = new ReaderChild(this.gitdir, this.limits);
    try {
      return await this.child.request(commitOid, filePath);
    } finally {
      this.idleTimer = setTimeout(() => this.close(), IDLE_MS);
      this.idleTimer.unref();
    }
  }
}

/** One `__git-read serve` child: requests as JSON lines, answers as a JSON line and the file's bytes. */
class ReaderChild {
  private readonly child: ChildProcessByStdio<Writable, Readable, Readable>;
  private buffered: Buffer = Buffer.alloc(0);
  private waiting: { resolve: (r: Buffer | undefined) => void; reject: (e: Error) => void } | undefined;
  private header: Answer | undefined;
  private stderr = '';
  alive = true;

  constructor(gitdir: string, limits: PushLimits) {
    this.child = spawnReader(['serve', gitdir], limits);
    this.child.stdin.on('error', () => undefined); // EPIPE once the child has died; 'close' says why
    this.child.stdout.on('data', (chunk: Buffer) => this.onData(chunk));
    this.child.stderr.setEncoding('utf8');
    this.child.stderr.on('data', (d: string) => {
      if (this.stderr.length < 10_000) this.stderr += d;
    });
    const ended = (why: string) => {
      this.alive = false;
      this.waiting?.reject(new Error(`the object reader ${why}: ${this.stderr.trim().slice(0, 500) || 'no output'}`));
      this.waiting = undefined;
    };
    this.child.once('error', (e) => ended(`cannot start (${e.message})`));
    this.child.once('close', (code, signal) => ended(`exited with ${signal ?? code}`));
    this.hold(false);
  }

  /** An idle reader must not keep the event loop alive; one with a request out must. */
  private hold(busy: boolean): void {
    for (const handle of [this.child, this.child.stdin, this.child.stdout, this.child.stderr] as unknown as { ref?: () => void; unref?: () => void }[]) {
      if (busy) handle.ref?.();
      else handle.unref?.();
    }
  }

  request(commit: string, path: string): Promise<Buffer | undefined> {
    return new Promise((resolve, reject) => {
      if (!this.alive) return reject(new Error(`the object reader exited: ${this.stderr.trim().slice(0, 500) || 'no output'}`));
      this.hold(true);
      this.waiting = {
        resolve: (r) => {
          this.hold(false);
          resolve(r);
        },
        reject: (e) => {
          this.hold(false);
          reject(e);
        },
      };
      this.child.stdin.write(JSON.stringify({ commit, path }) + '\n');
    });
  }

  kill(): void {
    this.alive = false;
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }

  private onData(chunk: Buffer): void {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    for (;;) {
      if (!this.header) {
        const nl = this.buffered.indexOf(0x0a);
        if (nl < 0) return;
        this.header = JSON.parse(this.buffered.toString('utf8', 0, nl)) as Answer;
        this.buffered = this.buffered.subarray(nl + 1);
      }
      const header = this.header;
      const size = 'size' in header ? header.size : 0;
      if (this.buffered.length < size) return;
      const body = Buffer.from(this.buffered.subarray(0, size));
      this.buffered = this.buffered.subarray(size);
      this.header = undefined;
      const waiting = this.waiting;
      this.waiting = undefined;
      if (!waiting) continue;
      if ('error' in header) waiting.reject(answerError(header.error));
      else waiting.resolve(header.found ? body : undefined);
    }
  }
}

/** What a push did, for `prune`: the refs' objects now, and the updates it applied. */
export interface PruneRequest {
  tips: string[];
  /** Updates applied: a zero new id is a deletion. */
  applied: { oldOid: string; newOid: string }[];
  /** The pack the push stored, if any. */
  pack: string;
}

type Answer = { found: boolean; size: number } | { error: { code?: string; message: string; oid?: string } };

function answerError(e: { code?: string; message: string; oid?: string }): Error {
  if (e.code === 'object_not_found' && e.oid) return new ObjectNotFoundError(e.oid);
  if (e.code) return new UserError(e.code, e.message);
  return new Error(e.message);
}

function spawnReader(args: string[], limits: PushLimits): ChildProcessByStdio<Writable, Readable, Readable> {
  const [command, ...prefix] = selfCommand();
  const child = spawn(command!, [...prefix, GIT_READ_COMMAND, `--limits=${JSON.stringify(limits)}`, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  lowerPriority(child.pid);
  return child;
}

/**
 * The body of `berth __git-read --limits=JSON (serve GITDIR | archive GITDIR COMMIT)`: answer
 * file reads from standard input, or write a commit's tree as a tar to standard output.
 */
export async function runGitReadCommand(argv: string[]): Promise<number> {
  const [limitsArg, mode, gitdir, commit, extra] = argv;
  const limits = limitsArg?.startsWith('--limits=') ? parseLimits(limitsArg.slice('--limits='.length)) : undefined;
  if (!limits || !gitdir || extra !== undefined || !(((mode === 'serve' || mode === 'prune') && commit === undefined) || (mode === 'archive' && commit !== undefined))) {
    process.stderr.write(`usage: berth ${GIT_READ_COMMAND} --limits=JSON (serve GITDIR | archive GITDIR COMMIT | prune GITDIR) (used by berth itself)\n`);
    return 2;
  }
  if (mode === 'prune') {
    try {
      const request = JSON.parse((await readStdin()).toString('utf8')) as PruneRequest;
      const result = (await needsPrune(gitdir, request, limits)) ? await pruneUnreachablePacks(gitdir, request.tips, limits) : null;
      await writeOut(Buffer.from(JSON.stringify({ result }) + '\n'));
      return 0;
    } catch (e) {
      process.stderr.write(`${(e as Error).message}\n`);
      return 1;
    }
  }
  if (mode === 'archive') {
    try {
      await pipeline(treeArchive(gitdir, commit!, limits), process.stdout);
      return 0;
    } catch (e) {
      process.stderr.write(`${(e as Error).message}\n`);
      return 1;
    }
  }
  let pending = '';
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    pending += chunk.toString('utf8');
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      const { commit: oid, path } = JSON.parse(line) as { commit: string; path: string };
      let answer: Answer;
      let body: Buffer | undefined;
      try {
        body = await readFileAtCommit(new ObjectStore(gitdir, limits), oid, path);
        answer = { found: body !== undefined, size: body?.length ?? 0 };
      } catch (e) {
        if (e instanceof ObjectNotFoundError) answer = { error: { code: 'object_not_found', message: e.message, oid: e.oid } };
        else answer = { error: { ...(isUserError(e) ? { code: e.code } : {}), message: (e as Error).message } };
      }
      await writeOut(Buffer.from(JSON.stringify(answer) + '\n'));
      if (body && 'found' in answer) await writeOut(body);
    }
  }
  return 0;
}

/** The content of the file at `filePath` in a commit, read through `store`, which it closes. */
export async function readFileAtCommit(store: ObjectStore, commitOid: string, filePath: string): Promise<Buffer | undefined> {
  try {
    let object = await store.read(commitOid);
    for (let depth = 0; object?.type === 'tag' && depth < 10; depth++) object = await store.read(parseTag(object.content).object);
    if (!object) throw new ObjectNotFoundError(commitOid);
    if (object.type !== 'commit') return undefined;
    let oid = parseCommit(object.content).tree;
    let type = 'tree';
    for (const part of filePath.split('/').filter((p) => p !== '')) {
      if (type !== 'tree') return undefined;
      const entry = parseTree(await store.expect(oid, 'tree')).find((e) => e.name === part);
      if (!entry) return undefined;
      oid = entry.oid;
      type = entry.type;
    }
    if (type !== 'blob') return undefined;
    return await store.expect(oid, 'blob');
  } finally {
    await store.close();
  }
}

const ZERO_OID = '0'.repeat(40);

async function needsPrune(gitdir: string, request: PruneRequest, limits: PushLimits): Promise<boolean> {
  if (request.applied.some((u) => u.newOid === ZERO_OID)) return true;
  const moves = request.applied.filter((u) => u.oldOid !== ZERO_OID);
  if (moves.length === 0) return false;
  const store = new ObjectStore(gitdir, limits);
  let packOids: Set<string>;
  try {
    const pack = (await store.packIndexes()).find((p) => p.name === request.pack);
    packOids = new Set(pack ? pack.oids() : []);
  } finally {
    await store.close();
  }
  return !(await onlyFastForwards(gitdir, moves, packOids, limits));
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

function writeOut(data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => process.stdout.write(data, (e) => (e ? reject(e) : resolve())));
}

function parseLimits(text: string): PushLimits | undefined {
  try {
    const parsed = JSON.parse(text) as Partial<PushLimits>;
    return pushLimits(parsed);
  } catch {
    return undefined;
  }
}
