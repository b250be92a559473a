// The bytes of a pack as the indexer walks it front to back: a growable window over a source of
// chunks (a file, or a push still arriving), hashing every byte once as the indexer releases it.
import type { Hash } from 'node:crypto';

/** Chunks of a pack in order; null at the end. */
export interface PackSource {
  next(): Promise<Buffer | null>;
  /** True when every byte is already there (a file): waiting for more can never block. */
  readonly complete: boolean;
}

const INITIAL_CAPACITY = 4 << 20;

/**
 * Holds the pack from the oldest byte still needed to the newest byte received. `release(x)`
 * says bytes before x are done with: they are hashed then (so the pack's checksum covers
 * exactly what was released) and their room is reused by later chunks.
 */
export class PackWindow {
  private readonly source: PackSource;
  private readonly hash: Hash;
  private buf: Buffer = Buffer.allocUnsafe(INITIAL_CAPACITY);
  private len = 0;
  /** Pack offset of buf[0]. */
  private start = 0;
  private released = 0;
  private ended = false;
  private checksumAt: number | undefined;

  /** `size`: the whole pack's size when known (a file), which places its checksum. */
  constructor(source: PackSource, hash: Hash, size?: number) {
    this.source = source;
    this.hash = hash;
    if (size !== undefined) this.checksumAt = size - 20;
  }

  /**
   * Where the pack's 20-byte checksum starts, once known: from the file's size, or because the
   * last 20 bytes of a pack still arriving are the checksum of everything before them (the
   * client has sent all of it and now waits). Undefined while unknown.
   */
  get trailerAt(): number | undefined {
    return this.checksumAt;
  }

  /** Offset just past the last byte received. */
  get end(): number {
    return this.start + this.len;
  }

  /** Whether the source has no more bytes. */
  get eof(): boolean {
    return this.ended;
  }

  get complete(): boolean {
    return this.source.complete;
  }

  /**
   * Takes one more chunk from the source; false at its end. A pack still arriving also ends when
   * what has come so far closes with its own checksum: the sender is done and waits for an
   * answer, so waiting for more would wait forever (a pack that announced more objects than
   * it holds).
   */
  async fill(): Promise<boolean> {
    if (this.ended) return false;
    if (!this.source.complete && this.endsWithOwnChecksum()) {
      this.checksumAt = this.end - 20;
      this.ended = true;
      return false;
    }
    const chunk = await this.source.next();
    if (chunk === null) {
      this.ended = true;
      return false;
    }
    if (this.len + chunk.length > this.buf.length) this.makeRoom(chunk.length);
    chunk.copy(this.buf, this.len);
    this.len += chunk.length;
    return true;
  }

  /** Fills until `offset` is received or the source ends; whether it was reached. */
  async fillTo(offset: number): Promise<boolean> {
    while (this.end < offset) if (!(await this.fill())) return false;
    return true;
  }

  /** Bytes [from, to) as a view; valid until the next fill. `to` is clamped to what has arrived. */
  view(from: number, to: number): Buffer {
    if (from < this.start) throw new Error(`pack window: ${from} was released (window starts at ${this.start})`);
    return this.buf.subarray(from - this.start, Math.max(from, Math.min(to, this.end)) - this.start);
  }

  /** Hashes bytes up to `offset` and lets their room go. */
  release(offset: number): void {
    if (offset <= this.released) return;
    if (offset > this.end) throw new Error(`pack window: cannot release ${offset}, only ${this.end} received`);
    this.hash.update(this.buf.subarray(this.released - this.start, offset - this.start));
    this.released = offset;
  }

  /**
   * Whether the 20 bytes received after `offset` (all that has come) are the checksum of
   * everything before: then the pack ends there, as far as its sender is concerned.
   */
  isTrailerAt(offset: number): boolean {
    if (this.checksumAt !== undefined) return this.checksumAt === offset;
    if (this.source.complete || this.end - offset !== 20 || this.released !== offset) return false;
    if (!this.endsWithOwnChecksum()) return false;
    this.checksumAt = offset;
    return true;
  }

  private endsWithOwnChecksum(): boolean {
    if (this.end - this.released < 20 || this.end < 32) return false;
    const digest = this.hash.copy().update(this.view(this.released, this.end - 20)).digest();
    return digest.equals(this.view(this.end - 20, this.end));
  }

  private makeRoom(incoming: number): void {
    const keep = this.len - (this.released - this.start);
    let capacity = this.buf.length;
    while (keep + incoming > capacity) capacity *= 2;
    const target = capacity === this.buf.length ? this.buf : Buffer.allocUnsafe(capacity);
    this.buf.copy(target, 0, this.released - this.start, this.len);
    this.buf = target;
    this.start = this.released;
    this.len = keep;
  }
}

/** A pack file from `from` to its end, in chunks of about a megabyte. */
export function fileSource(read: (into: Buffer, position: number) => number, from: number, to: number): PackSource {
  let at = from;
  return {
    complete: true,
    async next() {
      if (at >= to) return null;
      const chunk = Buffer.allocUnsafe(Math.min(1 << 20, to - at));
      const n = read(chunk, at);
      if (n === 0) return null;
      at += n;
      return chunk.subarray(0, n);
    },
  };
}

/** One source after another. */
export function concatSources(first: PackSource, second: PackSource): PackSource {
  let onFirst = true;
  return {
    complete: first.complete && second.complete,
    async next() {
      if (onFirst) {
        const chunk = await first.next();
        if (chunk !== null) return chunk;
        onFirst = false;
      }
      return second.next();
    },
  };
}
