// apps:list, apps:create, apps:destroy, apps:rename.
import { validateAppName } from '../../app-name.ts';
import { UserError } from '../../errors.ts';
import { scopeAllows } from '../../git/key-store.ts';
import { createApp } from '../../platform/app-service.ts';
import { currentRelease } from '../../state/app-store.ts';
import { callerName, defineCommand, type Command } from '../command.ts';
import { table } from '../../ui/output.ts';

export const appCommands: Command[] = [
  defineCommand({
    name: 'apps:list',
    args: [],
    summary: 'list the apps',
    help: 'A key limited to some apps sees those apps only.',
    scope: 'any',
    async run(ctx) {
      const visible = ctx.state.apps.list().filter((a) => ctx.caller.kind === 'local' || scopeAllows(ctx.caller.key, a.name, a));
      if (visible.length === 0) {
        ctx.out.line('no apps; push to ssh://berth@HOST:PORT/NAME or run `apps:create NAME`');
        return;
      }
      const rows = visible.map((a) => {
        const r = currentRelease(a);
        return [a.name, r ? `v${r.number}` : '-', r ? r.commit.slice(0, 7) : '-', ctx.state.domains.hostnames(a.name).join(', ') || '-'];
      });
      ctx.out.line(table([['APP', 'RELEASE', 'COMMIT', 'DOMAINS'], ...rows]));
    },
  }),
  defineCommand({
    name: 'apps:create',
    args: ['APP'],
    summary: 'create an app (a first push creates it too)',
    help: 'A key limited to some apps (ssh-keys:add --apps) may create those names only.',
    scope: 'app',
    async run(ctx, { app }) {
      if (ctx.daemon) await ctx.daemon.apps.create(app, callerName(ctx));
      else await createApp(ctx.state, app, callerName(ctx));
      ctx.out.step(`Created ${app}; push to it: git remote add berth ssh://berth@HOST:${ctx.state.config.sshPort}/${app}`);
    },
  }),
  defineCommand({
    name: 'apps:destroy',
    args: ['APP'],
    flags: { force: 'boolean' },
    // Not `[--force]`: without it the command only says what it would delete.
    usage: 'APP --force',
    summary: 'stop and delete an app: containers, images, repository and state',
    help: 'Nothing of the app can be recovered afterwards, so it asks for --force. A push to the app that is running finishes first.',
    scope: 'admin',
    needsDaemon: true,
    async run(ctx, { app, flags, daemon }) {
      ctx.state.apps.require(app);
      if (!flags.force) {
        throw new UserError('confirmation_needed', `apps:destroy deletes ${app}, its containers, images, repository and releases`, {
          hint: `run \`apps:destroy ${app} --force\` to confirm`,
        });
      }
      await daemon().apps.destroy(app, { by: callerName(ctx), out: ctx.out });
    },
  }),
  defineCommand({
    name: 'apps:rename',
    args: ['APP', 'NEW-NAME'],
    summary: 'rename an app: its repository, releases, containers and host name',
    help: [
      'The app keeps serving throughout: its current release starts under the new name at',
      'http://NEW-NAME.DOMAIN, and only then do the old containers and http://APP.DOMAIN stop.',
      'Afterwards, point your git remote at the new name:',
      '  git remote set-url berth ssh://berth@HOST:PORT/NEW-NAME',
    ].join('\n'),
    scope: 'admin',
    needsDaemon: true,
    async run(ctx, { app: from, args: [newName], daemon }) {
      const to = validateAppName(newName);
      ctx.state.apps.require(from);
      if (ctx.state.apps.get(to)) throw new UserError('app_exists', `app "${to}" already exists`, { hint: 'choose another name, or destroy that app first' });
      const url = await daemon().apps.rename(from, to, { by: callerName(ctx), out: ctx.out });
      ctx.out.step(`Renamed ${from} to ${to}: ${url}`);
      ctx.out.detail(`point your git remote at the new name: git remote set-url berth ssh://berth@HOST:${ctx.state.config.sshPort}/${to}`);
    },
  }),
];
