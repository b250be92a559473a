// checks:report, checks:set, checks:disable, checks:enable, checks:skip, checks:run: an app's
// deploy checks, as Dokku's checks plugin has them. Settings live in the app's document and apply
// from the next deploy (push, config:set, ps:scale, ps:restart, rollback ...).
import { UserError } from '../../errors.ts';
import { log } from '../../log.ts';
import { PROCESS_TYPE_PATTERN } from '../../orchestrator/procfile.ts';
import { currentRelease, type AppRecord } from '../../state/app-store.ts';
import {
  ALL_TYPES,
  changeCheckLists,
  checkPropertyKey,
  formatCheckProperty,
  formatMs,
  formatTypeList,
  resolveChecks,
  setCheckProperty,
  type CheckPropertyKey,
} from '../../state/check-settings.ts';
import { usageError } from '../args.ts';
import { callerName, defineCommand, type Command } from '../command.ts';

const PROPERTY_HELP = [
  'Properties (without VALUE a property goes back to its default):',
  '  wait           probation: seconds new containers serve while the old ones are kept running, ready',
  '                 to take the route back if a new one exits or fails (default: berth serve --checks-wait, 10)',
  '  drain-timeout  after the swap, how long requests in flight on the old containers may run and their',
  '                 WebSockets stay open before a clean close (default 30); wait-to-retire is the same',
  '  stop-timeout   seconds between SIGTERM and SIGKILL when an old container stops (default 10)',
  '  attempts       overrides the attempts of every app.json check',
  '  timeout        overrides the per-attempt timeout (seconds) of every app.json check',
  'Durations take seconds, or a unit: 5, 30s, 2m, 500ms.',
].join('\n');

const LIST_HELP = 'TYPES is a comma-separated list of process types (web,worker); without it, every type.';

export const checksCommands: Command[] = [
  defineCommand({
    name: 'checks:report',
    args: ['APP'],
    // Its flag names one row of the report: read here, so an unknown one is answered with the list.
    looseFlags: true,
    usage: 'APP [--checks-FLAG]',
    summary: "show an app's deploy checks settings (with a flag: only that value)",
    help: `Flags: ${reportRows(undefined).map(([flag]) => flag).join(', ')}`,
    scope: 'app',
    async run(ctx, { app, otherFlags: [flag, ...more] }) {
      const second = more.find((f) => f !== flag);
      if (second !== undefined) throw usageError(this, `unknown flag ${second.split('=')[0]}`);
      const record = ctx.state.apps.require(app);
      const rows = reportRows(record, ctx.state.config.checksWait);
      if (flag) {
        const row = rows.find(([f]) => f === flag || (flag === '--checks-wait-to-retire' && f === '--checks-drain-timeout'));
        if (!row) throw new UserError('bad_arguments', `${this.name}: unknown flag ${flag}`, { hint: `the flags are: ${rows.map(([f]) => f).join(', ')}`, exitCode: 2 });
        ctx.out.line(row[2]);
        return;
      }
      ctx.out.section(`${app} checks information`);
      const width = Math.max(...rows.map(([, label]) => label.length)) + 2;
      for (const [, label, value] of rows) ctx.out.detail(`${(label + ':').padEnd(width)}${value}`);
    },
  }),
  defineCommand({
    name: 'checks:set',
    args: ['APP', 'KEY', '[VALUE]'],
    summary: "set one of an app's checks properties (no VALUE: back to the default)",
    help: PROPERTY_HELP,
    scope: 'app',
    async run(ctx, { app, args: [rawKey, value] }) {
      ctx.state.apps.require(app);
      const key = checkPropertyKey(rawKey);
      const updated = await ctx.state.apps.update(app, (a) => void (a.checks = { ...a.checks, properties: setCheckProperty(a.checks.properties, key, value) }));
      const shown = formatCheckProperty(key, updated.checks.properties);
      log.info('checks_property_changed', { app, key, value: shown ?? null, by: callerName(ctx) });
      if (shown === undefined) ctx.out.step(`Reset ${key} of ${app} to the default (${defaultOf(key, ctx.state.config.checksWait)})`);
      else ctx.out.step(`Set ${key} of ${app} to ${shown}; it applies from the next deploy`);
    },
  }),
  listCommand('checks:disable', 'disable zero-downtime deploys for all or some process types (causes downtime: old containers stop first)', 'disable'),
  listCommand('checks:enable', 'enable zero-downtime deploys and checks again for all or some process types', 'enable'),
  listCommand('checks:skip', 'skip the checks of all or some process types (deploys stay zero-downtime)', 'skip'),
  defineCommand({
    name: 'checks:run',
    args: ['APP', '[TYPE|TYPE.N]'],
    summary: "run the current release's checks against the app's running containers",
    scope: 'app',
    needsDaemon: true,
    async run(ctx, { app, args: [which], daemon }) {
      ctx.state.apps.require(app);
      await daemon().processes.runChecks(app, which, { out: ctx.out, signal: ctx.signal });
    },
  }),
];

