// config:set, config:unset, config:get, config:show: an app's config vars. A change makes a
// new release and restarts the app through the normal deploy path, unless --no-restart.
import { validateAppName } from '../../app-name.ts';
import { parseAssignments, validateConfigKey } from '../../config-vars.ts';
import { UserError } from '../../errors.ts';
import { log } from '../../log.ts';
import { changeConfig } from '../../orchestrator/app-operations.ts';
import { expectPositionals, parseArgs } from '../args.ts';
import { requireDaemon, type Command, type CommandContext } from '../command.ts';
import { callerName } from './ssh-keys.ts';

export const configCommands: Command[] = [
  {
    name: 'config:set',
    usage: 'APP KEY=VALUE... [--no-restart]',
    summary: 'set config vars; makes a new release and restarts the app',
    help: 'A value may hold spaces, = and newlines; quote it: config:set APP "GREETING=hello world".\nWith --no-restart the change is stored and applies at the next deploy or ps:restart.',
    scope: 'app',
    async run(ctx, words) {
      const { positional, flags } = parseArgs(this.name, this.usage, words, { 'no-restart': 'boolean' });
      const app = appArg(this.name, this.usage, positional);
      const set = parseAssignments(positional.slice(1));
      if (Object.keys(set).length === 0) throw new UserError('bad_arguments', `${this.name}: give at least one KEY=VALUE`, { hint: `usage: ${this.name} ${this.usage}`, exitCode: 2 });
      await change(ctx, app, { set }, !flags['no-restart']);
    },
  },
  {
    name: 'config:unset',
    usage: 'APP KEY... [--no-restart]',
    summary: 'remove config vars; makes a new release and restarts the app',
    scope: 'app',
    async run(ctx, words) {
      const { positional, flags } = parseArgs(this.name, this.usage, words, { 'no-restart': 'boolean' });
      const app = appArg(this.name, this.usage, positional);
      const keys = positional.slice(1).map(validateConfigKey);
      if (keys.length === 0) throw new UserError('bad_arguments', `${this.name}: give at least one KEY`, { hint: `usage: ${this.name} ${this.usage}`, exitCode: 2 });
      const missing = keys.filter((k) => !(k in ctx.services.apps.require(app).config));
      if (missing.length === keys.length) throw new UserError('config_not_set', `${app} has no config var ${missing.join(', ')}`, { hint: `\`config:show ${app}\` lists them` });
      await change(ctx, app, { unset: keys }, !flags['no-restart']);
    },
  },
  {
    name: 'config:get',
    usage: 'APP KEY',
    summary: 'print the value of one config var',
    scope: 'app',
    async run(ctx, words) {
      const { positional } = parseArgs(this.name, this.usage, words);
      expectPositionals(this.name, this.usage, positional, ['APP', 'KEY']);
      const record = ctx.services.apps.require(validateAppName(positional[0]!));
      const key = validateConfigKey(positional[1]!);
      const value = record.config[key];
      if (value === undefined) throw new UserError('config_not_set', `${record.name} has no config var ${key}`, { hint: `\`config:show ${record.name}\` lists them` });
      ctx.out.raw(value + '\n');
    },
  },
  {
    name: 'config:show',
    usage: 'APP [--format text|json]',
    summary: "show an app's config vars",
    scope: 'app',
    async run(ctx, words) {
      const { positional, flags } = parseArgs(this.name, this.usage, words, { format: 'string' });
      expectPositionals(this.name, this.usage, positional, ['APP']);
      const record = ctx.services.apps.require(validateAppName(positional[0]!));
      const format = flags.format ?? 'text';
      if (format === 'json') {
        ctx.out.line(JSON.stringify(record.config, null, 2));
        return;
      }
      if (format !== 'text') throw new UserError('bad_arguments', `${this.name}: unknown --format ${String(format)}`, { hint: 'use --format text or --format json', exitCode: 2 });
      ctx.out.section(`${record.name} env vars`);
      const keys = Object.keys(record.config).sort();
      const width = Math.max(0, ...keys.map((k) => k.length + 1));
      for (const k of keys) ctx.out.line(`${(k + ':').padEnd(width)}  ${record.config[k]}`);
    },
  },
];

async function change(ctx: CommandContext, app: string, what: { set?: Record<string, string>; unset?: string[] }, restart: boolean): Promise<void> {
  ctx.services.apps.require(app);
  const orch = requireDaemon(ctx.services);
  await changeConfig(orch, app, what, { restart, by: byName(ctx), out: ctx.out });
  log.info('config_changed', { app, set: Object.keys(what.set ?? {}), unset: what.unset ?? [], by: callerName(ctx) });
}

export function appArg(command: string, usage: string, positional: string[]): string {
  if (positional.length === 0) throw new UserError('bad_arguments', `${command}: missing APP`, { hint: `usage: ${command} ${usage}`, exitCode: 2 });
  return validateAppName(positional[0]!);
}

/** Who a release records as its maker: the SSH key's name, or `local`. */
export function byName(ctx: CommandContext): string {
  return ctx.caller.kind === 'ssh' ? ctx.caller.key.name : 'local';
}
