// Cron schedules as backups use them: a 5-field expression (minute hour day-of-month month
// day-of-week, with lists, ranges, steps, names and the @daily-style shorthands) parsed once,
// with a UserError that says which field is wrong, and the next time it names, in UTC.
import { UserError } from '../errors.ts';

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
