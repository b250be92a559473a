// Backup files, cron schedules and the backup scheduler, fast: the cron parser and nextRun on
// fixed dates, the scheduler on a fake clock, the backup folder on a temp dir (modes, the newest
// N kept, a failed backup leaving nothing). The same backups of real services run in
// service-data-ops.test.ts.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { isUserError } from '../src/errors.ts';
import { setLogSink } from '../src/log.ts';
import { BackupScheduler, BackupStore, nextRun, parseCron, type SchedulerClock } from '../src/services/backups.ts';
import { tempDir } from './helpers/temp.ts';

const logLines: string[] = [];
setLogSink((line) => logLines.push(line));

const at = (iso: string) => new Date(iso);
const next = (cron: string, after: string) => nextRun(cron, at(after)).toISOString();

test('nextRun gives the first matching minute strictly after the time given, in UTC', () => {
  assert.equal(next('0 3 * * *', '2026-12-06T02:59:59Z'), '2026-12-06T03:00:00.000Z');
  assert.equal(next('0 3 * * *', '2026-12-06T03:00:00Z'), '2026-12-07T03:00:00.000Z', 'the time itself does not count');
  assert.equal(next('* * * * *', '2026-12-06T09:20:30.500Z'), '2026-12-06T09:21:00.000Z');
  assert.equal(next('*/15 * * * *', '2026-12-06T09:20:00Z'), '2026-12-06T09:30:00.000Z');
  assert.equal(next('5/20 * * * *', '2026-12-06T09:26:00Z'), '2026-12-06T09:45:00.000Z');
  assert.equal(next('0 0 1 * *', '2026-12-06T00:00:00Z'), '2027-01-01T00:00:00.000Z', 'across a year');
  assert.equal(next('30 4 29 2 *', '2026-03-01T00:00:00Z'), '2028-02-29T04:30:00.000Z', 'the next leap day');
  assert.equal(next('0 12 * * mon-fri', '2026-12-05T13:00:00Z'), '2026-12-07T12:00:00.000Z', 'Saturday to Monday');
  assert.equal(next('0 0 * * 7', '2026-12-01T00:00:00Z'), '2026-12-06T00:00:00.000Z', '7 is Sunday');
  assert.equal(next('0 0 * dec sun', '2027-01-01T00:00:00Z'), '2027-12-05T00:00:00.000Z', 'month and weekday names');
  // Both day fields restricted: either one matching is enough, as in cron.
  assert.equal(next('0 0 13 * fri', '2026-12-06T00:00:00Z'), '2026-12-11T00:00:00.000Z');
  assert.equal(next('0 0 13 * fri', '2026-12-11T00:00:00Z'), '2026-12-13T00:00:00.000Z');
  // One restricted: that one decides.
  assert.equal(next('0 0 13 * *', '2026-12-06T00:00:00Z'), '2026-12-13T00:00:00.000Z');
  assert.equal(next('0 0 */2 * *', '2026-12-30T12:00:00Z'), '2026-12-31T00:00:00.000Z', 'the 1st, 3rd ... 31st');
  assert.equal(next('0 0 */2 * *', '2026-12-31T12:00:00Z'), '2027-01-01T00:00:00.000Z');
  assert.equal(next('15,45 8-9 * * *', '2026-12-06T09:20:00Z'), '2026-12-06T09:45:00.000Z');
  assert.equal(next('@daily', '2026-12-06T09:20:00Z'), '2026-12-07T00:00:00.000Z');
  assert.equal(next('@hourly', '2026-12-06T09:20:00Z'), '2026-12-06T10:00:00.000Z');
  assert.equal(next('@weekly', '2026-12-06T09:20:00Z'), '2026-12-13T00:00:00.000Z');
  assert.equal(next('@monthly', '2026-12-06T09:20:00Z'), '2027-01-01T00:00:00.000Z');
});

