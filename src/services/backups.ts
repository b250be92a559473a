// A service's backups: the files in its backup folder (admins only: folder 0700, files 0600),
// each written whole before it appears, the newest N kept; the 5-field cron schedules they are
// made on, and the scheduler that runs each one when it is due, on an injected clock.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { UserError } from '../errors.ts';
import { log } from '../log.ts';

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

async function syncDir(dir: string): Promise<void> {
  const handle = await fsp.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Cron schedules

/** A parsed 5-field cron expression (minute hour day-of-month month day-of-week), in UTC. */
export interface CronSchedule {
  readonly source: string;
  readonly minutes: ReadonlySet<number>;
  readonly hours: ReadonlySet<number>;
  readonly days: ReadonlySet<number>;
  readonly months: ReadonlySet<number>;
  /** 0 (Sunday) to 6. */
  readonly weekdays: ReadonlySet<number>;
  /** As cron does: when both day fields are restricted, a day matching either one runs. */
  readonly daysRestricted: boolean;
  readonly weekdaysRestricted: boolean;
}

const CRON_HINT = 'five fields in UTC: minute hour day-of-month month day-of-week, such as "0 3 * * *" (every day at 03:00) or "*/30 * * * 1-5" (every 30 minutes on weekdays); @hourly, @daily, @weekly and @monthly too';

const SHORTHANDS: Record<string, string> = {
  '@yearly': '0 0 1 1 *',
  '@annually': '0 0 1 1 *',
  '@monthly': '0 0 1 * *',
  '@weekly': '0 0 * * 0',
  '@daily': '0 0 * * *',
  '@midnight': '0 0 * * *',
  '@hourly': '0 * * * *',
};

interface CronField {
  name: string;
  min: number;
  max: number;
  /** Names for min, min + 1, ... */
  names?: readonly string[];
}

const FIELDS: readonly CronField[] = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day of month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12, names: ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'] },
  // 7 is Sunday too, as in cron.
  { name: 'day of week', min: 0, max: 7, names: ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] },
];

/** Parses a cron expression; a UserError that says which field is wrong and what one looks like. */
export function parseCron(expression: string): CronSchedule {
  const source = expression.trim();
  const text = SHORTHANDS[source.toLowerCase()] ?? source;
  const parts = text.split(/\s+/).filter((p) => p !== '');
  const bad = (why: string) => new UserError('invalid_cron', `the schedule ${JSON.stringify(expression)} is not a cron expression: ${why}`, { hint: CRON_HINT });
  if (parts.length !== 5) throw bad(`it has ${parts.length} field${parts.length === 1 ? '' : 's'}, not 5`);
  const sets = parts.map((part, i) => parseField(part, FIELDS[i]!, bad));
  const weekdays = new Set([...sets[4]!].map((d) => d % 7));
  const schedule: CronSchedule = {
    source,
    minutes: sets[0]!,
    hours: sets[1]!,
    days: sets[2]!,
    months: sets[3]!,
    weekdays,
    daysRestricted: !parts[2]!.startsWith('*'),
    weekdaysRestricted: !parts[4]!.startsWith('*'),
  };
  if (!nextMatch(schedule, new Date(Date.UTC(2000, 0, 1)))) throw bad('no date matches it (such as the 30th of February)');
  return schedule;
}

/** The first time after `after` (to the minute, strictly later) that `cron` names. */
export function nextRun(cron: CronSchedule | string, after: Date): Date {
  const schedule = typeof cron === 'string' ? parseCron(cron) : cron;
  const found = nextMatch(schedule, after);
  if (!found) throw new Error(`the schedule ${schedule.source} matches no time after ${after.toISOString()}`);
  return found;
}

