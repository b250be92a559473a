// Receives a pushed packfile into a temp file under objects/pack/ while a child process (never
// the daemon's main thread) writes, hashes and indexes it as it arrives, under the push's caps.
// Then pack and index move into place.
import { chmod, mkdir, open, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { UserError } from '../errors.ts';
import { StreamingIndexer } from './index-pack-process.ts';
import { formatBytes, pushLimitError, pushLimits, type PushLimits } from '../push-limits.ts';
import type { DiskBudget } from './disk-budget.ts';

export interface PackReceiverOptions {
  /** The caps on the pack and its objects; see push-limits.ts. Default DEFAULT_PUSH_LIMITS. */
  limits?: Partial<PushLimits>;
  /** What the pack may take on disk (the app's quota, the free space kept); see disk-budget.ts. Default: no budget. */
  budget?: DiskBudget;
}

export interface StoredPack {
  /** The pack's checksum in hex, also its name: `objects/pack/pack-<name>.pack`. Empty for an empty pack. */
  name: string;
  /** Whether this push put the pack there (false when the same pack was there already, or it is empty). */
  created: boolean;
  /** Bytes received, the trailer included. */
  bytes: number;
  /** How many objects the pack holds. */
  objects: number;
  /** Where it was indexed, and the indexer child's peak memory and CPU time. */
  indexedIn: 'child' | 'none';
  indexerMaxRssBytes: number;
  indexerCpuMs: number;
}

export type IndexProgress = (phase: string, loaded: number, total: number) => void;

const HEADER_BYTES = 12;
const TRAILER_BYTES = 20;
const SIGNATURE = Buffer.from('PACK', 'latin1');

/**
 * One pushed pack. Feed it with `write` until that returns true, or until `completion`
 * resolves, then `store` it; `abort` removes everything it wrote and is safe to call at any
 * time, also after `store`.
 *
 * The push's channel stays open after the pack (the client waits for the report), so the end
 * is found from the pack itself: the child that indexes it walks its objects and says when the
 * trailer came. The header is also checked here, so a pack beyond the caps is refused before
 * a child starts.
 */
export class PackReceiver {
  private readonly gitdir: string;
  private readonly limits: PushLimits;
  private readonly budget: DiskBudget | undefined;
  private readonly tempDir: string;
  private header = Buffer.alloc(0);
  private received = 0;
  private objectCount = -1;
  private done = false;
  private finished = false;
  private indexer: StreamingIndexer | undefined;
  private settle: ((value: boolean) => void) | undefined;
  private fail: ((e: Error) => void) | undefined;
  /** Resolves true when the pack has completed; rejects when the child finds it bad. */
  readonly completion: Promise<boolean>;

  constructor(gitdir: string, options: PackReceiverOptions = {}) {
    this.gitdir = gitdir;
    this.limits = pushLimits(options.limits);
    this.budget = options.budget;
    // Under objects/pack/ so the final renames stay on one file system; readers only look for
    // `*.idx` files there, so a directory in progress is invisible to them.
    this.tempDir = path.join(gitdir, 'objects', 'pack', `tmp_pack_${randomBytes(6).toString('hex')}`);
    this.completion = new Promise<boolean>((resolve, reject) => {
      this.settle = resolve;
      this.fail = reject;
    });
    this.completion.catch(() => undefined);
  }

  /** Bytes received so far. */
  get bytesReceived(): number {
    return this.received;
  }

  /** Whether the pack's trailer has arrived. */
  get complete(): boolean {
    return this.done;
  }

  /** The object count the pack's header announced, or -1 before the header has arrived. */
  get announcedObjects(): number {
    return this.objectCount;
  }

  /**
   * Appends pack bytes. Resolves true once the pack is known to be complete. Rejects with a
   * UserError on a bad header or bytes past the trailer (`git_pack_invalid`), on a pack beyond a
   * cap (`git_push_limit`) or the disk budget (`disk_quota`, `disk_full`), or when the indexing child finds it bad.
   */
  async write(chunk: Buffer): Promise<boolean> {
    if (chunk.length === 0) return this.done;
    if (this.finished) throw new Error('pack receiver already stored or aborted');
    if (this.done) throw packError(`${chunk.length} unexpected bytes after the end of the pack`);
    if (this.received + chunk.length > this.limits.packBytes) {
      throw pushLimitError('packBytes', `the pack has reached ${formatBytes(this.received + chunk.length)}`, this.limits);
    }
    if (this.budget && this.received + chunk.length > this.budget.bytes) throw this.budget.refuse(this.received + chunk.length);
    this.checkHeader(chunk);
    this.received += chunk.length;
    await (this.indexer ?? (await this.startIndexer())).write(chunk);
    return this.done;
  }

  /**
   * The client closed its side. Resolves true when a child indexing the pack finds it complete
   * in what came; rejects with the child's reason when it does not; false without a child.
   */
  async endOfInput(): Promise<boolean> {
    if (!this.indexer) return false;
    this.indexer.endInput();
    return this.completion;
  }

  /**
   * Indexes the completed pack (or waits for the child that does) and moves it to
   * `objects/pack/pack-<checksum>.pack` with its `.idx` (moved last, so readers never see a pack
   * without a complete index). An empty pack is dropped. Fails with a UserError
   * `git_pack_invalid` when the pack cannot be indexed: a corrupt object, fewer or more objects
   * than announced, or a thin pack (deltas against objects outside it).
   */
  async store(onProgress?: IndexProgress): Promise<StoredPack> {
    if (!this.done) throw new Error('pack is not complete');
    try {
      const incoming = path.join(this.tempDir, 'incoming');
      if (!this.indexer) return { name: '', created: false, bytes: this.received, objects: 0, indexedIn: 'none', indexerMaxRssBytes: 0, indexerCpuMs: 0 };
      const summary = await this.indexer.finish(onProgress);
      const name = summary.checksum;
      const stored: StoredPack = {
        name,
        created: false,
        bytes: this.received,
        objects: summary.objects,
        indexedIn: summary.where,
        indexerMaxRssBytes: summary.childMaxRssBytes,
        indexerCpuMs: summary.childCpuMs,
      };
      if (summary.objects === 0) return { ...stored, name: '' };
      const packDir = path.join(this.gitdir, 'objects', 'pack');
      const finalIdx = path.join(packDir, `pack-${name}.idx`);
      if (await exists(finalIdx)) return stored; // the same pack was pushed before
      await chmod(incoming, 0o444); // as git keeps packs: read-only
      await rename(incoming, path.join(packDir, `pack-${name}.pack`));
      await rename(`${incoming}.idx`, finalIdx);
      return { ...stored, created: true };
    } finally {
      await this.abort();
    }
  }

  /** Stops any indexing child and removes the temp directory and anything in it; idempotent. */
  async abort(): Promise<void> {
    this.finished = true;
    this.indexer?.kill();
    await rm(this.tempDir, { recursive: true, force: true });
  }

  /** Starts the child that writes, hashes and indexes every byte of the pack. */
  private async startIndexer(): Promise<StreamingIndexer> {
    if (this.finished) throw new Error('pack receiver already stored or aborted');
    await mkdir(this.tempDir, { recursive: true });
    const incoming = path.join(this.tempDir, 'incoming');
    await (await open(incoming, 'wx', 0o644)).close();
    const indexer = new StreamingIndexer(incoming, path.join(this.tempDir, 'incoming.idx'), 0, this.limits);
    this.indexer = indexer;
    indexer.complete.then(
      (bytes) => {
        if (bytes !== this.received) {
          this.fail?.(packError(`${this.received - bytes} unexpected bytes after the end of the pack`));
          return;
        }
        this.markDone();
      },
      (e: Error) => this.fail?.(e),
    );
    return indexer;
  }

  private markDone(): void {
    this.done = true;
    this.settle?.(true);
  }

  private checkHeader(chunk: Buffer): void {
    if (this.header.length >= HEADER_BYTES) return;
    this.header = Buffer.concat([this.header, chunk.subarray(0, HEADER_BYTES - this.header.length)]);
    const signature = this.header.subarray(0, 4);
    if (!signature.equals(SIGNATURE.subarray(0, signature.length))) {
      throw packError(`the data after the command list is not a pack (it starts with ${JSON.stringify(signature.toString('latin1'))})`);
    }
    if (this.header.length < HEADER_BYTES) return;
    const version = this.header.readUInt32BE(4);
    if (version !== 2 && version !== 3) throw packError(`unsupported pack version ${version}`);
    this.objectCount = this.header.readUInt32BE(8);
    if (this.objectCount > this.limits.objects) throw pushLimitError('objects', `the pack holds ${this.objectCount} objects`, this.limits);
    // Each object takes at least 2 bytes (a header byte and some zlib stream), so the count
    // alone can rule a pack out before it is stored.
    if (HEADER_BYTES + TRAILER_BYTES + this.objectCount * 2 > this.limits.packBytes) {
      throw pushLimitError('packBytes', `the pack announces ${this.objectCount} objects, more than fit in ${formatBytes(this.limits.packBytes)}`, this.limits);
    }
  }
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

function packError(message: string, cause?: unknown): UserError {
  return new UserError('git_pack_invalid', message, { cause });
}

/**
 * Removes `objects/pack/pack-<name>.*`: the index first, so no reader finds a pack without one.
 * The caller makes sure nothing refers to its objects (it holds the app's lock).
 */
export async function removePack(gitdir: string, name: string): Promise<void> {
  if (!/^[0-9a-f]{40}$/.test(name)) throw new Error(`not a pack name: ${JSON.stringify(name)}`);
  const base = path.join(gitdir, 'objects', 'pack', `pack-${name}`);
  await rm(`${base}.idx`, { force: true });
  await rm(`${base}.pack`, { force: true });
}
