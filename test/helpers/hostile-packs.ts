// Hostile packs written byte by byte: a delta whose header declares a huge result, a long delta
// chain, a blob that declares gigabytes in a few KiB of zlib. Each comes with a version 2 index,
// so a test can drop it into a client repository and let the real git push it (git reuses
// packed objects and deltas as they are, CRC-checked, without inflating them).
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { mustRun } from './daemon.ts';

export const OBJ_BLOB = 3;
export const OBJ_OFS_DELTA = 6;

export interface HostileEntry {
  kind: number;
  /** The size the entry's header declares (for a delta: the delta's own size). */
  size: number;
  /** The entry's zlib stream. */
  zlib: Buffer;
  /** For an ofs-delta, the index of its base entry. */
  baseIndex?: number;
  /** The id the index claims for the object (a real one, or a made-up one nobody hashes). */
  oid: Buffer;
}

export interface HostilePack {
  pack: Buffer;
  idx: Buffer;
  /** The pack's name (its checksum in hex). */
  name: string;
  /** Ids of the objects, in pack order, as the index has them. */
  oids: string[];
}

/** A blob entry whose content is `content` (its real id). */
export function blobEntry(content: Buffer): HostileEntry {
  return { kind: OBJ_BLOB, size: content.length, zlib: zlib.deflateSync(content), oid: blobId(content) };
}

/** An ofs-delta entry against the entry at `baseIndex`, with the given instructions and claimed id. */
export function deltaEntry(baseIndex: number, baseSize: number, resultSize: number, instructions: Buffer, oid: Buffer): HostileEntry {
  const delta = Buffer.concat([varint(baseSize), varint(resultSize), instructions]);
  return { kind: OBJ_OFS_DELTA, size: delta.length, zlib: zlib.deflateSync(delta, { level: 9 }), baseIndex, oid };
}

/**
 * `count` deltas against one 64 KiB base, each declaring a result of about `resultBytes` and
 * spelling it out with one-byte "copy the whole base" instructions: a valid delta whose result
 * is 65536 times its size, and whose zlib stream is a few bytes more.
 */
export function deltaBombPack(count: number, resultBytes: number, options: { realIds?: boolean } = {}): HostilePack {
  const base = Buffer.alloc(65536);
  const entries: HostileEntry[] = [blobEntry(base)];
  for (let i = 0; i < count; i++) {
    const copies = Math.ceil(resultBytes / 65536) + i;
    const oid = options.realIds ? zerosId(copies * 65536) : madeUpId(`delta bomb ${i}`);
    entries.push(deltaEntry(0, base.length, copies * 65536, Buffer.alloc(copies, 0x80), oid));
  }
  return buildPack(entries);
}

/** The id of a blob of `size` zero bytes, hashed without holding it. */
function zerosId(size: number): Buffer {
  const hash = createHash('sha1').update(`blob ${size}\0`);
  const chunk = Buffer.alloc(1 << 20);
  for (let left = size; left > 0; left -= chunk.length) hash.update(left >= chunk.length ? chunk : chunk.subarray(0, left));
  return hash.digest();
}

/** A chain of `depth` deltas, each the one before plus a byte; every id is real. */
export function deltaChainPack(depth: number): HostilePack {
  let content = Buffer.from('the base of a long chain\n');
  const entries: HostileEntry[] = [blobEntry(content)];
  for (let i = 0; i < depth; i++) {
    const next = Buffer.concat([content, Buffer.from([0x61 + (i % 26)])]);
    const copy = Buffer.from([0x80 | 0x10 | 0x20, content.length & 0xff, content.length >> 8]);
    entries.push(deltaEntry(i, content.length, next.length, Buffer.concat([copy, Buffer.from([1, next[next.length - 1]!])]), blobId(next)));
    content = next;
  }
  return buildPack(entries);
}

/** A blob whose header declares `declaredBytes` of zeros; its zlib stream holds the first MiB of them. */
export function zlibBombPack(declaredBytes: number): HostilePack {
  return buildPack([{ kind: OBJ_BLOB, size: declaredBytes, zlib: zlib.deflateSync(Buffer.alloc(1 << 20), { level: 9 }), oid: madeUpId('zlib bomb') }]);
}

/** A blob whose header declares `declaredBytes` while its zlib stream inflates to `actualBytes` of zeros. */
export function lyingBlobPack(declaredBytes: number, actualBytes: number): HostilePack {
  return buildPack([{ kind: OBJ_BLOB, size: declaredBytes, zlib: zlib.deflateSync(Buffer.alloc(actualBytes), { level: 9 }), oid: madeUpId('lying blob') }]);
}

