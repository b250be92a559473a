// dashboard: a one-time login link to berth's dashboard, for the caller's key (the local
// operator's is an admin's).
import { UserError } from '../../errors.ts';
import { defineCommand, type Command } from '../command.ts';

export const dashboardCommands: Command[] = [
  defineCommand({
    name: 'dashboard',
    summary: 'print a one-time link that logs you in to the dashboard (valid 5 minutes, once)',
    help: 'The session it opens may do what your key may do: a key limited to some apps sees and acts on those only. The link is good once, for 5 minutes; run the command again for another.',
    scope: 'any',
    needsDaemon: true,
    async run(ctx, { daemon }) {
      const login = daemon().dashboard;
      if (!login) {
        throw new UserError('dashboard_off', 'the dashboard is off on this server (berth serve --dashboard-listen off)', { hint: 'an admin can turn it on with --dashboard-listen HOST:PORT (default 127.0.0.1:9181)' });
      }
      const { urls, expiresAt, notes } = login.link(ctx.caller.kind === 'ssh' ? ctx.caller.key : undefined, { local: ctx.caller.kind === 'local' });
      for (const note of notes) ctx.out.line(note);
      ctx.out.step(`Open this link to log in to the dashboard (once, until ${expiresAt.toISOString().replace(/\.\d+Z$/, 'Z')}):`);
      for (const url of urls) ctx.out.line(url);
    },
  }),
];
