// berth's metrics: counters, gauges and histograms kept as plain numbers (a request costs a map
// look-up and an addition), rendered in the Prometheus text format only when scraped. Each process
// keeps its own Registry; the supervisor gathers the families of all of them (families() travels
// over IPC as plain data) and writes one exposition (render()).

/** One metric family, ready to print: its header and its sample lines. Plain data (JSON over IPC). */
export interface MetricFamily {
  name: string;
  help: string;
  type: 'counter' | 'gauge' | 'histogram';
  /** Sample lines without the trailing newline, e.g. `berth_x_total{app="a"} 3`. */
  lines: string[];
}

/** Latency buckets, in seconds: 5 ms to 10 s (Prometheus's client defaults). */
export const LATENCY_BUCKETS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Buckets for builds and deploys, in seconds: 1 s to 30 min. */
export const JOB_BUCKETS: readonly number[] = [1, 5, 10, 30, 60, 120, 300, 600, 1800];

interface Metric {
  readonly name: string;
  readonly help: string;
  family(): MetricFamily;
}

/** The metrics of one process. */
export class Registry {
  readonly #metrics: Metric[] = [];
  readonly #collectors: Array<() => void> = [];

  counter(name: string, help: string, labels: readonly string[] = []): Counter {
    return this.#add(new Counter(name, help, labels));
  }

  gauge(name: string, help: string, labels: readonly string[] = []): Gauge {
    return this.#add(new Gauge(name, help, labels));
  }

  histogram(name: string, help: string, labels: readonly string[] = [], buckets: readonly number[] = LATENCY_BUCKETS): Histogram {
    return this.#add(new Histogram(name, help, labels, buckets));
  }

  /** Runs before every scrape: sets gauges whose value is read, not counted (memory, connections). */
  onCollect(collect: () => void): void {
    this.#collectors.push(collect);
  }

  families(): MetricFamily[] {
    for (const collect of this.#collectors) collect();
    return this.#metrics.map((m) => m.family());
  }

  #add<M extends Metric>(metric: M): M {
    if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(metric.name)) throw new Error(`metric name ${metric.name} is not valid`);
    if (this.#metrics.some((m) => m.name === metric.name)) throw new Error(`metric ${metric.name} is registered twice`);
    this.#metrics.push(metric);
    return metric;
  }
}

/** Labelled series of one metric, keyed by their label values joined. */
abstract class Series<S> implements Metric {
  readonly name: string;
  readonly help: string;
  readonly labels: readonly string[];
  protected readonly series = new Map<string, { values: readonly string[]; state: S }>();

  constructor(name: string, help: string, labels: readonly string[]) {
    this.name = name;
    this.help = help;
    this.labels = labels;
  }

  protected get(values: readonly string[], fresh: () => S): S {
    const key = values.length === 1 ? values[0]! : values.join('\u0000');
    let entry = this.series.get(key);
    if (entry === undefined) {
      if (values.length !== this.labels.length) throw new Error(`metric ${this.name} takes ${this.labels.length} label values, got ${values.length}`);
      entry = { values: [...values], state: fresh() };
      this.series.set(key, entry);
    }
    return entry.state;
  }

  abstract family(): MetricFamily;
}

export class Counter extends Series<{ n: number }> {
  inc(values: readonly string[] = [], by = 1): void {
    this.get(values, () => ({ n: 0 })).n += by;
  }

  /** The series of these label values, to add to (`.n += 1`) with no look-up on a hot path. */
  child(values: readonly string[]): { n: number } {
    return this.get(values, () => ({ n: 0 }));
  }

  family(): MetricFamily {
    const lines = [...this.series.values()].map(({ values, state }) => `${this.name}${labelText(this.labels, values)} ${formatValue(state.n)}`);
    return { name: this.name, help: this.help, type: 'counter', lines };
  }
}

export class Gauge extends Series<{ n: number }> {
  set(values: readonly string[], value: number): void {
    this.get(values, () => ({ n: 0 })).n = value;
  }

  inc(values: readonly string[] = [], by = 1): void {
    this.get(values, () => ({ n: 0 })).n += by;
  }

