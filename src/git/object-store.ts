// Reads objects from a bare repository's object database (loose objects and indexed packs) one
// at a time: an object costs the bytes of its own entry and its delta bases, never a whole pack
// in memory. Also parses the two object kinds berth walks: commits and trees.
import fs from 'node:fs/promises';
import path from 'node:path';
import zlib from 'node:zlib';
import { applyDelta, DeltaTooLargeError, OBJECT_TYPE_NAMES, OBJ_OFS_DELTA, OBJ_REF_DELTA, parseEntryHeader, type EntryHeader } from './pack-format.ts';
import { formatBytes, pushLimitError, pushLimits, type PushLimits } from '../push-limits.ts';

export type ObjectType = 'commit' | 'tree' | 'blob' | 'tag';

export interface GitObject {
  type: ObjectType;
  content: Buffer;
}

export interface TreeEntry {
  mode: string;
  name: string;
  oid: string;
  type: 'blob' | 'tree' | 'commit';
}

/** What reading one object may cost: its inflated size, a delta result's included, and its delta chain. */
export type ReadLimits = Pick<PushLimits, 'objectBytes' | 'deltaDepth'>;

/**
 * The object database of one repository. Pack indexes are loaded on first use and kept;
 * `refresh()` picks up packs added since. Not safe against packs being deleted while reading
 * (berth never deletes them).
 */
export class ObjectStore {
  readonly gitdir: string;
  private readonly limits: ReadLimits;
  private packs: PackReader[] | undefined;

  /** `limits`: the caps an object read here must stay within (default DEFAULT_PUSH_LIMITS's). */
  constructor(gitdir: string, limits?: Partial<ReadLimits>) {
    this.gitdir = gitdir;
    this.limits = pushLimits(limits);
  }

  /** Forgets the known packs, so packs stored since are found. */
  async refresh(): Promise<void> {
    await this.close();
    this.packs = undefined;
  }

  async close(): Promise<void> {
    for (const p of this.packs ?? []) await p.close();
  }

  /** Each indexed pack's name (its checksum in hex) and the ids of its objects. */
  async packIndexes(): Promise<{ name: string; oids(): Generator<string> }[]> {
    return (await this.loadPacks()).map((p) => ({ name: p.name, oids: () => p.oids() }));
  }

  /** The object's type, or undefined when the repository does not have it. Reads headers only. */
  async type(oid: string): Promise<ObjectType | undefined> {
    const loose = await this.readLoose(oid, true);
    if (loose) return loose.type;
    for (const pack of await this.loadPacks()) {
      const offset = pack.find(oid);
      if (offset !== undefined) return pack.typeAt(offset, (base) => this.type(base));
    }
    return undefined;
  }

  /** The object, or undefined when the repository does not have it. */
  async read(oid: string): Promise<GitObject | undefined> {
    const loose = await this.readLoose(oid, false);
    if (loose) return loose;
    for (const pack of await this.loadPacks()) {
      const offset = pack.find(oid);
      if (offset !== undefined) return pack.readAt(offset, (base) => this.read(base));
    }
    return undefined;
  }

  /** Reads an object that must exist and be of `type`; throws saying what was found instead. */
  async expect(oid: string, type: ObjectType): Promise<Buffer> {
    const object = await this.read(oid);
    if (!object) throw new ObjectNotFoundError(oid);
    if (object.type !== type) throw new Error(`object ${oid} is a ${object.type}, not a ${type}`);
    return object.content;
  }

