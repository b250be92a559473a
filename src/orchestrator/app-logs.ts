// An app's logs as one stream: every process container's output (on the swarm scheduler every
// task's, on whatever node it runs) with its timestamp and a `app[type.N]:` prefix, interleaved
// by time; with `follow`, new lines as they come (and the containers a later deploy starts).
import { log } from '../log.ts';
import { LABEL, type ContainerState, type Subscription } from './engine.ts';
import { byDyno, processContainers, type DynoEngine } from './deployment.ts';

export interface LogOptions {
  follow: boolean;
  /** Lines of history to show first. */
  lines: number;
  /** Only this process type. */
  type?: string;
  /** The bare lines, without time and dyno. */
  quiet: boolean;
}

/** How often a followed app is checked for containers a deploy started. */
export const RESCAN_MS = 2_000;

interface LogLine {
  time: string;
  dyno: string;
  text: string;
}

/** Rescans a followed container may miss (it stopped, or left the route's node) before its follow ends: its last lines arrive meanwhile. */
const GONE_RESCANS = 2;

/** Writes the app's logs; with `follow`, keeps going until `signal` aborts. */
export async function writeAppLogs(engine: DynoEngine, app: string, options: LogOptions, write: (line: string) => void | Promise<void>, signal: AbortSignal): Promise<void> {
  const format = (l: LogLine) => (options.quiet ? l.text : `${l.time} app[${l.dyno}]: ${l.text}`);
  const containers = await matching(engine, app, options.type);
  const history: LogLine[] = [];
  // Read side by side; one that cannot be read (removed meanwhile, on a node that stopped answering) is left out.
  const texts = await Promise.allSettled(containers.map((c) => engine.logs(c.id, options.lines, { timestamps: true })));
  texts.forEach((text, i) => {
    const c = containers[i]!;
    if (text.status === 'rejected') return log.info('app_logs_unreadable', { app, container: c.name, error: text.reason });
    for (const line of text.value.split('\n')) if (line) history.push(parseLine(line, dynoOf(c)));
  });
  history.sort((a, b) => compareTimes(a.time, b.time));
  for (const l of options.lines > 0 ? history.slice(-options.lines) : []) await write(format(l));
  if (!options.follow || signal.aborted) return;

  // A container's entry is set before its follow is asked for, so a rescan never follows it twice.
  const followed = new Map<string, { subscription?: Subscription; missed: number }>();
  const follow = async (c: ContainerState, fromStart: boolean) => {
    if (followed.has(c.id)) return;
    const entry: { subscription?: Subscription; missed: number } = { missed: 0 };
    followed.set(c.id, entry);
    let partial = '';
    try {
      entry.subscription = await engine.followLogs(c.id, {
        tail: fromStart ? 10_000 : 0,
        // A promise from `write` (a slow client) holds this container's logs back until it settles.
        onData(data) {
          const lines = (partial + data.toString('utf8')).split('\n');
          partial = lines.pop() ?? '';
          let pending: void | Promise<void> = undefined;
          for (const line of lines) if (line) pending = write(format(parseLine(line, dynoOf(c)))) ?? pending;
          return pending;
        },
      });
    } catch (e) {
      // Gone meanwhile, or its node does not answer: a later rescan tries again while it is listed.
      followed.delete(c.id);
      log.info('app_logs_follow_failed', { app, container: c.name, error: e });
      return;
    }
    if (signal.aborted || !followed.has(c.id)) entry.subscription.stop();
  };
  const unfollow = (id: string) => {
    followed.get(id)?.subscription?.stop();
    followed.delete(id);
  };
  for (const c of containers) await follow(c, false);
  await new Promise<void>((resolve) => {
    let scanning = false;
    const timer = setInterval(() => {
      if (scanning) return; // the last rescan (a slow engine, an SSH connection) is still under way
      scanning = true;
      void matching(engine, app, options.type)
        .then(async (now) => {
          const listed = new Set(now.map((c) => c.id));
          // A Swarm task's log never ends, even once the task has: a follow ends when its container has been gone a while.
          for (const [id, entry] of followed) if (!listed.has(id) && ++entry.missed >= GONE_RESCANS) unfollow(id);
          for (const c of now) {
            const entry = followed.get(c.id);
            if (entry) entry.missed = 0;
            else await follow(c, true);
          }
        })
        .catch(() => {})
        .finally(() => (scanning = false));
    }, RESCAN_MS);
    const stop = () => {
      clearInterval(timer);
      for (const id of [...followed.keys()]) unfollow(id);
      resolve();
    };
    if (signal.aborted) stop();
    else signal.addEventListener('abort', stop, { once: true });
  });
}

async function matching(engine: DynoEngine, app: string, type: string | undefined): Promise<ContainerState[]> {
  const all = await processContainers(engine, app);
  return all.filter((c) => c.running && (!type || c.labels[LABEL.process] === type)).sort(byDyno);
}

function dynoOf(c: ContainerState): string {
  return c.labels[LABEL.dyno] ?? c.name;
}

function parseLine(line: string, dyno: string): LogLine {
  const sp = line.indexOf(' ');
  const clean = line.replace(/\r$/, '');
  if (sp > 0 && /^\d{4}-\d\d-\d\dT/.test(line)) return { time: clean.slice(0, sp), dyno, text: clean.slice(sp + 1) };
  return { time: '', dyno, text: clean };
}

// RFC 3339 times with up to nine fraction digits: compare the seconds, then the fraction as digits.
function compareTimes(a: string, b: string): number {
  const split = (t: string) => {
    const m = /^(.*?)(?:\.(\d+))?Z$/.exec(t);
    return m ? [m[1]!, (m[2] ?? '').padEnd(9, '0')] : [t, ''];
  };
  const [as, af] = split(a);
  const [bs, bf] = split(b);
  return as! < bs! ? -1 : as! > bs! ? 1 : af! < bf! ? -1 : af! > bf! ? 1 : 0;
}
