// berth's own index-pack: one sequential pass over a pack file on disk (object headers,
// inflate, SHA-1 and CRC32 per object, the pack's own checksum), then delta resolution that
// reads bases back from the file through a cache bounded in bytes, then a version 2 .idx that
// git accepts. Memory is bounded by the largest objects, never by the size of the pack.
import { createHash, type Hash } from 'node:crypto';
import fs from 'node:fs';
import zlib from 'node:zlib';
import { UserError } from '../errors.ts';
import { applyDelta, deflateBound, DeltaTooLargeError, deltaSizes, OBJECT_TYPE_NAMES, OBJ_OFS_DELTA, OBJ_REF_DELTA, parseEntryHeader, type EntryHeader } from './pack-format.ts';
import { formatBytes, pushLimitError, pushLimits, type PushLimits } from '../push-limits.ts';
import { concatSources, fileSource, PackWindow, type PackSource } from './pack-window.ts';

export interface IndexSummary {
  /** Objects in the pack. */
  objects: number;
  /** How many of them were stored as deltas. */
  deltas: number;
  /** The pack's trailing checksum in hex (its name). */
  checksum: string;
  /** Size of the pack file in bytes. */
  bytes: number;
}

export type IndexPhase = 'Indexing objects' | 'Resolving deltas';
export type IndexProgress = (phase: IndexPhase, done: number, total: number) => void;

export interface IndexOptions {
  onProgress?: IndexProgress;
  /** Objects inflated to more than this are hashed as a stream instead of held whole. Default 16 MiB. */
  streamAbove?: number;
  /** Bytes of inflated objects kept for delta resolution. Default 64 MiB. */
  cacheBytes?: number;
  /**
   * The caps on objects (count, inflated size, delta depth), each enforced as the pack is walked,
   * before the work it would cost: a push beyond one fails with a UserError `git_push_limit`
   * naming the cap. Default DEFAULT_PUSH_LIMITS.
   */
  limits?: Partial<Pick<PushLimits, 'objectBytes' | 'inflatedBytes' | 'deltaDepth' | 'objects'>>;
}

/** What inflated bytes are fed to: an object's hash, or the reader of a delta's sizes. */
interface Sink {
  update(data: Buffer): unknown;
}

const HEADER_BYTES = 12;
const TRAILER_BYTES = 20;
const DEFAULT_STREAM_ABOVE = 16 << 20;
const DEFAULT_CACHE_BYTES = 64 << 20;
/** An object this small that straddles the bytes received so far is retried whole when more arrive. */
const RETRY_WHOLE_MAX = 256 << 10;
const PROGRESS_EVERY_MS = 100;

/**
 * Indexes the pack at `packPath` and writes its `.idx` to `idxPath`. Fails with a UserError
 * `git_pack_invalid` that says what is wrong: a bad header or checksum, a corrupt or truncated
 * object, garbage after the last object, a duplicate object, or deltas whose base is not in the
 * pack (a thin pack).
 */