  private async readLoose(oid: string, headerOnly: boolean): Promise<GitObject | undefined> {
    if (!/^[0-9a-f]{40}$/.test(oid)) return undefined;
    let raw: Buffer;
    try {
      raw = await fs.readFile(path.join(this.gitdir, 'objects', oid.slice(0, 2), oid.slice(2)));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
    const data = headerOnly
      ? zlib.inflateSync(raw.subarray(0, 64), { finishFlush: zlib.constants.Z_SYNC_FLUSH })
      : zlib.inflateSync(raw, { maxOutputLength: this.limits.objectBytes + 64 });
    const nul = data.indexOf(0);
    const match = /^(commit|tree|blob|tag) (\d+)$/.exec(data.toString('latin1', 0, nul < 0 ? Math.min(data.length, 32) : nul));
    if (nul < 0 || !match) throw new Error(`loose object ${oid} has a bad header`);
    const content = headerOnly ? Buffer.alloc(0) : data.subarray(nul + 1);
    if (!headerOnly && content.length !== Number(match[2])) throw new Error(`loose object ${oid} is ${content.length} bytes, its header says ${match[2]}`);
    return { type: match[1] as ObjectType, content };
  }

  private async loadPacks(): Promise<PackReader[]> {
    if (this.packs) return this.packs;
    const dir = path.join(this.gitdir, 'objects', 'pack');
    let names: string[];
    try {
      names = (await fs.readdir(dir)).filter((n) => /^pack-[0-9a-f]{40}\.idx$/.test(n)).sort();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') names = [];
      else throw e;
    }
    const packs: PackReader[] = [];
    for (const name of names) packs.push(await PackReader.open(path.join(dir, name), this.limits));
    this.packs = packs;
    return packs;
  }
}

export class ObjectNotFoundError extends Error {
  readonly oid: string;
  constructor(oid: string) {
    super(`object ${oid} is not in the repository`);
    this.name = 'ObjectNotFoundError';
    this.oid = oid;
  }
}

/** The tree id, the parents and the committer's time (seconds) of a commit. */
export function parseCommit(content: Buffer): { tree: string; parents: string[]; committerTime: number } {
  const text = content.toString('utf8', 0, Math.min(content.length, 64 * 1024));
  const headerEnd = text.indexOf('\n\n');
  const headers = (headerEnd < 0 ? text : text.slice(0, headerEnd)).split('\n');
  const tree = /^tree ([0-9a-f]{40})$/.exec(headers[0] ?? '')?.[1];
  if (!tree) throw new Error('commit without a tree line');
  const committer = headers.find((h) => h.startsWith('committer '));
  const time = committer ? /> (\d+) [+-]\d{4}$/.exec(committer)?.[1] : undefined;
  const parents = headers.flatMap((h) => /^parent ([0-9a-f]{40})$/.exec(h)?.[1] ?? []);
  return { tree, parents, committerTime: time ? Number(time) : 0 };
}

/** The object a tag points at. */
export function parseTag(content: Buffer): { object: string; type: string } {
  const text = content.toString('utf8', 0, Math.min(content.length, 1024));
  const match = /^object ([0-9a-f]{40})\ntype (\w+)\n/.exec(text);
  if (!match) throw new Error('tag without object and type lines');
  return { object: match[1]!, type: match[2]! };
}

/** A tree's entries in stored order: `mode SP name NUL 20-byte id`, repeated. */
export function parseTree(content: Buffer): TreeEntry[] {
  const entries: TreeEntry[] = [];
  let p = 0;
  while (p < content.length) {
    const space = content.indexOf(0x20, p);
    const nul = space < 0 ? -1 : content.indexOf(0, space + 1);
    if (space < 0 || nul < 0 || nul + 21 > content.length) throw new Error('truncated tree entry');
    const mode = content.toString('latin1', p, space);
    const name = content.toString('utf8', space + 1, nul);
    const oid = content.toString('hex', nul + 1, nul + 21);
    const type = mode === '40000' || mode === '040000' ? 'tree' : mode === '160000' ? 'commit' : 'blob';
    if (!/^(40000|040000|100644|100755|100664|120000|160000)$/.test(mode)) throw new Error(`tree entry ${JSON.stringify(name)} has the unknown mode ${mode}`);
    entries.push({ mode: mode === '040000' ? '40000' : mode, name, oid, type });
    p = nul + 21;
  }
  return entries;
}

/** One pack and its version 2 index: lookups by id, and objects read entry by entry. */
class PackReader {
  private readonly idx: Buffer;
  private readonly count: number;
  private readonly file: fs.FileHandle;
  private readonly packSize: number;
  private readonly limits: ReadLimits;
  private sortedOffsets: Float64Array | undefined;
  /** The pack's checksum in hex: its name. */
  readonly name: string;

  private constructor(idx: Buffer, file: fs.FileHandle, packSize: number, limits: ReadLimits) {
    this.limits = limits;
    this.name = idx.toString('hex', idx.length - 40, idx.length - 20);
    this.idx = idx;
    this.count = idx.readUInt32BE(8 + 255 * 4);
    this.file = file;
    this.packSize = packSize;
  }

  static async open(idxPath: string, limits: ReadLimits): Promise<PackReader> {
    const idx = await fs.readFile(idxPath);
    if (idx.length < 8 + 1024 + 40 || idx.readUInt32BE(0) !== 0xff744f63 || idx.readUInt32BE(4) !== 2) {
      throw new Error(`${path.basename(idxPath)} is not a version 2 pack index`);
    }
    const file = await fs.open(idxPath.replace(/\.idx$/, '.pack'), 'r');
    const { size } = await file.stat();
    return new PackReader(idx, file, size, limits);
  }

  async close(): Promise<void> {
    await this.file.close().catch(() => undefined);
  }

  /** The ids of the pack's objects, in id order. */
  *oids(): Generator<string> {
    for (let i = 0; i < this.count; i++) yield this.idx.toString('hex', 8 + 1024 + i * 20, 8 + 1024 + i * 20 + 20);
  }

  /** The offset of `oid` in the pack, by binary search within its fan-out bucket. */
  find(oid: string): number | undefined {
    if (!/^[0-9a-f]{40}$/.test(oid)) return undefined;
    const key = Buffer.from(oid, 'hex');
    const first = key[0]!;
    let lo = first === 0 ? 0 : this.idx.readUInt32BE(8 + (first - 1) * 4);
    let hi = this.idx.readUInt32BE(8 + first * 4);
    const ids = 8 + 1024;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const cmp = this.idx.compare(key, 0, 20, ids + mid * 20, ids + mid * 20 + 20);
      if (cmp === 0) return this.offsetAt(mid);
      if (cmp > 0) hi = mid;
      else lo = mid + 1;
    }
    return undefined;
  }

