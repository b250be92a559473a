// An app's deploy checks as Dokku's checks plugin shapes them: which process types skip their
// checks (checks:skip) or deploy without zero downtime (checks:disable), and the properties of
// checks:set (wait, drain-timeout, stop-timeout, attempts, timeout). Kept in the app's document;
// every default is documented where it is declared.
import { UserError } from '../errors.ts';
import { check } from './json-document.ts';

/** Stands for every process type in the disabled and skipped lists, as in Dokku. */
export const ALL_TYPES = '_all_';

/** How long old containers may finish requests in flight (and keep WebSockets) after a swap. Default 30 s, as kamal-proxy's drain. */
export const DEFAULT_DRAIN_TIMEOUT_MS = 30_000;
/** Grace between SIGTERM and SIGKILL when a container stops: Docker's and Dokku's 10 s. */
export const DEFAULT_STOP_TIMEOUT_MS = 10_000;
/** The probation after a swap when the server sets none (--checks-wait): Dokku's 10 s of uptime, served instead of waited for. */
export const DEFAULT_CHECKS_WAIT_MS = 10_000;

export interface CheckSettings {
  /** Process types deployed without zero downtime: their old containers stop before new ones start, unchecked. [ALL_TYPES] for all. */
  disabled: string[];
  /** Process types whose new containers get no checks (still swapped with zero downtime). [ALL_TYPES] for all. */
  skipped: string[];
  /** What checks:set set for the app; absent properties take their defaults. */
  properties: CheckProperties;
}

export interface CheckProperties {
  /** Probation: how long new containers serve while the old ones are kept running, ready to take the route back. ms. */
  wait?: number;
  /** How long a swap waits for requests in flight on the old containers, and how long their WebSockets stay open. ms. */
  drainTimeout?: number;
  /** SIGTERM to SIGKILL when an old container stops. ms (whole seconds). */
  stopTimeout?: number;
  /** Overrides the attempts of every app.json check. */
  attempts?: number;
  /** Overrides the per-attempt timeout of every app.json check. ms. */
  timeout?: number;
}

/** The keys of checks:set, in the order checks:report shows them; `wait-to-retire` is Dokku's name for drain-timeout. */
export const CHECK_PROPERTY_KEYS = ['wait', 'drain-timeout', 'stop-timeout', 'attempts', 'timeout'] as const;
export type CheckPropertyKey = (typeof CHECK_PROPERTY_KEYS)[number];
const ALIASES: Record<string, CheckPropertyKey> = { 'wait-to-retire': 'drain-timeout' };

const FIELD: Record<CheckPropertyKey, keyof CheckProperties> = {
  wait: 'wait',
  'drain-timeout': 'drainTimeout',
  'stop-timeout': 'stopTimeout',
  attempts: 'attempts',
  timeout: 'timeout',
};

/** What one deploy uses: the settings with every default filled in. */
export interface ResolvedChecks {
  isDisabled(type: string): boolean;
  isSkipped(type: string): boolean;
  waitMs: number;
  drainTimeoutMs: number;
  stopTimeoutMs: number;
  attempts: number | undefined;
  timeoutMs: number | undefined;
}

export function defaultCheckSettings(): CheckSettings {
  return { disabled: [], skipped: [], properties: {} };
}

export function resolveChecks(settings: CheckSettings, defaults: { waitMs: number }): ResolvedChecks {
  const p = settings.properties;
  return {
    isDisabled: (type) => listed(settings.disabled, type),
    isSkipped: (type) => listed(settings.skipped, type) && !listed(settings.disabled, type),
    waitMs: p.wait ?? defaults.waitMs,
    drainTimeoutMs: p.drainTimeout ?? DEFAULT_DRAIN_TIMEOUT_MS,
    stopTimeoutMs: p.stopTimeout ?? DEFAULT_STOP_TIMEOUT_MS,
    attempts: p.attempts,
    timeoutMs: p.timeout,
  };
}

/** The canonical key for a checks:set key (aliases resolved), or a UserError listing the keys. */
export function checkPropertyKey(key: string): CheckPropertyKey {
  const k = ALIASES[key] ?? key;
  if ((CHECK_PROPERTY_KEYS as readonly string[]).includes(k)) return k as CheckPropertyKey;
  throw new UserError('unknown_check_property', `unknown checks property "${key}"`, { hint: `the properties are: ${CHECK_PROPERTY_KEYS.join(', ')} (wait-to-retire is drain-timeout)` });
}

