// What an app carries besides its releases (config vars, scale, buildpacks, stack, limits, checks,
// mounts) and what a release records beyond its image: the shapes, their defaults, their checks,
// and the migration of app documents from schema 1.
import { defaultCheckSettings, parseCheckSettings, type CheckSettings } from './check-settings.ts';
import { check } from './json-document.ts';

export type BuilderName = 'dockerfile' | 'buildpacks' | 'image';
export const BUILDERS: readonly BuilderName[] = ['dockerfile', 'buildpacks', 'image'];

/** Memory in bytes, CPUs (0.5 = half a core) and processes; absent means the server's default (--container-memory, --container-pids; no CPU limit). */
export interface ResourceLimit {
  memory?: number;
  cpus?: number;
  pids?: number;
}

/** Where a process type's tasks may run on the swarm scheduler: Swarm's constraints and spread preferences. */
export interface ProcessPlacement {
  /** node.labels.zone==a, node.role!=manager ... */
  constraints: string[];
  /** node.labels.zone ...: tasks spread evenly over the values. */
  spread: string[];
}

export interface AppSettings {
  /** Config vars, given to every process and to buildpacks through ENV_DIR. */
  config: Record<string, string>;
  /** How many containers of each process type run (ps:scale); a type not listed runs 1 if web, else 0. */
  formation: Record<string, number>;
  /** Buildpack URLs set with buildpacks:set/add, in order; empty means `.buildpacks` or detection. */
  buildpacks: string[];
  /** Stack image for this app's buildpack builds (buildpacks:set-stack); undefined means --stack-image. */
  stack: string | undefined;
  /** Per process type, or `*` for every type without its own entry. */
  limits: Record<string, ResourceLimit>;
  /** Bind mounts, `/host/path:/container/path[:ro]`. */
  mounts: string[];
  /** Set by ps:stop: nothing runs and a restarted daemon starts nothing until ps:start. */
  stopped: boolean;
  /** Deploy checks: checks:disable, checks:skip, checks:set. Absent in older documents: the defaults. */
  checks: CheckSettings;
  /** Per process type (ps:set APP TYPE placement ...), on the swarm scheduler. Absent in older documents: none. */
  placement: Record<string, ProcessPlacement>;
}

export interface ReleaseDetails {
  /** Config vars the release's containers get. */
  config: Record<string, string>;
  /** Process types (Procfile, else the buildpack's defaults); '' runs the image's own command. */
  processTypes: Record<string, string>;
  /** What made the release: "Deploy 1a2b3c4", "Set FOO", "Rollback to v3". */
  description: string;
  /**
   * The `healthchecks` of the app.json it was built from (process type → checks as written,
   * validated when it was made), so a rollback or a config change checks with the release's own.
   */
  healthchecks?: Record<string, unknown[]>;
}

export function defaultSettings(): AppSettings {
  return { config: {}, formation: {}, buildpacks: [], stack: undefined, limits: {}, mounts: [], stopped: false, checks: defaultCheckSettings(), placement: {} };
}

export function parseSettings(raw: Record<string, unknown>): AppSettings {
  const limits: Record<string, ResourceLimit> = {};
  for (const [type, v] of Object.entries(check.object(raw.limits, 'limits'))) {
    const o = check.object(v, `limits.${type}`);
    limits[type] = {
      ...(o.memory !== undefined ? { memory: check.number(o.memory, `limits.${type}.memory`) } : {}),
      ...(o.cpus !== undefined ? { cpus: check.number(o.cpus, `limits.${type}.cpus`) } : {}),
      ...(o.pids !== undefined ? { pids: check.number(o.pids, `limits.${type}.pids`) } : {}),
    };
  }
  return {
    config: stringMap(raw.config, 'config'),
    formation: numberMap(raw.formation, 'formation'),
    buildpacks: check.array(raw.buildpacks, 'buildpacks').map((b, i) => check.string(b, `buildpacks[${i}]`)),
    stack: check.optionalString(raw.stack, 'stack'),
    limits,
    mounts: check.array(raw.mounts, 'mounts').map((m, i) => check.string(m, `mounts[${i}]`)),
    stopped: raw.stopped === true,
    checks: parseCheckSettings(raw.checks),
    placement: parsePlacement(raw.placement),
  };
}

function parsePlacement(raw: unknown): Record<string, ProcessPlacement> {
  const out: Record<string, ProcessPlacement> = {};
  if (raw === undefined || raw === null) return out;
  for (const [type, v] of Object.entries(check.object(raw, 'placement'))) {
    const o = check.object(v, `placement.${type}`);
    out[type] = {
      constraints: check.array(o.constraints ?? [], `placement.${type}.constraints`).map((c, i) => check.string(c, `placement.${type}.constraints[${i}]`)),
      spread: check.array(o.spread ?? [], `placement.${type}.spread`).map((c, i) => check.string(c, `placement.${type}.spread[${i}]`)),
    };
  }
  return out;
}

export function parseReleaseDetails(o: Record<string, unknown>, what: string): ReleaseDetails & { builder: BuilderName } {
  const builder = check.string(o.builder, `${what}.builder`);
  if (!(BUILDERS as readonly string[]).includes(builder)) throw new Error(`${what}.builder "${builder}" is unknown`);
  return {
    builder: builder as BuilderName,
    config: stringMap(o.config, `${what}.config`),
    processTypes: stringMap(o.processTypes, `${what}.processTypes`),
    description: check.string(o.description, `${what}.description`),
    ...(o.healthchecks === undefined || o.healthchecks === null ? {} : { healthchecks: healthchecksOf(o.healthchecks, `${what}.healthchecks`) }),
  };
}

function healthchecksOf(v: unknown, what: string): Record<string, unknown[]> {
  const out: Record<string, unknown[]> = {};
  for (const [type, list] of Object.entries(check.object(v, what))) out[type] = check.array(list, `${what}.${type}`);
  return out;
}

/**
 * Schema 1 → 2: apps gain settings (empty), releases gain an empty config snapshot, the image's
 * own command as their web process, and a description.
 */
export function migrateAppFrom1(raw: Record<string, unknown>): Record<string, unknown> {
  const releases = check.array(raw.releases, 'releases').map((r, i) => {
    const o = check.object(r, `releases[${i}]`);
    const commit = typeof o.commit === 'string' ? o.commit : '';
    return { config: {}, processTypes: { web: '' }, description: `Deploy ${commit.slice(0, 7)}`, ...o };
  });
  const s = defaultSettings();
  return { ...s, stack: null, ...raw, releases };
}

function stringMap(v: unknown, what: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(check.object(v, what))) out[k] = check.string(x, `${what}.${k}`);
  return out;
}

function numberMap(v: unknown, what: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, x] of Object.entries(check.object(v, what))) out[k] = check.number(x, `${what}.${k}`);
  return out;
}
