// Per-process metrics every berth process reports, labelled with its role: resident memory and
// how late its event loop runs callbacks (sampled by Node, read on each scrape and reset).
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { Role } from '../daemon/messages.ts';
import type { Registry } from './registry.ts';

/** Adds this process's memory and event-loop delay to `registry`; returns the stop of the sampling. */
export function addProcessMetrics(registry: Registry, role: Role): () => void {
  const rss = registry.gauge('berth_process_resident_memory_bytes', 'Resident memory of the berth process, by role.', ['role']);
  const p99 = registry.gauge('berth_process_event_loop_delay_p99_seconds', "The 99th percentile of the process's event-loop delay since the previous scrape.", ['role']);
  const max = registry.gauge('berth_process_event_loop_delay_max_seconds', "The longest event-loop delay of the process since the previous scrape.", ['role']);
  const delay = monitorEventLoopDelay({ resolution: 20 });
  delay.enable();
  registry.onCollect(() => {
    rss.set([role], process.memoryUsage.rss());
    // Nanoseconds; NaN-free when nothing was sampled yet.
    p99.set([role], delay.count > 0 ? delay.percentile(99) / 1e9 : 0);
    max.set([role], delay.count > 0 ? delay.max / 1e9 : 0);
    delay.reset();
  });
  return () => delay.disable();
}
