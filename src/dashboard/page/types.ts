// The JSON the dashboard's API answers, as docs/dashboard.md and the server's contract describe it.

export interface Session {
  key: string;
  admin: boolean;
  /** The apps a scoped key may reach; null for an admin (every app). */
  apps: string[] | null;
  csrf: string;
  version: string;
  domain: string;
  expiresAt: string;
}

export interface Domain {
  host: string;
  https: boolean;
  expiresAt: string | null;
  lastError: string | null;
  auto: boolean;
}

export interface ProcessCount {
  type: string;
  count: number;
  running: number;
}

export interface AppSummary {
  name: string;
  url: string | null;
  current: number | null;
  deploying: boolean;
  processes: ProcessCount[];
  domains: Domain[];
}

export interface Release {
  number: number;
  description: string;
  builder: string;
  by: string;
  createdAt: string;
  current: boolean;
  pruned: boolean;
}

export interface Container {
  id: string;
  type: string;
  release: number;
  state: string;
  startedAt: string;
}

export interface AppDetail extends AppSummary {
  releases: Release[];
  containers: Container[];
  config: string[];
}

export interface MetricsPoint {
  t: number;
  rps: number;
  p50: number | null;
  p95: number | null;
  p99: number | null;
  errors: number;
}

export interface Metrics {
  step: number;
  points: MetricsPoint[];
}

export interface Service {
  kind: string;
  name: string;
  status: string;
  links: string[];
  /** Null for a key that is not an admin's: backups are for admins. */
  backups: Array<{ name: string; size: number; createdAt: string }> | null;
}

export interface RunResult {
  exitCode: number;
  output: string;
}

export interface DeployStart {
  by: string;
  startedAt: string;
}

export interface DeployEnd {
  ok: boolean;
  release?: number;
  error?: string;
}
