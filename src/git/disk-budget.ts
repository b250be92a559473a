// What one push may add to the disk: the app's quota (its repository and build cache together,
// --app-disk-quota) less what they use, and the data dir's free space less what berth keeps free
// (--min-free-disk), whichever is smaller. Measured once per push, under the app's lock; the
// pack receiver holds the pack to it as the bytes arrive.
import { execFile } from 'node:child_process';
import { lstat, statfs } from 'node:fs/promises';
import { promisify } from 'node:util';
import { UserError } from '../errors.ts';
import { formatBytes } from '../push-limits.ts';

const execFileAsync = promisify(execFile);

export interface DiskRules {
  /** Bytes the app's repository and build cache may use together (--app-disk-quota). */
  appQuotaBytes: number;
  /** Bytes kept free on the data dir's file system (--min-free-disk). */
  minFreeBytes: number;
}

export interface DiskBudget {
  /** Bytes the push's pack may take. */
  readonly bytes: number;
  /** The refusal of a pack that has reached `found` bytes, over the budget. */
  refuse(found: number): UserError;
}

export interface DiskUse {
  /** Bytes the app's repository takes. */
  repositoryBytes: number;
  /** Bytes the app's build cache takes. */
  cacheBytes: number;
  /** Bytes free for berth on the data dir's file system. */
  freeBytes: number;
}

/**
 * The budget of a push to `app`, or a UserError `disk_full` / `disk_quota` when it may not
 * start at all: the disk is already below the free space berth keeps, or the app at its quota.
 * A pack beyond the budget is refused with a `git_push_limit` that names the flag.
 */
export function diskBudget(app: string, rules: DiskRules, use: DiskUse): DiskBudget {
  const used = use.repositoryBytes + use.cacheBytes;
  const quotaLeft = rules.appQuotaBytes - used;
  const freeLeft = use.freeBytes - rules.minFreeBytes;
  // Before receive-pack starts the refusal is its own error; once the pack streams it is a push
  // cap like the others (git_push_limit), told to the client in git's terms.
  const quotaError = (found: string, code = 'disk_quota') =>
    new UserError(code, `push refused: ${found} over its quota of ${formatBytes(rules.appQuotaBytes)} set by berth serve --app-disk-quota; nothing was changed`, {
      hint: `delete branches you no longer need (git push REMOTE :BRANCH), or ask the operator to raise --app-disk-quota`,
    });
  const fullError = (found: string, code = 'disk_full') =>
    new UserError(code, `push refused: ${found}, under the ${formatBytes(rules.minFreeBytes)} berth keeps free (berth serve --min-free-disk); nothing was changed`, {
      hint: 'ask the operator to free disk space on the server (or to lower --min-free-disk)',
    });
  const parts = `repository ${formatBytes(use.repositoryBytes)}, build cache ${formatBytes(use.cacheBytes)}`;
  if (freeLeft <= 0) throw fullError(`the server's disk has ${formatBytes(Math.max(0, use.freeBytes))} free`);
  if (quotaLeft <= 0) throw quotaError(`${app} uses ${formatBytes(used)} (${parts}), at or`);
  if (quotaLeft <= freeLeft) {
    return { bytes: quotaLeft, refuse: (found) => quotaError(`this push's pack has reached ${formatBytes(found)}, which with ${app}'s repository (${formatBytes(use.repositoryBytes)}) and build cache (${formatBytes(use.cacheBytes)}) goes`, 'git_push_limit') };
  }
  return { bytes: freeLeft, refuse: (found) => fullError(`the pack has reached ${formatBytes(found)} and the server's disk had ${formatBytes(use.freeBytes)} free`, 'git_push_limit') };
}

/** Bytes free for unprivileged writes on the file system holding `dir`. */
export async function freeBytes(dir: string): Promise<number> {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
}

/**
 * Bytes the files and directories under `dir` take (apparent sizes, symlinks not followed); 0
 * when it does not exist. Measured by `du`, an order of magnitude faster than a walk in Node
 * over a build cache of a hundred thousand files. The caller holds the app's lock, so nothing
 * writes there meanwhile.
 */
export async function directoryBytes(dir: string): Promise<number> {
  try {
    await lstat(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw e;
  }
  const { stdout } = await execFileAsync('du', ['-s', '-b', '--', dir], { maxBuffer: 1 << 20 }).catch((e: unknown) => {
    throw new Error(`measuring ${dir} with du: ${(e as Error).message}`, { cause: e });
  });
  const bytes = Number(/^(\d+)\s/.exec(stdout)?.[1]);
  if (!Number.isSafeInteger(bytes)) throw new Error(`measuring ${dir} with du: unexpected output ${JSON.stringify(stdout.slice(0, 200))}`);
  return bytes;
}