export async function indexPack(packPath: string, idxPath: string, options: IndexOptions = {}): Promise<IndexSummary> {
  const fd = fs.openSync(packPath, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    if (size < HEADER_BYTES + TRAILER_BYTES) throw corrupt(`the pack is ${size} bytes, too short to be a pack`);
    const indexer = new Indexer(fd, options);
    const table = await indexer.scan(fileSource((into, at) => fs.readSync(fd, into, 0, into.length, at), 0, size), size);
    indexer.resolveDeltas();
    writeIdx(idxPath, table, indexer.checksum);
    return { objects: table.count, deltas: indexer.deltaCount, checksum: indexer.checksum.toString('hex'), bytes: indexer.bytes };
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Indexes a pack while it arrives, as `git index-pack --stdin` does: the first `have` bytes are
 * already in `packPath`, the rest come from `input` and are appended to it. The end of the pack
 * is found by walking its objects, so `input` may stay open: `onComplete` is called as soon as
 * the trailer has arrived and checks out, before deltas are resolved. Bytes after the trailer
 * are refused.
 */
export async function indexPackStream(
  packPath: string,
  idxPath: string,
  have: number,
  input: AsyncIterable<Buffer>,
  options: IndexOptions & { onComplete?: (bytes: number) => void } = {},
): Promise<IndexSummary> {
  const fd = fs.openSync(packPath, 'r+');
  try {
    let written = have;
    const iterator = input[Symbol.asyncIterator]();
    const incoming: PackSource = {
      complete: false,
      async next() {
        const r = await iterator.next();
        if (r.done) return null;
        const chunk = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
        for (let at = 0; at < chunk.length; ) at += fs.writeSync(fd, chunk, at, chunk.length - at, written + at);
        written += chunk.length;
        return chunk;
      },
    };
    const indexer = new Indexer(fd, options);
    const table = await indexer.scan(concatSources(fileSource((into, at) => fs.readSync(fd, into, 0, into.length, at), 0, have), incoming), undefined);
    fs.fsyncSync(fd);
    options.onComplete?.(indexer.bytes);
    indexer.resolveDeltas();
    writeIdx(idxPath, table, indexer.checksum);
    return { objects: table.count, deltas: indexer.deltaCount, checksum: indexer.checksum.toString('hex'), bytes: indexer.bytes };
  } finally {
    fs.closeSync(fd);
  }
}

/** What the index records per object, in pack order. */
interface ObjectTable {
  count: number;
  offsets: Float64Array;
  /** Where each object's entry ends (the next one's offset, or the trailer). */
  ends: Float64Array;
  /** Where the zlib stream of each object starts. */
  dataStarts: Float64Array;
  /** Inflated size from the header (for deltas: the size of the delta). */
  sizes: Float64Array;
  /** Pack type code; deltas get their base's type once resolved. */
  types: Uint8Array;
  kinds: Uint8Array;
  crcs: Uint32Array;
  /** 20 bytes per object; zero until known. */
  oids: Buffer;
  resolved: Uint8Array;
  /** For an ofs-delta, its base's offset; -1 otherwise. */
  baseOffsets: Float64Array;
  /** Ref-delta base ids, by object index. */
  baseOids: Map<number, Buffer>;
  /** For a resolved delta, the index of its base. */
  baseIndex: Int32Array;
  /** Deltas between the object and a whole one: exact once resolved, a lower bound before. */
  depths: Uint32Array;
}

class Indexer {
  readonly fd: number;
  readonly options: IndexOptions;
  checksum: Buffer = Buffer.alloc(20);
  deltaCount = 0;
  /** The pack's size, trailer included, once scanned. */
  bytes = 0;
  private table!: ObjectTable;
  private lastProgress = 0;
  private readonly cache: ContentCache;
  private readonly limits: PushLimits;
  /** What the objects declared so far inflate to, deltas' results included. */
  private inflated = 0;

  constructor(fd: number, options: IndexOptions) {
    this.fd = fd;
    this.options = options;
    this.limits = pushLimits(options.limits);
    this.cache = new ContentCache(options.cacheBytes ?? DEFAULT_CACHE_BYTES);
  }

  /**
   * Pass 1 over `source`: every object's header, extent, CRC32 and (when not a delta) id, then
   * the trailer, checked against the hash of everything before it. `size` is the whole pack's
   * size when known (a file); a pack still arriving ends at its trailer.
   */
  async scan(source: PackSource, size: number | undefined): Promise<ObjectTable> {
    const hash = createHash('sha1');
    const w = new PackWindow(source, hash, size);
    await w.fillTo(HEADER_BYTES);
    const header = w.view(0, HEADER_BYTES);
    if (header.length < 4 || header.toString('latin1', 0, 4) !== 'PACK') throw corrupt('the data does not start with a pack header');
    if (header.length < HEADER_BYTES) throw corrupt('the pack ends inside its header');
    const version = header.readUInt32BE(4);
    if (version !== 2 && version !== 3) throw corrupt(`unsupported pack version ${version}`);
    const count = header.readUInt32BE(8);
    if (count > this.limits.objects) throw pushLimitError('objects', `the pack holds ${count} objects`, this.limits);
    // Every object takes at least two bytes, so a count beyond that is a lie told before any allocation.
    if (size !== undefined && count * 2 > size - HEADER_BYTES - TRAILER_BYTES) {
      throw corrupt(`the pack announces ${count} objects but holds only ${size - HEADER_BYTES - TRAILER_BYTES} bytes of them`);
    }
    const t: ObjectTable = {
      count,
      offsets: new Float64Array(count),
      ends: new Float64Array(count),
      dataStarts: new Float64Array(count),
      sizes: new Float64Array(count),
      types: new Uint8Array(count),
      kinds: new Uint8Array(count),
      crcs: new Uint32Array(count),
      oids: Buffer.alloc(count * 20),
      resolved: new Uint8Array(count),
      baseOffsets: new Float64Array(count).fill(-1),
      baseOids: new Map(),
      baseIndex: new Int32Array(count).fill(-1),
      depths: new Uint32Array(count),
    };
    this.table = t;
    let pos = HEADER_BYTES;
    for (let i = 0; i < count; i++) {
      w.release(pos);
      const head = await readEntryHeader(w, pos, i, count);
      t.offsets[i] = pos;
      t.kinds[i] = head.kind;
      t.sizes[i] = head.size;
      const dataStart = pos + head.headerLength;
      t.dataStarts[i] = dataStart;
      const isDelta = head.kind === OBJ_OFS_DELTA || head.kind === OBJ_REF_DELTA;
      if (head.size > this.limits.objectBytes) {
        throw pushLimitError('objectBytes', `the ${isDelta ? 'delta' : OBJECT_TYPE_NAMES[head.kind]} at offset ${pos} inflates to ${formatBytes(head.size)}`, this.limits);
      }
      if (!isDelta) this.countInflated(head.size, pos);
      if (head.kind === OBJ_OFS_DELTA) {
        t.baseOffsets[i] = head.baseOffset;
        t.depths[i] = this.ofsDeltaDepth(i, head.baseOffset);
      }
      if (head.kind === OBJ_REF_DELTA) {
        t.baseOids.set(i, Buffer.from(head.baseOid!));
        t.depths[i] = 1;
      }
      const deltaHead = isDelta ? new DeltaHead() : undefined;
      const objectHash = isDelta ? deltaHead : createHash('sha1').update(`${OBJECT_TYPE_NAMES[head.kind]} ${head.size}\0`);
      const stream = await this.inflateArriving(w, pos, dataStart, head.size, objectHash);
      if (isDelta) {
        this.deltaCount++;
        const sizes = deltaHead!.sizes();
        if (!sizes) throw corrupt(`the delta at offset ${pos} is too short to hold its sizes`);
        if (sizes.resultSize > this.limits.objectBytes) {
          throw pushLimitError('objectBytes', `the delta at offset ${pos} declares a result of ${formatBytes(sizes.resultSize)}`, this.limits);
        }
        this.countInflated(sizes.resultSize, pos);
      } else {
        t.types[i] = head.kind;
        (objectHash as Hash).digest().copy(t.oids, i * 20);
        t.resolved[i] = 1;
      }
      t.ends[i] = dataStart + stream.consumed;
      t.crcs[i] = stream.crc;
      pos = dataStart + stream.consumed;
      this.progress('Indexing objects', i + 1, count);
    }
    w.release(pos);
    if (!(await w.fillTo(pos + TRAILER_BYTES))) throw corrupt(`the pack ends ${w.end - pos} bytes after its last object, before its 20-byte checksum`);
    if (w.complete) while (await w.fill());
    if (w.end > pos + TRAILER_BYTES) throw corrupt(`${w.end - pos - TRAILER_BYTES} bytes of garbage after the last object`);
    const trailer = Buffer.from(w.view(pos, pos + TRAILER_BYTES));
    const digest = hash.digest();
    if (!digest.equals(trailer)) throw corrupt(`the pack's checksum is wrong (it says ${trailer.toString('hex')}, its content gives ${digest.toString('hex')})`);
    this.checksum = trailer;
    this.bytes = pos + TRAILER_BYTES;
    this.progress('Indexing objects', count, count, true);
    return t;
  }

  /**
   * Inflates the zlib stream of one entry, feeding `objectHash` the inflated bytes; returns the
   * compressed length and the entry's CRC32. An object that is all there, or small, is inflated
   * in one call; a large one that is still arriving is inflated as a stream, chunk by chunk.
   */
  private async inflateArriving(w: PackWindow, entry: number, dataStart: number, size: number, objectHash: Sink | undefined): Promise<{ consumed: number; crc: number }> {
    const streamAbove = this.options.streamAbove ?? DEFAULT_STREAM_ABOVE;
    // From a file, read far enough that one call can inflate the whole object.
    if (w.complete && size <= streamAbove) await w.fillTo(dataStart + deflateBound(size));
    for (;;) {
      const wholeAvailable = w.view(dataStart, w.end);
      if (size <= streamAbove) {
        const r = inflateWhole(wholeAvailable, size, entry, w.complete || w.eof);
        if (r !== 'more') {
          objectHash?.update(r.content);
          return { consumed: r.consumed, crc: zlib.crc32(w.view(dataStart, dataStart + r.consumed), zlib.crc32(w.view(entry, dataStart))) };
        }
        if (w.eof) throw corrupt(`the object at offset ${entry} is truncated`);
        if (w.complete || size <= RETRY_WHOLE_MAX) {
          await w.fill();
          continue;
        }
      }
      return inflateStreaming(w, entry, dataStart, size, objectHash);
    }
  }

  /** Pass 2: resolves every delta from its base, depth first, each base read back from the file when not cached. */
  resolveDeltas(): void {
    const t = this.table;
    if (this.deltaCount === 0) return;
    const byOffset = new Map<number, number[]>();
    const byOid = new Map<string, number[]>();
    for (let i = 0; i < t.count; i++) {
      if (t.kinds[i] === OBJ_OFS_DELTA) push(byOffset, t.baseOffsets[i]!, i);
      else if (t.kinds[i] === OBJ_REF_DELTA) push(byOid, t.baseOids.get(i)!.toString('hex'), i);
    }
    const stack: number[] = [];
    for (let i = t.count - 1; i >= 0; i--) if (t.resolved[i]) stack.push(i);
    let done = 0;
    while (stack.length > 0) {
      const base = stack.pop()!;
      const children = [...(byOffset.get(t.offsets[base]!) ?? []), ...(byOid.get(oidHex(t, base)) ?? [])];
      byOffset.delete(t.offsets[base]!);
      byOid.delete(oidHex(t, base));
      if (children.length === 0) continue;
      const baseContent = this.content(base);
      for (const child of children) {
        if (t.resolved[child]) continue;
        const delta = this.inflateEntry(child);
        const depth = t.depths[base]! + 1;
        if (depth > this.limits.deltaDepth) throw pushLimitError('deltaDepth', `the delta at offset ${t.offsets[child]} is ${depth} deltas away from a whole object`, this.limits);
        t.depths[child] = depth;
        let result: Buffer;
        try {
          result = applyDelta(baseContent, delta, this.limits.objectBytes);
        } catch (e) {
          if (e instanceof DeltaTooLargeError) throw pushLimitError('objectBytes', `the delta at offset ${t.offsets[child]} declares a result of ${formatBytes(e.resultSize)}`, this.limits);
          throw corrupt(`the delta at offset ${t.offsets[child]} does not apply to its base: ${(e as Error).message}`, e);
        }
        t.types[child] = t.types[base]!;
        t.baseIndex[child] = base;
        createHash('sha1').update(`${OBJECT_TYPE_NAMES[t.types[child]!]} ${result.length}\0`).update(result).digest().copy(t.oids, child * 20);
        t.resolved[child] = 1;
        this.cache.set(child, result);
        stack.push(child);
        this.progress('Resolving deltas', ++done, this.deltaCount);
      }
    }
    if (done < this.deltaCount) {
      let external = 0;
      for (let i = 0; i < t.count; i++) if (!t.resolved[i] && t.kinds[i] === OBJ_REF_DELTA) external++;
      if (external > 0) throw corrupt(`thin pack: ${external} deltas refer to objects outside the pack (berth asks for no-thin packs)`);
      const first = t.resolved.indexOf(0);
      throw corrupt(`${this.deltaCount - done} deltas could not be resolved; the first is at offset ${t.offsets[first]}`);
    }
    this.progress('Resolving deltas', done, this.deltaCount, true);
  }

  /** Adds an object's inflated size to the push's total, refused beyond --max-push-inflated-size. */
  private countInflated(size: number, offset: number): void {
    this.inflated += size;
    if (this.inflated > this.limits.inflatedBytes) {
      throw pushLimitError('inflatedBytes', `the objects up to offset ${offset} inflate to ${formatBytes(this.inflated)} together`, this.limits);
    }
  }

  /**
   * The depth of the ofs-delta at index `i` whose base starts at `baseOffset`, from its base's
   * (a lower bound when the chain ends in a ref-delta, exact otherwise); beyond the cap it is
   * refused here, while the pack still arrives.
   */
  private ofsDeltaDepth(i: number, baseOffset: number): number {
    const t = this.table;
    let lo = 0;
    let hi = i;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (t.offsets[mid]! < baseOffset) lo = mid + 1;
      else hi = mid;
    }
    if (lo >= i || t.offsets[lo] !== baseOffset) throw corrupt(`the delta at offset ${t.offsets[i]} points at offset ${baseOffset}, where no object starts`);
    const depth = t.depths[lo]! + 1;
    if (depth > this.limits.deltaDepth) throw pushLimitError('deltaDepth', `the delta at offset ${t.offsets[i]} is ${depth} deltas away from a whole object`, this.limits);
    return depth;
  }

  /** An object's full content: from the cache, or rebuilt from the file along its delta chain. */
  private content(index: number): Buffer {
    const cached = this.cache.get(index);
    if (cached) return cached;
    const t = this.table;
    const chain: number[] = [];
    let at = index;
    let content: Buffer | undefined;
    while (!(content = this.cache.get(at)) && t.baseIndex[at]! >= 0) {
      chain.push(at);
      at = t.baseIndex[at]!;
    }
    content ??= this.inflateEntry(at);
    this.cache.set(at, content);
    for (let i = chain.length - 1; i >= 0; i--) {
      content = applyDelta(content, this.inflateEntry(chain[i]!), this.limits.objectBytes);
      this.cache.set(chain[i]!, content);
    }
    return content;
  }

  /** Reads one entry's zlib stream back from the file and inflates it whole. */
  private inflateEntry(index: number): Buffer {
    const t = this.table;
    const start = t.dataStarts[index]!;
    const length = t.ends[index]! - start;
    const raw = Buffer.allocUnsafe(length);
    readFully(this.fd, raw, start);
    try {
      return zlib.inflateSync(raw, { maxOutputLength: Math.max(t.sizes[index]!, 1), chunkSize: outputChunk(t.sizes[index]!) });
    } catch (e) {
      throw corrupt(`cannot inflate the object at offset ${t.offsets[index]}: ${(e as Error).message}`, e);
    }
  }

  private progress(phase: IndexPhase, done: number, total: number, final = false): void {
    if (!this.options.onProgress) return;
    const now = performance.now();
    if (!final && now - this.lastProgress < PROGRESS_EVERY_MS) return;
    this.lastProgress = now;
    this.options.onProgress(phase, done, total);
  }
}

/** Reads an entry's header, waiting for more bytes while it is incomplete. */
async function readEntryHeader(w: PackWindow, pos: number, index: number, count: number): Promise<EntryHeader> {
  for (;;) {
    if ((w.trailerAt !== undefined && pos >= w.trailerAt) || w.isTrailerAt(pos)) throw corrupt(`the pack ends after ${index} of the ${count} objects it announces`);
    let head: EntryHeader | undefined;
    try {
      head = parseEntryHeader(w.view(pos, pos + 32), pos);
    } catch (e) {
      throw corrupt((e as Error).message, e);
    }
    if (head) return head;
    if (!(await w.fill()) && !(w.trailerAt !== undefined && pos >= w.trailerAt)) {
      throw corrupt(w.end === pos ? `the pack ends after ${index} of the ${count} objects it announces` : `the object header at offset ${pos} is truncated`);
    }
  }
}

/**
 * One zlib stream inflated in one call, or 'more' when the bytes given may end inside it. Unless
 * `final` (no more bytes will come), a stream cut short is not an error: zlib is asked to flush
 * what it has, and the stream is known complete only when it stopped before the input's end
 * (its checksum then checked out). That avoids an exception, which costs more than the inflate,
 * for every object that straddles two chunks of a push.
 */
function inflateWhole(input: Buffer, size: number, entry: number, final: boolean): { content: Buffer; consumed: number } | 'more' {
  let r: { buffer: Buffer; engine: { bytesWritten: number } };
  try {
    r = zlib.inflateSync(input, {
      info: true,
      maxOutputLength: Math.max(size, 1),
      chunkSize: outputChunk(size),
      ...(final ? {} : { finishFlush: zlib.constants.Z_SYNC_FLUSH }),
    }) as unknown as { buffer: Buffer; engine: { bytesWritten: number } };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'Z_BUF_ERROR') return 'more';
    if (code === 'ERR_BUFFER_TOO_LARGE') throw corrupt(`the object at offset ${entry} inflates to more than the ${size} bytes its header says`, e);
    throw corrupt(`the object at offset ${entry} does not inflate: ${(e as Error).message}`, e);
  }
  const consumed = r.engine.bytesWritten;
  if (!final && consumed === input.length) return 'more';
  if (r.buffer.length !== size) throw corrupt(`the object at offset ${entry} inflates to ${r.buffer.length} bytes, not the ${size} its header says`);
  return { content: r.buffer, consumed };
}

