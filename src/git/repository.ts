// An app's bare git repository on disk: creating it (with isomorphic-git), its branch and tag refs
// (read, and moved by compare-and-swap), and reading objects: headers here, contents in a child
// process (object-reader.ts). Never runs the system git.
import fs from 'node:fs';
import { mkdir, open, readFile, readdir, rename, rm, rmdir, stat, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import git from 'isomorphic-git';
import { validateAppName } from '../app-name.ts';
import { UserError } from '../errors.ts';
import { sleep } from '../sleep.ts';
import { ObjectReader } from './object-reader.ts';
import { ObjectStore, type ObjectType } from './object-store.ts';
import type { PushLimits } from '../push-limits.ts';

export type { ObjectType } from './object-store.ts';

/** The all-zero object id: "no object" in ref updates (create when old, delete when new). */
export const ZERO_OID = '0'.repeat(40);

/** Only branches and tags live in an app's repository. */
export const REF_PREFIXES = ['refs/heads/', 'refs/tags/'] as const;

export class Repository {
  readonly app: string;
  /** The bare repository's directory, `<reposDir>/<app>.git`. */
  readonly gitdir: string;

  private reader: ObjectReader | undefined;

  private constructor(app: string, gitdir: string) {
    this.app = app;
    this.gitdir = gitdir;
  }

  /**
   * Opens the bare repository of `app` under `reposDir`. With `create`, a missing repository is
   * initialised (bare, HEAD on refs/heads/main); without it, a missing one is a UserError.
   */
  static async open(reposDir: string, app: string, options: { create: boolean }): Promise<Repository> {
    validateAppName(app);
    const gitdir = path.join(path.resolve(reposDir), `${app}.git`);
    const exists = await isFile(path.join(gitdir, 'HEAD'));
    if (!exists) {
      if (!options.create) {
        throw new UserError('git_repository_not_found', `app "${app}" has no git repository`, {
          hint: 'create the app first, or push to it to create it',
        });
      }
      await mkdir(gitdir, { recursive: true, mode: 0o750 });
      await git.init({ fs, dir: gitdir, gitdir, bare: true, defaultBranch: 'main' });
    }
    return new Repository(app, gitdir);
  }

  /** Branches and tags with the object each points at, sorted by name (git's order). */
  async listRefs(): Promise<{ ref: string; oid: string }[]> {
    const found = new Map<string, string>();
    for (const [ref, oid] of await this.readPackedRefs()) found.set(ref, oid);
    for (const prefix of REF_PREFIXES) await this.collectLooseRefs(prefix.slice(0, -1), found);
    const out: { ref: string; oid: string }[] = [];
    for (const [ref, value] of found) {
      const oid = isOid(value) ? value : await this.resolveRef(ref);
      if (oid !== undefined && checkRefName(ref) === undefined) out.push({ ref, oid });
    }
    return out.sort((a, b) => (a.ref < b.ref ? -1 : a.ref > b.ref ? 1 : 0));
  }

  /** The object id a ref (a full name such as `refs/heads/main`, or `HEAD`) points at, if it exists. */
  async resolveRef(ref: string): Promise<string | undefined> {
    let name = ref;
    for (let depth = 0; depth < 5; depth++) {
      const value = await this.readRefValue(name);
      if (value === undefined) return undefined;
      if (isOid(value)) return value;
      if (!value.startsWith('ref: ')) return undefined;
      name = value.slice(5).trim();
    }
    return undefined;
  }

  /** Whether the object database holds `oid` (loose or in an indexed pack). */
  async hasObject(oid: string): Promise<boolean> {
    return (await this.objectType(oid)) !== undefined;
  }

  /**
   * The type of the object `oid`, or undefined when the repository does not have it. Pass a
   * `store` to share loaded pack indexes across calls; it must have been created after the last
   * pack was stored.
   */
  async objectType(oid: string, store?: ObjectStore): Promise<ObjectType | undefined> {
    if (!isOid(oid)) return undefined;
    const objects = store ?? this.objects();
    try {
      return await objects.type(oid);
    } finally {
      if (!store) await objects.close();
    }
  }

  /**
   * A reader of this repository's objects as they are now, on the calling thread; close it when
   * done. For headers (types) only: contents go through `contents()`, off the main thread.
   */
  objects(): ObjectStore {
    return new ObjectStore(this.gitdir);
  }

  /**
   * Moves `ref` from `oldOid` to `newOid` if, and only if, it still points at `oldOid`.
   * An all-zero `oldOid` means the ref must not exist yet; an all-zero `newOid` deletes it.
   * Fails with a UserError: `git_ref_stale` when the ref moved meanwhile, `git_ref_conflict`
   * when the name clashes with another ref (`a` versus `a/b`), `git_ref_locked` when another
   * update holds the ref, `git_ref_invalid` for a bad name or object id.
   */
  async updateRef(ref: string, oldOid: string, newOid: string): Promise<void> {
    const problem = checkRefName(ref);
    if (problem !== undefined) throw new UserError('git_ref_invalid', `invalid ref name ${JSON.stringify(ref)}: ${problem}`);
    if (!isOid(oldOid) || !isOid(newOid)) throw new UserError('git_ref_invalid', `invalid object id in update of ${ref}`);
    const refPath = path.join(this.gitdir, ref);

    if (newOid !== ZERO_OID) {
      // A ref is a file, so "a" and "a/b" cannot both exist (git's directory/file conflict).
      for (const { ref: other } of await this.listRefs()) {
        if (other.startsWith(ref + '/') || ref.startsWith(other + '/')) {
          throw new UserError('git_ref_conflict', `cannot create ${ref}: ${other} exists`);
        }
      }
      try {
        await mkdir(path.dirname(refPath), { recursive: true });
      } catch (e) {
        throw new UserError('git_ref_conflict', `cannot create ${ref}: a ref is in the way`, { cause: e });
      }
    }

    const lock = await LockFile.acquire(refPath, ref);
    try {
      const current = (await this.resolveRef(ref)) ?? ZERO_OID;
      if (current !== oldOid) {
        throw new UserError('git_ref_stale', `${ref} is at ${current}, not ${oldOid}`);
      }
      if (newOid === ZERO_OID) {
        await this.deleteRefFiles(ref, refPath);
        await lock.release();
      } else {
        await removeEmptyDirectory(refPath);
        await lock.commit(`${newOid}\n`);
      }
    } catch (e) {
      await lock.release();
      throw e;
    }
  }

  /** A reader of object contents in a child process, under `limits` (default DEFAULT_PUSH_LIMITS); close it when done. */
  contents(limits?: Partial<PushLimits>): ObjectReader {
    return new ObjectReader(this.gitdir, limits);
  }

  /** The content of the file at `filePath` (slash-separated) in a commit, or undefined when there is none; read off the main thread. */
  async readFileAtCommit(commitOid: string, filePath: string): Promise<Buffer | undefined> {
    this.reader ??= this.contents();
    return this.reader.readFile(commitOid, filePath);
  }

  /** A tar stream of the commit's tree (the Docker build context), made off the main thread; see tree-archive.ts. */
  archive(commitOid: string): Readable {
    this.reader ??= this.contents();
    return this.reader.archive(commitOid);
  }

  private async readRefValue(ref: string): Promise<string | undefined> {
    if (ref !== 'HEAD' && checkRefName(ref) !== undefined) return undefined;
    try {
      return (await readFile(path.join(this.gitdir, ref), 'utf8')).trim();
    } catch (e) {
      if (!isMissing(e)) throw e;
    }
    return (await this.readPackedRefs()).get(ref);
  }

  private async readPackedRefs(): Promise<Map<string, string>> {
    const refs = new Map<string, string>();
    let text: string;
    try {
      text = await readFile(path.join(this.gitdir, 'packed-refs'), 'utf8');
    } catch (e) {
      if (isMissing(e)) return refs;
      throw e;
    }
    for (const line of text.split('\n')) {
      const match = /^([0-9a-f]{40}) (refs\/\S+)$/.exec(line);
      if (match?.[1] !== undefined && match[2] !== undefined) refs.set(match[2], match[1]);
    }
    return refs;
  }

  private async collectLooseRefs(dir: string, into: Map<string, string>): Promise<void> {
    let entries: fs.Dirent[];
    try {
      entries = await readdir(path.join(this.gitdir, dir), { withFileTypes: true });
    } catch (e) {
      if (isMissing(e)) return;
      throw e;
    }
    for (const entry of entries) {
      const name = `${dir}/${entry.name}`;
      if (entry.isDirectory()) await this.collectLooseRefs(name, into);
      else if (entry.isFile() && !entry.name.endsWith('.lock')) {
        try {
          into.set(name, (await readFile(path.join(this.gitdir, name), 'utf8')).trim());
        } catch (e) {
          if (!isMissing(e)) throw e;
        }
      }
    }
  }

  private async deleteRefFiles(ref: string, refPath: string): Promise<void> {
    try {
      await unlink(refPath);
    } catch (e) {
      if (!isMissing(e)) throw e;
    }
    await this.removeFromPackedRefs(ref);
    // Empty directories left by `a/b` would block creating `a` later.
    let dir = path.dirname(refPath);
    const stop = new Set(REF_PREFIXES.map((p) => path.join(this.gitdir, p)));
    while (!stop.has(dir + path.sep) && dir.startsWith(path.join(this.gitdir, 'refs'))) {
      try {
        await rmdir(dir);
      } catch {
        break;
      }
      dir = path.dirname(dir);
    }
  }

  private async removeFromPackedRefs(ref: string): Promise<void> {
    const packedPath = path.join(this.gitdir, 'packed-refs');
    if (!(await this.readPackedRefs()).has(ref)) return;
    const lock = await LockFile.acquire(packedPath, 'packed-refs');
    try {
      const lines = (await readFile(packedPath, 'utf8')).split('\n');
      const kept: string[] = [];
      let dropPeeled = false;
      for (const line of lines) {
        if (line.startsWith('^') && dropPeeled) continue;
        dropPeeled = line.endsWith(` ${ref}`) && line.length === 41 + ref.length;
        if (!dropPeeled) kept.push(line);
      }
      await lock.commit(kept.join('\n'));
    } catch (e) {
      await lock.release();
      throw e;
    }
  }
}

/**
 * Checks a ref name against git's rules (check-ref-format) and berth's own: only
 * `refs/heads/*` and `refs/tags/*`. Returns what is wrong, or undefined when the name is fine.
 */
export function checkRefName(ref: string): string | undefined {
  if (!REF_PREFIXES.some((p) => ref.startsWith(p) && ref.length > p.length)) return 'only refs/heads/* and refs/tags/* can be pushed';
  if (Buffer.byteLength(ref) > 1024) return 'too long';
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x20\x7f~^:?*[\\]/.test(ref)) return 'contains a space, a control character or one of ~^:?*[\\';
  if (ref.includes('..')) return 'contains ".."';
  if (ref.includes('@{')) return 'contains "@{"';
  if (ref.endsWith('/') || ref.endsWith('.')) return 'ends with "/" or "."';
  if (ref === 'refs/heads/HEAD') return 'HEAD is not a branch name';
  for (const component of ref.split('/')) {
    if (component === '') return 'contains an empty path component';
    if (component.startsWith('.')) return 'a path component starts with "."';
    if (component.endsWith('.lock')) return 'a path component ends with ".lock"';
    if (component === '@') return 'a path component is "@"';
  }
  if (ref.includes('\uFFFD')) return 'is not valid UTF-8';
  return undefined;
}