/** The pack (header, entries, checksum) and its version 2 index. */
export function buildPack(entries: HostileEntry[]): HostilePack {
  const parts: Buffer[] = [];
  const header = Buffer.alloc(12);
  header.write('PACK', 0, 'latin1');
  header.writeUInt32BE(2, 4);
  header.writeUInt32BE(entries.length, 8);
  parts.push(header);
  let at = 12;
  const offsets: number[] = [];
  const crcs: number[] = [];
  for (const e of entries) {
    const head = [entryHeader(e.kind, e.size)];
    if (e.kind === OBJ_OFS_DELTA) head.push(ofsDistance(at - offsets[e.baseIndex!]!));
    const raw = Buffer.concat([...head, e.zlib]);
    offsets.push(at);
    crcs.push(zlib.crc32(raw));
    parts.push(raw);
    at += raw.length;
  }
  const body = Buffer.concat(parts);
  const checksum = createHash('sha1').update(body).digest();
  const pack = Buffer.concat([body, checksum]);

  const order = entries.map((_, i) => i).sort((a, b) => Buffer.compare(entries[a]!.oid, entries[b]!.oid));
  const n = entries.length;
  const idx = Buffer.alloc(8 + 1024 + n * 28 + 40);
  idx.writeUInt32BE(0xff744f63, 0);
  idx.writeUInt32BE(2, 4);
  const fanout = new Array<number>(256).fill(0);
  for (const e of entries) fanout[e.oid[0]!]!++;
  let running = 0;
  for (let b = 0; b < 256; b++) idx.writeUInt32BE((running += fanout[b]!), 8 + b * 4);
  order.forEach((i, k) => {
    entries[i]!.oid.copy(idx, 8 + 1024 + k * 20);
    idx.writeUInt32BE(crcs[i]!, 8 + 1024 + n * 20 + k * 4);
    idx.writeUInt32BE(offsets[i]!, 8 + 1024 + n * 24 + k * 4);
  });
  checksum.copy(idx, 8 + 1024 + n * 28);
  createHash('sha1').update(idx.subarray(0, idx.length - 20)).digest().copy(idx, idx.length - 20);
  return { pack, idx, name: checksum.toString('hex'), oids: entries.map((e) => e.oid.toString('hex')) };
}

export function blobId(content: Buffer): Buffer {
  return createHash('sha1').update(`blob ${content.length}\0`).update(content).digest();
}

function madeUpId(label: string): Buffer {
  return createHash('sha1').update(label).digest();
}

function entryHeader(kind: number, size: number): Buffer {
  const out = [(kind << 4) | (size % 16)];
  let rest = Math.floor(size / 16);
  while (rest > 0) {
    out[out.length - 1]! |= 0x80;
    out.push(rest % 128);
    rest = Math.floor(rest / 128);
  }
  return Buffer.from(out);
}

function ofsDistance(distance: number): Buffer {
  let n = distance;
  const out = [n & 0x7f];
  while ((n >>= 7) > 0) {
    n--;
    out.unshift(0x80 | (n & 0x7f));
  }
  return Buffer.from(out);
}

function varint(value: number): Buffer {
  const out: number[] = [];
  let n = value;
  while (n >= 128) {
    out.push((n % 128) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Buffer.from(out);
}

/**
 * A client repository `root/name` whose main commit's tree names every object of `hostile`, with
 * its pack and index in the object database as they are: git sends those objects and deltas
 * unchanged.
 */
export function hostileClientRepo(root: string, name: string, hostile: HostilePack): string {
  const dir = path.join(root, name);
  mustRun('git', ['init', '-q', '-b', 'main', dir]);
  const packDir = path.join(dir, '.git', 'objects', 'pack');
  fs.writeFileSync(path.join(packDir, `pack-${hostile.name}.pack`), hostile.pack);
  fs.writeFileSync(path.join(packDir, `pack-${hostile.name}.idx`), hostile.idx);
  const tree = mustRun('git', ['mktree'], { cwd: dir, input: hostile.oids.map((oid, i) => `100644 blob ${oid}\tf${i}\n`).join('') }).trim();
  const env = { ...process.env, GIT_AUTHOR_NAME: 'Mallory', GIT_AUTHOR_EMAIL: 'm@example.test', GIT_COMMITTER_NAME: 'Mallory', GIT_COMMITTER_EMAIL: 'm@example.test' };
  const commit = mustRun('git', ['commit-tree', tree, '-m', name], { cwd: dir, env }).trim();
  mustRun('git', ['update-ref', 'refs/heads/main', commit], { cwd: dir });
  return dir;
}