/**
 * Inflates a large zlib stream chunk by chunk as the window fills, handing the inflated bytes
 * to `objectHash`; returns the compressed length and the entry's CRC32. Fully consumed chunks
 * are released as it goes, so a huge object never sits whole in the window.
 */
async function inflateStreaming(w: PackWindow, entry: number, dataStart: number, size: number, objectHash: Sink | undefined): Promise<{ consumed: number; crc: number }> {
  const inflate = zlib.createInflate();
  let produced = 0;
  let ended = false;
  let failure: Error | undefined;
  inflate.on('data', (chunk: Buffer) => {
    produced += chunk.length;
    if (produced > size) {
      // A stream that inflates past its header is cut off here, not inflated to its end.
      failure ??= corrupt(`the object at offset ${entry} inflates to more than the ${size} bytes its header says`);
      inflate.destroy();
    } else objectHash?.update(chunk);
  });
  inflate.on('end', () => (ended = true));
  inflate.on('error', (e: Error) => (failure ??= corrupt(`the object at offset ${entry} does not inflate: ${e.message}`, e)));
  let crc = zlib.crc32(w.view(entry, dataStart));
  // [lastFrom, fedTo) is the last piece fed; it may hold bytes past the stream's end.
  let lastFrom = dataStart;
  let fedTo = dataStart;
  while (!ended && !failure) {
    if (fedTo === w.end && !(await w.fill())) {
      // No more input: the stream either ends exactly here or is truncated.
      await new Promise<void>((resolve) => {
        inflate.once('end', resolve);
        inflate.once('error', () => resolve());
        inflate.end();
      });
      if (!ended) failure ??= corrupt(`the object at offset ${entry} is truncated`);
      break;
    }
    // The stream did not end in the previous piece, so all of it belongs to this object.
    crc = zlib.crc32(w.view(lastFrom, fedTo), crc);
    w.release(fedTo);
    lastFrom = fedTo;
    fedTo = w.end;
    const piece = Buffer.from(w.view(lastFrom, fedTo));
    await new Promise<void>((resolve) => {
      if (inflate.destroyed) return resolve();
      inflate.once('close', resolve);
      inflate.write(piece, () => {
        inflate.off('close', resolve);
        resolve();
      });
    });
    await new Promise((resolve) => setImmediate(resolve));
  }
  inflate.destroy();
  if (failure) throw failure;
  if (produced !== size) throw corrupt(`the object at offset ${entry} inflates to ${produced} bytes, not the ${size} its header says`);
  const consumed = inflate.bytesWritten;
  return { consumed, crc: zlib.crc32(w.view(lastFrom, dataStart + consumed), crc) };
}