  /** Forgets every series (a gauge set whole on each collect: certificates that were removed go away). */
  clear(): void {
    this.series.clear();
  }

  family(): MetricFamily {
    const lines = [...this.series.values()].map(({ values, state }) => `${this.name}${labelText(this.labels, values)} ${formatValue(state.n)}`);
    return { name: this.name, help: this.help, type: 'gauge', lines };
  }
}

/** One label set's buckets (not cumulative: render() adds them up), sum and count. */
export interface HistogramSeries {
  counts: number[];
  sum: number;
  count: number;
}

export class Histogram extends Series<HistogramSeries> {
  readonly buckets: readonly number[];

  constructor(name: string, help: string, labels: readonly string[], buckets: readonly number[]) {
    super(name, help, labels);
    if (labels.includes('le')) throw new Error(`histogram ${name}: "le" is not a label name it may have`);
    if (buckets.some((b, i) => i > 0 && b <= buckets[i - 1]!)) throw new Error(`histogram ${name}: buckets must increase`);
    this.buckets = buckets;
  }

  observe(values: readonly string[], value: number): void {
    this.observeIn(this.child(values), value);
  }

  /** The series of these label values, for observeIn() with no look-up on a hot path. */
  child(values: readonly string[]): HistogramSeries {
    return this.get(values, () => ({ counts: new Array<number>(this.buckets.length).fill(0), sum: 0, count: 0 }));
  }

  observeIn(s: HistogramSeries, value: number): void {
    // Counted in the first bucket that holds it; render() adds them up (buckets are cumulative).
    const buckets = this.buckets;
    let i = 0;
    while (i < buckets.length && value > buckets[i]!) i++;
    if (i < buckets.length) s.counts[i]!++;
    s.sum += value;
    s.count++;
  }

  family(): MetricFamily {
    const lines: string[] = [];
    for (const { values, state } of this.series.values()) {
      let cumulative = 0;
      for (let i = 0; i < this.buckets.length; i++) {
        cumulative += state.counts[i]!;
        lines.push(`${this.name}_bucket${labelText([...this.labels, 'le'], [...values, formatValue(this.buckets[i]!)])} ${cumulative}`);
      }
      lines.push(`${this.name}_bucket${labelText([...this.labels, 'le'], [...values, '+Inf'])} ${state.count}`);
      lines.push(`${this.name}_sum${labelText(this.labels, values)} ${formatValue(state.sum)}`);
      lines.push(`${this.name}_count${labelText(this.labels, values)} ${state.count}`);
    }
    return { name: this.name, help: this.help, type: 'histogram', lines };
  }
}

/**
 * The exposition (text format 0.0.4) of families from several processes: a family that more than
 * one process has (the per-process ones, labelled by role) is printed once with all their lines.
 */
export function render(families: readonly MetricFamily[]): string {
  const merged = new Map<string, MetricFamily>();
  for (const f of families) {
    const seen = merged.get(f.name);
    if (seen) seen.lines.push(...f.lines);
    else merged.set(f.name, { ...f, lines: [...f.lines] });
  }
  let out = '';
  for (const f of merged.values()) {
    out += `# HELP ${f.name} ${escapeHelp(f.help)}\n# TYPE ${f.name} ${f.type}\n`;
    for (const line of f.lines) out += line + '\n';
  }
  return out;
}

/** `{a="x",b="y"}`, or '' without labels. */
export function labelText(names: readonly string[], values: readonly string[]): string {
  if (names.length === 0) return '';
  let out = '{';
  for (let i = 0; i < names.length; i++) out += `${i > 0 ? ',' : ''}${names[i]}="${escapeLabel(values[i]!)}"`;
  return out + '}';
}

/** A label value in the text format: backslash, double quote and line feed escaped. */
export function escapeLabel(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : '\\' + c));
}

/** HELP text: backslash and line feed escaped. */
function escapeHelp(text: string): string {
  return text.replace(/[\\\n]/g, (c) => (c === '\n' ? '\\n' : '\\\\'));
}

/** A sample value: Go's float syntax for the special values. */
export function formatValue(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (n === Infinity) return '+Inf';
  if (n === -Infinity) return '-Inf';
  return String(n);
}
