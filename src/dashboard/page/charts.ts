// Line charts in SVG built with DOM calls (the page's CSP allows no inline style): request rate and
// latency percentiles over the last 30 minutes, one polyline per series, gaps where there is no value.
import { clock, h, s } from './dom.ts';

export interface Series {
  name: string;
  /** A class for the line's colour (style.css: .s1, .s2, .s3). */
  className: string;
  values: Array<number | null>;
}

const W = 360;
const H = 150;
const LEFT = 40;
const RIGHT = 8;
const TOP = 8;
const BOTTOM = 20;
const MAX_WINDOW_MS = 30 * 60_000;
const MIN_WINDOW_MS = 5 * 60_000;

/**
 * A chart of `series` over `times` (ms epoch, ascending): the last 30 minutes to the last point, or
 * less when there is less history (a server up for 2 minutes), so that it does not sit in a corner.
 */
export function lineChart(test: string, label: string, times: number[], series: Series[]): HTMLElement {
  const end = times.length ? times[times.length - 1]! : Date.now();
  const span = Math.min(MAX_WINDOW_MS, Math.max(MIN_WINDOW_MS, times.length ? end - times[0]! : 0));
  const start = end - span;
  let top = 0;
  for (const line of series) for (const v of line.values) if (v !== null && v > top) top = v;
  const max = niceCeiling(top);
  const x = (t: number) => LEFT + ((t - start) / span) * (W - LEFT - RIGHT);
  const y = (v: number) => TOP + (1 - v / max) * (H - TOP - BOTTOM);
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': label, 'data-test': test, 'data-points': times.length }, s('title', {}, label));
  for (const v of [0, max / 2, max]) {
    svg.append(
      s('line', { x1: LEFT, x2: W - RIGHT, y1: y(v), y2: y(v), class: 'grid' }),
      s('text', { x: LEFT - 4, y: y(v) + 4, class: 'axis', 'text-anchor': 'end' }, format(v)),
    );
  }
  svg.append(
    s('text', { x: LEFT, y: H - 4, class: 'axis' }, clock(start)),
    s('text', { x: W - RIGHT, y: H - 4, class: 'axis', 'text-anchor': 'end' }, clock(end)),
  );
  for (const line of series) {
    for (const run of segments(times, line.values)) {
      const points = run.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
      svg.append(run.length === 1 ? s('circle', { cx: x(run[0]![0]), cy: y(run[0]![1]), r: 1.5, class: `dot ${line.className}` }) : s('polyline', { points, class: `line ${line.className}` }));
    }
  }
  if (!times.length) svg.append(s('text', { x: W / 2, y: H / 2, class: 'axis', 'text-anchor': 'middle' }, 'no data yet'));
  const legend = h('div', { class: 'legend' }, ...series.map((line) => h('span', { class: `key ${line.className}` }, line.name)));
  return h('figure', { class: 'chart-box' }, h('figcaption', {}, label), svg, series.length > 1 ? legend : null);
}

/** Runs of consecutive points that have a value. */
function segments(times: number[], values: Array<number | null>): Array<Array<[number, number]>> {
  const runs: Array<Array<[number, number]>> = [];
  let current: Array<[number, number]> = [];
  times.forEach((t, i) => {
    const v = values[i];
    if (v === null || v === undefined || !Number.isFinite(v)) {
      if (current.length) runs.push(current);
      current = [];
    } else current.push([t, v]);
  });
  if (current.length) runs.push(current);
  return runs;
}

/** 1, 2 or 5 times a power of ten, at least `v` (and at least 1, so an idle app has an axis). */
function niceCeiling(v: number): number {
  if (v <= 1) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(v));
  for (const step of [1, 2, 5, 10]) if (step * magnitude >= v) return step * magnitude;
  return 10 * magnitude;
}

function format(v: number): string {
  return v >= 10 || Number.isInteger(v) ? String(Math.round(v)) : v.toFixed(1);
}