function listCommand(name: string, summary: string, verb: 'enable' | 'disable' | 'skip'): Command {
  return defineCommand({
    name,
    args: ['APP', '[TYPES]'],
    summary,
    help: LIST_HELP,
    scope: 'app',
    async run(ctx, { app, args: [typeList] }) {
      const types = parseTypes(name, typeList);
      const record = ctx.state.apps.require(app);
      const known = Object.keys(currentRelease(record)?.processTypes ?? { web: '' });
      const updated = await ctx.state.apps.update(app, (a) => void (a.checks = changeCheckLists(a.checks, verb, types, known)));
      log.info('checks_lists_changed', { app, verb, types: types.length ? types : [ALL_TYPES], disabled: updated.checks.disabled, skipped: updated.checks.skipped, by: callerName(ctx) });
      const what = types.length ? types.join(', ') : 'every process type';
      const done = { enable: 'Enabled zero-downtime checks', disable: 'Disabled zero-downtime deploys', skip: 'Skipping the checks' }[verb];
      ctx.out.step(`${done} for ${what} of ${app}`);
      ctx.out.detail(`disabled: ${formatTypeList(updated.checks.disabled)}; skipped: ${formatTypeList(updated.checks.skipped)}`);
      if (verb === 'disable') ctx.out.detail('deploys now stop the old containers of these types before the new ones start: expect downtime');
    },
  });
}

function parseTypes(command: string, text: string | undefined): string[] {
  if (text === undefined || text === ALL_TYPES) return [];
  const types = text.split(',').map((t) => t.trim()).filter(Boolean);
  for (const t of types) {
    if (!PROCESS_TYPE_PATTERN.test(t)) {
      throw new UserError('bad_arguments', `${command}: "${t}" is not a process type`, { hint: 'give process types separated by commas, such as web,worker', exitCode: 2 });
    }
  }
  return [...new Set(types)];
}

/** [flag, label, value] for each line of checks:report. */
function reportRows(record: AppRecord | undefined, serverWaitMs = 10_000): Array<[string, string, string]> {
  const settings = record?.checks ?? { disabled: [], skipped: [], properties: {} };
  const resolved = resolveChecks(settings, { waitMs: serverWaitMs });
  const prop = (key: CheckPropertyKey, fallback: string) => {
    const set = formatCheckProperty(key, settings.properties);
    return set ?? `${fallback} (default)`;
  };
  const release = record ? currentRelease(record) : undefined;
  const declared = Object.entries(release?.healthchecks ?? {}).map(([type, list]) => `${type} (${list.length})`);
  return [
    ['--checks-disabled-list', 'Checks disabled list', formatTypeList(settings.disabled)],
    ['--checks-skipped-list', 'Checks skipped list', formatTypeList(settings.skipped)],
    ['--checks-wait', 'Checks wait', prop('wait', formatMs(resolved.waitMs))],
    ['--checks-drain-timeout', 'Checks drain timeout', prop('drain-timeout', formatMs(resolved.drainTimeoutMs))],
    ['--checks-stop-timeout', 'Checks stop timeout', prop('stop-timeout', formatMs(resolved.stopTimeoutMs))],
    ['--checks-attempts', 'Checks attempts', prop('attempts', "app.json's")],
    ['--checks-timeout', 'Checks timeout', prop('timeout', "app.json's")],
    ['--checks-app-json', 'Checks from app.json', release ? (declared.length ? `${declared.join(', ')} in v${release.number}` : `none in v${release.number}`) : 'no release yet'],
  ];
}

function defaultOf(key: CheckPropertyKey, serverWaitMs: number): string {
  const resolved = resolveChecks({ disabled: [], skipped: [], properties: {} }, { waitMs: serverWaitMs });
  return { wait: formatMs(resolved.waitMs), 'drain-timeout': formatMs(resolved.drainTimeoutMs), 'stop-timeout': formatMs(resolved.stopTimeoutMs), attempts: "app.json's", timeout: "app.json's" }[key];
}
