// The small, shared facts of git's pack format: object type codes, the delta instruction
// format, and how long a zlib stream of n bytes can be.

export const OBJ_COMMIT = 1;
export const OBJ_TREE = 2;
export const OBJ_BLOB = 3;
export const OBJ_TAG = 4;
export const OBJ_OFS_DELTA = 6;
export const OBJ_REF_DELTA = 7;

/** The pack header: "PACK", version, object count. */
export const PACK_HEADER_BYTES = 12;

/** Names by pack type code, as they appear in an object's header ("blob 12\0"). */
export const OBJECT_TYPE_NAMES: readonly string[] = ['', 'commit', 'tree', 'blob', 'tag', '', 'ofs-delta', 'ref-delta'];

/**
 * The two sizes a delta starts with (its base's and its result's) and where its instructions
 * begin, read without touching the rest: a result is checked against the caps before any of it
 * is allocated. Undefined while `delta` ends inside the sizes (a delta still arriving).
 */
export function deltaSizes(delta: Uint8Array): { baseSize: number; resultSize: number; headerLength: number } | undefined {
  let p = 0;
  const varint = (): number | undefined => {
    let value = 0;
    let scale = 1;
    for (;;) {
      if (p >= delta.length) return undefined;
      const c = delta[p++]!;
      value += (c & 0x7f) * scale;
      scale *= 128;
      if (!(c & 0x80)) return value;
      if (scale > 2 ** 53) throw new Error('delta size too large');
    }
  };
  const baseSize = varint();
  const resultSize = baseSize === undefined ? undefined : varint();
  if (baseSize === undefined || resultSize === undefined) return undefined;
  return { baseSize, resultSize, headerLength: p };
}

/**
 * Applies a git delta to its base: two size varints (base, result), then instructions that
 * copy a range of the base or insert literal bytes. Throws on any inconsistency, and before
 * allocating anything when the declared result is larger than `maxResultBytes`.
 */
export function applyDelta(base: Buffer, delta: Buffer, maxResultBytes = Number.MAX_SAFE_INTEGER): Buffer {
  const sizes = deltaSizes(delta);
  if (!sizes) throw new Error('truncated delta header');
  const { baseSize, resultSize } = sizes;
  let p = sizes.headerLength;
  if (baseSize !== base.length) throw new Error(`delta expects a base of ${baseSize} bytes, the base has ${base.length}`);
  if (resultSize > maxResultBytes) throw new DeltaTooLargeError(resultSize);
  const out = Buffer.allocUnsafe(resultSize);
  let o = 0;
  while (p < delta.length) {
    const op = delta[p++]!;
    if (op & 0x80) {
      let offset = 0;
      let size = 0;
      for (let bit = 0; bit < 4; bit++) {
        if (op & (1 << bit)) {
          if (p >= delta.length) throw new Error('truncated copy instruction');
          offset += delta[p++]! * 2 ** (8 * bit);
        }
      }
      for (let bit = 0; bit < 3; bit++) {
        if (op & (0x10 << bit)) {
          if (p >= delta.length) throw new Error('truncated copy instruction');
          size += delta[p++]! << (8 * bit);
        }
      }
      if (size === 0) size = 0x10000;
      if (offset + size > base.length) throw new Error('copy instruction reads past the end of the base');
      if (o + size > resultSize) throw new Error('delta writes past its declared result size');
      base.copy(out, o, offset, offset + size);
      o += size;
    } else if (op !== 0) {
      if (p + op > delta.length) throw new Error('truncated insert instruction');
      if (o + op > resultSize) throw new Error('delta writes past its declared result size');
      delta.copy(out, o, p, p + op);
      p += op;
      o += op;
    } else {
      throw new Error('reserved delta instruction 0');
    }
  }
  if (o !== resultSize) throw new Error(`delta produced ${o} bytes, not the declared ${resultSize}`);
  return out;
}

/** A delta whose declared result is beyond the cap it was applied with. */
export class DeltaTooLargeError extends Error {
  readonly resultSize: number;
  constructor(resultSize: number) {
    super(`the delta declares a result of ${resultSize} bytes`);
    this.name = 'DeltaTooLargeError';
    this.resultSize = resultSize;
  }
}

/** zlib's deflateBound for its default settings: the longest stream deflate writes for n bytes. */
export function deflateBound(n: number): number {
  return n + Math.floor(n / 4096) + Math.floor(n / 16384) + Math.floor(n / 33554432) + 13 + 6 + 64;
}

export interface EntryHeader {
  kind: number;
  size: number;
  headerLength: number;
  baseOffset: number;
  baseOid: Buffer | undefined;
}

/**
 * Parses an entry header: type and size varint, then an ofs-delta's offset or a ref-delta's base id.
 * `b` holds the bytes from the entry on (32 are plenty); undefined means they end inside the
 * header. Throws a plain Error saying what is wrong with a bad header.
 */
export function parseEntryHeader(b: Buffer, offset: number): EntryHeader | undefined {
  let p = 0;
  const next = () => {
    if (p >= b.length) throw TRUNCATED;
    return b[p++]!;
  };
  try {
    return parse();
  } catch (e) {
    if (e === TRUNCATED) return undefined;
    throw e;
  }
  function parse(): EntryHeader {
  let c = next();
  const kind = (c >> 4) & 7;
  let size = c & 15;
  let scale = 16;
  while (c & 0x80) {
    c = next();
    size += (c & 0x7f) * scale;
    scale *= 128;
    if (scale > 2 ** 53) throw new Error(`the object at offset ${offset} declares an impossible size`);
  }
  if (kind === 0 || kind === 5) throw new Error(`the object at offset ${offset} has the invalid type ${kind}`);
  let baseOffset = -1;
  let baseOid: Buffer | undefined;
  if (kind === OBJ_OFS_DELTA) {
    c = next();
    let distance = c & 0x7f;
    while (c & 0x80) {
      c = next();
      distance = (distance + 1) * 128 + (c & 0x7f);
      if (distance > offset) break;
    }
    baseOffset = offset - distance;
    if (distance <= 0 || baseOffset < PACK_HEADER_BYTES) throw new Error(`the delta at offset ${offset} points outside the pack`);
  } else if (kind === OBJ_REF_DELTA) {
    if (p + 20 > b.length) throw TRUNCATED;
    baseOid = b.subarray(p, p + 20);
    p += 20;
  }
  return { kind, size, headerLength: p, baseOffset, baseOid };
  }
}

const TRUNCATED = new Error('truncated entry header');

