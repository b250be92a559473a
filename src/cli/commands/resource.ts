// resource:limit, resource:limit-clear, resource:report: memory, CPU and process limits of an
// app's containers, for one process type or (without --process) for every type that has none of
// its own; a limit not set is the server's (--container-memory, --container-pids; no CPU limit).
// The operator sets limits to protect the server, so only admin keys change them; a key scoped to
// the app may read them.
import { parseBytes } from '../../config.ts';
import { UserError } from '../../errors.ts';
import { log } from '../../log.ts';
import { PROCESS_TYPE_PATTERN } from '../../orchestrator/procfile.ts';
import type { AppRecord } from '../../state/app-store.ts';
import type { ResourceLimit } from '../../state/app-settings.ts';
import type { Platform } from '../../platform/platform.ts';
import { callerName, defineCommand, type Command, type CommandContext } from '../command.ts';
import { table } from '../../ui/output.ts';

export const resourceCommands: Command[] = [
  defineCommand({
    name: 'resource:limit',
    args: ['APP'],
    flags: { process: 'T', memory: 'M', cpu: 'N', pids: 'N', 'no-restart': 'boolean' },
    summary: 'limit memory (such as 256m), CPUs (such as 0.5) and processes (such as 1024) of the containers; without limits: show them',
    help: 'Without --process the limit applies to every process type that has no limit of its own (one-offs run with the limit of type `run`, else this one). Changing a limit restarts the app, unless --no-restart. For admin keys; resource:report shows the limits to a key scoped to the app.',
    scope: 'admin',
    needsDaemon: true,
    async run(ctx, { app, flags, daemon }) {
      const record = ctx.state.apps.require(app);
      const type = processType(flags.process);
      if (flags.memory === undefined && flags.cpu === undefined && flags.pids === undefined) {
        show(ctx, record);
        return;
      }
      const limit: ResourceLimit = {};
      if (flags.memory !== undefined) {
        const bytes = parseBytes(flags.memory);
        if (bytes === undefined || bytes < 6 * 1024 ** 2) throw new UserError('invalid_limit', `--memory ${flags.memory} is not a size of at least 6m`, { hint: 'such as 256m or 1g' });
        limit.memory = bytes;
      }
      if (flags.cpu !== undefined) {
        const cpus = Number(flags.cpu);
        if (!/^\d+(\.\d+)?$/.test(flags.cpu) || cpus < 0.01 || cpus > 1024) throw new UserError('invalid_limit', `--cpu ${flags.cpu} is not a number of CPUs`, { hint: 'such as 0.5 or 2' });
        limit.cpus = cpus;
      }
      if (flags.pids !== undefined) {
        const pids = Number(flags.pids);
        if (!/^\d+$/.test(flags.pids) || pids < 8 || pids > 1_000_000) throw new UserError('invalid_limit', `--pids ${flags.pids} is not a number of processes from 8 to 1000000`, { hint: 'such as 256 or 4096' });
        limit.pids = pids;
      }
      await change(ctx, app, daemon, !flags['no-restart'], (a) => void (a.limits[type] = { ...a.limits[type], ...limit }));
    },
  }),
  defineCommand({
    name: 'resource:limit-clear',
    args: ['APP'],
    flags: { process: 'TYPE', 'no-restart': 'boolean' },
    summary: 'remove the limits of a process type (without --process: the default limits)',
    scope: 'admin',
    needsDaemon: true,
    async run(ctx, { app, flags, daemon }) {
      const type = processType(flags.process);
      await change(ctx, app, daemon, !flags['no-restart'], (a) => void delete a.limits[type]);
    },
  }),
  defineCommand({
    name: 'resource:report',
    args: ['APP'],
    summary: "show the memory, CPU and process limits of an app's containers",
    scope: 'app',
    async run(ctx, { app }) {
      show(ctx, ctx.state.apps.require(app));
    },
  }),
];

function processType(type: string | undefined): string {
  if (type === undefined) return '*';
  if (!PROCESS_TYPE_PATTERN.test(type)) throw new UserError('bad_arguments', `--process "${type}" is not a process type`, { exitCode: 2 });
  return type;
}

async function change(ctx: CommandContext, app: string, daemon: () => Platform, restart: boolean, fn: (a: AppRecord) => void): Promise<void> {
  await daemon().processes.changeSettings(app, fn, { restart, out: ctx.out });
  const record = ctx.state.apps.require(app);
  log.info('limits_changed', { app, limits: record.limits, by: callerName(ctx) });
  show(ctx, record);
}

function show(ctx: CommandContext, record: AppRecord): void {
  ctx.out.section(`${record.name} resource limits`);
  const rows = Object.entries(record.limits).map(([type, l]) => [type === '*' ? '(default)' : type, l.memory ? `${Math.round(l.memory / 1024 ** 2)}m` : '-', l.cpus ? String(l.cpus) : '-', l.pids ? String(l.pids) : '-']);
  ctx.out.line(rows.length ? table([['PROCESS', 'MEMORY', 'CPU', 'PIDS'], ...rows]) : '(no limits of its own)');
  ctx.out.detail("a limit shown as - is the server's: --container-memory and --container-pids, no CPU limit");
}