/** Whether `value` is a full SHA-1 object id in lowercase hex. */
export function isOid(value: string): boolean {
  return /^[0-9a-f]{40}$/.test(value);
}

/**
 * git's lock-file protocol: `<file>.lock` is created exclusively, the new content is written
 * into it, and a rename makes the update atomic. A lock older than a minute is left over from
 * a crash (updates take milliseconds) and is broken.
 */
class LockFile {
  private readonly target: string;
  private readonly lockPath: string;
  private readonly handle: FileHandle;
  private done = false;

  private constructor(target: string, handle: FileHandle) {
    this.target = target;
    this.lockPath = `${target}.lock`;
    this.handle = handle;
  }

  static async acquire(target: string, what: string): Promise<LockFile> {
    const lockPath = `${target}.lock`;
    for (let attempt = 0; ; attempt++) {
      try {
        return new LockFile(target, await open(lockPath, 'wx', 0o644));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOTDIR' || (e as NodeJS.ErrnoException).code === 'EISDIR') {
          throw new UserError('git_ref_conflict', `cannot lock ${what}: a ref is in the way`, { cause: e });
        }
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        const age = await stat(lockPath).then((s) => Date.now() - s.mtimeMs, () => 0);
        if (age > 60_000) {
          await rm(lockPath, { force: true });
          continue;
        }
        if (attempt >= 20) {
          throw new UserError('git_ref_locked', `cannot lock ${what}: another update is in progress`, {
            hint: 'try the push again in a moment',
          });
        }
        await sleep(50);
      }
    }
  }

  async commit(content: string): Promise<void> {
    await this.handle.writeFile(content);
    await this.handle.sync();
    await this.handle.close();
    await rename(this.lockPath, this.target);
    this.done = true;
  }

  async release(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.handle.close().catch(() => undefined);
    await rm(this.lockPath, { force: true });
  }
}

/** Removes a tree of empty directories left where a ref file now goes; a file inside is a conflict. */
async function removeEmptyDirectory(p: string): Promise<void> {
  const s = await stat(p).catch(() => undefined);
  if (!s?.isDirectory()) return;
  for (const entry of await readdir(p, { withFileTypes: true })) {
    if (entry.isDirectory()) await removeEmptyDirectory(path.join(p, entry.name));
  }
  try {
    await rmdir(p);
  } catch (e) {
    throw new UserError('git_ref_conflict', `cannot create ${path.basename(p)}: refs exist below it`, { cause: e });
  }
}

async function isFile(p: string): Promise<boolean> {
  return (await stat(p).catch(() => undefined))?.isFile() ?? false;
}

function isMissing(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR';
}
