// logs (all of an app's containers, interleaved, `-t` to follow) and logs:failed (the output
// of the app's last failed deploy).
import { UserError } from '../../errors.ts';
import { PROCESS_TYPE_PATTERN } from '../../orchestrator/procfile.ts';
import { defineCommand, type Command } from '../command.ts';

export const logCommands: Command[] = [
  defineCommand({
    name: 'logs',
    args: ['APP'],
    flags: { tail: 'boolean', num: 'N', ps: 'TYPE', quiet: 'boolean' },
    short: { t: 'tail', n: 'num', p: 'ps', q: 'quiet' },
    summary: "show an app's logs, every container interleaved by time; -t follows them",
    help: 'Each line reads TIME app[TYPE.N]: TEXT. -t (--tail) follows; -n N (--num) shows the last N lines first (default 100); -p TYPE (--ps) only that process type; -q (--quiet) the bare lines.',
    scope: 'app',
    needsDaemon: true,
    async run(ctx, { app, flags, daemon }) {
      ctx.state.apps.require(app);
      const lines = flags.num === undefined ? 100 : Number(flags.num);
      if (!Number.isInteger(lines) || lines < 0 || lines > 100_000) throw new UserError('bad_arguments', `${this.name}: -n takes a number of lines from 0 to 100000`, { exitCode: 2 });
      const type = flags.ps;
      if (type !== undefined && !PROCESS_TYPE_PATTERN.test(type)) throw new UserError('bad_arguments', `${this.name}: "${type}" is not a process type`, { exitCode: 2 });
      await daemon().processes.logs(
        app,
        { follow: flags.tail, lines, quiet: flags.quiet, ...(type ? { type } : {}) },
        (line) => ctx.out.line(line),
        ctx.signal,
      );
    },
  }),
  defineCommand({
    name: 'logs:failed',
    args: ['APP'],
    summary: "show the output of the app's last failed deploy",
    scope: 'app',
    needsDaemon: true,
    async run(ctx, { app, daemon }) {
      ctx.state.apps.require(app);
      const failed = await daemon().releases.lastFailed(app);
      if (!failed) {
        ctx.out.line(`no failed deploys of ${app} are kept`);
        return;
      }
      ctx.out.section(`${app}: the deploy that failed at ${failed.at}`);
      ctx.out.raw(failed.text);
    },
  }),
];
