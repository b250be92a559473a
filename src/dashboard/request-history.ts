// Each app's request rate, 5xx rate and latency quantiles over the last 30 minutes at 10 s steps,
// for the dashboard's charts: taken from berth's own metrics (the proxy's request counter and
// latency histogram, the same families /metrics exports), sampled every step, as differences.
import { log } from '../log.ts';
import type { MetricFamily } from '../metrics/registry.ts';

export const STEP_MS = 10_000;
/** Points kept per app: 30 minutes. */
export const POINTS_KEPT = 180;

export interface Point {
  /** When the step ended, ms since the epoch. */
  t: number;
  rps: number;
  /** Latency quantiles in ms; null when no request ended in the step. */
  p50: number | null;
  p95: number | null;
  p99: number | null;
  /** 5xx answers per second. */
  errors: number;
}

/** What one app's counters were at one sample. */
interface Totals {
  requests: number;
  errors: number;
  /** Cumulative bucket counts by upper bound (seconds; Infinity last). */
  buckets: Map<number, number>;
}

const REQUESTS = 'berth_http_requests_total';
const DURATION = 'berth_http_request_duration_seconds';

export class RequestHistory {
  /** By app id, so that a new app of a destroyed one's name starts with no history of its own. */
  readonly #points = new Map<string, Point[]>();
  /** The id of the app called `name` now; undefined: no such app (its series are left out). */
  readonly #idOf: (name: string) => string | undefined;

  constructor(idOf: (name: string) => string | undefined) {
    this.#idOf = idOf;
  }

  #last: { t: number; totals: Map<string, Totals> } | undefined;
  #timer: NodeJS.Timeout | undefined;

  /** Samples `gather()` every step until stop(). */
  start(gather: () => Promise<MetricFamily[]>, now: () => number = Date.now): void {
    const tick = () =>
      gather().then(
        (families) => this.sample(families, now()),
        (e: unknown) => log.warn('dashboard_metrics_failed', { error: e }),
      );
    void tick();
    this.#timer = setInterval(tick, STEP_MS);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** Adds a point per app: what its counters did since the previous sample (none for the first sample). */
  sample(families: readonly MetricFamily[], t: number): void {
    // No answer from the proxy this time (restarting, or too slow): the step is skipped, not zeroed.
    if (!families.some((f) => f.name === REQUESTS)) return;
    const totals = totalsOf(families);
    const last = this.#last;
    this.#last = { t, totals };
    if (!last || t <= last.t) return;
    const seconds = (t - last.t) / 1000;
    const seen = new Set<string>();
    for (const [app, now] of totals) {
      const id = this.#idOf(app);
      if (id === undefined) continue;
      seen.add(id);
      const before = last.totals.get(app);
      const points = this.#points.get(id) ?? [];
      const buckets = new Map([...now.buckets].map(([le, n]) => [le, since(n, before?.buckets.get(le))]));
      points.push({
        t,
        rps: since(now.requests, before?.requests) / seconds,
        p50: quantile(0.5, buckets),
        p95: quantile(0.95, buckets),
        p99: quantile(0.99, buckets),
        errors: since(now.errors, before?.errors) / seconds,
      });
      if (points.length > POINTS_KEPT) points.splice(0, points.length - POINTS_KEPT);
      this.#points.set(id, points);
    }
    // A destroyed app's history goes with it.
    for (const id of this.#points.keys()) if (!seen.has(id)) this.#points.delete(id);
  }

  /** The points of the app with id `appId`, oldest first. */
  series(appId: string): { step: number; points: Point[] } {
    return { step: STEP_MS / 1000, points: [...(this.#points.get(appId) ?? [])] };
  }
}

// A counter that went down was reset (a new proxy process): all it holds is new.
function since(now: number, before: number | undefined): number {
  return before === undefined || now < before ? now : now - before;
}

/** Prometheus's histogram_quantile over cumulative buckets, in ms. */
export function quantile(q: number, buckets: ReadonlyMap<number, number>): number | null {
  const bounds = [...buckets.keys()].sort((a, b) => a - b);
  const total = buckets.get(Infinity) ?? 0;
  if (total === 0) return null;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const bound of bounds) {
    const count = buckets.get(bound)!;
    if (count >= rank) {
      if (bound === Infinity) return lower * 1000;
      const within = count - below;
      return (lower + (bound - lower) * (within === 0 ? 0 : (rank - below) / within)) * 1000;
    }
    lower = bound;
    below = count;
  }
  return lower * 1000;
}

function totalsOf(families: readonly MetricFamily[]): Map<string, Totals> {
  const totals = new Map<string, Totals>();
  const of = (app: string) => {
    let t = totals.get(app);
    if (!t) totals.set(app, (t = { requests: 0, errors: 0, buckets: new Map() }));
    return t;
  };
  for (const family of families) {
    if (family.name !== REQUESTS && family.name !== DURATION) continue;
    for (const line of family.lines) {
      const sample = parseSample(line);
      if (!sample || sample.labels.app === undefined) continue;
      const t = of(sample.labels.app);
      if (sample.name === REQUESTS) {
        t.requests += sample.value;
        if (sample.labels.code_class === '5xx') t.errors += sample.value;
      } else if (sample.name === `${DURATION}_bucket` && sample.labels.le !== undefined) {
        const le = sample.labels.le === '+Inf' ? Infinity : Number(sample.labels.le);
        t.buckets.set(le, (t.buckets.get(le) ?? 0) + sample.value);
      }
    }
  }
  return totals;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** One sample line of the text format: its name, labels and value. */
export function parseSample(line: string): { name: string; labels: Record<string, string>; value: number } | undefined {
  const m = SAMPLE.exec(line);
  if (!m) return undefined;
  const labels: Record<string, string> = {};
  for (const l of (m[2] ?? '').matchAll(LABEL)) labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
  const value = m[3] === '+Inf' ? Infinity : Number(m[3]);
  return Number.isNaN(value) ? undefined : { name: m[1]!, labels, value };
}
