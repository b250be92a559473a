// logs (all of an app's containers, interleaved, `-t` to follow) and logs:failed (the output
// of the app's last failed deploy).
import { UserError } from '../../errors.ts';
import { writeAppLogs } from '../../orchestrator/app-logs.ts';
import { PROCESS_TYPE_PATTERN } from '../../orchestrator/procfile.ts';
import { expectPositionals, parseArgs } from '../args.ts';
import { requireDaemon, type Command } from '../command.ts';
import { appArg } from './config.ts';

const SHORT: Record<string, string> = { '-t': '--tail', '-n': '--num', '-p': '--ps', '-q': '--quiet' };

export const logCommands: Command[] = [
  {
    name: 'logs',
    usage: 'APP [-t] [-n N] [-p TYPE] [-q]',
    summary: "show an app's logs, every container interleaved by time; -t follows them",
    help: 'Each line reads TIME app[TYPE.N]: TEXT. -t (--tail) follows; -n N (--num) shows the last N lines first (default 100); -p TYPE (--ps) only that process type; -q (--quiet) the bare lines.',
    scope: 'app',
    async run(ctx, words) {
      const { positional, flags } = parseArgs(this.name, this.usage, words.map((w) => SHORT[w] ?? w), { tail: 'boolean', num: 'string', ps: 'string', quiet: 'boolean' });
      expectPositionals(this.name, this.usage, positional, ['APP']);
      const app = appArg(this.name, this.usage, positional);
      ctx.services.apps.require(app);
      const lines = flags.num === undefined ? 100 : Number(flags.num);
      if (!Number.isInteger(lines) || lines < 0 || lines > 100_000) throw new UserError('bad_arguments', `${this.name}: -n takes a number of lines from 0 to 100000`, { exitCode: 2 });
      const type = flags.ps === undefined ? undefined : String(flags.ps);
      if (type !== undefined && !PROCESS_TYPE_PATTERN.test(type)) throw new UserError('bad_arguments', `${this.name}: "${type}" is not a process type`, { exitCode: 2 });
      await writeAppLogs(
        requireDaemon(ctx.services).engine,
        app,
        { follow: flags.tail === true, lines, quiet: flags.quiet === true, ...(type ? { type } : {}) },
        (line) => ctx.out.line(line),
        ctx.signal,
      );
    },
  },
  {
    name: 'logs:failed',
    usage: 'APP',
    summary: "show the output of the app's last failed deploy",
    scope: 'app',
    async run(ctx, words) {
      const { positional } = parseArgs(this.name, this.usage, words);
      expectPositionals(this.name, this.usage, positional, ['APP']);
      const app = appArg(this.name, this.usage, positional);
      ctx.services.apps.require(app);
      const failed = await requireDaemon(ctx.services).buildLogs.lastFailed(app);
      if (!failed) {
        ctx.out.line(`no failed deploys of ${app} are kept`);
        return;
      }
      ctx.out.section(`${app}: the deploy that failed at ${failed.at}`);
      ctx.out.raw(failed.text);
    },
  },
];
