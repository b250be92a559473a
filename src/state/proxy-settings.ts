// The per-app proxy settings that `proxy:set APP KEY VALUE` stores in state/proxy.json: their keys,
// how a value is checked and normalised, and how overrides resolve against the defaults (each
// documented where it is declared). The proxy reads the resolved values; it never asks the store.
import { UserError } from '../errors.ts';

/** What one app may set. Limits are bytes and milliseconds; 0 means "no limit". */
export interface AppProxySettings {
  /** Largest request body the app accepts; bigger ones get 413 from berth. Default 100 MB (`100m`). */
  maxBodySize: number;
  /** How long berth waits for the app's response headers once the request is sent; then 504. Default 60 s. */
  readTimeout: number;
  /** How long a client's keep-alive connection may sit idle after an answer from this app. Default 60 s. */
  idleTimeout: number;
  /**
   * The Strict-Transport-Security header berth adds to the app's answers over HTTPS (never over
   * HTTP), e.g. `max-age=31536000; includeSubDomains`; '' for none. Default none: HSTS pins a
   * name to HTTPS in browsers for max-age, so it is the app owner's choice, not berth's.
   */
  hsts: string;
}

export const DEFAULT_APP_SETTINGS: Readonly<AppProxySettings> = Object.freeze({
  maxBodySize: 100 * 1024 * 1024,
  readTimeout: 60_000,
  idleTimeout: 60_000,
  hsts: '',
});

/** The keys of `proxy:set`, in the order `proxy:report` shows them. */
export const SETTING_KEYS = ['max-body-size', 'read-timeout', 'idle-timeout', 'hsts'] as const;
export type SettingKey = (typeof SETTING_KEYS)[number];

const FIELD: Record<SettingKey, keyof AppProxySettings> = {
  'max-body-size': 'maxBodySize',
  'read-timeout': 'readTimeout',
  'idle-timeout': 'idleTimeout',
  hsts: 'hsts',
};

/** HSTS preload lists take a name only with includeSubDomains and at least a year (hstspreload.org). */
const PRELOAD_MIN_AGE = 31_536_000;

/** The HSTS words that turn it off: `proxy:set APP hsts off` is the same as `proxy:set APP hsts`. */
const HSTS_OFF = new Set(['off', 'clear']);

type NumericField = Exclude<keyof AppProxySettings, 'hsts'>;

/** One app's overrides as stored: only the keys that were set, as the user wrote them (normalised). */
export type StoredOverrides = Partial<Record<SettingKey, string>>;

export function isSettingKey(key: string): key is SettingKey {
  return (SETTING_KEYS as readonly string[]).includes(key);
}

/** Throws the UserError for a key `proxy:set` does not know, listing the ones it does. */
export function requireSettingKey(key: string): asserts key is SettingKey {
  if (!isSettingKey(key)) {
    throw new UserError('unknown_proxy_setting', `unknown proxy setting "${key}"`, { hint: `the settings are: ${SETTING_KEYS.join(', ')}` });
  }
}

/** Whether `value` sets `key` back to its default (`hsts off`), as giving no value does. */
export function resetsSetting(key: string, value: string): boolean {
  return key === 'hsts' && HSTS_OFF.has(value.trim().toLowerCase());
}

/**
 * Checks a value for a key and returns its normalised text (`10M` → `10m`, `90` → `90s`,
 * `max-age=600,includesubdomains` → `max-age=600; includeSubDomains`); throws a UserError naming the key.
 */
export function normaliseSetting(key: string, value: string): string {
  requireSettingKey(key);
  if (key === 'hsts') return normaliseHsts(value);
  const trimmed = value.trim().toLowerCase();
  if (key === 'max-body-size') {
    parseSize(trimmed, key);
    return trimmed;
  }
  parseDuration(trimmed, key);
  return /^\d+$/.test(trimmed) ? `${trimmed}s` : trimmed;
}

/** The effective settings of one app: the defaults with its overrides applied. */
export function resolveSettings(overrides: StoredOverrides | undefined): AppProxySettings {
  const out: AppProxySettings = { ...DEFAULT_APP_SETTINGS };
  if (!overrides) return out;
  for (const key of SETTING_KEYS) {
    const value = overrides[key];
    if (value === undefined) continue;
    if (key === 'hsts') out.hsts = normaliseHsts(value);
    else out[FIELD[key] as NumericField] = key === 'max-body-size' ? parseSize(value, key) : parseDuration(value, key);
  }
  return out;
}

