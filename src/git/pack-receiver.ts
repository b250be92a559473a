// Receives a pushed packfile: streams it to a temp file under objects/pack/, finds its end by its
// own trailing checksum, then moves it into place and indexes it with isomorphic-git.
import { createHash, randomBytes, type Hash } from 'node:crypto';
import fs from 'node:fs';
import { mkdir, open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import git from 'isomorphic-git';
import { UserError } from '../errors.ts';

export interface PackReceiverOptions {
  /** The largest pack accepted, in bytes. Default 2 GiB. */
  maxPackBytes?: number;
}

export interface StoredPack {
  /** The pack's checksum in hex, also its name: `objects/pack/pack-<name>.pack`. Empty for an empty pack. */
  name: string;
  /** Bytes received, the trailer included. */
  bytes: number;
  /** The object ids the pack holds. */
  oids: string[];
}

export type IndexProgress = (phase: string, loaded: number, total: number) => void | Promise<void>;

export const DEFAULT_MAX_PACK_BYTES = 2 * 1024 ** 3;

const HEADER_BYTES = 12;
const TRAILER_BYTES = 20;
const SIGNATURE = Buffer.from('PACK', 'latin1');

/**
 * One pushed pack. Feed it with `write` until that returns true, then `store` it; `abort`
 * removes everything it wrote and is safe to call at any time, also after `store`.
 *
 * The push's channel stays open after the pack (the client waits for the report), so its end
 * is found from its own trailer: a running SHA-1 covers everything but the last 20 bytes
 * received, and the pack is complete when that digest equals those 20 bytes.
 */
export class PackReceiver {
  private readonly gitdir: string;
  private readonly maxPackBytes: number;
  private readonly tempDir: string;
  private readonly hash: Hash = createHash('sha1');
  private file: FileHandle | undefined;
  private header = Buffer.alloc(0);
  private tail = Buffer.alloc(0);
  private received = 0;
  private objectCount = -1;
  private done = false;
  private finished = false;

  constructor(gitdir: string, options: PackReceiverOptions = {}) {
    this.gitdir = gitdir;
    this.maxPackBytes = options.maxPackBytes ?? DEFAULT_MAX_PACK_BYTES;
    // Under objects/pack/ so the final renames stay on one file system; readers only look for
    // `*.idx` files there, so a directory in progress is invisible to them.
    this.tempDir = path.join(gitdir, 'objects', 'pack', `tmp_pack_${randomBytes(6).toString('hex')}`);
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
   * Appends pack bytes. Resolves true once the pack is complete. Rejects with a UserError
   * (`git_pack_invalid`, `git_pack_too_large`) on a bad header, on bytes past the trailer,
   * or when the pack grows beyond the maximum size.
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
      this.done = true;
    }
    return this.done;
  }

  /**
   * Moves the completed pack to `objects/pack/pack-<checksum>.pack` with its `.idx` (written
   * last, so readers never see a pack without a complete index). An empty pack is dropped.
   * Fails with a UserError `git_pack_invalid` when the pack cannot be indexed, holds fewer
   * objects than it announced, or is thin (deltas against objects outside it).
   */
  async store(onProgress?: IndexProgress): Promise<StoredPack> {
    if (!this.done) throw new Error('pack is not complete');
    const name = this.tail.toString('hex');
    const file = this.file;
    this.file = undefined;
    if (file) {
      await file.sync();
      await file.close();
    }
    try {
      if (this.objectCount === 0) return { name: '', bytes: this.received, oids: [] };
      const packDir = path.join(this.gitdir, 'objects', 'pack');
      const finalPack = path.join(packDir, `pack-${name}.pack`);
      const finalIdx = path.join(packDir, `pack-${name}.idx`);
      const tempPack = path.join(this.tempDir, `pack-${name}.pack`);
      const tempIdx = path.join(this.tempDir, `pack-${name}.idx`);
      await rename(path.join(this.tempDir, 'incoming'), tempPack);

      let oids: string[];
      try {
        const result = await git.indexPack({
          fs,
          dir: this.tempDir,
          gitdir: this.gitdir,
          filepath: `pack-${name}.pack`,
          onProgress: onProgress ? (e) => onProgress(e.phase, e.loaded, e.total ?? 0) : undefined,
        });
        oids = result.oids;
      } catch (e) {
        throw packError(`the pack could not be indexed: ${isomorphicGitDetail(e)}`, e);
      }
      if (oids.length !== this.objectCount) {
        throw packError(`the pack announced ${this.objectCount} objects but only ${oids.length} could be read`);
      }
      const external = await externalDeltaBases(tempPack, tempIdx, new Set(oids));
      if (external > 0) {
        throw packError(`thin pack: ${external} deltas refer to objects outside the pack (berth asks for no-thin packs)`);
      }

      if (await exists(finalIdx)) return { name, bytes: this.received, oids }; // the same pack was pushed before
      await syncFile(tempIdx);
      await rename(tempPack, finalPack);
      await rename(tempIdx, finalIdx);
      return { name, bytes: this.received, oids };
    } finally {
      await this.abort();
    }
  }

  /** Removes the temp directory and anything in it; idempotent. */
  async abort(): Promise<void> {
    this.finished = true;
    const file = this.file;
    this.file = undefined;
    if (file) await file.close().catch(() => undefined);
    await rm(this.tempDir, { recursive: true, force: true });
  }

  private async openFile(): Promise<FileHandle> {
    if (this.file) return this.file;
    if (this.finished) throw new Error('pack receiver already stored or aborted');
    await mkdir(this.tempDir, { recursive: true });
    this.file = await open(path.join(this.tempDir, 'incoming'), 'wx', 0o444);
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

/**
 * Counts ref-deltas whose base is not in the pack. isomorphic-git resolves such bases from the
 * repository and indexes the pack anyway, but real git then finds "unresolved deltas" in it.
 * Reads the idx's offset table and the few header bytes at each object's offset.
 */
async function externalDeltaBases(packPath: string, idxPath: string, inPack: Set<string>): Promise<number> {
  const offsets = await readIdxOffsets(idxPath, inPack.size);
  const pack = await open(packPath, 'r');
  try {
    const buf = Buffer.alloc(32);
    let external = 0;
    for (const offset of offsets) {
      const { bytesRead } = await pack.read(buf, 0, buf.length, offset);
      let p = 0;
      let c = buf[p++] ?? 0;
      const type = (c >> 4) & 7;
      if (type !== 7) continue;
      while (c & 0x80 && p < bytesRead) c = buf[p++] ?? 0;
      if (p + 20 > bytesRead) throw packError(`truncated ref-delta at offset ${offset}`);
      if (!inPack.has(buf.toString('hex', p, p + 20))) external++;
    }
    return external;
  } finally {
    await pack.close();
  }
}

async function readIdxOffsets(idxPath: string, count: number): Promise<number[]> {
  const idx = await fs.promises.readFile(idxPath);
  // v2: magic, version, 256 fanout words, then per object a 20-byte id, a crc, a 4-byte offset.
  const table = 8 + 256 * 4 + count * 24;
  const large = table + count * 4;
  const offsets: number[] = [];
  for (let i = 0; i < count; i++) {
    const word = idx.readUInt32BE(table + i * 4);
    offsets.push(word & 0x80000000 ? Number(idx.readBigUInt64BE(large + (word & 0x7fffffff) * 8)) : word);
  }
  return offsets;
}

async function writeAll(file: FileHandle, data: Buffer): Promise<void> {
  for (let at = 0; at < data.length; ) {
    const { bytesWritten } = await file.write(data, at, data.length - at);
    at += bytesWritten;
  }
}

async function syncFile(p: string): Promise<void> {
  const handle = await open(p, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

/** isomorphic-git wraps unexpected failures in a long "please report this" text; keep the cause. */
function isomorphicGitDetail(e: unknown): string {
  const message = e instanceof Error ? e.message : String(e);
  return message.replace(/^An internal error caused this command to fail\.[\s\S]*?this error message: /, '');
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
