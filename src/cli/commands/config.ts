// config:set, config:unset, config:get, config:show: an app's config vars. A change makes a
// new release and restarts the app through the normal deploy path, unless --no-restart.
import { parseAssignments, validateConfigKey } from '../../config-vars.ts';
import { UserError } from '../../errors.ts';
import type { Platform } from '../../platform/platform.ts';
import { byName, defineCommand, type Command, type CommandContext } from '../command.ts';

export const configCommands: Command[] = [
  defineCommand({
    name: 'config:set',
    args: ['APP', 'KEY=VALUE...'],
    flags: { 'no-restart': 'boolean' },
    summary: 'set config vars; makes a new release and restarts the app',
    help: 'A value may hold spaces, = and newlines; quote it: config:set APP "GREETING=hello world".\nWith --no-restart the change is stored and applies at the next deploy or ps:restart.',
    scope: 'app',
    needsDaemon: true,
    async run(ctx, { app, args: [assignments], flags, daemon }) {
      const set = parseAssignments(assignments);
      await change(ctx, app, daemon, { set }, !flags['no-restart']);
    },
  }),
  defineCommand({
    name: 'config:unset',
    args: ['APP', 'KEY...'],
    flags: { 'no-restart': 'boolean' },
    summary: 'remove config vars; makes a new release and restarts the app',
    scope: 'app',
    needsDaemon: true,
    async run(ctx, { app, args: [names], flags, daemon }) {
      const keys = names.map(validateConfigKey);
      const missing = keys.filter((k) => !(k in ctx.state.apps.require(app).config));
      if (missing.length === keys.length) throw new UserError('config_not_set', `${app} has no config var ${missing.join(', ')}`, { hint: `\`config:show ${app}\` lists them` });
      await change(ctx, app, daemon, { unset: keys }, !flags['no-restart']);
    },
  }),
  defineCommand({
    name: 'config:get',
    args: ['APP', 'KEY'],
    summary: 'print the value of one config var',
    scope: 'app',
    async run(ctx, { app, args: [rawKey] }) {
      const record = ctx.state.apps.require(app);
      const key = validateConfigKey(rawKey);
      const value = record.config[key];
      if (value === undefined) throw new UserError('config_not_set', `${record.name} has no config var ${key}`, { hint: `\`config:show ${record.name}\` lists them` });
      ctx.out.raw(value + '\n');
    },
  }),
  defineCommand({
    name: 'config:show',
    args: ['APP'],
    flags: { format: 'text|json' },
    summary: "show an app's config vars",
    scope: 'app',
    async run(ctx, { app, flags }) {
      const record = ctx.state.apps.require(app);
      const format = flags.format ?? 'text';
      if (format === 'json') {
        ctx.out.line(JSON.stringify(record.config, null, 2));
        return;
      }
      if (format !== 'text') throw new UserError('bad_arguments', `${this.name}: unknown --format ${format}`, { hint: 'use --format text or --format json', exitCode: 2 });
      ctx.out.section(`${record.name} env vars`);
      const keys = Object.keys(record.config).sort();
      const width = Math.max(0, ...keys.map((k) => k.length + 1));
      for (const k of keys) ctx.out.line(`${(k + ':').padEnd(width)}  ${record.config[k]}`);
    },
  }),
];

async function change(ctx: CommandContext, app: string, daemon: () => Platform, what: { set?: Record<string, string>; unset?: string[] }, restart: boolean): Promise<void> {
  ctx.state.apps.require(app);
  await daemon().releases.changeConfig(app, what, { restart, by: byName(ctx), out: ctx.out });
}
