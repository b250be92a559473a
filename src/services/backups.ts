// A service's backups: the files in its backup folder (admins only: folder 0700, files 0600),
// each written whole before it appears, the newest N kept; and the scheduler that makes them when
// their cron schedules (cron.ts, re-exported here) say, on an injected clock.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { UserError } from '../errors.ts';
import { log } from '../log.ts';
import { syncDir } from '../state/atomic-file.ts';
import { nextRun, parseCron, type CronSchedule } from './cron.ts';

export { nextRun, parseCron, type CronSchedule } from './cron.ts';

/** How many backups of a service are kept when nothing else is said. */
export const DEFAULT_BACKUPS_KEPT = 7;

export interface BackupFile {
  /** The file's name, as `backup-restore` takes it. */
  name: string;
  path: string;
  bytes: number;
  /** When it was written. */
  createdAt: Date;
}

/** The backup folder of one service. */
export class BackupStore {
  readonly dir: string;
  /** The newest this many are kept; older ones are removed after each new backup. */
  readonly keep: number;

  constructor(dir: string, keep = DEFAULT_BACKUPS_KEPT) {
    if (!Number.isInteger(keep) || keep < 1) throw new Error(`a backup store keeps at least one backup, not ${keep}`);
    this.dir = dir;
    this.keep = keep;
  }

  /** The backups, newest first; none when the folder does not exist yet. */
  async list(): Promise<BackupFile[]> {
    let names: string[];
    try {
      names = await fsp.readdir(this.dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
    const files: BackupFile[] = [];
    // Names starting with a dot are backups still being written.
    for (const name of names.filter((n) => !n.startsWith('.'))) {
      const file = path.join(this.dir, name);
      const stat = await fsp.stat(file).catch(() => undefined);
      if (stat?.isFile()) files.push({ name, path: file, bytes: stat.size, createdAt: stat.mtime });
    }
    return files.sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (a.name < b.name ? 1 : a.name > b.name ? -1 : 0));
  }

  /** The backup named `name`; a UserError naming the ones there are when there is none. */
  async find(name: string): Promise<BackupFile> {
    const files = await this.list();
    const found = files.find((f) => f.name === name);
    if (!found) {
      throw new UserError('backup_not_found', `there is no backup named ${JSON.stringify(name)}`, {
        hint: files.length ? `the backups, newest first: ${files.map((f) => f.name).join(', ')}` : 'there are no backups of it yet: make one with its backup command',
      });
    }
    return found;
  }

  /**
   * A new backup `SERVICE-YYYYMMDD-HHMMSS.EXT` (UTC, `now`), its content written by `write` into
   * a hidden file that becomes the backup once complete and on disk; then the oldest beyond
   * `keep` are removed. A failed write leaves nothing behind.
   */
  async create(service: string, extension: string, now: Date, write: (out: Writable) => Promise<void>): Promise<BackupFile> {
    await fsp.mkdir(this.dir, { recursive: true, mode: 0o700 });
    await fsp.chmod(this.dir, 0o700);
    const stamp = now.toISOString().replace(/\.\d+Z$/, '').replace(/[-:]/g, '').replace('T', '-');
    let name = `${service}-${stamp}${extension}`;
    for (let n = 2; fs.existsSync(path.join(this.dir, name)); n++) name = `${service}-${stamp}-${n}${extension}`;
    const final = path.join(this.dir, name);
    const partial = path.join(this.dir, `.${name}.partial`);
    const out = fs.createWriteStream(partial, { flags: 'wx', mode: 0o600 });
    const closed = new Promise<void>((resolve, reject) => {
      out.once('close', resolve);
      out.once('error', reject);
    });
    try {
      try {
        await write(out);
      } finally {
        out.end();
      }
      await closed;
      // Its data on disk before its name says it is a backup (fsync through any descriptor of it).
      const handle = await fsp.open(partial, 'r');
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
      await fsp.rename(partial, final);
    } catch (e) {
      out.destroy();
      await closed.catch(() => {});
      await fsp.rm(partial, { force: true });
      throw e;
    }
    await syncDir(this.dir);
    const stat = await fsp.stat(final);
    await this.prune();
    return { name, path: final, bytes: stat.size, createdAt: stat.mtime };
  }

  /** Removes the backups beyond the newest `keep`; their names. */
  async prune(): Promise<string[]> {
    const old = (await this.list()).slice(this.keep);
    for (const f of old) await fsp.rm(f.path, { force: true });
    if (old.length) log.info('service_backups_pruned', { dir: this.dir, removed: old.map((f) => f.name) });
    return old.map((f) => f.name);
  }
}

// ---------------------------------------------------------------------------------------------
// The scheduler

/** The time and timers the scheduler runs on: the system's, or a test's. */
export interface SchedulerClock {
  now(): number;
  setTimer(ms: number, fire: () => void): { cancel(): void };
}

export const systemClock: SchedulerClock = {
  now: () => Date.now(),
  setTimer(ms, fire) {
    const timer = setTimeout(fire, ms);
    // A pending backup never keeps the process alive on its own.
    timer.unref();
    return { cancel: () => clearTimeout(timer) };
  },
};

/**
 * The longest the scheduler sleeps before it looks at the clock again: a wall clock that jumps
 * (NTP, a suspended machine) delays a backup by at most this much.
 */
const MAX_SLEEP_MS = 60_000;

/** A scheduled job; `signal` aborts when the scheduler stops (the daemon shuts down). */
export type BackupJob = (signal: AbortSignal) => Promise<void>;

interface ScheduledJob {
  schedule: CronSchedule;
  job: BackupJob;
  /** When it is due next, ms since the epoch. */
  next: number;
}

/**
 * Runs each scheduled job (a service's backup) when its cron schedule says. A job still running
 * when it is due again is not started twice; one that fails is logged and runs again next time.
 */
export class BackupScheduler {
  readonly #clock: SchedulerClock;
  readonly #jobs = new Map<string, ScheduledJob>();
  /** The jobs running now, by key (also one whose schedule was changed or removed meanwhile). */
  readonly #running = new Map<string, Promise<void>>();
  /** Aborts the jobs running now: stop() does not wait for a long dump to finish. */
  readonly #aborts = new Map<string, AbortController>();
  #timer: { cancel(): void } | undefined;
  #started = false;

