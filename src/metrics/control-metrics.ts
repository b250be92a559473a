// The control plane's metrics: route swaps, deploys and builds by result with their durations,
// how long the old release drained after a swap, pushes and the bytes they sent, ACME failures, and when each served certificate expires. The
// events are the ones the control plane logs already (tapLog): one place names each event, so a
// metric and its log line never disagree. test/metrics.test.ts checks that every event named
// here is still logged somewhere in src/.
import { tapLog, type LogFields } from '../log.ts';
import { addProcessMetrics } from './process-metrics.ts';
import { JOB_BUCKETS, Registry } from './registry.ts';

/** The log events the control plane's metrics count. */
export const COUNTED_EVENTS = ['route_swapped', 'old_release_drained', 'deploy_finished', 'build_finished', 'git_push_received', 'certificate_order_failed', 'acme_rate_limited'] as const;

/** Drains after a swap, in seconds: 100 ms to the longest drain-timeout. */
const DRAIN_BUCKETS: readonly number[] = [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

export interface CertificateExpiry {
  name: string;
  notAfter: Date;
}

export class ControlMetrics {
  readonly registry = new Registry();
  readonly #stops: Array<() => void> = [];

  /** `certificates`: what is served now, read on each scrape. */
  constructor(certificates: () => readonly CertificateExpiry[]) {
    const r = this.registry;
    const swaps = r.counter('berth_route_swaps_total', "Swaps of an app's route to a new release's containers, by app.", ['app']);
    const drainSeconds = r.histogram('berth_route_drain_duration_seconds', "From a route swap to the old release's last request or WebSocket ended (or its drain timeout).", [], DRAIN_BUCKETS);
    const deploys = r.counter('berth_deploys_total', 'Deploys (build, release and route swap of a push), by app and result (succeeded, failed, cancelled).', ['app', 'result']);
    const deploySeconds = r.histogram('berth_deploy_duration_seconds', 'How long a deploy took, from its start to its route swap or failure, by result.', ['result'], JOB_BUCKETS);
    const builds = r.counter('berth_builds_total', 'Builds (buildpack or Dockerfile), by app and result (succeeded, failed, cancelled).', ['app', 'result']);
    const buildSeconds = r.histogram('berth_build_duration_seconds', 'How long a build took, by result.', ['result'], JOB_BUCKETS);
    const pushes = r.counter('berth_git_pushes_total', 'Git pushes received (the refs were updated or refused), by app.', ['app']);
    const pushBytes = r.counter('berth_git_push_received_bytes_total', 'Pack bytes git pushes sent, by app.', ['app']);
    const acmeFailures = r.counter('berth_acme_failures_total', 'ACME certificate orders that failed, by reason (error, rate_limited).', ['reason']);
    const expiry = r.gauge('berth_certificate_expiry_timestamp_seconds', 'When the certificate served for a domain expires, in seconds since the Unix epoch.', ['domain']);
    r.onCollect(() => {
      expiry.clear();
      for (const c of certificates()) expiry.set([c.name], Math.floor(c.notAfter.getTime() / 1000));
    });
    this.#stops.push(addProcessMetrics(r, 'control'));
    const text = (fields: LogFields, key: string) => (typeof fields[key] === 'string' ? (fields[key] as string) : '');
    const seconds = (fields: LogFields) => (typeof fields.ms === 'number' ? fields.ms / 1000 : 0);
    this.#stops.push(
      tapLog((event, fields) => {
        switch (event) {
          case 'route_swapped':
            return swaps.inc([text(fields, 'app')]);
          case 'old_release_drained':
            return drainSeconds.observe([], typeof fields.sinceSwapMs === 'number' ? fields.sinceSwapMs / 1000 : 0);
          case 'deploy_finished':
            deploys.inc([text(fields, 'app'), text(fields, 'result')]);
            return deploySeconds.observe([text(fields, 'result')], seconds(fields));
          case 'build_finished':
            builds.inc([text(fields, 'app'), text(fields, 'result')]);
            return buildSeconds.observe([text(fields, 'result')], seconds(fields));
          case 'git_push_received':
            pushes.inc([text(fields, 'app')]);
            return pushBytes.inc([text(fields, 'app')], typeof fields.packBytes === 'number' ? fields.packBytes : 0);
          case 'certificate_order_failed':
            return acmeFailures.inc(['error']);
          case 'acme_rate_limited':
            return acmeFailures.inc(['rate_limited']);
        }
      }),
    );
  }

  stop(): void {
    for (const stop of this.#stops) stop();
  }
}