/** The default of a key, as `proxy:report` shows it. */
export function defaultText(key: SettingKey): string {
  if (key === 'hsts') return 'off';
  const value = DEFAULT_APP_SETTINGS[FIELD[key] as NumericField];
  return key === 'max-body-size' ? formatSize(value) : formatDuration(value);
}

/**
 * An HSTS policy as `proxy:set` takes it, `max-age=SECONDS` with `includeSubDomains` and
 * `preload` if wanted, separated by spaces, commas or semicolons, in any case; returned as the
 * header's value in RFC 6797's spelling. `preload` needs what the preload lists require.
 */
export function normaliseHsts(text: string): string {
  const hint = 'give max-age=SECONDS, optionally with includeSubDomains and preload, e.g. "max-age=31536000 includeSubDomains"; or off';
  let maxAge: number | undefined;
  let subdomains = false;
  let preload = false;
  for (const word of text.split(/[\s;,]+/)) {
    const token = word.toLowerCase();
    if (token === '') continue;
    const age = /^max-age=(\d{1,10})$/.exec(token);
    if (age && maxAge === undefined && Number(age[1]) <= 2 ** 31 - 1) maxAge = Number(age[1]);
    else if (token === 'includesubdomains' && !subdomains) subdomains = true;
    else if (token === 'preload' && !preload) preload = true;
    else throw new UserError('invalid_proxy_setting', `hsts: "${word.slice(0, 40)}" is not understood${age || token === 'includesubdomains' || token === 'preload' ? ' (given twice, or too large)' : ''}`, { hint });
  }
  if (maxAge === undefined) throw new UserError('invalid_proxy_setting', 'hsts: max-age is missing', { hint });
  if (preload && (!subdomains || maxAge < PRELOAD_MIN_AGE)) {
    throw new UserError('invalid_proxy_setting', 'hsts: preload needs includeSubDomains and a max-age of at least 31536000 (a year)', { hint: 'the preload lists take a name only then; drop preload or add both' });
  }
  return `max-age=${maxAge}${subdomains ? '; includeSubDomains' : ''}${preload ? '; preload' : ''}`;
}

/** `10m` → 10485760. Units k, m, g (powers of 1024), optional `b`; a bare number is bytes; `0` is no limit. */
export function parseSize(text: string, key = 'size'): number {
  const match = /^(\d+(?:\.\d+)?)\s*([kmg]?)b?$/i.exec(text.trim());
  if (!match) {
    throw new UserError('invalid_proxy_setting', `${key}: "${text}" is not a size`, { hint: 'give a number of bytes with an optional unit: 512k, 10m, 1g, or 0 for no limit' });
  }
  const unit = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[match[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  const bytes = Math.round(Number(match[1]) * unit);
  if (!Number.isSafeInteger(bytes)) throw new UserError('invalid_proxy_setting', `${key}: "${text}" is too large`);
  return bytes;
}

/** `90s`, `2m`, `1h`, `500ms`, or a bare number of seconds → milliseconds; `0` is no limit. */
export function parseDuration(text: string, key = 'duration'): number {
  const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/i.exec(text.trim());
  if (!match) {
    throw new UserError('invalid_proxy_setting', `${key}: "${text}" is not a duration`, { hint: 'give seconds with an optional unit: 30s, 5m, 1h, 500ms, or 0 for no limit' });
  }
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(match[2] ?? 's').toLowerCase() as 'ms' | 's' | 'm' | 'h'];
  const ms = Math.round(Number(match[1]) * unit);
  if (!Number.isSafeInteger(ms) || ms > 2 ** 31 - 1) throw new UserError('invalid_proxy_setting', `${key}: "${text}" is too long`, { hint: 'the longest is 596h' });
  return ms;
}

export function formatSize(bytes: number): string {
  if (bytes === 0) return '0 (no limit)';
  for (const [unit, size] of [['g', 1024 ** 3], ['m', 1024 ** 2], ['k', 1024]] as const) if (bytes % size === 0) return `${bytes / size}${unit}`;
  return String(bytes);
}

export function formatDuration(ms: number): string {
  if (ms === 0) return '0 (no limit)';
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0 && ms >= 60_000 * 10) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