function parseField(part: string, field: CronField, bad: (why: string) => UserError): Set<number> {
  const values = new Set<number>();
  const where = `the ${field.name} field ${JSON.stringify(part)}`;
  const value = (text: string): number => {
    const names = field.names;
    const named = names?.indexOf(text.toLowerCase()) ?? -1;
    if (names && named >= 0) return named + field.min;
    if (!/^\d+$/.test(text)) throw bad(`${where} has ${JSON.stringify(text)}, which is not a number${names ? ' or a name' : ''}`);
    const n = Number(text);
    if (n < field.min || n > field.max) throw bad(`${where} has ${n}, outside ${field.min}-${field.max}`);
    return n;
  };
  for (const item of part.split(',')) {
    const m = /^([^/]+)(?:\/(.+))?$/.exec(item);
    if (!m) throw bad(`${where} has an empty or malformed item`);
    const [, range, stepText] = m;
    let step = 1;
    if (stepText !== undefined) {
      if (!/^\d+$/.test(stepText) || Number(stepText) < 1) throw bad(`${where} has the step ${JSON.stringify(stepText)}, which is not a whole number of 1 or more`);
      step = Number(stepText);
    }
    let from: number;
    let to: number;
    if (range === '*') {
      from = field.min;
      to = field.max === 7 ? 6 : field.max;
    } else if (range!.includes('-')) {
      const [a, b, ...rest] = range!.split('-');
      if (rest.length || a === '' || b === '') throw bad(`${where} has the range ${JSON.stringify(range)}, which is not FROM-TO`);
      from = value(a!);
      to = value(b!);
      if (from > to) throw bad(`${where} has the range ${range}, which runs backwards`);
    } else {
      from = value(range!);
      // `5/15` is 5, 20, 35, 50, as in cron.
      to = stepText !== undefined ? (field.max === 7 ? 6 : field.max) : from;
    }
    for (let v = from; v <= to; v += step) values.add(v);
  }
  return values;
}

/** The first minute after `after` the schedule matches; undefined when none within 8 years (every date occurs in that). */
function nextMatch(s: CronSchedule, after: Date): Date | undefined {
  const t = new Date(after.getTime());
  t.setUTCSeconds(0, 0);
  t.setUTCMinutes(t.getUTCMinutes() + 1);
  const limit = after.getUTCFullYear() + 8;
  while (t.getUTCFullYear() <= limit) {
    if (!s.months.has(t.getUTCMonth() + 1)) {
      t.setUTCMonth(t.getUTCMonth() + 1, 1);
      t.setUTCHours(0, 0);
      continue;
    }
    if (!dayMatches(s, t)) {
      t.setUTCDate(t.getUTCDate() + 1);
      t.setUTCHours(0, 0);
      continue;
    }
    if (!s.hours.has(t.getUTCHours())) {
      t.setUTCHours(t.getUTCHours() + 1, 0);
      continue;
    }
    if (!s.minutes.has(t.getUTCMinutes())) {
      t.setUTCMinutes(t.getUTCMinutes() + 1);
      continue;
    }
    return t;
  }
  return undefined;
}

function dayMatches(s: CronSchedule, t: Date): boolean {
  const day = s.days.has(t.getUTCDate());
  const weekday = s.weekdays.has(t.getUTCDay());
  if (s.daysRestricted && s.weekdaysRestricted) return day || weekday;
  return day && weekday;
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

interface ScheduledJob {
  schedule: CronSchedule;
  job: () => Promise<void>;
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
  #timer: { cancel(): void } | undefined;
  #started = false;

  constructor(options: { clock?: SchedulerClock } = {}) {
    this.#clock = options.clock ?? systemClock;
  }

  /**
   * Runs `job` at every time `cron` names from now on, in place of what `key` (such as
   * `postgres/shop`) had; when it runs next. A bad expression is a UserError, and changes nothing.
   */
  set(key: string, cron: string, job: () => Promise<void>): Date {
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

  /** Stops starting jobs; resolves once the ones running have finished. */
  async stop(): Promise<void> {
    this.#started = false;
    this.#timer?.cancel();
    this.#timer = undefined;
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
      const running = Promise.resolve()
        .then(j.job)
        .then(
          () => {},
          (e: unknown) => log.error('service_backup_failed', { key, error: e }),
        )
        .finally(() => this.#running.delete(key));
      this.#running.set(key, running);
    }
    this.#arm();
  }
}