/** Keeps a delta's first bytes, which hold its base and result sizes. */
class DeltaHead implements Sink {
  private head = Buffer.alloc(0);

  update(data: Buffer): void {
    if (this.head.length < 20) this.head = Buffer.concat([this.head, data.subarray(0, 20 - this.head.length)]);
  }

  sizes(): ReturnType<typeof deltaSizes> {
    try {
      return deltaSizes(this.head);
    } catch {
      return undefined;
    }
  }
}

/** Inflated contents kept for delta resolution, evicted oldest first beyond a byte budget. */
class ContentCache {
  private readonly limit: number;
  private readonly entries = new Map<number, Buffer>();
  private bytes = 0;

  constructor(limit: number) {
    this.limit = limit;
  }

  get(key: number): Buffer | undefined {
    const value = this.entries.get(key);
    if (value) {
      this.entries.delete(key);
      this.entries.set(key, value);
    }
    return value;
  }

  set(key: number, value: Buffer): void {
    const old = this.entries.get(key);
    if (old) {
      this.bytes -= old.length;
      this.entries.delete(key);
    }
    this.entries.set(key, value);
    this.bytes += value.length;
    for (const [k, v] of this.entries) {
      if (this.bytes <= this.limit || k === key) break;
      this.entries.delete(k);
      this.bytes -= v.length;
    }
  }
}

