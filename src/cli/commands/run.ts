// run: a one-off process of the app's current release, with the caller's streams (and terminal,
// with `ssh -t`); exits with the command's status.
import { callerName, defineCommand, type Command } from '../command.ts';

export const runCommands: Command[] = [
  defineCommand({
    name: 'run',
    args: ['APP', '[CMD...]'],
    summary: 'run a one-off command in a new container of the current release (a shell when no CMD)',
    help: 'It gets the app\'s config vars and DYNO=run.N. Ask for a terminal with ssh -t.\nOne CMD word is run as a shell command line: ssh ... run APP "echo $HOME".',
    scope: 'app',
    passThrough: true,
    needsDaemon: true,
    async run(ctx, { app, args: [command], daemon }) {
      ctx.state.apps.require(app);
      return daemon().processes.run(app, command, {
        by: callerName(ctx),
        ...(ctx.stdin ? { stdin: ctx.stdin() } : {}),
        stdout: (d) => ctx.out.raw(d),
        stderr: (d) => (ctx.stderr ? ctx.stderr(d) : ctx.out.raw(d)),
        ...(ctx.terminal ? { terminal: ctx.terminal } : {}),
        signal: ctx.signal,
      });
    },
  }),
];