  constructor(options: { clock?: SchedulerClock } = {}) {
    this.#clock = options.clock ?? systemClock;
  }

  /**
   * Runs `job` at every time `cron` names from now on, in place of what `key` (such as
   * `postgres/shop`) had; when it runs next. A bad expression is a UserError, and changes nothing.
   */
  set(key: string, cron: string, job: BackupJob): Date {
    const schedule = parseCron(cron);
    const next = nextRun(schedule, new Date(this.#clock.now())).getTime();
    this.#jobs.set(key, { schedule, job, next });
    this.#arm();
    return new Date(next);
  }

  remove(key: string): void {
    this.#jobs.delete(key);
    this.#arm();
  }

  /** When `key` runs next; undefined when it has no schedule. */
  nextRunOf(key: string): Date | undefined {
    const j = this.#jobs.get(key);
    return j ? new Date(j.next) : undefined;
  }

  start(): void {
    this.#started = true;
    this.#arm();
  }

  /** Stops starting jobs, aborts the ones running (a backup cut off leaves no file); resolves once they have ended. */
  async stop(): Promise<void> {
    this.#started = false;
    this.#timer?.cancel();
    this.#timer = undefined;
    for (const a of this.#aborts.values()) a.abort(new Error('berth is stopping'));
    await this.idle();
  }

  /** Resolves once no job is running. */
  async idle(): Promise<void> {
    while (this.#running.size) await Promise.all(this.#running.values());
  }

  #arm(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    if (!this.#started || this.#jobs.size === 0) return;
    const earliest = Math.min(...[...this.#jobs.values()].map((j) => j.next));
    const wait = Math.min(Math.max(0, earliest - this.#clock.now()), MAX_SLEEP_MS);
    this.#timer = this.#clock.setTimer(wait, () => this.#fire());
  }

  #fire(): void {
    this.#timer = undefined;
    const now = this.#clock.now();
    for (const [key, j] of this.#jobs) {
      if (j.next > now) continue;
      // A late wake-up runs a job once, then goes on from now: missed times are not made up.
      j.next = nextRun(j.schedule, new Date(now)).getTime();
      if (this.#running.has(key)) {
        log.warn('service_backup_skipped', { key, reason: 'the previous one is still running' });
        continue;
      }
      const abort = new AbortController();
      const running = Promise.resolve()
        .then(() => j.job(abort.signal))
        .then(
          () => {},
          (e: unknown) => (abort.signal.aborted ? log.info('service_backup_cancelled', { key, reason: 'berth is stopping' }) : log.error('service_backup_failed', { key, error: e })),
        )
        .finally(() => {
          this.#running.delete(key);
          this.#aborts.delete(key);
        });
      this.#aborts.set(key, abort);
      this.#running.set(key, running);
    }
    this.#arm();
  }
}
