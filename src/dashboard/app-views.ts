// The apps as the dashboard's API shows them (AppSummary, AppDetail of the contract), read from
// the state and the application layer: releases, processes, domains and their certificates.
import type { Platform } from '../platform/platform.ts';
import type { State } from '../platform/state.ts';

export interface Domain {
  host: string;
  https: boolean;
  expiresAt: string | null;
  lastError: string | null;
  auto: boolean;
}

export interface AppSummary {
  name: string;
  url: string | null;
  current: number | null;
  deploying: boolean;
  processes: Array<{ type: string; count: number; running: number }>;
  domains: Domain[];
}

export interface AppDetail extends AppSummary {
  releases: Array<{ number: number; description: string; builder: string; by: string; createdAt: string; current: boolean; pruned: boolean }>;
  containers: Array<{ id: string; type: string; release: number | null; state: string; startedAt: string | null }>;
  config: string[];
}

export interface AppViewDeps {
  state: State;
  platform: Platform;
  /** Where users reach an app. */
  appUrl(app: string): string;
}

export async function appSummary(deps: AppViewDeps, app: string): Promise<AppSummary> {
  return (await appView(deps, app)).summary;
}

export async function appDetail(deps: AppViewDeps, app: string): Promise<AppDetail> {
  const { summary, containers } = await appView(deps, app);
  const record = deps.state.apps.require(app);
  const releases = await Promise.all(
    [...record.releases]
      .sort((a, b) => b.number - a.number)
      .map(async (r) => ({
        number: r.number,
        description: r.description,
        builder: r.builder,
        by: r.createdBy,
        createdAt: r.createdAt,
        current: r.number === record.current,
        pruned: !(await deps.platform.releases.imageExists(r.image)),
      })),
  );
  return { ...summary, releases, containers, config: Object.keys(record.config).sort() };
}

async function appView(deps: AppViewDeps, app: string): Promise<{ summary: AppSummary; containers: AppDetail['containers'] }> {
  const record = deps.state.apps.require(app);
  const report = await deps.platform.processes.report(app);
  const containers = report.containers.map((c) => ({
    id: c.id.slice(0, 12),
    type: c.dyno.split('.')[0]!,
    release: /^v\d+$/.test(c.release) ? Number(c.release.slice(1)) : null,
    state: c.state,
    startedAt: c.startedAt,
  }));
  const wanted = new Map<string, number>();
  for (const dyno of report.wanted) {
    const type = dyno.split('.')[0]!;
    wanted.set(type, (wanted.get(type) ?? 0) + 1);
  }
  const types = [...new Set([...wanted.keys(), ...containers.map((c) => c.type)])].sort(byWebFirst);
  const processes = types.map((type) => ({
    type,
    count: wanted.get(type) ?? 0,
    running: containers.filter((c) => c.type === type && c.state === 'running' && (record.current === null || c.release === record.current)).length,
  }));
  const domains = deps.platform.certificates.report(app).map((d) => ({
    host: d.domain,
    https: d.certificate !== null,
    expiresAt: d.certificate?.notAfter ?? null,
    lastError: d.attempts.lastError ?? null,
    auto: d.acme === 'on',
  }));
  return {
    summary: { name: record.name, url: record.current === null ? null : deps.appUrl(app), current: record.current, deploying: deps.platform.deploys.running(app), processes, domains },
    containers,
  };
}

function byWebFirst(a: string, b: string): number {
  return a === 'web' ? -1 : b === 'web' ? 1 : a.localeCompare(b);
}
