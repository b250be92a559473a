// apps:list, apps:create, apps:destroy.
import { validateAppName } from '../../app-name.ts';
import { UserError } from '../../errors.ts';
import { log } from '../../log.ts';
import { currentRelease } from '../../state/app-store.ts';
import { expectPositionals, parseArgs } from '../args.ts';
import { requireDaemon, type Command } from '../command.ts';
import { callerName, table } from './ssh-keys.ts';

export const appCommands: Command[] = [
  {
    name: 'apps:list',
    usage: '',
    summary: 'list the apps',
    scope: 'any',
    async run(ctx, words) {
      const { positional } = parseArgs(this.name, this.usage, words);
      expectPositionals(this.name, this.usage, positional, []);
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
  },
  {
    name: 'apps:create',
    usage: 'APP',
    summary: 'create an app (a first push creates it too)',
    scope: 'admin',
    async run(ctx, words) {
      const { positional } = parseArgs(this.name, this.usage, words);
      expectPositionals(this.name, this.usage, positional, ['APP']);
      const app = validateAppName(positional[0]!);
      await ctx.services.apps.create(app);
      log.info('app_created', { app, by: callerName(ctx) });
      ctx.out.step(`Created ${app}; push to it: git remote add berth ssh://berth@HOST:${ctx.services.config.sshPort}/${app}`);
    },
  },
  {
    name: 'apps:destroy',
    usage: 'APP --force',
    summary: 'stop and delete an app: containers, images, repository and state',
    scope: 'admin',
    async run(ctx, words) {
      const { positional, flags } = parseArgs(this.name, this.usage, words, { force: 'boolean' });
      expectPositionals(this.name, this.usage, positional, ['APP']);
      const app = validateAppName(positional[0]!);
      ctx.services.apps.require(app);
      if (!flags.force) {
        throw new UserError('confirmation_needed', `apps:destroy deletes ${app}, its containers, images, repository and releases`, {
          hint: `run \`apps:destroy ${app} --force\` to confirm`,
        });
      }
      const orchestrator = requireDaemon(ctx.services);
      ctx.out.step(`Destroying ${app}`);
      await orchestrator.destroyApp(app, ctx.out);
      await ctx.services.proxySettings.removeApp(app);
      log.info('app_destroyed', { app, by: callerName(ctx) });
      ctx.out.step(`Destroyed ${app}`);
    },
  },
];
