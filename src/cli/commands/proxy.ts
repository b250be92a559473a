// proxy:set, proxy:report: an app's limits at the proxy (body size, read and idle timeouts) and
// its HSTS header.
import { UserError } from '../../errors.ts';
import { log } from '../../log.ts';
import { DEFAULT_APP_SETTINGS, defaultText, normaliseSetting, resolveSettings, SETTING_KEYS, type SettingKey, type StoredOverrides } from '../../state/proxy-settings.ts';
import { callerName, defineCommand, requireAdmin, type Command } from '../command.ts';
import { table } from '../../ui/output.ts';

const KEY_HELP = [
  'Keys (a value of 0 means no limit; without VALUE the key goes back to its default):',
  '  max-body-size  largest request body, e.g. 10m, 512k, 1g; bigger requests get 413 (default 100m)',
  '  read-timeout   how long berth waits for the app to start answering, e.g. 90s, 5m; then 504 (default 60s)',
  '  idle-timeout   how long an idle keep-alive client connection stays open after an answer (default 60s)',
  '  hsts           Strict-Transport-Security on the app\'s HTTPS answers: max-age=SECONDS, optionally',
  '                 includeSubDomains and preload, e.g. `hsts max-age=31536000 includeSubDomains`;',
  '                 off (or no VALUE) sends none (default off)',
  'A key scoped to the app may lower these limits; raising one above what the app has now, or 0, is for admin keys.',
].join('\n');

// The limits that protect the shared proxy: a key scoped to the app may tighten them, not lift them.
const LIMITS: Partial<Record<string, keyof typeof DEFAULT_APP_SETTINGS>> = { 'max-body-size': 'maxBodySize', 'read-timeout': 'readTimeout', 'idle-timeout': 'idleTimeout' };

/**
 * Whether setting `key` to `value` (undefined: back to the default) lifts one of those limits
 * above what the app has now (0 is no limit at all): an admin's tighter setting holds.
 */
function liftsLimit(key: string, value: string | undefined, current: StoredOverrides | undefined): boolean {
  const field = LIMITS[key];
  if (!field) return false;
  const now = resolveSettings(current)[field];
  const wanted = value === undefined ? DEFAULT_APP_SETTINGS[field] : resolveSettings({ [key]: normaliseSetting(key, value) })[field];
  if (now === 0) return false;
  return wanted === 0 || wanted > now;
}

export const proxyCommands: Command[] = [
  defineCommand({
    name: 'proxy:set',
    args: ['APP', 'KEY', '[VALUE...]'],
    summary: "set one of an app's proxy limits or its HSTS header (no VALUE: back to the default)",
    help: KEY_HELP,
    scope: 'app',
    async run(ctx, { app, args: [key, words] }) {
      ctx.state.apps.require(app);
      if (words.length > 1 && key !== 'hsts') throw new UserError('invalid_proxy_setting', `${key} takes one value, not ${words.length}`, { hint: `give one value, e.g. proxy:set ${app} ${key} VALUE` });
      const value = words.length === 0 ? undefined : words.join(' ');
      if (liftsLimit(key, value, ctx.state.proxySettings.overrides(app))) requireAdmin(ctx, `raise ${key} above what ${app} has now, or remove the limit`, 'proxy:set');
      const stored = await ctx.state.proxySettings.set(app, key, value);
      log.info('proxy_setting_changed', { app, key, value: stored ?? null, by: callerName(ctx) });
      if (stored === undefined) ctx.out.step(`Reset ${key} of ${app} to the default (${defaultText(key as SettingKey)})`);
      else ctx.out.step(`Set ${key} of ${app} to ${stored}`);
    },
  }),
  defineCommand({
    name: 'proxy:report',
    args: ['APP'],
    summary: "show an app's proxy limits and HSTS header, and where each comes from",
    help: KEY_HELP,
    scope: 'app',
    async run(ctx, { app }) {
      ctx.state.apps.require(app);
      const overrides = ctx.state.proxySettings.overrides(app);
      ctx.out.section(`${app} proxy settings`);
      const rows = SETTING_KEYS.map((key) => [key, overrides[key] ?? defaultText(key), overrides[key] === undefined ? 'default' : 'set for the app']);
      ctx.out.detail(table(rows));
    },
  }),
];
