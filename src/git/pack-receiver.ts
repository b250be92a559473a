// Receives a pushed packfile into a temp file under objects/pack/ and indexes it with berth's own
// index-pack: a small pack in place once it is complete, a large one in a child process that
// indexes it while it arrives. Then pack and index move into place.
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { chmod, mkdir, open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../errors.ts';
import { IN_PROCESS_MAX_BYTES, indexPackOffThread, StreamingIndexer, type OffThreadSummary } from './index-pack-process.ts';

export interface PackReceiverOptions {
  /** The largest pack accepted, in bytes. Default 2 GiB. */
  maxPackBytes?: number;
  /** Beyond this many bytes the pack streams into a child process that indexes it as it arrives. Default 1 MiB. */
  inProcessMaxBytes?: number;
}

export interface StoredPack {
  /** The pack's checksum in hex, also its name: `objects/pack/pack-<name>.pack`. Empty for an empty pack. */
  name: string;
  /** Bytes received, the trailer included. */
  bytes: number;
  /** How many objects the pack holds. */
  objects: number;
  /** Where it was indexed, and the indexer child's peak memory and CPU time (0 when in-process). */
  indexedIn: 'in-process' | 'child' | 'none';
  indexerMaxRssBytes: number;
  indexerCpuMs: number;
}

export type IndexProgress = (phase: string, loaded: number, total: number) => void;

export const DEFAULT_MAX_PACK_BYTES = 2 * 1024 ** 3;

const HEADER_BYTES = 12;
const TRAILER_BYTES = 20;
const SIGNATURE = Buffer.from('PACK', 'latin1');

/**
 * One pushed pack. Feed it with `write` until that returns true, or until `completion`
 * resolves, then `store` it; `abort` removes everything it wrote and is safe to call at any
 * time, also after `store`.
 *
 * The push's channel stays open after the pack (the client waits for the report), so the end
 * is found from the pack itself. While it is small, a running SHA-1 covers everything but the
 * last 20 bytes received, and the pack is complete when that digest equals those 20 bytes.
 * Once it is large, the child that indexes it walks its objects and says when the trailer came.
 */
export class PackReceiver {
  private readonly gitdir: string;
  private readonly maxPackBytes: number;
  private readonly inProcessMaxBytes: number;
  private readonly tempDir: string;
  private readonly hash: Hash = createHash('sha1');
  private file: FileHandle | undefined;
  private header = Buffer.alloc(0);
  private tail = Buffer.alloc(0);
  private received = 0;
  private objectCount = -1;
  private done = false;
  private finished = false;
  private indexer: StreamingIndexer | undefined;
  private settle: ((value: boolean) => void) | undefined;
  private fail: ((e: Error) => void) | undefined;
  /** Resolves true when a pack handed to the child has completed; rejects when the child finds it bad. */
  readonly completion: Promise<boolean>;

  constructor(gitdir: string, options: PackReceiverOptions = {}) {
    this.gitdir = gitdir;
    this.maxPackBytes = options.maxPackBytes ?? DEFAULT_MAX_PACK_BYTES;
    this.inProcessMaxBytes = options.inProcessMaxBytes ?? IN_PROCESS_MAX_BYTES;
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
   * UserError (`git_pack_invalid`, `git_pack_too_large`) on a bad header, on bytes past the
   * trailer, when the pack grows beyond the maximum size, or when the indexing child finds it bad.
   */
  async write(chunk: Buffer): Promise<boolean> {
    if (chunk.length === 0) return this.done;
    if (this.finished) throw new Error('pack receiver already stored or aborted');
    if (this.done) throw packError(`${chunk.length} unexpected bytes after the end of the pack`);
    if (this.received + chunk.length > this.maxPackBytes) {
      throw new UserError('git_pack_too_large', `pack exceeds the maximum size of ${formatBytes(this.maxPackBytes)}`, {
        hint: 'push a smaller history, or keep large files out of the repository',
      });
    }
    this.checkHeader(chunk);
    this.received += chunk.length;
    if (this.indexer) {
      await this.indexer.write(chunk);
      return this.done;
    }

    // Hold back the last 20 bytes: they are the trailer if the pack ends here.
    const all = this.tail.length === 0 ? chunk : Buffer.concat([this.tail, chunk]);
    const keep = Math.min(TRAILER_BYTES, all.length);
    const body = all.subarray(0, all.length - keep);
    this.tail = Buffer.from(all.subarray(all.length - keep));
    if (body.length > 0) {
      this.hash.update(body);
      await writeAll(await this.openFile(), body);
    }
    if (this.received >= HEADER_BYTES + TRAILER_BYTES && this.hash.copy().digest().equals(this.tail)) {
      await writeAll(await this.openFile(), this.tail);
      this.markDone();
    } else if (this.received > this.inProcessMaxBytes) {
      await this.handToChild();
    }
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
    const file = this.file;
    this.file = undefined;
    if (file) {
      await file.sync();
      await file.close();
    }
    try {
      const incoming = path.join(this.tempDir, 'incoming');
      let summary: OffThreadSummary;
      if (this.indexer) summary = await this.indexer.finish(onProgress);
      else if (this.objectCount === 0) return { name: '', bytes: this.received, objects: 0, indexedIn: 'none', indexerMaxRssBytes: 0, indexerCpuMs: 0 };
      else summary = await indexPackOffThread(incoming, `${incoming}.idx`, onProgress ? { onProgress } : {});
      const name = summary.checksum;
      const stored: StoredPack = {
        name,
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
      return stored;
    } finally {
      await this.abort();
    }
  }

  /** Stops any indexing child and removes the temp directory and anything in it; idempotent. */
  async abort(): Promise<void> {
    this.finished = true;
    this.indexer?.kill();
    const file = this.file;
    this.file = undefined;
    if (file) await file.close().catch(() => undefined);
    await rm(this.tempDir, { recursive: true, force: true });
  }

  /** From here on the child process gets every byte: it writes, hashes and indexes them. */
  private async handToChild(): Promise<void> {
    const file = await this.openFile();
    await writeAll(file, this.tail);
    this.tail = Buffer.alloc(0);
    await file.sync();
    await file.close();
    this.file = undefined;
    const indexer = new StreamingIndexer(path.join(this.tempDir, 'incoming'), path.join(this.tempDir, 'incoming.idx'), this.received);
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
  }

  private markDone(): void {
    this.done = true;
    this.settle?.(true);
  }

  private async openFile(): Promise<FileHandle> {
    if (this.file) return this.file;
    if (this.finished) throw new Error('pack receiver already stored or aborted');
    await mkdir(this.tempDir, { recursive: true });
    this.file = await open(path.join(this.tempDir, 'incoming'), 'wx', 0o644);
    return this.file;
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
    // Each object takes at least 2 bytes (a header byte and some zlib stream), so the count
    // alone can rule a pack out before it is stored.
    if (HEADER_BYTES + TRAILER_BYTES + this.objectCount * 2 > this.maxPackBytes) {
      throw new UserError('git_pack_too_large', `pack announces ${this.objectCount} objects, more than fit in ${formatBytes(this.maxPackBytes)}`);
    }
  }
}

async function writeAll(file: FileHandle, data: Buffer): Promise<void> {
  for (let at = 0; at < data.length; ) {
    const { bytesWritten } = await file.write(data, at, data.length - at);
    at += bytesWritten;
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

function formatBytes(n: number): string {
  if (n >= 1024 ** 3) return `${+(n / 1024 ** 3).toFixed(1)} GiB`;
  if (n >= 1024 ** 2) return `${+(n / 1024 ** 2).toFixed(1)} MiB`;
  if (n >= 1024) return `${+(n / 1024).toFixed(1)} KiB`;
  return `${n} bytes`;
}