/** Sets (or with `value` undefined, clears) one property; returns the new properties. Throws a UserError naming a bad value. */
export function setCheckProperty(properties: CheckProperties, key: string, value: string | undefined): CheckProperties {
  const k = checkPropertyKey(key);
  const next = { ...properties };
  if (value === undefined) delete next[FIELD[k]];
  else next[FIELD[k]] = parsePropertyValue(k, value);
  return next;
}

/** A property's value as checks:report shows it. */
export function formatCheckProperty(key: CheckPropertyKey, properties: CheckProperties): string | undefined {
  const v = properties[FIELD[key]];
  if (v === undefined) return undefined;
  return key === 'attempts' ? String(v) : formatMs(v);
}

export function formatMs(ms: number): string {
  if (ms % 60_000 === 0 && ms >= 600_000) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/**
 * checks:enable, checks:disable, checks:skip on the lists. `types` empty means all of them;
 * `known` (the current release's process types) expands ALL_TYPES when one type leaves it.
 */
export function changeCheckLists(settings: CheckSettings, verb: 'enable' | 'disable' | 'skip', types: readonly string[], known: readonly string[]): CheckSettings {
  const all = types.length === 0;
  const without = (list: string[]) => {
    if (all) return [];
    const expanded = list.includes(ALL_TYPES) ? [...known] : list;
    return expanded.filter((t) => !types.includes(t));
  };
  const plus = (list: string[]) => (all ? [ALL_TYPES] : list.includes(ALL_TYPES) ? list : [...new Set([...list, ...types])].sort());
  if (verb === 'enable') return { ...settings, disabled: without(settings.disabled), skipped: without(settings.skipped) };
  if (verb === 'disable') return { ...settings, disabled: plus(settings.disabled), skipped: without(settings.skipped) };
  return { ...settings, skipped: plus(settings.skipped), disabled: without(settings.disabled) };
}

/** A list as checks:report shows it: `none`, `_all_` or comma-separated types. */
export function formatTypeList(list: readonly string[]): string {
  return list.length === 0 ? 'none' : list.join(',');
}

export function parseCheckSettings(raw: unknown): CheckSettings {
  if (raw === undefined || raw === null) return defaultCheckSettings();
  const o = check.object(raw, 'checks');
  const list = (v: unknown, what: string) => (v === undefined ? [] : check.array(v, what).map((t, i) => check.string(t, `${what}[${i}]`)));
  const properties: CheckProperties = {};
  for (const [key, value] of Object.entries(check.object(o.properties ?? {}, 'checks.properties'))) {
    const field = Object.values(FIELD).find((f) => f === key);
    if (!field) throw new Error(`checks.properties: unknown property "${key}"`);
    properties[field] = check.number(value, `checks.properties.${key}`);
  }
  return { disabled: list(o.disabled, 'checks.disabled'), skipped: list(o.skipped, 'checks.skipped'), properties };
}

// ---------------------------------------------------------------------------------------------

function listed(list: readonly string[], type: string): boolean {
  return list.includes(ALL_TYPES) || list.includes(type);
}

function parsePropertyValue(key: CheckPropertyKey, value: string): number {
  const text = value.trim().toLowerCase();
  if (key === 'attempts') {
    if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > 1000) {
      throw new UserError('invalid_check_property', `attempts: "${value}" is not a whole number from 1 to 1000`);
    }
    return Number(text);
  }
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m)?$/.exec(text);
  const ms = m ? Math.round(Number(m[1]) * { ms: 1, s: 1000, m: 60_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm']) : NaN;
  const min = key === 'timeout' ? 1 : 0;
  if (!Number.isFinite(ms) || ms < min || ms > 3_600_000) {
    throw new UserError('invalid_check_property', `${key}: "${value}" is not a number of seconds from ${min === 0 ? 0 : '0.001'} to 3600`, { hint: 'give seconds, optionally with a unit: 5, 30s, 2m, 500ms' });
  }
  // docker stop takes whole seconds.
  return key === 'stop-timeout' ? Math.ceil(ms / 1000) * 1000 : ms;
}
