// Request rate and latency (p50/p95/p99) of the app over the last 30 minutes, re-read every 10 s.
import { getJson } from './api.ts';
import { lineChart } from './charts.ts';
import { fill, h, type Scope } from './dom.ts';
import { errorBox } from './parts.ts';
import type { Metrics } from './types.ts';

const REFRESH_MS = 10_000;

export function metricsPanel(scope: Scope, app: string): HTMLElement {
  const charts = h('div', { class: 'charts' }, h('p', { class: 'muted' }, 'Loading metrics…'));
  const load = async () => {
    try {
      const metrics = await getJson<Metrics>(`/api/apps/${encodeURIComponent(app)}/metrics`);
      if (scope.disposed) return;
      const times = metrics.points.map((p) => p.t);
      fill(
        charts,
        lineChart('chart-rps', 'Requests per second', times, [
          { name: 'requests', className: 's1', values: metrics.points.map((p) => p.rps) },
          { name: '5xx', className: 's3', values: metrics.points.map((p) => p.errors) },
        ]),
        lineChart('chart-latency', 'Latency (ms)', times, [
          { name: 'p50', className: 's1', values: metrics.points.map((p) => p.p50) },
          { name: 'p95', className: 's2', values: metrics.points.map((p) => p.p95) },
          { name: 'p99', className: 's3', values: metrics.points.map((p) => p.p99) },
        ]),
      );
    } catch (e) {
      if (!scope.disposed) fill(charts, errorBox(e));
    }
  };
  void load();
  scope.every(REFRESH_MS, () => void load());
  return h('section', { class: 'panel' }, h('h2', {}, 'Traffic, last 30 minutes'), charts);
}