test('a bad cron expression is a UserError that says which field is wrong and what one looks like', () => {
  const cases: Array<[string, RegExp]> = [
    ['', /it has 0 fields, not 5/],
    ['0 3 * *', /it has 4 fields, not 5/],
    ['0 3 * * * *', /it has 6 fields, not 5/],
    ['60 * * * *', /minute field "60" has 60, outside 0-59/],
    ['0 24 * * *', /hour field "24" has 24, outside 0-23/],
    ['0 0 0 * *', /day of month field "0" has 0, outside 1-31/],
    ['0 0 * 13 *', /month field "13" has 13, outside 1-12/],
    ['0 0 * * 8', /day of week field "8" has 8, outside 0-7/],
    ['0 0 * * funday', /day of week field "funday" has "funday", which is not a number or a name/],
    ['x * * * *', /minute field "x" has "x", which is not a number$/],
    ['*/0 * * * *', /step "0", which is not a whole number of 1 or more/],
    ['10-5 * * * *', /range 10-5, which runs backwards/],
    ['1-2-3 * * * *', /range "1-2-3", which is not FROM-TO/],
    ['1,,2 * * * *', /empty or malformed item/],
    ['0 0 30 2 *', /no date matches it/],
  ];
  for (const [expression, why] of cases) {
    assert.throws(() => parseCron(expression), (e: unknown) => {
      assert.ok(isUserError(e), expression);
      assert.equal(e.code, 'invalid_cron');
      assert.match(e.message, why, expression);
      assert.match(e.message, new RegExp(`^the schedule ${JSON.stringify(expression).replace(/[*]/g, '\\*')} is not a cron expression`));
      assert.match(e.hint ?? '', /minute hour day-of-month month day-of-week.*"0 3 \* \* \*"/);
      return true;
    });
  }
});

