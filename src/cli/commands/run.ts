// run: a one-off process of the app's current release, with the caller's streams (and terminal,
// with `ssh -t`); exits with the command's status.
import { validateAppName } from '../../app-name.ts';
import { UserError } from '../../errors.ts';
import { log } from '../../log.ts';
import { runOneOff } from '../../orchestrator/one-off.ts';
import { requireDaemon, type Command } from '../command.ts';
import { callerName } from './ssh-keys.ts';

export const runCommands: Command[] = [
  {
    name: 'run',
    usage: 'APP [--] [CMD...]',
    summary: 'run a one-off command in a new container of the current release (a shell when no CMD)',
    help: 'It gets the app\'s config vars and DYNO=run.N. Ask for a terminal with ssh -t.\nOne CMD word is run as a shell command line: ssh ... run APP "echo $HOME".',
    scope: 'app',
    passThrough: true,
    async run(ctx, words) {
      const [first, ...rest] = words;
      if (first === undefined) throw new UserError('bad_arguments', 'run: missing APP', { hint: `usage: run ${this.usage}`, exitCode: 2 });
      const app = validateAppName(first);
      ctx.services.apps.require(app);
      const command = rest[0] === '--' ? rest.slice(1) : rest;
      const orch = requireDaemon(ctx.services);
      log.info('run_requested', { app, by: callerName(ctx), words: command.length });
      return runOneOff(orch, app, command, {
        ...(ctx.stdin ? { stdin: ctx.stdin() } : {}),
        stdout: (d) => ctx.out.raw(d),
        stderr: (d) => (ctx.stderr ? ctx.stderr(d) : ctx.out.raw(d)),
        ...(ctx.terminal ? { terminal: ctx.terminal } : {}),
        signal: ctx.signal,
      });
    },
  },
];