  /** The type at `offset`, following delta bases by their headers alone. */
  async typeAt(offset: number, typeById: (oid: string) => Promise<ObjectType | undefined>): Promise<ObjectType | undefined> {
    let at = offset;
    for (let depth = 0; depth <= this.limits.deltaDepth; depth++) {
      const head = await this.header(at);
      if (head.kind === OBJ_OFS_DELTA) at = head.baseOffset;
      else if (head.kind === OBJ_REF_DELTA) {
        const base = head.baseOid!.toString('hex');
        const local = this.find(base);
        if (local === undefined) return typeById(base);
        at = local;
      } else return OBJECT_TYPE_NAMES[head.kind] as ObjectType;
    }
    throw this.tooDeep(offset);
  }

  /** The object at `offset`, its delta chain applied. */
  async readAt(offset: number, readById: (oid: string) => Promise<GitObject | undefined>): Promise<GitObject> {
    const deltas: Buffer[] = [];
    let at = offset;
    let base: GitObject | undefined;
    for (let depth = 0; !base; depth++) {
      if (depth > this.limits.deltaDepth) throw this.tooDeep(offset);
      const head = await this.header(at);
      if (head.size > this.limits.objectBytes) throw pushLimitError('objectBytes', `the object at offset ${at} inflates to ${formatBytes(head.size)}`, pushLimits(this.limits));
      const data = await this.inflate(at, head.headerLength, head.size);
      if (head.kind === OBJ_OFS_DELTA) {
        deltas.push(data);
        at = head.baseOffset;
      } else if (head.kind === OBJ_REF_DELTA) {
        deltas.push(data);
        const id = head.baseOid!.toString('hex');
        const local = this.find(id);
        if (local !== undefined) at = local;
        else {
          base = await readById(id);
          if (!base) throw new ObjectNotFoundError(id);
        }
      } else {
        base = { type: OBJECT_TYPE_NAMES[head.kind] as ObjectType, content: data };
      }
    }
    let content = base.content;
    try {
      for (let i = deltas.length - 1; i >= 0; i--) content = applyDelta(content, deltas[i]!, this.limits.objectBytes);
    } catch (e) {
      if (e instanceof DeltaTooLargeError) throw pushLimitError('objectBytes', `a delta of the object at offset ${offset} declares a result of ${formatBytes(e.resultSize)}`, pushLimits(this.limits));
      throw e;
    }
    return { type: base.type, content };
  }

  private tooDeep(offset: number): Error {
    return pushLimitError('deltaDepth', `the object at offset ${offset} is more than ${this.limits.deltaDepth} deltas away from a whole object`, pushLimits(this.limits));
  }

  private async header(offset: number): Promise<EntryHeader> {
    const buf = Buffer.alloc(32);
    const { bytesRead } = await this.file.read(buf, 0, 32, offset);
    const head = parseEntryHeader(buf.subarray(0, bytesRead), offset);
    if (!head) throw new Error(`the pack ends inside the object header at offset ${offset}`);
    return head;
  }

  private async inflate(offset: number, headerLength: number, size: number): Promise<Buffer> {
    const end = this.entryEnd(offset);
    const raw = Buffer.allocUnsafe(end - offset - headerLength);
    for (let at = 0; at < raw.length; ) {
      const { bytesRead } = await this.file.read(raw, at, raw.length - at, offset + headerLength + at);
      if (bytesRead === 0) throw new Error(`pack ends inside the object at offset ${offset}`);
      at += bytesRead;
    }
    const out = zlib.inflateSync(raw, { maxOutputLength: Math.max(size, 1) });
    if (out.length !== size) throw new Error(`the object at offset ${offset} inflates to ${out.length} bytes, not ${size}`);
    return out;
  }

  /** Where the entry at `offset` ends: the next entry's offset, or the pack's trailer. */
  private entryEnd(offset: number): number {
    if (!this.sortedOffsets) {
      const offsets = new Float64Array(this.count);
      for (let i = 0; i < this.count; i++) offsets[i] = this.offsetAt(i);
      this.sortedOffsets = offsets.sort();
    }
    const s = this.sortedOffsets;
    let lo = 0;
    let hi = s.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (s[mid]! <= offset) lo = mid + 1;
      else hi = mid;
    }
    return lo < s.length ? s[lo]! : this.packSize - 20;
  }

  private offsetAt(i: number): number {
    const table = 8 + 1024 + this.count * 24;
    const word = this.idx.readUInt32BE(table + i * 4);
    if (!(word & 0x80000000)) return word;
    return Number(this.idx.readBigUInt64BE(table + this.count * 4 + (word & 0x7fffffff) * 8));
  }
}