/** A clock whose time moves only when the test says; timers fire as it passes them, in order. */
class FakeClock implements SchedulerClock {
  time: number;
  timers: Array<{ at: number; fire: () => void; cancelled: boolean }> = [];
  constructor(iso: string) {
    this.time = Date.parse(iso);
  }
  now(): number {
    return this.time;
  }
  setTimer(ms: number, fire: () => void) {
    const timer = { at: this.time + ms, fire, cancelled: false };
    this.timers.push(timer);
    return { cancel: () => void (timer.cancelled = true) };
  }
  pending(): number {
    return this.timers.filter((t) => !t.cancelled).length;
  }
  /** Moves the time to `iso`, firing each timer due on the way at its own time. */
  async advanceTo(iso: string): Promise<void> {
    const end = Date.parse(iso);
    // What finished meanwhile settles first, as it would while real time passes.
    await new Promise((resolve) => setImmediate(resolve));
    for (;;) {
      const due = this.timers.filter((t) => !t.cancelled && t.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      due.cancelled = true;
      this.time = Math.max(this.time, due.at);
      due.fire();
      // Let the jobs it started run their synchronous part and settle.
      await new Promise((resolve) => setImmediate(resolve));
    }
    this.time = end;
  }
}

test('the scheduler runs each job at the times its schedule names, and not after it is removed', async () => {
  const clock = new FakeClock('2026-12-06T09:20:30Z');
  const scheduler = new BackupScheduler({ clock });
  const runs: Array<[string, string]> = [];
  const job = (key: string) => async () => void runs.push([key, new Date(clock.now()).toISOString()]);
  assert.equal(scheduler.set('postgres/shop', '*/15 * * * *', job('shop')).toISOString(), '2026-12-06T09:30:00.000Z');
  scheduler.set('redis/cache', '0 10 * * *', job('cache'));
  assert.equal(clock.pending(), 0, 'nothing runs before start()');
  scheduler.start();

  await clock.advanceTo('2026-12-06T09:29:59Z');
  assert.deepEqual(runs, []);
  await clock.advanceTo('2026-12-06T10:05:00Z');
  assert.deepEqual(runs, [
    ['shop', '2026-12-06T09:30:00.000Z'],
    ['shop', '2026-12-06T09:45:00.000Z'],
    ['shop', '2026-12-06T10:00:00.000Z'],
    ['cache', '2026-12-06T10:00:00.000Z'],
  ]);
  assert.equal(scheduler.nextRunOf('postgres/shop')?.toISOString(), '2026-12-06T10:15:00.000Z');
  assert.equal(scheduler.nextRunOf('redis/cache')?.toISOString(), '2026-12-07T10:00:00.000Z');

  scheduler.remove('postgres/shop');
  assert.equal(scheduler.nextRunOf('postgres/shop'), undefined);
  // A new schedule for a key replaces the old one.
  scheduler.set('redis/cache', '30 10 * * *', job('cache'));
  await clock.advanceTo('2026-12-06T11:00:00Z');
  assert.deepEqual(runs.slice(4), [['cache', '2026-12-06T10:30:00.000Z']]);

  await scheduler.stop();
  assert.equal(clock.pending(), 0, 'stop() leaves no timer');
  await clock.advanceTo('2026-12-08T00:00:00Z');
  assert.equal(runs.length, 5, 'nothing runs after stop()');
});

test('the scheduler wakes at least every minute, so a long wait survives a clock that jumps; a job still running is not started twice; a failed one is logged and runs next time', async () => {
  const clock = new FakeClock('2026-12-06T00:00:00Z');
  const scheduler = new BackupScheduler({ clock });
  scheduler.start();
  let finish: (() => void) | undefined;
  const runs: string[] = [];
  let fail = true;
  scheduler.set('postgres/slow', '* * * * *', () => {
    runs.push(new Date(clock.now()).toISOString());
    return new Promise<void>((resolve) => (finish = resolve));
  });
  scheduler.set('postgres/flaky', '0 * * * *', async () => {
    if (fail) {
      fail = false;
      throw new Error('the disk is full');
    }
    runs.push(`flaky ${new Date(clock.now()).toISOString()}`);
  });
  assert.ok(clock.timers.every((t) => t.at - clock.now() <= 60_000));

  // A machine that sleeps through 03:00 (its timers do not fire meanwhile) runs the backup within a minute of waking.
  const jumpy = new FakeClock('2026-12-06T00:00:00Z');
  const woken = new BackupScheduler({ clock: jumpy });
  const nightly: string[] = [];
  woken.set('postgres/nightly', '0 3 * * *', async () => void nightly.push(new Date(jumpy.now()).toISOString()));
  woken.start();
  jumpy.time = Date.parse('2026-12-06T03:10:00Z');
  await jumpy.advanceTo('2026-12-06T03:11:00Z');
  assert.deepEqual(nightly, ['2026-12-06T03:10:00.000Z'], 'run once on waking, late');
  assert.equal(woken.nextRunOf('postgres/nightly')?.toISOString(), '2026-12-07T03:00:00.000Z');
  await woken.stop();

  await clock.advanceTo('2026-12-06T00:03:00Z');
  assert.deepEqual(runs, ['2026-12-06T00:01:00.000Z'], 'due again at 00:02 and 00:03 while still running: skipped');
  assert.equal(logLines.filter((l) => l.includes('"service_backup_skipped"')).length, 2);
  finish!();
  await clock.advanceTo('2026-12-06T00:04:00Z');
  assert.deepEqual(runs, ['2026-12-06T00:01:00.000Z', '2026-12-06T00:04:00.000Z']);
  finish!();

  await clock.advanceTo('2026-12-06T01:00:00Z');
  finish!();
  const failed = logLines.filter((l) => l.includes('"service_backup_failed"'));
  assert.equal(failed.length, 1);
  assert.match(failed[0]!, /postgres\/flaky.*the disk is full/);
  await clock.advanceTo('2026-12-06T02:00:00Z');
  finish!();
  assert.ok(runs.includes('flaky 2026-12-06T02:00:00.000Z'), 'it ran again at the next time');

  assert.throws(() => scheduler.set('postgres/slow', 'every day', async () => {}), (e: unknown) => isUserError(e) && e.code === 'invalid_cron');
  assert.ok(scheduler.nextRunOf('postgres/slow'), 'a bad expression changes nothing');
  scheduler.remove('postgres/slow');
  finish!();
  await scheduler.stop();
});

test('a backup is written whole into a 0700 folder as a 0600 file, the newest N are kept, and a failed one leaves nothing', async () => {
  const dir = path.join(tempDir('backups'), 'services', 'postgres', 'shop', 'backups');
  const store = new BackupStore(dir, 3);
  assert.deepEqual(await store.list(), [], 'no folder yet: no backups');
  const made = [];
  for (let i = 0; i < 5; i++) {
    made.push(await store.create('shop', '.dump', new Date(Date.UTC(2026, 11, 6, 9, 20, i)), async (out) => {
      out.write(`backup ${i}\n`);
    }));
  }
  assert.deepEqual(made.map((f) => f.name), ['shop-20261206-092000.dump', 'shop-20261206-092001.dump', 'shop-20261206-092002.dump', 'shop-20261206-092003.dump', 'shop-20261206-092004.dump']);
  const kept = await store.list();
  assert.deepEqual(kept.map((f) => f.name), ['shop-20261206-092004.dump', 'shop-20261206-092003.dump', 'shop-20261206-092002.dump'], 'the newest 3, newest first');
  assert.equal(fs.readFileSync(kept[0]!.path, 'utf8'), 'backup 4\n');
  assert.equal(kept[0]!.bytes, 9);
  assert.equal(fs.statSync(dir).mode & 0o777, 0o700);
  for (const f of kept) assert.equal(fs.statSync(f.path).mode & 0o777, 0o600);

  const same = await store.create('shop', '.dump', new Date(Date.UTC(2026, 11, 6, 9, 20, 4)), async (out) => void out.write('again\n'));
  assert.equal(same.name, 'shop-20261206-092004-2.dump', 'two in one second get different names');

  await assert.rejects(store.create('shop', '.dump', new Date(Date.UTC(2026, 11, 6, 9, 30)), async (out) => {
    out.write('half a dump');
    throw new Error('pg_dump failed');
  }), /pg_dump failed/);
  assert.deepEqual(fs.readdirSync(dir).sort(), ['shop-20261206-092003.dump', 'shop-20261206-092004-2.dump', 'shop-20261206-092004.dump']);

  assert.equal((await store.find('shop-20261206-092003.dump')).bytes, 9);
  await assert.rejects(store.find('../secret'), (e: unknown) => isUserError(e) && e.code === 'backup_not_found' && /shop-20261206-092004-2\.dump, shop-20261206-092004\.dump, shop-20261206-092003\.dump/.test(e.hint ?? ''));
});

test('stop() aborts a backup that is running (it does not hold the shutdown), and the partial file is removed', async () => {
  const clock = new FakeClock('2026-12-06T00:00:00Z');
  const scheduler = new BackupScheduler({ clock });
  const store = new BackupStore(path.join(tempDir('backup-stop'), 'backups'));
  let writing!: () => void;
  const started = new Promise<void>((resolve) => (writing = resolve));
  // A dump that would go on for ever: it writes, then waits on its signal only.
  scheduler.set('postgres/huge', '* * * * *', (signal) =>
    store.create('huge', '.dump', new Date(clock.now()), async (out) => {
      out.write('PGDMP partial');
      writing();
      await new Promise<void>((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));
    }).then(() => {}),
  );
  scheduler.start();
  await clock.advanceTo('2026-12-06T00:01:00Z');
  await started;
  await scheduler.stop();
  assert.deepEqual(fs.readdirSync(store.dir), [], 'no backup and no partial file left');
  assert.ok(logLines.some((l) => l.includes('"service_backup_cancelled"')));
});
