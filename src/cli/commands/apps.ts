// apps:list, apps:create, apps:destroy, apps:rename.
import { validateAppName } from '../../app-name.ts';
import { UserError } from '../../errors.ts';
import { log } from '../../log.ts';
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
      const visible = ctx.services.apps.list().filter((a) => ctx.caller.kind === 'local' || !ctx.caller.key.apps || ctx.caller.key.apps.includes(a.name));
      if (visible.length === 0) {
        ctx.out.line('no apps; push to ssh://berth@HOST:PORT/NAME or run `apps:create NAME`');
        return;
      }
      const rows = visible.map((a) => {
        const r = currentRelease(a);
        return [a.name, r ? `v${r.number}` : '-', r ? r.commit.slice(0, 7) : '-', ctx.services.domains.hostnames(a.name).join(', ') || '-'];
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
      await ctx.services.apps.create(app);
      log.info('app_created', { app, by: callerName(ctx) });
      ctx.out.step(`Created ${app}; push to it: git remote add berth ssh://berth@HOST:${ctx.services.config.sshPort}/${app}`);
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
      ctx.services.apps.require(app);
      if (!flags.force) {
        throw new UserError('confirmation_needed', `apps:destroy deletes ${app}, its containers, images, repository and releases`, {
          hint: `run \`apps:destroy ${app} --force\` to confirm`,
        });
      }
      const orchestrator = daemon();
      await ctx.services.locks.run(
        app,
        async () => {
          ctx.services.apps.require(app);
          ctx.out.step(`Destroying ${app}`);
          await orchestrator.destroyApp(app, ctx.out);
          await ctx.services.proxySettings.removeApp(app);
          log.info('app_destroyed', { app, by: callerName(ctx) });
          ctx.out.step(`Destroyed ${app}`);
        },
        () => ctx.out.step(`A push or another change to ${app} is running; waiting for it to finish`),
      );
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
      ctx.services.apps.require(from);
      if (ctx.services.apps.get(to)) throw new UserError('app_exists', `app "${to}" already exists`, { hint: 'choose another name, or destroy that app first' });
      const orchestrator = daemon();
      const [first, second] = [from, to].sort() as [string, string];
      const wait = (app: string) => () => ctx.out.step(`A push or another change to ${app} is running; waiting for it to finish`);
      await ctx.services.locks.run(
        first,
        () =>
          ctx.services.locks.run(
            second,
            async () => {
              ctx.services.apps.require(from);
              if (ctx.services.apps.get(to)) throw new UserError('app_exists', `app "${to}" already exists`);
              ctx.out.step(`Renaming ${from} to ${to}`);
              await orchestrator.renameApp(from, to, ctx.out);
              await ctx.services.proxySettings.renameApp(from, to);
              await ctx.services.certificates?.renameApp(from, to);
              log.info('app_renamed', { from, to, by: callerName(ctx) });
            },
            wait(second),
          ),
        wait(first),
      );
      ctx.out.step(`Renamed ${from} to ${to}: ${orchestrator.appUrl(to)}`);
      ctx.out.detail(`point your git remote at the new name: git remote set-url berth ssh://berth@HOST:${ctx.services.config.sshPort}/${to}`);
    },
  }),
];