/** Writes a version 2 pack index: fan-out, sorted ids, CRC32s, offsets (large ones in a 64-bit table), checksums. */
function writeIdx(idxPath: string, t: ObjectTable, packChecksum: Buffer): void {
  const oids = t.oids;
  // Sort by the ids' first six bytes as a number (exact in a double), whole ids only on a tie.
  const prefix = new Float64Array(t.count);
  for (let i = 0; i < t.count; i++) prefix[i] = oids.readUIntBE(i * 20, 6);
  const order = new Uint32Array(t.count);
  for (let i = 0; i < t.count; i++) order[i] = i;
  order.sort((a, b) => prefix[a]! - prefix[b]! || oids.compare(oids, b * 20, b * 20 + 20, a * 20, a * 20 + 20));
  for (let i = 1; i < t.count; i++) {
    if (oids.compare(oids, order[i]! * 20, order[i]! * 20 + 20, order[i - 1]! * 20, order[i - 1]! * 20 + 20) === 0) {
      throw corrupt(`the pack holds the object ${oidHex(t, order[i]!)} twice`);
    }
  }
  let large = 0;
  for (let i = 0; i < t.count; i++) if (t.offsets[i]! >= 0x80000000) large++;
  const out = Buffer.alloc(8 + 256 * 4 + t.count * 28 + large * 8 + 40);
  out.writeUInt32BE(0xff744f63, 0);
  out.writeUInt32BE(2, 4);
  const fanout = new Uint32Array(256);
  for (let i = 0; i < t.count; i++) fanout[oids[i * 20]!]!++;
  let running = 0;
  for (let b = 0; b < 256; b++) {
    running += fanout[b]!;
    out.writeUInt32BE(running, 8 + b * 4);
  }
  const idsAt = 8 + 1024;
  const crcsAt = idsAt + t.count * 20;
  const offsetsAt = crcsAt + t.count * 4;
  const largeAt = offsetsAt + t.count * 4;
  let nextLarge = 0;
  for (let k = 0; k < t.count; k++) {
    const i = order[k]!;
    oids.copy(out, idsAt + k * 20, i * 20, i * 20 + 20);
    out.writeUInt32BE(t.crcs[i]!, crcsAt + k * 4);
    const offset = t.offsets[i]!;
    if (offset < 0x80000000) out.writeUInt32BE(offset, offsetsAt + k * 4);
    else {
      out.writeUInt32BE((0x80000000 | nextLarge) >>> 0, offsetsAt + k * 4);
      out.writeBigUInt64BE(BigInt(offset), largeAt + nextLarge * 8);
      nextLarge++;
    }
  }
  const checksumAt = largeAt + large * 8;
  packChecksum.copy(out, checksumAt);
  createHash('sha1').update(out.subarray(0, checksumAt + 20)).digest().copy(out, checksumAt + 20);
  const fd = fs.openSync(idxPath, 'wx', 0o444);
  try {
    for (let at = 0; at < out.length; ) at += fs.writeSync(fd, out, at, out.length - at);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function readFully(fd: number, into: Buffer, position: number): void {
  for (let at = 0; at < into.length; ) {
    const n = fs.readSync(fd, into, at, into.length - at, position + at);
    if (n === 0) throw corrupt(`the pack file ended at ${position + at} bytes while reading it`);
    at += n;
  }
}

function oidHex(t: ObjectTable, index: number): string {
  return t.oids.toString('hex', index * 20, index * 20 + 20);
}

function push<K>(map: Map<K, number[]>, key: K, value: number): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

function corrupt(message: string, cause?: unknown): UserError {
  return new UserError('git_pack_invalid', message, cause === undefined ? {} : { cause });
}

/** zlib's output chunk for an object of `size` bytes: one allocation of the right size, not 16 KiB pieces. */
function outputChunk(size: number): number {
  return Math.min(Math.max(size + 1, 64), 64 << 20);
}
